//! Codecs: how a value becomes one WebSocket message payload and back.
//!
//! | codec | type | cargo feature | frame | library |
//! |---|---|---|---|---|
//! | `"json"` | [`Json`] | `json` (default) | Text | serde_json |
//! | `"protobuf"` | [`Protobuf`] | `protobuf` | Binary | prost |
//! | `"cbor"` | [`Cbor`] | `cbor` | Binary | ciborium |
//! | `"msgpack"` | [`MsgPack`] | `msgpack` | Binary | rmp-serde (structs as maps) |
//!
//! `#[derive(CrimsonMessage)]` with `#[crimson(codec = "...")]` picks one; a codec of your own
//! implements [`Codec`] and is used from a hand-written [`CrimsonMessage`](crate::CrimsonMessage)
//! impl.
//!
// A codec's type exists only with its feature; without it, its name links to the crate's
// table of features.
#![cfg_attr(feature = "json", doc = "[`Json`]: Json")]
#![cfg_attr(not(feature = "json"), doc = "[`Json`]: crate#cargo-features")]
#![cfg_attr(feature = "protobuf", doc = "[`Protobuf`]: Protobuf")]
#![cfg_attr(not(feature = "protobuf"), doc = "[`Protobuf`]: crate#cargo-features")]
#![cfg_attr(feature = "cbor", doc = "[`Cbor`]: Cbor")]
#![cfg_attr(not(feature = "cbor"), doc = "[`Cbor`]: crate#cargo-features")]
#![cfg_attr(feature = "msgpack", doc = "[`MsgPack`]: MsgPack")]
#![cfg_attr(not(feature = "msgpack"), doc = "[`MsgPack`]: crate#cargo-features")]

use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

#[cfg(feature = "cbor")]
mod cbor;
#[cfg(any(feature = "cbor", feature = "msgpack"))]
mod guard;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "msgpack")]
mod msgpack;
#[cfg(feature = "protobuf")]
mod protobuf;

#[cfg(feature = "cbor")]
pub use cbor::Cbor;
#[cfg(feature = "json")]
pub use json::Json;
#[cfg(feature = "msgpack")]
pub use msgpack::MsgPack;
#[cfg(feature = "protobuf")]
pub use protobuf::Protobuf;

/// A wire format for values of type `T`.
///
/// Codecs are marker types: they hold no state, and one codec serves every type it can
/// encode. A decoder must return an error, never panic, on any input.
///
/// # Example
///
/// A codec that sends any `Display + FromStr` value as its text:
///
/// ```
/// use crimson_core::{Codec, CrimsonMessage, DecodeError, EncodeError, FrameKind, Payload, PayloadRef};
///
/// struct Plain;
///
/// impl<T: std::fmt::Display + std::str::FromStr> Codec<T> for Plain
/// where
///     T::Err: std::error::Error + Send + Sync + 'static,
/// {
///     const NAME: &'static str = "plain text";
///     const FRAME: FrameKind = FrameKind::Text;
///
///     fn encode(value: &T) -> Result<Payload, EncodeError> {
///         Ok(Payload::Text(value.to_string().into()))
///     }
///
///     fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
///         let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::new::<T>("plain text", e))?;
///         text.parse().map_err(|e| DecodeError::new::<T>("plain text", e))
///     }
/// }
///
/// struct Celsius(f64);
/// # impl std::fmt::Display for Celsius {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { self.0.fmt(f) }
/// # }
/// # impl std::str::FromStr for Celsius {
/// #     type Err = std::num::ParseFloatError;
/// #     fn from_str(s: &str) -> Result<Self, Self::Err> { s.parse().map(Celsius) }
/// # }
///
/// impl CrimsonMessage for Celsius {
///     const FRAME: FrameKind = <Plain as Codec<Self>>::FRAME;
///     const CODEC: &'static str = <Plain as Codec<Self>>::NAME;
///     fn encode(&self) -> Result<Payload, EncodeError> {
///         Plain::encode(self)
///     }
///     fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
///         Plain::decode(payload.as_bytes())
///     }
/// }
///
/// let err = Celsius::decode(PayloadRef::Text("warm")).err().unwrap();
/// assert_eq!(err.short_type_name(), "Celsius");
/// assert_eq!(err.codec(), "plain text");
/// ```
pub trait Codec<T>: 'static {
    /// The codec's name in error messages.
    const NAME: &'static str;
    /// The frame kind this codec's payloads travel in.
    const FRAME: FrameKind;

    /// Encodes `value` into a payload of kind [`Self::FRAME`].
    fn encode(value: &T) -> Result<Payload, EncodeError>;

    /// Decodes a payload. Must not panic on any input.
    fn decode(bytes: &[u8]) -> Result<T, DecodeError>;

    /// Decodes a payload known to be UTF-8 (a Text frame's, checked as it arrived). A text
    /// codec can skip checking it again; by default this is [`decode`](Self::decode).
    fn decode_text(text: &str) -> Result<T, DecodeError> {
        Self::decode(text.as_bytes())
    }
}
