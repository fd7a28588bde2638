use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "yaml")]
struct Config {
    name: String,
}

// The fallback impl keeps uses of the type free of follow-on errors.
fn main() {
    let _ = Config {
        name: String::new(),
    }
    .encode();
}
