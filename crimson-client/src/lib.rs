//! Re-exports of `crimson-core` until this crate's own API lands.

#[doc(inline)]
pub use crimson_core::{
    close, codec, Bytes, CloseCode, Codec, CrimsonMessage, DecodeError, EncodeError, FrameKind,
    Payload, PayloadRef,
};

#[doc(hidden)]
pub use crimson_core::__private;
