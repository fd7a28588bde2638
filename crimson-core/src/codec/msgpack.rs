use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

/// MessagePack through rmp-serde, in Binary frames.
///
/// Structs are encoded as maps keyed by field name (`rmp_serde::to_vec_named`), which is what
/// MessagePack libraries in other languages expect; decoding accepts maps and arrays.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<T: Serialize + DeserializeOwned> Codec<T> for MsgPack {
    const NAME: &'static str = "MessagePack";
    const FRAME: FrameKind = FrameKind::Binary;

    fn encode(value: &T) -> Result<Payload, EncodeError> {
        rmp_serde::to_vec_named(value)
            .map(|vec| Payload::Binary(Bytes::from(vec)))
            .map_err(|err| EncodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        let fail = |err: Box<dyn std::error::Error + Send + Sync>| {
            DecodeError::new::<T>(<Self as Codec<T>>::NAME, err)
        };
        if super::guard::msgpack_needs_walk(bytes) {
            super::guard::check_msgpack(bytes).map_err(|err| fail(Box::new(err)))?;
        }
        rmp_serde::from_slice(bytes).map_err(|err| fail(Box::new(err)))
    }
}
