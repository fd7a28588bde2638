//! Uses a codec whose cargo feature is off: the derive's `compile_error!` must be the only
//! error, at the `codec = "cbor"` string. The JSON type beside it must compile.

use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

/// Needs the `cbor` feature, which is off.
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "cbor")]
pub struct Sample {
    /// A reading.
    pub value: f64,
}

/// JSON, which is on: compiles.
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub struct Reading {
    /// A reading.
    pub value: f64,
}

/// Code using the failing type as a message adds no errors of its own.
pub fn encode(sample: &Sample) -> bool {
    sample.encode().is_ok()
}
