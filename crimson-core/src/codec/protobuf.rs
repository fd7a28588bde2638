use bytes::Bytes;

use super::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

/// Protocol Buffers through prost, in Binary frames.
///
/// The type is a `prost::Message` (from `#[derive(prost::Message)]` or `prost-build`), so the
/// same `.proto` file serves clients in any language. prost bounds nesting (100 levels) and
/// checks every length against the bytes that remain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protobuf;

impl<T: prost::Message + Default> Codec<T> for Protobuf {
    const NAME: &'static str = "Protobuf";
    const FRAME: FrameKind = FrameKind::Binary;

    fn encode(value: &T) -> Result<Payload, EncodeError> {
        Ok(Payload::Binary(Bytes::from(value.encode_to_vec())))
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        T::decode(bytes).map_err(|err| DecodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }
}
