use crimson_core::{CrimsonMessage, FrameKind};
use serde::{Deserialize, Serialize};

/// No `#[crimson]` attribute at all: JSON in Text frames.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
struct Hello {
    name: String,
}

fn main() {
    assert_eq!(Hello::FRAME, FrameKind::Text);
    assert_eq!(Hello::CODEC, "JSON");
    let payload = Hello { name: "a".into() }.encode().unwrap();
    assert_eq!(payload.as_bytes(), br#"{"name":"a"}"#);
    assert_eq!(
        Hello::decode(payload.as_ref()).unwrap(),
        Hello { name: "a".into() }
    );
}
