use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

// Every error is reported at once, across attributes.
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "yaml", frame = "bytes")]
#[crimson(crate = "::crimson_core", crate = "::crimson_core")]
struct Everything {
    #[crimson(codec = "json")]
    field: u8,
}

fn main() {}
