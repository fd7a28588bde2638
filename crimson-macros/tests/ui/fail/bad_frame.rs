use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json", frame = "bytes")]
struct Update {
    seq: u64,
}

fn main() {}
