use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

/// JSON through serde_json, in Text frames.
///
/// Nesting deeper than serde_json's recursion limit (128) is a decode error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    const NAME: &'static str = "JSON";
    const FRAME: FrameKind = FrameKind::Text;

    fn encode(value: &T) -> Result<Payload, EncodeError> {
        serde_json::to_string(value)
            .map(|text| Payload::Text(text.into()))
            .map_err(|err| EncodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        serde_json::from_slice(bytes)
            .map_err(|err| DecodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }
}
