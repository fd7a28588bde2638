//! [`Connection`]: the reader and the writer over a socket.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deflate::{self, Deflater, Inflater, Negotiated};
use super::read::{Budget, Incoming, ReadError, Reader};
use super::write::{AfterClose, Writer};
use super::Role;
use crate::close::CloseCode;
use crate::message::Payload;

/// How much one read takes from the socket at most. Reads go into a buffer shared by the
/// connections of a thread, so an idle connection holds none of it.
const READ_CHUNK: usize = 64 << 10;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A compressed form of a payload, made once and shared by every connection that negotiated
/// the same compression (no context takeover, same level and window): a broadcast is then
/// compressed once, not once per recipient.
#[derive(Debug, Default)]
pub struct DeflateCache {
    made: OnceLock<((u32, u8), Option<Bytes>)>,
}

impl DeflateCache {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            made: OnceLock::new(),
        }
    }

    /// The compressed form for `key` (level, window bits), made on first use; `None` when
    /// the payload does not compress, or the cache holds another key's form.
    fn get(&self, key: (u32, u8), data: &[u8]) -> Option<Option<&Bytes>> {
        let (made_for, bytes) = self.made.get_or_init(|| {
            (
                key,
                deflate::compress_alone(key.0, key.1, data).map(Bytes::from),
            )
        });
        (*made_for == key).then_some(bytes.as_ref())
    }
}

/// What [`Connection::poll_read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Data messages handed over.
    pub messages: usize,
    /// The peer's close frame arrived: nothing more will be read.
    pub closed: bool,
}

/// A WebSocket connection over `IO`: messages in through a callback, messages out through a
/// bounded queue of frames the caller flushes.
pub struct Connection<IO> {
    io: IO,
    reader: Reader,
    writer: Writer,
    /// Bytes read but not yet used (only after a read stopped at its message limit), fed
    /// before the socket is read again.
    stash: Vec<u8>,
    /// The peer's close frame arrived, or reading failed: the socket is not read again.
    read_done: bool,
    negotiated: Option<Negotiated>,
}

impl<IO> fmt::Debug for Connection<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("reader", &self.reader)
            .field("writer", &self.writer)
            .field("stash", &self.stash.len())
            .field("read_done", &self.read_done)
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    /// A connection over an upgraded socket. `leftover` are bytes read past the handshake
    /// (frames the peer sent right after it); `budget` bounds what unfinished messages hold.
    pub fn new(
        io: IO,
        role: Role,
        max_message: usize,
        negotiated: Option<Negotiated>,
        budget: Option<Budget>,
        leftover: &[u8],
    ) -> Self {
        let server = role == Role::Server;
        Self {
            io,
            reader: Reader::new(
                role,
                max_message,
                negotiated.as_ref().map(|n| Inflater::new(n, server)),
                budget,
            ),
            writer: Writer::new(role, negotiated.as_ref().map(|n| Deflater::new(n, server))),
            stash: leftover.to_vec(),
            read_done: false,
            negotiated,
        }
    }

    /// What permessage-deflate settings were agreed, if any.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Reads once (or uses what an earlier read left) and hands every complete message to
    /// `on`, at most `max_messages` of them; control frames are always handled (a ping is
    /// answered with a pong). `Pending` when the socket has nothing.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        max_messages: usize,
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> Poll<Result<ReadOutcome, ReadError>> {
        if self.read_done {
            return Poll::Ready(Ok(ReadOutcome {
                messages: 0,
                closed: true,
            }));
        }
        let writer = &mut self.writer;
        let mut on = |incoming: Incoming<'_>| {
            if let Incoming::Ping(payload) = incoming {
                writer.pong(payload);
            }
            on(incoming);
        };
        if !self.stash.is_empty() {
            let mut stash = std::mem::take(&mut self.stash);
            let result = self.reader.feed(&mut stash, max_messages, &mut on);
            return Poll::Ready(match result {
                Ok(fed) => {
                    if fed.consumed < stash.len() {
                        stash.drain(..fed.consumed);
                        self.stash = stash;
                    }
                    self.read_done |= fed.closed;
                    Ok(ReadOutcome {
                        messages: fed.messages,
                        closed: fed.closed,
                    })
                }
                Err(err) => {
                    self.read_done = true;
                    Err(err)
                }
            });
        }
        let io = &mut self.io;
        let reader = &mut self.reader;
        let stash = &mut self.stash;
        let mut read = |scratch: &mut Vec<u8>| -> Poll<Result<ReadOutcome, ReadError>> {
            if scratch.len() < READ_CHUNK {
                scratch.resize(READ_CHUNK, 0);
            }
            let mut buf = ReadBuf::new(&mut scratch[..READ_CHUNK]);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(ReadError::Io(err))),
                Poll::Ready(Ok(())) => {}
            }
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(ReadError::Eof));
            }
            let input = &mut scratch[..n];
            let fed = reader.feed(input, max_messages, &mut on)?;
            if fed.consumed < n {
                stash.extend_from_slice(&input[fed.consumed..]);
            }
            Poll::Ready(Ok(ReadOutcome {
                messages: fed.messages,
                closed: fed.closed,
            }))
        };
        let result = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => read(&mut scratch),
            // Only if reading re-entered itself on this thread.
            Err(_) => read(&mut Vec::new()),
        });
        match &result {
            Poll::Ready(Ok(outcome)) => self.read_done |= outcome.closed,
            Poll::Ready(Err(_)) => self.read_done = true,
            Poll::Pending => {}
        }
        result
    }

    /// Whether part of a message has arrived and the rest has not.
    pub fn in_message(&self) -> bool {
        self.reader.in_message()
    }

    /// Queues a message (compressed when that was negotiated and it is large enough). With a
    /// `cache`, a compressed form shared with other connections is used or made.
    pub fn send(
        &mut self,
        payload: &Payload,
        cache: Option<&DeflateCache>,
    ) -> Result<(), AfterClose> {
        let (kind, bytes, shared) = match payload {
            Payload::Text(text) => (crate::FrameKind::Text, text.as_bytes(), text.as_shared()),
            Payload::Binary(bytes) => (crate::FrameKind::Binary, &bytes[..], bytes),
        };
        if let (Some(cache), Some(deflater)) = (cache, self.writer.deflater()) {
            if deflater.shares() && bytes.len() >= deflater.min_size() {
                if let Some(made) = cache.get(deflater.key(), bytes) {
                    return match made {
                        Some(compressed) => {
                            let compressed = compressed.clone();
                            self.writer.send_compressed(kind, &compressed)
                        }
                        // It does not compress: send it as it is, without trying again.
                        None => self.writer.send_uncompressed(kind, bytes, Some(shared)),
                    };
                }
            }
        }
        self.writer.send(kind, bytes, Some(shared))
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: &[u8]) {
        self.writer.ping(payload);
    }

    /// Queues a close frame after what is queued; nothing more can be sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.writer.close(code, reason);
    }

    /// Discards what is queued (but a frame half written), then queues a close frame.
    /// Returns the bytes discarded.
    pub fn close_now(&mut self, code: CloseCode, reason: &str) -> usize {
        self.writer.close_now(code, reason)
    }

    /// Whether a close frame is queued or written.
    pub fn is_closing(&self) -> bool {
        self.writer.is_closing()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.writer.queued()
    }

    /// How many messages had their first byte written to the socket since the last call, in
    /// the order they were queued (kept for clients only; always 0 for a server): the
    /// messages queued after them have not left yet.
    pub fn take_begun(&mut self) -> usize {
        self.writer.take_begun()
    }

    /// Whether nothing waits to be written.
    pub fn is_flushed(&self) -> bool {
        self.writer.is_empty()
    }

    /// Writes what is queued and flushes the socket.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.poll_flush(&mut self.io, cx)
    }

    /// Shuts the socket's write side down (after the close handshake).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// The socket.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use super::*;
    use crate::transport::deflate::{self, Deflate, COMPRESSED_ALONE};

    fn server(
        negotiated: Option<Negotiated>,
    ) -> (Connection<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        (
            Connection::new(ours, Role::Server, 1 << 20, negotiated, None, &[]),
            theirs,
        )
    }

    /// Every byte `conn` writes when flushed.
    fn written(
        conn: &mut Connection<tokio::io::DuplexStream>,
        peer: &mut tokio::io::DuplexStream,
    ) -> Vec<u8> {
        use tokio::io::AsyncRead;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(conn.poll_flush(&mut cx), Poll::Ready(Ok(()))));
        let mut out = vec![0u8; 1 << 16];
        let mut buf = tokio::io::ReadBuf::new(&mut out);
        assert!(matches!(
            std::pin::Pin::new(peer).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        buf.filled().to_vec()
    }

    /// A broadcast compressed once for 100 connections that agreed the same parameters: one
    /// compression, and every connection writes the same compressed frame.
    #[test]
    fn a_broadcast_is_compressed_once_for_every_connection() {
        let (agreed, _) = deflate::negotiate(&Deflate::new(), ["permessage-deflate"]).unwrap();
        let message = Payload::Text(r#"{"rows":["#.repeat(200).into());
        let cache = DeflateCache::new();
        let before = COMPRESSED_ALONE.with(|c| c.get());
        let mut frames = Vec::new();
        for _ in 0..100 {
            let (mut conn, mut peer) = server(Some(agreed));
            conn.send(&message, Some(&cache)).unwrap();
            frames.push(written(&mut conn, &mut peer));
        }
        assert_eq!(
            COMPRESSED_ALONE.with(|c| c.get()) - before,
            1,
            "compressed once"
        );
        assert!(frames.windows(2).all(|pair| pair[0] == pair[1]));
        // RSV1 set (compressed), and far smaller than the message.
        assert_eq!(frames[0][0] & 0x40, 0x40);
        assert!(
            frames[0].len() < message.len() / 10,
            "{} bytes",
            frames[0].len()
        );

        // Without the cache each connection compresses on its own.
        let before = COMPRESSED_ALONE.with(|c| c.get());
        for _ in 0..10 {
            let (mut conn, mut peer) = server(Some(agreed));
            conn.send(&message, None).unwrap();
            assert_eq!(written(&mut conn, &mut peer), frames[0]);
        }
        assert_eq!(COMPRESSED_ALONE.with(|c| c.get()) - before, 10);
    }

    /// Connections without deflate ignore the cache and send the message as it is.
    #[test]
    fn a_connection_without_deflate_sends_plain_frames() {
        let cache = DeflateCache::new();
        let (mut conn, mut peer) = server(None);
        let message = Payload::Text("hello".into());
        conn.send(&message, Some(&cache)).unwrap();
        assert_eq!(
            written(&mut conn, &mut peer),
            [&[0x81, 5][..], b"hello"].concat()
        );
    }
}
