use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

/// CBOR (RFC 8949) through ciborium, in Binary frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

impl<T: Serialize + DeserializeOwned> Codec<T> for Cbor {
    const NAME: &'static str = "CBOR";
    const FRAME: FrameKind = FrameKind::Binary;

    fn encode(value: &T) -> Result<Payload, EncodeError> {
        let mut out = Vec::with_capacity(128);
        ciborium::into_writer(value, &mut out)
            .map(|()| Payload::Binary(Bytes::from(out)))
            .map_err(|err| EncodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        let fail = |err: Box<dyn std::error::Error + Send + Sync>| {
            DecodeError::new::<T>(<Self as Codec<T>>::NAME, err)
        };
        super::guard::check_cbor(bytes).map_err(|err| fail(Box::new(err)))?;
        ciborium::from_reader(bytes).map_err(|err| fail(Box::new(err)))
    }
}
