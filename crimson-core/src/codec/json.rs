use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::{FrameKind, Payload};

/// JSON through serde_json, in Text frames.
///
/// Nesting deeper than 128 levels is a decode error, wherever it is: serde_json checks its
/// recursion limit only for the values it builds, not for an unknown field it skips, so the
/// input's nesting is checked first, in one pass.
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
        if let Some(at) = too_deep(bytes) {
            return Err(DecodeError::new::<T>(
                <Self as Codec<T>>::NAME,
                format!("nesting deeper than {MAX_DEPTH} levels at byte {at}"),
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|err| DecodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }

    fn decode_text(text: &str) -> Result<T, DecodeError> {
        if let Some(at) = too_deep(text.as_bytes()) {
            return Err(DecodeError::new::<T>(
                <Self as Codec<T>>::NAME,
                format!("nesting deeper than {MAX_DEPTH} levels at byte {at}"),
            ));
        }
        serde_json::from_str(text)
            .map_err(|err| DecodeError::new::<T>(<Self as Codec<T>>::NAME, err))
    }
}

/// The deepest nesting of arrays and objects accepted.
const MAX_DEPTH: usize = 128;

/// Where the input first nests deeper than [`MAX_DEPTH`] (brackets inside strings do not
/// count), if it does. Malformed input is left for serde_json to report.
fn too_deep(bytes: &[u8]) -> Option<usize> {
    // Only an input with more opening brackets than the limit can be too deep: counting them
    // (memchr's vectorised search) spares almost every message the walk below.
    if bytes.len() <= MAX_DEPTH
        || memchr::memchr2_iter(b'[', b'{', bytes)
            .take(MAX_DEPTH + 1)
            .count()
            <= MAX_DEPTH
    {
        return None;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct Small {
        text: String,
    }

    #[test]
    fn deep_nesting_is_refused_even_in_an_ignored_field() {
        let deep = format!(
            "{{\"text\":\"hi\",\"extra\":{}1{}}}",
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        let err = <Json as Codec<Small>>::decode(deep.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("nesting deeper than 128 levels"),
            "{err}"
        );
        // Exactly the limit is fine, and brackets in strings do not count.
        let ok = format!(
            "{{\"text\":\"{}\",\"extra\":{}1{}}}",
            "[[[[".repeat(100),
            "[".repeat(127),
            "]".repeat(127)
        );
        assert_eq!(
            <Json as Codec<Small>>::decode(ok.as_bytes())
                .unwrap()
                .text
                .len(),
            400
        );
    }
}
