//! The expansion is clean under strict lints in the user's crate.
#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_lifetimes,
    unused_qualifications,
    single_use_lifetimes,
    rust_2018_idioms,
    trivial_casts,
    unused_extern_crates
)]

use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

/// A JSON message.
#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
pub struct Note {
    /// Text.
    pub text: String,
}

/// A protobuf message.
#[derive(Clone, PartialEq, prost::Message, CrimsonMessage)]
#[crimson(codec = "protobuf")]
pub struct Tick {
    /// Counter.
    #[prost(uint64, tag = "1")]
    pub n: u64,
}

/// A generic CBOR message.
#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "cbor", frame = "binary")]
pub struct Boxed<T> {
    /// Content.
    pub inner: T,
}

fn main() {
    let _ = Note {
        text: String::new(),
    }
    .encode();
    let _ = Tick { n: 1 }.encode();
    let _ = Boxed { inner: 1u8 }.encode();
}
