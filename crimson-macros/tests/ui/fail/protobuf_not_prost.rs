use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "protobuf")]
struct NotProst {
    x: i32,
}

fn main() {}
