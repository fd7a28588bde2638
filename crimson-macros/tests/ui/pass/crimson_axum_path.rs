//! `crate = ".."` with an absolute path, written as a user of a facade crate would.
use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(crate = "::crimson_core", codec = "msgpack")]
#[crimson(frame = "binary")]
struct Move {
    dx: i8,
}

fn main() {
    assert_eq!(Move::CODEC, "MessagePack");
    assert_eq!(
        Move { dx: 1 }.encode().unwrap().kind(),
        crimson_core::FrameKind::Binary
    );
}
