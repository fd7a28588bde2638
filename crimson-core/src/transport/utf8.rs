//! UTF-8 checked piece by piece, so a text message split over frames and reads fails as soon
//! as its first bad byte arrives (RFC 6455 §8.1: fail fast).

/// Checks a stream of bytes for UTF-8, keeping the (at most 3) bytes of a character cut off
/// at the end of a piece.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Check {
    pending: [u8; 4],
    len: u8,
}

/// Bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// How long the character starting with `lead` is (1 for a byte no character starts with:
/// the check then fails on it).
fn char_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Check {
    /// Checks the next piece.
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            let held = usize::from(self.len);
            let need = char_len(self.pending[0]) - held;
            let take = need.min(piece.len());
            self.pending[held..held + take].copy_from_slice(&piece[..take]);
            let joined = &self.pending[..held + take];
            match std::str::from_utf8(joined) {
                Ok(_) => self.len = 0,
                Err(err) if err.error_len().is_none() => {
                    self.len = joined.len() as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            piece = &piece[take..];
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(err) if err.error_len().is_none() => {
                let rest = &piece[err.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message is over: a character cut off at its end is an error.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.len == 0;
        self.len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> Result<(), InvalidUtf8> {
        // Every way of cutting the bytes in up to three pieces agrees with a whole check.
        let whole = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut check = Utf8Check::default();
                let result = check
                    .feed(&bytes[..a])
                    .and_then(|()| check.feed(&bytes[a..b]))
                    .and_then(|()| check.feed(&bytes[b..]))
                    .and_then(|()| check.finish());
                assert_eq!(result.is_ok(), whole, "{bytes:x?} cut at {a}, {b}");
            }
        }
        if whole {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    #[test]
    fn pieces_agree_with_a_whole_check() {
        assert!(check_split("héllo wörld €𝄞".as_bytes()).is_ok());
        assert!(check_split(&[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83]).is_ok());
        assert!(check_split(&[0xF0, 0x9D, 0x84, 0x9E]).is_ok());
        assert!(check_split(&[0xED, 0xA0, 0x80]).is_err()); // a surrogate
        assert!(check_split(&[0xF4, 0x90, 0x80, 0x80]).is_err()); // past U+10FFFF
        assert!(check_split(&[0xC0, 0xAF]).is_err()); // overlong
        assert!(check_split(&[b'a', 0xE2, 0x82]).is_err()); // cut off at the end
        assert!(check_split(&[0xFF]).is_err());
    }

    #[test]
    fn fails_at_the_first_bad_byte() {
        let mut check = Utf8Check::default();
        check.feed(&[0xCE, 0xBA, 0xE1]).unwrap();
        // 0xE1 then 0x28 can never be UTF-8: no need to wait for the end of the message.
        assert_eq!(check.feed(&[0x28]), Err(InvalidUtf8));
        let mut check = Utf8Check::default();
        assert_eq!(check.feed(&[0xF4, 0x90]), Err(InvalidUtf8));
    }
}
