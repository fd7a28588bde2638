//! Errors: one small enum per operation, and [`ClientError`] for what goes wrong in the
//! background (reported to hooks, the event stream and tracing).

use std::sync::Arc;
use std::time::Duration;

use crimson_core::{CloseCode, DecodeError, EncodeError};

use crate::endpoint::BoxError;

/// Something that went wrong while the client connected or ran, as the
/// [`on_error`](crate::CrimsonClientBuilder::on_error) hook, the
/// [`ClientEvent::Error`](crate::ClientEvent::Error) event and a tracing event see it.
///
/// None of these panics or stops the client by itself except where noted: a failed attempt is
/// followed by what the retry policy says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint provider failed. The attempt counts as failed.
    #[error("the endpoint provider failed: {0}")]
    Endpoint(#[source] BoxError),
    /// The endpoint cannot be used: a URL that does not parse, a scheme other than `ws`/`wss`,
    /// an invalid header, or `wss` without the `rustls` feature. The client closes: retrying
    /// would fail the same way.
    #[error("invalid endpoint `{url}`: {reason}")]
    InvalidEndpoint {
        /// The URL, without its query.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection, the TLS handshake or the WebSocket handshake failed.
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The URL, without its query.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered the upgrade request with an HTTP status other than 101.
    ///
    /// A 4xx status other than 408 and 429 (400 Bad Request, 401 Unauthorized, 403 Forbidden,
    /// 404 Not Found, ...) says the request itself is refused, so retrying it would be refused
    /// the same way: the client closes, and [`connect`](crate::CrimsonClient::connect) fails
    /// with this error. An endpoint provider that hands out tokens must hand out valid ones;
    /// once the cause is fixed, call `connect()` again (or let
    /// [`retry_unauthorized`](crate::CrimsonClientBuilder::retry_unauthorized) try a 401 or
    /// 403 again with a fresh endpoint a few times). Any other status (408 Request Timeout,
    /// 429 Too Many Requests, a 5xx, or a 3xx, which is not followed) counts as a failed
    /// attempt: the retry policy decides what comes next, asking the provider again first.
    #[error(
        "{url} refused the WebSocket upgrade with HTTP {status}{}",
        if body.is_empty() { String::new() } else { format!(": {body}") }
    )]
    Rejected {
        /// The URL, without its query.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body as text (at most 512 bytes), which often says why:
        /// a Crimson server names what was wrong. Empty when there was none.
        body: String,
    },
    /// The server did not agree to the codec the client asks for
    /// ([`codec`](crate::CrimsonClientBuilder::codec)). Fatal: the client closes.
    #[error("{url} does not speak codec {asked}: {reason}")]
    Codec {
        /// The URL, without its query.
        url: String,
        /// The subprotocol asked for.
        asked: String,
        /// What the server answered.
        reason: String,
    },
    /// Asking the provider and connecting took longer than the connect timeout.
    #[error("connecting took longer than the connect timeout ({0:?})")]
    ConnectTimeout(Duration),
    /// The server answered no ping within the heartbeat timeout: the connection is taken to
    /// be dead and closed as abnormal (1006).
    #[error("no answer to a ping within {0:?}: the connection is dead")]
    Heartbeat(Duration),
    /// The connection failed while open.
    #[error("the connection failed: {0}")]
    Connection(String),
    /// An incoming message did not decode. It is skipped; the connection stays open.
    #[error("skipped an incoming message: {0}")]
    Decode(#[source] DecodeError),
    /// A message the [`on_connect`](crate::CrimsonClientBuilder::on_connect) hook sent did
    /// not encode. It is not sent; the connection goes on.
    #[error("the on_connect hook's message did not encode: {0}")]
    Encode(#[source] EncodeError),
    /// The retry policy's limit was reached: this many reconnect attempts in a row failed,
    /// or connected but closed abnormally before
    /// [`stable_after`](crate::CrimsonClientBuilder::stable_after). The client is closed.
    #[error("gave up after {0} reconnect attempts")]
    RetriesExhausted(u32),
    /// Messages still in the outbox when the client closed were discarded: they had been
    /// accepted by [`send`](crate::CrimsonClient::send) but never written to a connection,
    /// whether they were still queued or a writer had taken them and could not write them (a
    /// stalled write that [`disconnect`](crate::CrimsonClient::disconnect) gave up on, a
    /// connection that dropped). Reported once per close; see the
    /// [crate docs](crate#delivery).
    #[error("{0} queued message(s) were discarded because the client closed")]
    Discarded(usize),
}

/// A message [`send`](crate::CrimsonClient::send) could not queue. The message was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The client is closed: call [`connect`](crate::CrimsonClient::connect) first.
    #[error("the client is closed: call connect() before sending")]
    Closed,
    /// The outbox already holds its capacity of messages waiting for a connection.
    #[error("the outbox is full ({0} messages wait for the connection)")]
    Full(usize),
    /// The message did not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// [`receive`](crate::CrimsonClient::receive) got no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// No message arrived within the timeout.
    #[error("no message arrived within {0:?}")]
    Timeout(Duration),
    /// More messages arrived since the last call than the incoming capacity holds: this many
    /// were skipped. The next call returns the oldest message still held.
    #[error("fell behind: {0} incoming message(s) were skipped")]
    Lagged(u64),
}

/// [`connect`](crate::CrimsonClient::connect) did not end in a connection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `connect()` was called outside a Tokio runtime.
    #[error("connect() needs a Tokio runtime: call it from inside one")]
    NoRuntime,
    /// The client closed before it connected: the retry policy gave up, the endpoint is
    /// invalid, or the server refused the upgrade with a 4xx status other than 408 and 429
    /// ([`ClientError::Rejected`]). The error is the last one the client reported.
    #[error("could not connect: {0}")]
    GaveUp(Arc<ClientError>),
    /// The client closed before it connected because
    /// [`disconnect`](crate::CrimsonClient::disconnect) was called or every handle was dropped.
    #[error("the client was disconnected before it could connect")]
    Disconnected,
}

/// [`disconnect`](crate::CrimsonClient::disconnect) was given a close code it may not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectError {
    /// The code is reserved (1005, 1006, 1015) or outside the ranges a close frame may carry.
    #[error("close code {0} may not be sent: use 1000, 1001, 1008, 1011, or 3000 to 4999")]
    InvalidCode(CloseCode),
}

/// A client setting that cannot work, found by
/// [`build`](crate::CrimsonClientBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Neither [`url`](crate::CrimsonClientBuilder::url) nor
    /// [`endpoint`](crate::CrimsonClientBuilder::endpoint) was given.
    #[error("no endpoint: call url(..) or endpoint(..) on the builder")]
    MissingEndpoint,
    /// A duration that must be longer than zero is zero.
    #[error("the {0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// A capacity that must be at least 1 is zero.
    #[error("the {0} must be at least 1")]
    ZeroCapacity(&'static str),
    /// A certificate given to `add_root_certificate` (feature `rustls`) is not a valid DER
    /// certificate.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// [`codec`](crate::CrimsonClientBuilder::codec) names a codec that `Up` and `Down` do not
    /// both speak.
    #[error("codec \"{codec}\" is not spoken by both message types (both speak: {spoken})")]
    UnknownCodec {
        /// The codec asked for.
        codec: String,
        /// What both types speak.
        spoken: String,
    },
}

/// Whether a server that refused the upgrade with `status` would refuse the next attempt the
/// same way: a client error (4xx: 400 Bad Request, 401 Unauthorized, 403 Forbidden, 404 Not
/// Found, ...) except 408 Request Timeout and 429 Too Many Requests, which mean "not now".
/// Anything else (5xx, 408, 429, and 3xx, which is not followed) is worth retrying.
pub(crate) fn is_permanent_rejection(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        assert_eq!(
            SendError::Full(8).to_string(),
            "the outbox is full (8 messages wait for the connection)"
        );
        assert_eq!(
            SendError::Closed.to_string(),
            "the client is closed: call connect() before sending"
        );
        assert_eq!(
            DisconnectError::InvalidCode(CloseCode::ABNORMAL).to_string(),
            "close code 1006 may not be sent: use 1000, 1001, 1008, 1011, or 3000 to 4999"
        );
        let gave_up = ConnectError::GaveUp(Arc::new(ClientError::RetriesExhausted(3)));
        assert_eq!(
            gave_up.to_string(),
            "could not connect: gave up after 3 reconnect attempts"
        );
        assert_eq!(
            ClientError::Rejected {
                url: "ws://h/chat".into(),
                status: 401,
                body: String::new(),
            }
            .to_string(),
            "ws://h/chat refused the WebSocket upgrade with HTTP 401"
        );
        assert_eq!(
            ClientError::Rejected {
                url: "ws://h/chat".into(),
                status: 400,
                body: "no such codec".into(),
            }
            .to_string(),
            "ws://h/chat refused the WebSocket upgrade with HTTP 400: no such codec"
        );
    }
}
