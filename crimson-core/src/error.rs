//! Encode and decode errors.

use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A message payload that could not be decoded into its type.
///
/// It names the type, the codec and what failed, e.g.
/// ``cannot decode `chat::ChatMessage` from JSON: missing field `text` at line 1 column 2``.
/// Servers close the session with 1007 and a short form of this text as the close reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode `{type_name}` from {codec}: {source}")]
pub struct DecodeError {
    type_name: &'static str,
    codec: &'static str,
    source: BoxError,
}

impl DecodeError {
    /// A decode error for type `T` from `codec`, caused by `source`.
    pub fn new<T: ?Sized>(codec: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            type_name: std::any::type_name::<T>(),
            codec,
            source: source.into(),
        }
    }

    /// The full path of the type that failed to decode.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The name of the codec that failed (`"JSON"`, `"Protobuf"`, ...).
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// What went wrong, from the codec.
    pub fn reason(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The type's name without its module path (`ChatMessage` for `chat::ChatMessage`).
    pub fn short_type_name(&self) -> &'static str {
        short_type_name(self.type_name)
    }
}

/// A value that could not be encoded (for example a JSON map whose keys are not strings).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode `{type_name}` as {codec}: {source}")]
pub struct EncodeError {
    type_name: &'static str,
    codec: &'static str,
    source: BoxError,
}

impl EncodeError {
    /// An encode error for type `T` with `codec`, caused by `source`.
    pub fn new<T: ?Sized>(codec: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            type_name: std::any::type_name::<T>(),
            codec,
            source: source.into(),
        }
    }

    /// The full path of the type that failed to encode.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The name of the codec that failed.
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// What went wrong, from the codec.
    pub fn reason(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

/// `a::b::C<d::E>` → `C<d::E>`: the last path segment before any generics.
fn short_type_name(full: &'static str) -> &'static str {
    let head = full.find('<').unwrap_or(full.len());
    match full[..head].rfind("::") {
        Some(at) => &full[at + 2..],
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Local;

    #[test]
    fn decode_error_names_type_codec_and_cause() {
        let err = DecodeError::new::<Local>("JSON", "missing field `text`");
        assert_eq!(
            err.to_string(),
            "cannot decode `crimson_core::error::tests::Local` from JSON: missing field `text`"
        );
        assert_eq!(err.short_type_name(), "Local");
        assert_eq!(err.codec(), "JSON");
        assert!(StdError::source(&err).is_some());
    }

    #[test]
    fn short_type_name_keeps_generics() {
        assert_eq!(short_type_name("a::b::C<d::E>"), "C<d::E>");
        assert_eq!(short_type_name("u8"), "u8");
    }

    #[test]
    fn encode_error_display() {
        let err = EncodeError::new::<u8>("CBOR", "boom");
        assert_eq!(err.to_string(), "cannot encode `u8` as CBOR: boom");
    }
}
