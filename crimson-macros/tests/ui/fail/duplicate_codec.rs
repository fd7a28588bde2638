use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
#[crimson(codec = "cbor")]
struct Split(u8);

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json", frame = "binary", frame = "binary")]
struct Same(u8);

fn main() {}
