//! A structural pre-check for the self-describing binary formats (CBOR, MessagePack).
//!
//! serde pre-allocates a collection from the length its header declares (capped at 1 MiB),
//! so a ten-byte message that claims four billion elements would make every decode reserve a
//! megabyte. Before decoding, the guard walks the item headers without allocating and rejects:
//! a declared length longer than the bytes that remain (every element takes at least one byte,
//! every map entry two), nesting deeper than [`MAX_DEPTH`], and malformed headers. What passes
//! allocates in proportion to the input, whose size the transport has already bounded.
//!
//! Most messages need no walk: if no byte that could be a large container's header appears
//! anywhere in the input, and too few bytes could open a container to nest deeply
//! ([`msgpack_needs_walk`], [`cbor_needs_walk`]), every container declares at most 15
//! (MessagePack) or 23 (CBOR) elements and nesting stays within [`MAX_DEPTH`]. Only inputs
//! with such bytes (which may sit inside strings: then the walk is merely unneeded) get it.

/// Whether a MessagePack input needs the full walk: it has a header that can declare more
/// than 15 elements (array16/32, map16/32, bytes `0xdc`–`0xdf`), or more bytes that could
/// open a container (fixarray, fixmap: `0x80`–`0x9f`) than [`MAX_DEPTH`].
#[cfg(feature = "msgpack")]
pub(crate) fn msgpack_needs_walk(input: &[u8]) -> bool {
    needs_walk(input, (0xfc, 0xdc), &[(0xe0, 0x80)])
}

/// Whether a CBOR input needs the full walk: it has an array or map header with a length in
/// the following bytes (`0x98`–`0x9b`, `0xb8`–`0xbb`), or more bytes that could open an array,
/// a map or a tag (`0x80`–`0xdf`) than [`MAX_DEPTH`].
#[cfg(feature = "cbor")]
pub(crate) fn cbor_needs_walk(input: &[u8]) -> bool {
    needs_walk(input, (0xdc, 0x98), &[(0xc0, 0x80), (0xe0, 0xc0)])
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The bytes of `word` equal to `value` once masked with `mask`, as 0x80 in those bytes
/// (eight bytes at a time, exact: no carry crosses a byte).
#[inline(always)]
fn flags(word: u64, (mask, value): (u8, u8)) -> u64 {
    let x = (word & (ONES * u64::from(mask))) ^ (ONES * u64::from(value));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// One pass over `input`, eight bytes at a time: is there a byte matching `large`, or more
/// than [`MAX_DEPTH`] bytes matching any of `openers`? An input of at most [`MAX_DEPTH`]
/// bytes cannot nest deeper than that, so only `large` is looked for there: a few
/// nanoseconds for a typical message.
#[inline(always)]
fn needs_walk(input: &[u8], large: (u8, u8), openers: &[(u8, u8)]) -> bool {
    let hit = |b: u8, (mask, value): (u8, u8)| b & mask == value;
    // `chunks_exact(8)` yields 8-byte slices, so the conversion never fails.
    let word = |w: &[u8]| <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
    let mut words = input.chunks_exact(8);
    if input.len() <= MAX_DEPTH {
        let mut seen = 0u64;
        for w in &mut words {
            seen |= flags(word(w), large);
        }
        return seen != 0 || words.remainder().iter().any(|&b| hit(b, large));
    }
    let mut opened = 0u64;
    for w in &mut words {
        let w = word(w);
        if flags(w, large) != 0 {
            return true;
        }
        for &opener in openers {
            // One 0x01 per matching byte, summed across the word's bytes.
            opened += (flags(w, opener) >> 7).wrapping_mul(ONES) >> 56;
        }
    }
    for &b in words.remainder() {
        if hit(b, large) {
            return true;
        }
        opened += openers.iter().filter(|&&o| hit(b, o)).count() as u64;
    }
    opened > MAX_DEPTH as u64
}

/// The deepest nesting of arrays, maps and tags accepted (serde_json's limit too).
pub(crate) const MAX_DEPTH: usize = 128;

/// Why a payload was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The input ended inside an item.
    #[error("the input ends inside an item")]
    Truncated,
    /// A header declares more elements or bytes than the input holds.
    #[error("a length is declared past the end of the input")]
    LengthPastEnd,
    /// Arrays, maps and tags nest deeper than [`MAX_DEPTH`].
    #[error("nesting is deeper than 128 levels")]
    TooDeep,
    /// A header byte that the format reserves or forbids here.
    #[error("malformed item header")]
    Malformed,
}

/// Reads big-endian unsigned integers off the front of a slice.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, Refused> {
        let (&first, rest) = self.rest.split_first().ok_or(Refused::Truncated)?;
        self.rest = rest;
        Ok(first)
    }

    fn uint(&mut self, width: usize) -> Result<u64, Refused> {
        if self.rest.len() < width {
            return Err(Refused::Truncated);
        }
        let (head, rest) = self.rest.split_at(width);
        self.rest = rest;
        Ok(head.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn skip(&mut self, len: u64) -> Result<(), Refused> {
        match usize::try_from(len) {
            Ok(len) if len <= self.rest.len() => {
                self.rest = &self.rest[len..];
                Ok(())
            }
            _ => Err(Refused::LengthPastEnd),
        }
    }

    /// Checks that `count` items of at least `min_bytes` bytes each can fit in what remains.
    fn fits(&self, count: u64, min_bytes: u64) -> Result<(), Refused> {
        match count.checked_mul(min_bytes) {
            Some(need) if need <= self.rest.len() as u64 => Ok(()),
            _ => Err(Refused::LengthPastEnd),
        }
    }
}

/// How many open containers are tracked without allocating; deeper nesting spills to the heap.
const INLINE: usize = 16;

/// Items still owed by the open containers, innermost last. The first [`INLINE`] levels live
/// on the stack, so a typical message is checked without allocating.
struct Stack {
    inline: [Open; INLINE],
    len: usize,
    spill: Vec<Open>,
}

#[derive(Clone, Copy)]
// The indefinite forms are CBOR's: with MessagePack alone they are never made.
#[cfg_attr(not(feature = "cbor"), allow(dead_code))]
enum Open {
    /// A definite container with this many items left.
    Items(u64),
    /// An indefinite CBOR array (items until a break).
    UntilBreak,
    /// An indefinite CBOR map (pairs until a break); true while a key waits for its value.
    PairsUntilBreak(bool),
    /// An indefinite CBOR string: definite chunks of this major type until a break.
    Chunks(u8),
}

impl Stack {
    fn new() -> Self {
        Self {
            inline: [Open::UntilBreak; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, open: Open) -> Result<(), Refused> {
        if self.len >= MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        if self.len < INLINE {
            self.inline[self.len] = open;
        } else {
            self.spill.push(open);
        }
        self.len += 1;
        Ok(())
    }

    fn top(&self) -> Option<Open> {
        match self.len {
            0 => None,
            n if n <= INLINE => Some(self.inline[n - 1]),
            _ => self.spill.last().copied(),
        }
    }

    fn top_mut(&mut self) -> Option<&mut Open> {
        match self.len {
            0 => None,
            n if n <= INLINE => Some(&mut self.inline[n - 1]),
            _ => self.spill.last_mut(),
        }
    }

    fn pop(&mut self) -> Option<Open> {
        let top = self.top()?;
        if self.len > INLINE {
            self.spill.pop();
        }
        self.len -= 1;
        Some(top)
    }

    /// One item is complete: count it against the innermost definite container and close
    /// every container that this completes. Returns true when the top-level item is done.
    fn item_done(&mut self) -> bool {
        while let Some(top) = self.top_mut() {
            match top {
                Open::Items(left) => {
                    *left -= 1;
                    if *left > 0 {
                        return false;
                    }
                    self.pop();
                }
                Open::PairsUntilBreak(odd) => {
                    *odd = !*odd;
                    return false;
                }
                Open::UntilBreak | Open::Chunks(_) => return false,
            }
        }
        true
    }

    /// A container of `count` items opens; an empty one is complete at once.
    fn open_items(&mut self, count: u64) -> Result<bool, Refused> {
        if count == 0 {
            Ok(self.item_done())
        } else {
            self.push(Open::Items(count))?;
            Ok(false)
        }
    }
}

/// Checks the first MessagePack value in `input`.
#[cfg(feature = "msgpack")]
pub(crate) fn check_msgpack(input: &[u8]) -> Result<(), Refused> {
    let mut cur = Cursor { rest: input };
    let mut stack = Stack::new();
    loop {
        let marker = cur.byte()?;
        let done = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => stack.item_done(),
            0x80..=0x8f => container(&mut cur, &mut stack, u64::from(marker & 0x0f), 2)?,
            0x90..=0x9f => container(&mut cur, &mut stack, u64::from(marker & 0x0f), 1)?,
            0xa0..=0xbf => {
                cur.skip(u64::from(marker & 0x1f))?;
                stack.item_done()
            }
            0xc1 => return Err(Refused::Malformed),
            // bin 8/16/32, str 8/16/32
            0xc4..=0xc6 | 0xd9..=0xdb => {
                let width = 1 << ((marker - if marker >= 0xd9 { 0xd9 } else { 0xc4 }) as usize);
                let len = cur.uint(width)?;
                cur.skip(len)?;
                stack.item_done()
            }
            // ext 8/16/32: length, type byte, data
            0xc7..=0xc9 => {
                let len = cur.uint(1 << (marker - 0xc7) as usize)?;
                cur.skip(1)?;
                cur.skip(len)?;
                stack.item_done()
            }
            0xca => fixed(&mut cur, &mut stack, 4)?,
            0xcb => fixed(&mut cur, &mut stack, 8)?,
            // uint/int 8/16/32/64
            0xcc..=0xd3 => fixed(&mut cur, &mut stack, 1 << ((marker - 0xcc) % 4) as u64)?,
            // fixext 1/2/4/8/16: type byte + data
            0xd4..=0xd8 => fixed(&mut cur, &mut stack, 1 + (1 << (marker - 0xd4) as u64))?,
            0xdc | 0xdd => {
                let count = cur.uint(if marker == 0xdc { 2 } else { 4 })?;
                container(&mut cur, &mut stack, count, 1)?
            }
            0xde | 0xdf => {
                let count = cur.uint(if marker == 0xde { 2 } else { 4 })?;
                container(&mut cur, &mut stack, count, 2)?
            }
        };
        if done {
            return Ok(());
        }
    }
}

/// A container of `count` entries, each of `per_entry` items.
fn container(
    cur: &mut Cursor<'_>,
    stack: &mut Stack,
    count: u64,
    per_entry: u64,
) -> Result<bool, Refused> {
    cur.fits(count, per_entry)?;
    stack.open_items(count * per_entry)
}

#[cfg(feature = "msgpack")]
fn fixed(cur: &mut Cursor<'_>, stack: &mut Stack, len: u64) -> Result<bool, Refused> {
    cur.skip(len)?;
    Ok(stack.item_done())
}

/// Checks the first CBOR data item in `input` (RFC 8949).
#[cfg(feature = "cbor")]
pub(crate) fn check_cbor(input: &[u8]) -> Result<(), Refused> {
    let mut cur = Cursor { rest: input };
    let mut stack = Stack::new();
    loop {
        let initial = cur.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;

        if initial == 0xff {
            // A break closes the innermost indefinite container.
            match stack.pop() {
                Some(Open::UntilBreak | Open::Chunks(_) | Open::PairsUntilBreak(false)) => {}
                // No break inside a definite container, nor after a key without its value.
                _ => return Err(Refused::Malformed),
            }
            if stack.item_done() {
                return Ok(());
            }
            continue;
        }
        if let Some(Open::Chunks(want)) = stack.top() {
            // Inside an indefinite string only definite chunks of the same type may appear.
            if major != want || info == 31 {
                return Err(Refused::Malformed);
            }
        }

        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => Some(cur.uint(1 << (info - 24) as usize)?),
            28..=30 => return Err(Refused::Malformed),
            _ => None, // 31: indefinite length
        };

        let done = match (major, arg) {
            (0 | 1, Some(_)) => stack.item_done(),
            (2 | 3, Some(len)) => {
                cur.skip(len)?;
                if matches!(stack.top(), Some(Open::Chunks(_))) {
                    false
                } else {
                    stack.item_done()
                }
            }
            (2 | 3, None) => {
                stack.push(Open::Chunks(major))?;
                false
            }
            (4, Some(count)) => container(&mut cur, &mut stack, count, 1)?,
            (5, Some(count)) => container(&mut cur, &mut stack, count, 2)?,
            (4, None) => {
                stack.push(Open::UntilBreak)?;
                false
            }
            (5, None) => {
                stack.push(Open::PairsUntilBreak(false))?;
                false
            }
            // A one-byte simple value below 32 is not well-formed (RFC 8949 §3.3).
            (7, Some(value)) if info == 24 && value < 32 => return Err(Refused::Malformed),
            // A tag wraps exactly one item.
            (6, Some(_)) => {
                cur.fits(1, 1)?;
                stack.push(Open::Items(1))?;
                false
            }
            // Simple values and floats; the extra bytes were read as the argument.
            (7, Some(_)) => stack.item_done(),
            _ => return Err(Refused::Malformed),
        };
        if done {
            return Ok(());
        }
    }
}

// The tests compare both formats: they run with both features (as `scripts/test.sh` builds).
#[cfg(all(test, feature = "cbor", feature = "msgpack"))]
mod tests {
    use super::*;

    /// The word-at-a-time check agrees with a byte-at-a-time one on every length and mix.
    #[test]
    fn quick_checks_agree_with_a_plain_loop() {
        fn plain(input: &[u8], large: (u8, u8), openers: &[(u8, u8)]) -> bool {
            let hit = |b: u8, (m, v): (u8, u8)| b & m == v;
            let opened = input
                .iter()
                .filter(|&&b| openers.iter().any(|&o| hit(b, o)))
                .count();
            input.iter().any(|&b| hit(b, large)) || opened > MAX_DEPTH
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            for _ in 0..8 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly bytes near the interesting ranges, few of the large ones.
                        0x60 + (x % 0x7c) as u8
                    })
                    .collect();
                let mp = plain(&input, (0xfc, 0xdc), &[(0xe0, 0x80)]);
                assert_eq!(msgpack_needs_walk(&input), mp, "{input:02x?}");
                let cb = plain(&input, (0xdc, 0x98), &[(0xc0, 0x80), (0xe0, 0xc0)]);
                assert_eq!(cbor_needs_walk(&input), cb, "{input:02x?}");
            }
        }
    }

    #[test]
    fn quick_checks_send_risky_inputs_to_the_walk() {
        assert!(!msgpack_needs_walk(
            &rmp_serde::to_vec_named(&serde_json::json!({"a": [1, 2], "b": "ascii"})).unwrap()
        ));
        assert!(msgpack_needs_walk(&[0xdd, 0xff, 0xff, 0xff, 0xff]));
        assert!(msgpack_needs_walk(&[0x91; MAX_DEPTH + 1]));
        assert!(!msgpack_needs_walk(&[0x91; MAX_DEPTH]));
        assert!(cbor_needs_walk(&[0x9a, 0xff, 0xff, 0xff, 0xff]));
        assert!(cbor_needs_walk(&[0xbb, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(cbor_needs_walk(&[0xc1; MAX_DEPTH + 1]));
        assert!(!cbor_needs_walk(&[0xa1, 0x61, b'a', 0x82, 0x01, 0x02]));
    }

    #[test]
    fn msgpack_accepts_real_values() {
        let value = serde_json::json!({"a": [1, -2, 3.5, "x", null, true, {"b": []}], "c": {}});
        let bytes = rmp_serde::to_vec(&value).unwrap();
        assert_eq!(check_msgpack(&bytes), Ok(()));
        assert_eq!(
            check_msgpack(&rmp_serde::to_vec(&u64::MAX).unwrap()),
            Ok(())
        );
        assert_eq!(
            check_msgpack(&rmp_serde::to_vec(&"y".repeat(70_000)).unwrap()),
            Ok(())
        );
    }

    #[test]
    fn msgpack_refuses_lengths_past_the_end() {
        // array32 claiming 2^32-1 elements, then one element.
        assert_eq!(
            check_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(Refused::LengthPastEnd)
        );
        // map16 of 3 entries with only 2 bytes left.
        assert_eq!(
            check_msgpack(&[0xde, 0x00, 0x03, 0x01, 0x02]),
            Err(Refused::LengthPastEnd)
        );
        // str8 of 10 bytes with 2 left.
        assert_eq!(
            check_msgpack(&[0xd9, 10, b'a', b'b']),
            Err(Refused::LengthPastEnd)
        );
        assert_eq!(check_msgpack(&[0x92, 0x01]), Err(Refused::LengthPastEnd));
        assert_eq!(check_msgpack(&[0xdc, 0x00]), Err(Refused::Truncated));
        assert_eq!(check_msgpack(&[0xc1]), Err(Refused::Malformed));
        assert_eq!(check_msgpack(&[]), Err(Refused::Truncated));
    }

    #[test]
    fn msgpack_refuses_deep_nesting() {
        let mut deep = vec![0x91; MAX_DEPTH + 1];
        deep.push(0x01);
        assert_eq!(check_msgpack(&deep), Err(Refused::TooDeep));
        let mut ok = vec![0x91; MAX_DEPTH];
        ok.push(0x01);
        assert_eq!(check_msgpack(&ok), Ok(()));
    }

    fn cbor(value: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    #[test]
    fn cbor_accepts_real_values() {
        let value = serde_json::json!({"a": [1, -2, 3.5, "x", null, true, {"b": []}], "c": {}});
        assert_eq!(check_cbor(&cbor(&value)), Ok(()));
        // Indefinite array [1, "ab" as two chunks], tag 1 on an int, a float16.
        let indefinite = [
            0x9f, 0x01, 0x7f, 0x61, b'a', 0x61, b'b', 0xff, 0xc1, 0x01, 0xf9, 0x3c, 0x00, 0xff,
        ];
        assert_eq!(check_cbor(&indefinite), Ok(()));
    }

    #[test]
    fn cbor_refuses_hostile_headers() {
        // array with 2^64-1 elements.
        let mut huge = vec![0x9b];
        huge.extend([0xff; 8]);
        huge.push(0x01);
        assert_eq!(check_cbor(&huge), Err(Refused::LengthPastEnd));
        // byte string of 4 GiB.
        assert_eq!(
            check_cbor(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Err(Refused::LengthPastEnd)
        );
        assert_eq!(check_cbor(&[0x1c]), Err(Refused::Malformed));
        assert_eq!(check_cbor(&[0xff]), Err(Refused::Malformed));
        // a chunk of the wrong type inside an indefinite text string.
        assert_eq!(
            check_cbor(&[0x7f, 0x41, 0x00, 0xff]),
            Err(Refused::Malformed)
        );
        let mut deep = vec![0x81; MAX_DEPTH + 1];
        deep.push(0x01);
        assert_eq!(check_cbor(&deep), Err(Refused::TooDeep));
        let tags = vec![0xc1; MAX_DEPTH + 1];
        assert!(check_cbor(&tags).is_err());
        // An indefinite map with a key and no value; a two-byte simple value below 32.
        assert_eq!(check_cbor(&[0xbf, 0x01, 0xff]), Err(Refused::Malformed));
        assert_eq!(check_cbor(&[0xbf, 0x01, 0x02, 0xff]), Ok(()));
        assert_eq!(check_cbor(&[0xf8, 0x10]), Err(Refused::Malformed));
        assert_eq!(check_cbor(&[0xf8, 0x20]), Ok(()));
    }
}
