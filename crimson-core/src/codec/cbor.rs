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
        if super::guard::cbor_needs_walk(bytes) {
            super::guard::check_cbor(bytes).map_err(|err| fail(Box::new(err)))?;
        }
        ciborium::from_reader(bytes).map_err(|err| fail(describe(err).into()))
    }
}

/// ciborium's errors in words (its `Display` says `Syntax(0)`).
fn describe<E: std::fmt::Debug>(err: ciborium::de::Error<E>) -> String {
    use ciborium::de::Error;
    match err {
        Error::Io(_) => "the input ends inside an item".to_owned(),
        Error::Syntax(at) => format!("malformed CBOR at byte {at}"),
        Error::Semantic(Some(at), what) => format!("{what} (item at byte {at})"),
        Error::Semantic(None, what) => what,
        Error::RecursionLimitExceeded => "nesting is too deep".to_owned(),
    }
}
