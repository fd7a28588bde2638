//! What `#[derive(CrimsonMessage)]` expands to. Not public API: no stability promise.

pub use crate::codec::Codec;
pub use crate::error::{DecodeError, EncodeError};
pub use crate::message::{CodecInfo, CrimsonMessage, FrameKind, Payload, PayloadRef};

/// Encodes with codec `C`, then re-labels the payload for a frame of `kind` (the derive's
/// `frame = ".."` override). Costs nothing when `kind` is the codec's own.
#[inline]
pub fn encode_as<C: Codec<T>, T>(value: &T, kind: FrameKind) -> Result<Payload, EncodeError> {
    let payload = C::encode(value)?;
    if payload.kind() == kind {
        return Ok(payload);
    }
    payload
        .into_kind(kind)
        .map_err(|err| EncodeError::new::<T>(C::NAME, err))
}

/// Decodes with codec `C`.
#[inline]
pub fn decode_with<C: Codec<T>, T>(payload: PayloadRef<'_>) -> Result<T, DecodeError> {
    match payload {
        // Text is UTF-8 already: a text codec need not check it again.
        PayloadRef::Text(text) => C::decode_text(text),
        PayloadRef::Binary(bytes) => C::decode(bytes),
    }
}

/// The bound `#[crimson(codec = "protobuf")]` checks, with an error that says what to do.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protobuf message, so it cannot use `codec = \"protobuf\"`",
    label = "not a `prost::Message`",
    note = "derive it with `#[derive(prost::Message)]` or generate it from a .proto file with prost-build"
)]
pub trait ProtobufMessage {}

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default> ProtobufMessage for T {}

// With the feature off, `require_protobuf!` is the one error the user should see.
#[cfg(not(feature = "protobuf"))]
impl<T: ?Sized> ProtobufMessage for T {}

/// Calls `f::<T>()` only where `T: ProtobufMessage`: the derive's compile-time check.
pub const fn assert_protobuf<T: ProtobufMessage + ?Sized>() {}

macro_rules! codec_slot {
    ($feature:literal, $name:ident) => {
        #[cfg(feature = $feature)]
        pub use crate::codec::$name;

        /// Stands in for a codec whose cargo feature is off, so that the derive's
        /// `compile_error!` is the only error the user sees.
        #[cfg(not(feature = $feature))]
        #[derive(Debug)]
        pub struct $name;

        #[cfg(not(feature = $feature))]
        impl<T> Codec<T> for $name {
            const NAME: &'static str = stringify!($name);
            const FRAME: FrameKind = FrameKind::Binary;
            fn encode(_: &T) -> Result<Payload, EncodeError> {
                Err(EncodeError::new::<T>(
                    stringify!($name),
                    concat!("crimson-core's `", $feature, "` feature is off"),
                ))
            }
            fn decode(_: &[u8]) -> Result<T, DecodeError> {
                Err(DecodeError::new::<T>(
                    stringify!($name),
                    concat!("crimson-core's `", $feature, "` feature is off"),
                ))
            }
        }
    };
}

codec_slot!("json", Json);
codec_slot!("protobuf", Protobuf);
codec_slot!("cbor", Cbor);
codec_slot!("msgpack", MsgPack);

// `require_<codec>!{}`: nothing when the codec's feature is on, a clear `compile_error!` when it
// is off. The derive emits it with the span of the `codec = ".."` string.

#[cfg(feature = "json")]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_json {
    () => {};
}

#[cfg(not(feature = "json"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_json {
    () => {
        ::core::compile_error!(
            "the `json` codec is not enabled: turn on the `json` cargo feature of crimson-axum, crimson-client or crimson-core"
        );
    };
}
pub use __crimson_require_json as require_json;

#[cfg(feature = "protobuf")]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_protobuf {
    () => {};
}

#[cfg(not(feature = "protobuf"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_protobuf {
    () => {
        ::core::compile_error!(
            "the `protobuf` codec is not enabled: turn on the `protobuf` cargo feature of crimson-axum, crimson-client or crimson-core"
        );
    };
}
pub use __crimson_require_protobuf as require_protobuf;

#[cfg(feature = "cbor")]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_cbor {
    () => {};
}

#[cfg(not(feature = "cbor"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_cbor {
    () => {
        ::core::compile_error!(
            "the `cbor` codec is not enabled: turn on the `cbor` cargo feature of crimson-axum, crimson-client or crimson-core"
        );
    };
}
pub use __crimson_require_cbor as require_cbor;

#[cfg(feature = "msgpack")]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_msgpack {
    () => {};
}

#[cfg(not(feature = "msgpack"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __crimson_require_msgpack {
    () => {
        ::core::compile_error!(
            "the `msgpack` codec is not enabled: turn on the `msgpack` cargo feature of crimson-axum, crimson-client or crimson-core"
        );
    };
}
pub use __crimson_require_msgpack as require_msgpack;
