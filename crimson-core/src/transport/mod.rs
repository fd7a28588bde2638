//! The WebSocket protocol (RFC 6455) and permessage-deflate (RFC 7692) that Crimson's server
//! and client share, written for many mostly idle connections (feature `transport`).
//!
//! You need this module only to run Crimson sessions over a socket of your own: `crimson-axum`
//! and `crimson-client` set it up. What it does differently from a general-purpose WebSocket
//! library:
//!
//! - **Nothing is held while idle.** Reads go into one buffer per thread; a connection keeps
//!   bytes of its own only for a message split over frames or reads (sized for that message
//!   and freed when it is complete) or for input it was told not to process yet. Its write
//!   queue and compression state are empty or absent too.
//! - **Every buffer is bounded.** The caller bounds what it queues ([`Connection::queued`]); at
//!   most 32 pongs wait to be written (a newer ping's pushes out the oldest); unfinished messages count against a
//!   [`Budget`] shared by many connections; a compressed message is inflated no further than
//!   the message limit.
//! - **Shared bytes stay shared.** A large payload is written from the caller's reference-
//!   counted bytes, never copied per connection, and a broadcast is compressed once for every
//!   connection that negotiated the same settings ([`DeflateCache`]).
//! - **Fail fast.** A text message is checked for UTF-8 as its bytes arrive, so bad input is
//!   refused at its first bad byte, not when the message ends.
//!
//! The session engines do not depend on it: they see a [`Transport`], which is all they use of
//! a connection.

mod conn;
pub mod deflate;
mod frame;
mod read;
mod utf8;
mod write;

use std::io;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

pub use conn::{Connection, DeflateCache, ReadOutcome};
pub use deflate::{Deflate, DeflateConfigError, Negotiated};
pub use read::{Budget, Incoming, ReadError};
pub use write::AfterClose;

use crate::close::CloseCode;
use crate::message::Payload;

/// Which end of the connection this is: a server reads masked frames and writes unmasked
/// ones, a client the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the connection.
    Server,
    /// The end that opened it.
    Client,
}

/// A frame that breaks RFC 6455, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProtocolViolation(pub(crate) &'static str);

/// What a session engine needs of a WebSocket connection: the seam between Crimson's sessions
/// and the implementation that carries their frames.
///
/// [`Connection`] implements it; so could an adapter over another WebSocket library.
pub trait Transport: Send + 'static {
    /// Reads what is available and hands at most `max_messages` whole messages (and every
    /// control frame) to `on`. `Pending` when nothing arrived.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        max_messages: usize,
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> Poll<Result<ReadOutcome, ReadError>>;

    /// Queues a message; `cache` shares its compressed form with other connections.
    fn send(&mut self, payload: &Payload, cache: Option<&DeflateCache>) -> Result<(), AfterClose>;

    /// Queues a ping.
    fn ping(&mut self, payload: &[u8]);

    /// Queues a close frame after what is queued.
    fn close(&mut self, code: CloseCode, reason: &str);

    /// Discards what is queued (but a frame half written) and queues a close frame; returns
    /// the bytes discarded.
    fn close_now(&mut self, code: CloseCode, reason: &str) -> usize;

    /// Bytes queued and not yet written.
    fn queued(&self) -> usize;

    /// Whether nothing (not even a pong) waits to be written.
    fn is_flushed(&self) -> bool;

    /// Whether part of a message has arrived and the rest has not.
    fn in_message(&self) -> bool;

    /// The permessage-deflate settings agreed, if any.
    fn compression(&self) -> Option<&Negotiated>;

    /// How many of the messages [`send`](Self::send) queued have had their first byte written
    /// since the last call, oldest first. A client uses it to know which messages may go
    /// again on its next connection (those not begun); a server may always get 0.
    fn take_begun(&mut self) -> usize;

    /// Writes what is queued and flushes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts the write side of the socket down.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<IO> Transport for Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        max_messages: usize,
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> Poll<Result<ReadOutcome, ReadError>> {
        Connection::poll_read(self, cx, max_messages, on)
    }

    fn send(&mut self, payload: &Payload, cache: Option<&DeflateCache>) -> Result<(), AfterClose> {
        Connection::send(self, payload, cache)
    }

    fn ping(&mut self, payload: &[u8]) {
        Connection::ping(self, payload);
    }

    fn close(&mut self, code: CloseCode, reason: &str) {
        Connection::close(self, code, reason);
    }

    fn close_now(&mut self, code: CloseCode, reason: &str) -> usize {
        Connection::close_now(self, code, reason)
    }

    fn queued(&self) -> usize {
        Connection::queued(self)
    }

    fn is_flushed(&self) -> bool {
        Connection::is_flushed(self)
    }

    fn in_message(&self) -> bool {
        Connection::in_message(self)
    }

    fn compression(&self) -> Option<&Negotiated> {
        self.negotiated()
    }

    fn take_begun(&mut self) -> usize {
        Connection::take_begun(self)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Connection::poll_flush(self, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Connection::poll_shutdown(self, cx)
    }
}

/// A fresh random `Sec-WebSocket-Key` for a client's upgrade request (RFC 6455 §4.1).
pub fn new_key() -> String {
    use base64::Engine as _;
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&state.hash_one(1u8).to_ne_bytes());
    nonce[8..].copy_from_slice(&state.hash_one(2u8).to_ne_bytes());
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
