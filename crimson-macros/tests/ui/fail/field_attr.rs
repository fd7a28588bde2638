use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
struct Login {
    #[crimson(codec = "json")]
    user: String,
}

#[derive(Serialize, Deserialize, CrimsonMessage)]
enum Command {
    #[crimson(frame = "binary")]
    Quit,
}

fn main() {}
