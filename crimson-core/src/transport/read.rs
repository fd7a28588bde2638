//! The read side of a connection, without I/O: bytes in, messages and control frames out.
//!
//! [`Reader::feed`] takes whatever bytes arrived (the caller reads them into a buffer shared
//! by every connection of a thread) and hands each complete message to a callback, borrowed
//! straight from those bytes when it came in one frame: nothing is copied or allocated for
//! it. Only a message split over frames or reads is gathered in a buffer of the connection's
//! own, sized for that message, counted against a [`Budget`] shared by many connections, and
//! freed as soon as the message is complete. An idle connection holds no read buffer at all.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::deflate::{InflateError, Inflater};
use super::frame::{self, opcode, Header, MAX_CONTROL_PAYLOAD, MAX_HEADER};
use super::utf8::Utf8Check;
use super::{ProtocolViolation, Role};
use crate::close::CloseCode;
use crate::message::PayloadRef;

/// What arrived: a whole data message, or a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole message (its frames joined, inflated, UTF-8 checked for Text).
    Message(PayloadRef<'a>),
    /// A ping (the connection answers it by itself).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame: its code and reason, if it gave them. Nothing is read after it.
    Close(Option<(CloseCode, &'a str)>),
}

/// Why the connection cannot go on reading, and the close code that says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer broke the WebSocket protocol (1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A close frame with a code no endpoint may send (1002).
    #[error("protocol error: invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message or close reason that is not UTF-8 (1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A compressed message that does not inflate (1007).
    #[error("a compressed message does not inflate")]
    InvalidCompression,
    /// A message over the size limit (1009).
    #[error("message too big: the limit is {limit} bytes")]
    TooBig {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Unfinished messages across connections hold all the bytes the server allows for them
    /// (1013).
    #[error("server busy: unfinished messages hold the {limit} bytes allowed for them")]
    Busy {
        /// The shared limit, in bytes.
        limit: usize,
    },
    /// The connection failed.
    #[error("connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The peer closed the TCP connection without a close frame (reported as 1006).
    #[error("the connection dropped without a close frame")]
    Eof,
}

impl ReadError {
    /// The close code to answer with; 1006 (never sent) when the connection is gone.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Protocol(_) | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
            Self::InvalidUtf8 | Self::InvalidCompression => CloseCode::INVALID_PAYLOAD,
            Self::TooBig { .. } => CloseCode::TOO_BIG,
            Self::Busy { .. } => CloseCode::TRY_AGAIN_LATER,
            Self::Io(_) | Self::Eof => CloseCode::ABNORMAL,
        }
    }

    /// Whether a close frame can still be written (the socket is not known to be gone).
    pub fn writable(&self) -> bool {
        !matches!(self, Self::Io(_) | Self::Eof)
    }
}

impl From<ProtocolViolation> for ReadError {
    fn from(violation: ProtocolViolation) -> Self {
        Self::Protocol(violation.0)
    }
}

/// A bound on the bytes that unfinished messages may hold, shared by many connections.
///
/// Cloning shares the bound.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    used: AtomicUsize,
    limit: usize,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("used", &self.used())
            .field("limit", &self.inner.limit)
            .finish()
    }
}

impl Budget {
    /// A bound of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicUsize::new(0),
                limit,
            }),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    fn take(&self, bytes: usize) -> bool {
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.inner.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Where the reader is inside the current frame.
#[derive(Debug)]
enum State {
    /// Gathering a frame header (a few bytes of it may have come already).
    Header { buf: [u8; MAX_HEADER], len: u8 },
    /// Inside a frame's payload.
    Payload {
        header: Header,
        /// Payload bytes still to come.
        remaining: u64,
        /// Payload bytes seen so far (for the mask's phase).
        seen: u64,
    },
    /// A close frame arrived, or reading failed: nothing more is read.
    Done,
}

/// A data message gathered from several frames or reads.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    buf: Vec<u8>,
    utf8: Utf8Check,
    /// Bytes taken from the budget for it.
    reserved: usize,
}

/// How far [`Reader::feed`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes of the input it used; the rest (only when it stopped at `max_messages`) must be
    /// fed again later.
    pub(crate) consumed: usize,
    /// Data messages handed over.
    pub(crate) messages: usize,
    /// Whether a close frame arrived (nothing more will be read).
    pub(crate) closed: bool,
}

/// The read side of one connection.
pub(crate) struct Reader {
    role: Role,
    max_message: usize,
    state: State,
    partial: Option<Partial>,
    control: Option<Box<([u8; MAX_CONTROL_PAYLOAD], usize)>>,
    inflater: Option<Inflater>,
    budget: Option<Budget>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("role", &self.role)
            .field("max_message", &self.max_message)
            .field("state", &self.state)
            .field("partial", &self.partial.as_ref().map(|p| p.buf.len()))
            .field("inflater", &self.inflater)
            .finish()
    }
}

thread_local! {
    /// Where compressed messages are inflated, shared by the connections of a thread.
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Past this many bytes the thread's inflate buffer is given back after use.
const KEEP_INFLATED: usize = 256 << 10;

impl Reader {
    pub(crate) fn new(
        role: Role,
        max_message: usize,
        inflater: Option<Inflater>,
        budget: Option<Budget>,
    ) -> Self {
        Self {
            role,
            max_message,
            state: State::Header {
                buf: [0; MAX_HEADER],
                len: 0,
            },
            partial: None,
            control: None,
            inflater,
            budget,
        }
    }

    /// Whether part of a message has arrived and the rest has not.
    pub(crate) fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Reads the frames in `input`, handing each whole message and control frame to `on`, and
    /// stops after `max_messages` data messages (at a frame boundary).
    pub(crate) fn feed(
        &mut self,
        input: &mut [u8],
        max_messages: usize,
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> Result<Fed, ReadError> {
        let mut fed = Fed {
            consumed: 0,
            messages: 0,
            closed: false,
        };
        let result = self.feed_inner(input, max_messages, on, &mut fed);
        if result.is_err() {
            self.stop();
        }
        result.map(|()| fed)
    }

    fn feed_inner(
        &mut self,
        input: &mut [u8],
        max_messages: usize,
        on: &mut dyn FnMut(Incoming<'_>),
        fed: &mut Fed,
    ) -> Result<(), ReadError> {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Done => {
                    fed.consumed = input.len();
                    fed.closed = true;
                    return Ok(());
                }
                State::Header { buf, len } => {
                    if fed.messages >= max_messages && *len == 0 {
                        fed.consumed = pos;
                        return Ok(());
                    }
                    if pos == input.len() {
                        fed.consumed = pos;
                        return Ok(());
                    }
                    let parsed = if *len == 0 {
                        match frame::parse(&input[pos..])? {
                            Some((header, used)) => Some((header, used)),
                            None => {
                                let rest = &input[pos..];
                                buf[..rest.len()].copy_from_slice(rest);
                                *len = rest.len() as u8;
                                pos = input.len();
                                None
                            }
                        }
                    } else {
                        let held = usize::from(*len);
                        let take = (MAX_HEADER - held).min(input.len() - pos);
                        buf[held..held + take].copy_from_slice(&input[pos..pos + take]);
                        match frame::parse(&buf[..held + take])? {
                            Some((header, used)) => Some((header, used - held)),
                            None => {
                                *len = (held + take) as u8;
                                pos += take;
                                None
                            }
                        }
                    };
                    if let Some((header, used)) = parsed {
                        pos += used;
                        self.start_frame(header)?;
                    }
                }
                State::Payload {
                    header,
                    remaining,
                    seen,
                } => {
                    let header = *header;
                    if *remaining > 0 && pos == input.len() {
                        fed.consumed = pos;
                        return Ok(());
                    }
                    let available = (input.len() - pos) as u64;
                    let take = (*remaining).min(available) as usize;
                    let piece = &mut input[pos..pos + take];
                    if let Some(mask) = header.mask {
                        frame::apply_mask(piece, mask, *seen as usize);
                    }
                    *remaining -= take as u64;
                    *seen += take as u64;
                    let done = *remaining == 0;
                    // This frame's bytes not yet gathered, this piece included.
                    let pending = take as u64 + *remaining;
                    // The whole frame's payload is in this input.
                    let whole = done && *seen == take as u64;
                    let piece = pos..pos + take;
                    pos += take;
                    if opcode::is_control(header.opcode) {
                        if whole {
                            // No copy.
                            self.end_frame();
                            self.control_frame(header.opcode, &input[piece], on, fed)?;
                        } else {
                            let control = self
                                .control
                                .get_or_insert_with(|| Box::new(([0; MAX_CONTROL_PAYLOAD], 0)));
                            let (buf, len) = &mut **control;
                            buf[*len..*len + take].copy_from_slice(&input[piece]);
                            *len += take;
                            if done {
                                self.end_frame();
                                let control = self.control.take().expect("filled just above");
                                self.control_frame(
                                    header.opcode,
                                    &control.0[..control.1],
                                    on,
                                    fed,
                                )?;
                            }
                        }
                    } else if whole && header.fin && self.partial.is_none() {
                        // A whole message in one frame, all in this input: no copy.
                        self.end_frame();
                        deliver(
                            self.inflater.as_mut().filter(|_| header.rsv1),
                            self.max_message,
                            header.opcode == opcode::TEXT,
                            &input[piece],
                            on,
                        )?;
                        fed.messages += 1;
                    } else {
                        let partial = self.partial_for(header, pending)?;
                        let bytes = &input[piece];
                        partial.buf.extend_from_slice(bytes);
                        if partial.text && !partial.compressed {
                            partial
                                .utf8
                                .feed(bytes)
                                .map_err(|_| ReadError::InvalidUtf8)?;
                        }
                        if done {
                            self.end_frame();
                            if header.fin {
                                self.finish_message(on)?;
                                fed.messages += 1;
                            }
                        }
                    }
                    if fed.closed {
                        fed.consumed = input.len();
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Checks a frame's header against what came before, and starts reading its payload.
    fn start_frame(&mut self, header: Header) -> Result<(), ReadError> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => {
                return Err(ReadError::Protocol("a frame from the client is not masked"))
            }
            (Role::Client, true) => {
                return Err(ReadError::Protocol("a frame from the server is masked"))
            }
            _ => {}
        }
        let data = !opcode::is_control(header.opcode);
        if header.rsv1 {
            let allowed =
                self.inflater.is_some() && matches!(header.opcode, opcode::TEXT | opcode::BINARY);
            if !allowed {
                return Err(ReadError::Protocol(
                    "RSV1 is set on a frame that cannot be compressed here",
                ));
            }
        }
        if data {
            let continuation = header.opcode == opcode::CONTINUATION;
            match (&self.partial, continuation) {
                (None, true) => {
                    return Err(ReadError::Protocol(
                        "a continuation frame without a message to continue",
                    ))
                }
                (Some(_), false) => {
                    return Err(ReadError::Protocol(
                        "a new message started before the last one ended",
                    ))
                }
                _ => {}
            }
            let so_far = self.partial.as_ref().map_or(0, |p| p.buf.len() as u64);
            if so_far + header.len > self.max_message as u64 {
                return Err(ReadError::TooBig {
                    limit: self.max_message,
                });
            }
        }
        self.state = if header.len == 0 {
            State::Payload {
                header,
                remaining: 0,
                seen: 0,
            }
        } else {
            State::Payload {
                header,
                remaining: header.len,
                seen: 0,
            }
        };
        Ok(())
    }

    fn end_frame(&mut self) {
        self.state = State::Header {
            buf: [0; MAX_HEADER],
            len: 0,
        };
    }

    /// Stops reading for good.
    fn stop(&mut self) {
        self.state = State::Done;
        self.release();
    }

    /// Gives a partial message's memory and budget back.
    fn release(&mut self) {
        if let Some(partial) = self.partial.take() {
            if let Some(budget) = &self.budget {
                budget.give_back(partial.reserved);
            }
        }
    }

    /// The partial message this frame adds to (started by it if it is the first), with room
    /// reserved for the `pending` bytes of the frame not gathered yet.
    fn partial_for(&mut self, header: Header, pending: u64) -> Result<&mut Partial, ReadError> {
        if self.partial.is_none() {
            self.partial = Some(Partial {
                text: header.opcode == opcode::TEXT,
                compressed: header.rsv1,
                buf: Vec::new(),
                utf8: Utf8Check::default(),
                reserved: 0,
            });
        }
        let partial = self.partial.as_mut().expect("set just above");
        // Room for the rest of this frame (reserved when the frame's first piece arrives),
        // growing at least twofold (up to the limit) so that many small frames do not copy the
        // message over and over. The budget counts the capacity.
        let need = partial.buf.len() + usize::try_from(pending).unwrap_or(usize::MAX);
        if need > partial.buf.capacity() {
            let mut target = need.max((partial.buf.capacity() * 2).min(self.max_message));
            if let Some(budget) = &self.budget {
                // The doubled size if the budget allows it, else just what is needed.
                if !budget.take(target.saturating_sub(partial.reserved)) {
                    target = need;
                    if !budget.take(target.saturating_sub(partial.reserved)) {
                        let limit = budget.limit();
                        return Err(ReadError::Busy { limit });
                    }
                }
            }
            partial.reserved = partial.reserved.max(target);
            partial.buf.reserve_exact(target - partial.buf.len());
        }
        Ok(partial)
    }

    fn finish_message(&mut self, on: &mut dyn FnMut(Incoming<'_>)) -> Result<(), ReadError> {
        let mut partial = self.partial.take().expect("a message is in progress");
        if let Some(budget) = &self.budget {
            budget.give_back(partial.reserved);
        }
        if partial.text && !partial.compressed {
            partial.utf8.finish().map_err(|_| ReadError::InvalidUtf8)?;
            let text = std::str::from_utf8(&partial.buf).map_err(|_| ReadError::InvalidUtf8)?;
            on(Incoming::Message(PayloadRef::Text(text)));
            return Ok(());
        }
        deliver(
            self.inflater.as_mut().filter(|_| partial.compressed),
            self.max_message,
            partial.text,
            &partial.buf,
            on,
        )
    }

    fn control_frame(
        &mut self,
        op: u8,
        payload: &[u8],
        on: &mut dyn FnMut(Incoming<'_>),
        fed: &mut Fed,
    ) -> Result<(), ReadError> {
        match op {
            opcode::PING => on(Incoming::Ping(payload)),
            opcode::PONG => on(Incoming::Pong(payload)),
            _ => {
                let close = parse_close(payload)?;
                self.stop();
                fed.closed = true;
                on(Incoming::Close(close));
            }
        }
        Ok(())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.release();
    }
}

/// Hands one whole message to `on`: inflated first when compressed, UTF-8 checked when text.
fn deliver(
    inflater: Option<&mut Inflater>,
    max_message: usize,
    text: bool,
    payload: &[u8],
    on: &mut dyn FnMut(Incoming<'_>),
) -> Result<(), ReadError> {
    let Some(inflater) = inflater else {
        return deliver_plain(text, payload, on);
    };
    let mut inflate_into = |out: &mut Vec<u8>| {
        inflater
            .inflate(payload, max_message, out)
            .map_err(|err| match err {
                InflateError::Corrupt => ReadError::InvalidCompression,
                InflateError::TooBig => ReadError::TooBig { limit: max_message },
            })?;
        let result = deliver_plain(text, out, on);
        if out.capacity() > KEEP_INFLATED {
            *out = Vec::new();
        }
        result
    };
    INFLATED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut out) => inflate_into(&mut out),
        Err(_) => inflate_into(&mut Vec::new()),
    })
}

fn deliver_plain(
    text: bool,
    payload: &[u8],
    on: &mut dyn FnMut(Incoming<'_>),
) -> Result<(), ReadError> {
    let payload = if text {
        PayloadRef::Text(std::str::from_utf8(payload).map_err(|_| ReadError::InvalidUtf8)?)
    } else {
        PayloadRef::Binary(payload)
    };
    on(Incoming::Message(payload));
    Ok(())
}

/// A close frame's code and reason (RFC 6455 §5.5.1).
fn parse_close(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("a close frame has a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from_u16(code).is_sendable() {
                return Err(ReadError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some((CloseCode::from_u16(code), reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::deflate::{self, Deflate};

    #[test]
    fn error_texts_and_sources() {
        use std::error::Error as _;

        let cases = [
            (ReadError::Protocol("bad"), "protocol error: bad"),
            (
                ReadError::InvalidCloseCode(1005),
                "protocol error: invalid close code 1005",
            ),
            (ReadError::InvalidUtf8, "invalid UTF-8 in a text message"),
            (
                ReadError::InvalidCompression,
                "a compressed message does not inflate",
            ),
            (
                ReadError::TooBig { limit: 8 },
                "message too big: the limit is 8 bytes",
            ),
            (
                ReadError::Busy { limit: 9 },
                "server busy: unfinished messages hold the 9 bytes allowed for them",
            ),
            (
                ReadError::Eof,
                "the connection dropped without a close frame",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert!(err.source().is_none());
        }
        let err = ReadError::Io(std::io::Error::other("reset"));
        assert_eq!(err.to_string(), "connection failed: reset");
        assert_eq!(err.source().unwrap().to_string(), "reset");
    }

    /// A frame as a client sends it (masked).
    fn client_frame(fin: bool, rsv1: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut header = [0; MAX_HEADER];
        let n = frame::write(&mut header, fin, rsv1, op, Some(mask), payload.len());
        let mut out = header[..n].to_vec();
        let mut body = payload.to_vec();
        frame::apply_mask(&mut body, mask, 0);
        out.extend(body);
        out
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    fn record(got: &mut Vec<Got>) -> impl FnMut(Incoming<'_>) + '_ {
        move |incoming| {
            got.push(match incoming {
                Incoming::Message(PayloadRef::Text(t)) => Got::Text(t.to_owned()),
                Incoming::Message(PayloadRef::Binary(b)) => Got::Binary(b.to_vec()),
                Incoming::Ping(p) => Got::Ping(p.to_vec()),
                Incoming::Pong(p) => Got::Pong(p.to_vec()),
                Incoming::Close(c) => Got::Close(c.map(|(c, r)| (c.as_u16(), r.to_owned()))),
            });
        }
    }

    fn server_reader() -> Reader {
        Reader::new(Role::Server, 1 << 16, None, Some(Budget::new(1 << 20)))
    }

    /// Feeds `bytes` cut in every possible pair of pieces; all cuts must agree.
    fn read_all(make: impl Fn() -> Reader, bytes: &[u8]) -> Result<Vec<Got>, String> {
        let mut first: Option<Result<Vec<Got>, String>> = None;
        for cut in 0..=bytes.len() {
            let mut reader = make();
            let mut got = Vec::new();
            let mut result = Ok(());
            for piece in [&bytes[..cut], &bytes[cut..]] {
                let mut piece = piece.to_vec();
                if let Err(err) = reader.feed(&mut piece, usize::MAX, &mut record(&mut got)) {
                    result = Err(err.to_string());
                    break;
                }
            }
            let outcome = result.map(|()| got);
            match &first {
                None => first = Some(outcome),
                Some(expected) => assert_eq!(&outcome, expected, "cut at {cut}"),
            }
        }
        first.expect("at least one cut")
    }

    #[test]
    fn messages_and_control_frames_in_any_pieces() {
        let mut bytes = client_frame(true, false, opcode::TEXT, "héllo".as_bytes());
        bytes.extend(client_frame(false, false, opcode::BINARY, &[1, 2]));
        bytes.extend(client_frame(true, false, opcode::PING, b"p"));
        bytes.extend(client_frame(true, false, opcode::CONTINUATION, &[3]));
        bytes.extend(client_frame(true, false, opcode::PONG, b""));
        bytes.extend(client_frame(
            true,
            false,
            opcode::CLOSE,
            &[0x03, 0xE8, b'o', b'k'],
        ));
        bytes.extend(client_frame(true, false, opcode::TEXT, b"after close"));
        assert_eq!(
            read_all(server_reader, &bytes).unwrap(),
            vec![
                Got::Text("héllo".into()),
                Got::Ping(b"p".to_vec()),
                Got::Binary(vec![1, 2, 3]),
                Got::Pong(vec![]),
                Got::Close(Some((1000, "ok".into()))),
            ]
        );
    }

    #[test]
    fn protocol_errors() {
        let err = |bytes: Vec<u8>| read_all(server_reader, &bytes).unwrap_err();
        let unmasked = vec![0x81, 0x01, b'a'];
        assert_eq!(
            err(unmasked),
            "protocol error: a frame from the client is not masked"
        );
        assert_eq!(
            err(client_frame(true, false, opcode::CONTINUATION, b"x")),
            "protocol error: a continuation frame without a message to continue"
        );
        let mut two = client_frame(false, false, opcode::TEXT, b"a");
        two.extend(client_frame(true, false, opcode::TEXT, b"b"));
        assert_eq!(
            err(two),
            "protocol error: a new message started before the last one ended"
        );
        assert_eq!(
            err(client_frame(true, true, opcode::TEXT, b"x")),
            "protocol error: RSV1 is set on a frame that cannot be compressed here"
        );
        assert_eq!(
            err(client_frame(true, false, opcode::CLOSE, &[0x03, 0xE7])),
            "protocol error: invalid close code 999"
        );
        assert_eq!(
            err(client_frame(true, false, opcode::CLOSE, &[0x03])),
            "protocol error: a close frame has a one-byte payload"
        );
        assert_eq!(
            err(client_frame(
                true,
                false,
                opcode::CLOSE,
                &[0x03, 0xE8, 0xFF]
            )),
            "invalid UTF-8 in a text message"
        );
    }

    #[test]
    fn text_fails_at_the_first_bad_byte_even_mid_frame() {
        let mut reader = server_reader();
        let mut got = Vec::new();
        let mut bytes = client_frame(true, false, opcode::TEXT, &[b'a'; 100]);
        // Corrupt byte 10 of the payload (after the 6-byte header): still masked, so XOR.
        bytes[6 + 10] ^= 0xFF ^ b'a';
        // Only the first 20 payload bytes arrive: the bad byte is already among them.
        let mut head = bytes[..6 + 20].to_vec();
        let err = reader
            .feed(&mut head, usize::MAX, &mut record(&mut got))
            .unwrap_err();
        assert!(matches!(err, ReadError::InvalidUtf8), "{err}");
    }

    #[test]
    fn size_limit_applies_to_the_whole_message() {
        let make = || Reader::new(Role::Server, 10, None, None);
        let mut bytes = client_frame(false, false, opcode::BINARY, &[0; 6]);
        bytes.extend(client_frame(true, false, opcode::CONTINUATION, &[0; 6]));
        assert_eq!(
            read_all(make, &bytes).unwrap_err(),
            "message too big: the limit is 10 bytes"
        );
    }

    #[test]
    fn unfinished_messages_share_a_budget() {
        let budget = Budget::new(100);
        let mut a = Reader::new(Role::Server, 1000, None, Some(budget.clone()));
        let mut b = Reader::new(Role::Server, 1000, None, Some(budget.clone()));
        let mut got = Vec::new();
        let mut first = client_frame(false, false, opcode::BINARY, &[0; 80]);
        a.feed(&mut first, usize::MAX, &mut record(&mut got))
            .unwrap();
        assert_eq!(budget.used(), 80);
        let mut second = client_frame(false, false, opcode::BINARY, &[0; 30]);
        let err = b
            .feed(&mut second, usize::MAX, &mut record(&mut got))
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::TRY_AGAIN_LATER);
        // Finishing the message gives its bytes back; so does dropping the reader.
        let mut end = client_frame(true, false, opcode::CONTINUATION, &[0; 5]);
        a.feed(&mut end, usize::MAX, &mut record(&mut got)).unwrap();
        assert_eq!(budget.used(), 0);
        let mut again = client_frame(false, false, opcode::BINARY, &[0; 50]);
        a.feed(&mut again, usize::MAX, &mut record(&mut got))
            .unwrap();
        assert_eq!(budget.used(), 50);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn stops_after_max_messages_at_a_frame_boundary() {
        let mut reader = server_reader();
        let mut bytes = Vec::new();
        for n in 0..3u8 {
            bytes.extend(client_frame(true, false, opcode::BINARY, &[n]));
        }
        let mut got = Vec::new();
        let fed = reader
            .feed(&mut bytes.clone(), 2, &mut record(&mut got))
            .unwrap();
        assert_eq!(fed.messages, 2);
        assert_eq!(got, vec![Got::Binary(vec![0]), Got::Binary(vec![1])]);
        let mut rest = bytes[fed.consumed..].to_vec();
        let fed = reader.feed(&mut rest, 2, &mut record(&mut got)).unwrap();
        assert_eq!((fed.messages, fed.consumed), (1, rest.len()));
        assert_eq!(got.last(), Some(&Got::Binary(vec![2])));
    }

    #[test]
    fn compressed_messages_whole_and_fragmented() {
        let (agreed, _) =
            deflate::negotiate(&Deflate::new().min_size(0), ["permessage-deflate"]).unwrap();
        let make = || {
            Reader::new(
                Role::Server,
                1 << 16,
                Some(Inflater::new(&agreed, true)),
                None,
            )
        };
        let text = "compress me, compress me, compress me";
        let compressed = deflate::compress_alone(1, 15, text.as_bytes()).unwrap();
        let mut bytes = client_frame(true, true, opcode::TEXT, &compressed);
        let (a, b) = compressed.split_at(compressed.len() / 2);
        bytes.extend(client_frame(false, true, opcode::TEXT, a));
        bytes.extend(client_frame(true, false, opcode::PING, b""));
        bytes.extend(client_frame(true, false, opcode::CONTINUATION, b));
        assert_eq!(
            read_all(make, &bytes).unwrap(),
            vec![
                Got::Text(text.into()),
                Got::Ping(vec![]),
                Got::Text(text.into())
            ]
        );
        // RSV1 on a continuation frame is a protocol error.
        let mut bad = client_frame(false, true, opcode::TEXT, a);
        bad.extend(client_frame(true, true, opcode::CONTINUATION, b));
        assert!(read_all(make, &bad).unwrap_err().contains("RSV1"));
    }

    #[test]
    fn an_idle_reader_holds_nothing() {
        let mut reader = server_reader();
        let mut got = Vec::new();
        let mut bytes = client_frame(true, false, opcode::TEXT, b"hi");
        reader
            .feed(&mut bytes, usize::MAX, &mut record(&mut got))
            .unwrap();
        assert!(reader.partial.is_none() && reader.control.is_none());
    }
}
