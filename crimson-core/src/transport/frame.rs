//! Frame headers (RFC 6455 §5.2): parsing, writing and masking.

use super::ProtocolViolation;

/// Frame opcodes.
pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;

    /// Whether `op` is a control frame's opcode (close, ping, pong, and the reserved 0xB-0xF).
    pub(crate) const fn is_control(op: u8) -> bool {
        op & 0x8 != 0
    }
}

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub(crate) const MAX_HEADER: usize = 14;

/// The most a control frame may carry.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) rsv1: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) len: u64,
}

/// Parses a frame header from the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the header and its length in bytes. Checks what can be checked from the header alone:
/// reserved bits 2 and 3, reserved opcodes, control frames that are fragmented or too long,
/// and a length whose top bit is set.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProtocolViolation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 {
        return Err(ProtocolViolation("a reserved bit (RSV2 or RSV3) is set"));
    }
    let opcode = b0 & 0x0F;
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            if !fin {
                return Err(ProtocolViolation("a control frame is fragmented"));
            }
        }
        _ => return Err(ProtocolViolation("a frame has a reserved opcode")),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u16::from_be_bytes([bytes[0], bytes[1]]);
            if len < 126 {
                return Err(ProtocolViolation("a frame length is not minimally encoded"));
            }
            (u64::from(len), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolViolation("a frame length has its top bit set"));
            }
            if len <= u64::from(u16::MAX) {
                return Err(ProtocolViolation("a frame length is not minimally encoded"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode::is_control(opcode) && len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(ProtocolViolation(
            "a control frame carries more than 125 bytes",
        ));
    }
    let mask = if masked {
        let Some(bytes) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some((
        Header {
            fin,
            rsv1,
            opcode,
            mask,
            len,
        },
        at,
    )))
}

/// Writes a header into `out`; returns its length.
pub(crate) fn write(
    out: &mut [u8; MAX_HEADER],
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: usize,
) -> usize {
    out[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = if len < 126 {
        out[1] = mask_bit | len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(mask) = mask {
        out[at..at + 4].copy_from_slice(&mask);
        at += 4;
    }
    at
}

/// XORs `buf` with `mask`, as if `buf` started `offset` bytes into the frame's payload.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the mask so that it lines up with `buf[0]`.
    let mask = {
        let r = offset % 4;
        [
            mask[r],
            mask[(r + 1) % 4],
            mask[(r + 2) % 4],
            mask[(r + 3) % 4],
        ]
    };
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize, mask: Option<[u8; 4]>) {
        let mut out = [0; MAX_HEADER];
        let n = write(&mut out, true, false, opcode::BINARY, mask, len);
        let (header, used) = parse(&out[..n]).unwrap().unwrap();
        assert_eq!(used, n);
        assert_eq!(header.len, len as u64);
        assert_eq!(header.mask, mask);
        assert!(header.fin);
        // Every shorter prefix asks for more.
        for cut in 0..n {
            assert_eq!(parse(&out[..cut]).unwrap(), None, "len {len} cut {cut}");
        }
    }

    #[test]
    fn headers_round_trip_at_every_length_class() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            roundtrip(len, None);
            roundtrip(len, Some([1, 2, 3, 4]));
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let err = |bytes: &[u8]| parse(bytes).unwrap_err().0;
        assert_eq!(
            err(&[0x80 | 0x20 | 0x1, 0]),
            "a reserved bit (RSV2 or RSV3) is set"
        );
        assert_eq!(err(&[0x83, 0]), "a frame has a reserved opcode");
        assert_eq!(err(&[0x8B, 0]), "a frame has a reserved opcode");
        assert_eq!(err(&[0x09, 0]), "a control frame is fragmented");
        assert_eq!(
            err(&[0x89, 126, 0, 126]),
            "a control frame carries more than 125 bytes"
        );
        assert_eq!(
            err(&[0x82, 126, 0, 5]),
            "a frame length is not minimally encoded"
        );
        assert_eq!(
            err(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            "a frame length has its top bit set"
        );
    }

    #[test]
    fn masking_is_its_own_inverse_from_any_offset() {
        let original: Vec<u8> = (0..100u8).collect();
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let mut whole = original.clone();
        apply_mask(&mut whole, mask, 0);
        // Masking in two pieces gives the same bytes as in one.
        let mut pieces = original.clone();
        let (a, b) = pieces.split_at_mut(37);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 37);
        assert_eq!(whole, pieces);
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, original[i] ^ mask[i % 4]);
        }
        apply_mask(&mut whole, mask, 0);
        assert_eq!(whole, original);
    }
}
