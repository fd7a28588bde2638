//! The envelope of a publication with history: the publish script puts its position before
//! the cluster message (`wire`) it publishes, so that every node delivers it at that
//! position.
//!
//! ```text
//! 'h' EPOCH ' ' OFFSET '\n' MESSAGE
//! EPOCH: 1 to 32 ASCII letters and digits · OFFSET: 1 or more, decimal, no leading zero
//! MESSAGE: a cluster message (wire.rs), whose first byte is its version (2 or 3), never 'h'
//! ```
//!
//! Anything that can write to Redis can publish on these channels, so this is read as
//! hostile input: bounded, checked, never panicking.

use bytes::Bytes;

use crate::cluster::redis::wire::Malformed;

/// The first byte of an envelope.
pub(crate) const MARK: u8 = b'h';
/// The longest epoch, in bytes.
pub(crate) const MAX_EPOCH: usize = 32;
/// The most digits of an offset (offsets stay far below `u64::MAX`).
const MAX_DIGITS: usize = 18;
/// The longest envelope before the message.
pub(crate) const MAX_ENVELOPE: usize = 1 + MAX_EPOCH + 1 + MAX_DIGITS + 1;

/// Whether `message` is a publication with history (an envelope), not a plain cluster
/// message.
pub(crate) fn is_enveloped(message: &[u8]) -> bool {
    message.first() == Some(&MARK)
}

/// Whether `epoch` is one (1 to 32 ASCII letters and digits).
pub(crate) fn is_epoch(epoch: &[u8]) -> bool {
    (1..=MAX_EPOCH).contains(&epoch.len()) && epoch.iter().all(u8::is_ascii_alphanumeric)
}

/// An offset as the envelope (and the stream's ids) write it: 1 or more, decimal, no
/// leading zero, at most 18 digits.
pub(crate) fn parse_offset(digits: &[u8]) -> Option<u64> {
    let canonical = (1..=MAX_DIGITS).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && digits[0] != b'0';
    if !canonical {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An envelope, opened: the position, and the cluster message after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    pub(crate) message: Bytes,
}

/// Opens an envelope. Never panics.
pub(crate) fn open(mut bytes: Bytes) -> Result<Opened, Malformed> {
    let head_len = bytes
        .iter()
        .take(MAX_ENVELOPE)
        .position(|&b| b == b'\n')
        .ok_or(Malformed("no end of the history envelope"))?;
    let head = bytes.split_to(head_len + 1);
    let head = &head[..head_len];
    let Some((&MARK, rest)) = head.split_first() else {
        return Err(Malformed("not a history envelope"));
    };
    let space = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Malformed("no offset in the history envelope"))?;
    let (epoch, offset) = (&rest[..space], &rest[space + 1..]);
    if !is_epoch(epoch) {
        return Err(Malformed("not an epoch in the history envelope"));
    }
    let offset = parse_offset(offset).ok_or(Malformed("not an offset in the history envelope"))?;
    Ok(Opened {
        // ASCII, checked.
        epoch: String::from_utf8_lossy(epoch).into_owned(),
        offset,
        message: bytes,
    })
}

/// An envelope as the publish script makes it (for tests; the script is the real writer).
#[cfg(test)]
pub(crate) fn seal(epoch: &str, offset: u64, message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(MAX_ENVELOPE + message.len());
    out.push(MARK);
    out.extend_from_slice(epoch.as_bytes());
    out.push(b' ');
    out.extend_from_slice(offset.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(message);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_to_its_position_and_message() {
        let sealed = seal("9c1f04d2a0b1c2d3", 41, b"\x03rest\nwith newline");
        assert!(is_enveloped(&sealed));
        assert_eq!(
            open(sealed).unwrap(),
            Opened {
                epoch: "9c1f04d2a0b1c2d3".into(),
                offset: 41,
                message: Bytes::from_static(b"\x03rest\nwith newline"),
            }
        );
        let longest = "z".repeat(MAX_EPOCH);
        let opened = open(seal(&longest, 999_999_999_999_999_999, b"")).unwrap();
        assert_eq!((opened.epoch.len(), opened.message.len()), (MAX_EPOCH, 0));
        // A cluster message starts with its version, never the mark.
        assert!(!is_enveloped(b"\x03..."));
        assert!(!is_enveloped(b""));
    }

    #[test]
    fn hostile_envelopes_are_errors_never_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"h",
            b"h\n",
            b"h \n",
            b"he\n",
            b"he \n",
            b"h 1\n",
            b"he 0\n",
            b"he 01\n",
            b"he -1\n",
            b"he +1\n",
            b"he 1 \n",
            b"he 1x\n",
            b"he 1234567890123456789\n",
            b"h\xff 1\n",
            b"he-x 1\n",
            b"h\xc3\xa9 1\n",
            b"x e 1\n",
            b"he 1",
        ];
        for input in bad {
            assert!(
                open(Bytes::from_static(input)).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let too_long = seal(&"a".repeat(MAX_EPOCH + 1), 1, b"m");
        assert!(open(too_long).is_err());
        // No end of line within the envelope's bound: an error, whatever follows.
        let mut endless = vec![MARK];
        endless.extend(std::iter::repeat_n(b'7', 1 << 16));
        endless.push(b'\n');
        assert!(open(Bytes::from(endless)).is_err());
        // Every cut of a good one.
        let good = seal("abc", 12345, b"\x03message");
        for cut in 0..good.len() {
            let _ = open(good.slice(..cut));
        }
        // Random bytes behind the mark.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let mut input = vec![MARK];
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(b"ab1 \n\xff0"[(seed % 7) as usize]);
            }
            if let Ok(opened) = open(Bytes::from(input)) {
                assert!(is_epoch(opened.epoch.as_bytes()) && opened.offset > 0);
            }
        }
    }
}
