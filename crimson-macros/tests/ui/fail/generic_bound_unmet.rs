use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Wrapper<T> {
    inner: T,
}

/// Neither Serialize nor Deserialize.
struct Opaque;

fn require<M: CrimsonMessage>() {}

fn main() {
    require::<Wrapper<Opaque>>();
}
