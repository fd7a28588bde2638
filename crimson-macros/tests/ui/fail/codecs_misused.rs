use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json", codecs("json", "cbor"))]
struct Both {
    n: u8,
}

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs("json", "cbor"), frame = "binary")]
struct WithFrame {
    n: u8,
}

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs("json", "yaml", "json"))]
struct UnknownAndTwice {
    n: u8,
}

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs())]
struct Empty {
    n: u8,
}

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs = "json")]
struct NotAList {
    n: u8,
}

fn main() {}
