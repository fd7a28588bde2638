//! [`CrimsonSession`]: one typed WebSocket conversation, as its handler sees it.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use crimson_core::cluster::Cluster;
use crimson_core::session::{Outgoing, Queued, SessionId, SessionInfo};
use crimson_core::{close, protocol, CloseCode, CloseRecord, CrimsonMessage, CrimsonRequest};
use futures_util::Stream;
use http::HeaderMap;

use crate::engine::incoming;
use crate::engine::outbox::{EndRequest, OutboxSender};
use crate::error::SessionSendError;
use crate::request::{self, Incoming, RequestError};

/// State shared by a session's handler, its sender clones and its task.
pub(crate) struct SessionState {
    pub(crate) info: SessionInfo,
    pub(crate) headers: Headers,
    pub(crate) outbox: OutboxSender,
    /// How the session ended, set once its ending has a cause.
    pub(crate) record: OnceLock<CloseRecord>,
    pub(crate) skipped: AtomicU64,
    /// The codec the connection chose.
    pub(crate) codec: crate::codecs::Chosen,
    /// The frame kind of that codec (of `Down`'s).
    pub(crate) frame: crimson_core::FrameKind,
    /// Requests to the client that wait for answers.
    pub(crate) pending: request::Pending,
}

/// The upgrade request's headers, kept as one compact copy and made a [`HeaderMap`] the first
/// time they are asked for: most sessions never ask, and a `HeaderMap` costs several times
/// the headers' own bytes on every idle connection.
///
/// A copy either way: hyper's header values share its 16 KiB read buffer, which would
/// otherwise stay alive as long as the session (measured: 16 KiB per idle connection).
pub(crate) struct Headers {
    /// Per header: a sensitivity byte, the name's and the value's lengths (u16, native
    /// order), the name, the value.
    packed: Box<[u8]>,
    map: OnceLock<HeaderMap>,
}

impl Headers {
    pub(crate) fn new(headers: &HeaderMap) -> Self {
        let mut packed = Vec::with_capacity(
            headers
                .iter()
                .map(|(name, value)| 5 + name.as_str().len() + value.len())
                .sum(),
        );
        for (name, value) in headers {
            let (name, bytes) = (name.as_str().as_bytes(), value.as_bytes());
            // A name or value over 64 KiB (hyper's buffer allows one) does not fit the packed
            // form: the headers are then kept as a map straight away.
            let (Ok(name_len), Ok(value_len)) =
                (u16::try_from(name.len()), u16::try_from(bytes.len()))
            else {
                return Self {
                    packed: Box::default(),
                    map: OnceLock::from(detach(headers)),
                };
            };
            packed.push(u8::from(value.is_sensitive()));
            packed.extend_from_slice(&name_len.to_ne_bytes());
            packed.extend_from_slice(&value_len.to_ne_bytes());
            packed.extend_from_slice(name);
            packed.extend_from_slice(bytes);
        }
        Self {
            packed: packed.into_boxed_slice(),
            map: OnceLock::new(),
        }
    }

    pub(crate) fn get(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::new();
            let mut rest = &self.packed[..];
            while let [sensitive, a, b, c, d, tail @ ..] = rest {
                let name_len = usize::from(u16::from_ne_bytes([*a, *b]));
                let value_len = usize::from(u16::from_ne_bytes([*c, *d]));
                let (name, tail) = tail.split_at(name_len);
                let (value, tail) = tail.split_at(value_len);
                rest = tail;
                // Both were valid when packed.
                if let (Ok(name), Ok(mut value)) = (
                    http::HeaderName::from_bytes(name),
                    http::HeaderValue::from_bytes(value),
                ) {
                    value.set_sensitive(*sensitive != 0);
                    map.append(name, value);
                }
            }
            map
        })
    }
}

/// A copy of `headers` that shares no memory with the connection's read buffer.
fn detach(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut detached =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        detached.set_sensitive(value.is_sensitive());
        copy.append(name.clone(), detached);
    }
    copy
}

/// One typed WebSocket conversation: receive `Up` from the client, send `Down` to it.
///
/// A handler gets one per connection. It is a [`Stream`] of `Up`; [`send`](Self::send) queues
/// a `Down` on the session's bounded outgoing queue, which the session's writer drains and flushes
/// in batches. [`split`](Self::split) gives a cloneable [`SessionSender`] for other tasks.
///
/// When the handler returns, the session closes with 1000 after sending what is queued; if it
/// panics, with 1011.
pub struct CrimsonSession<Up, Down> {
    sender: SessionSender<Down>,
    receiver: SessionReceiver<Up>,
}

impl<Up, Down> fmt::Debug for CrimsonSession<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrimsonSession")
            .field("id", &self.sender.shared.info.id)
            .field("path", &self.sender.shared.info.path)
            .field("config", &self.sender.shared.info.config)
            .finish_non_exhaustive()
    }
}

impl<Up: CrimsonMessage, Down: CrimsonMessage> CrimsonSession<Up, Down> {
    pub(crate) fn new(
        shared: Arc<SessionState>,
        incoming: incoming::Receiver<crate::request::Incoming<Up>>,
        cluster: Cluster<Down>,
    ) -> Self {
        Self {
            sender: SessionSender {
                shared: shared.clone(),
                cluster,
                _down: PhantomData,
            },
            receiver: SessionReceiver { shared, incoming },
        }
    }

    /// The session's id, unique across the cluster.
    pub fn id(&self) -> SessionId {
        self.sender.id()
    }

    /// The session's facts: id, connect time, remote address, path, config name.
    pub fn info(&self) -> &SessionInfo {
        self.sender.info()
    }

    /// When the WebSocket upgrade completed.
    pub fn connected_at(&self) -> SystemTime {
        self.sender.info().connected_at
    }

    /// The client's address, when the server was started with axum's `ConnectInfo`
    /// (`into_make_service_with_connect_info::<SocketAddr>()`).
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.sender.info().remote_addr
    }

    /// The headers of the upgrade request.
    pub fn headers(&self) -> &HeaderMap {
        self.sender.shared.headers.get()
    }

    /// The cluster this session belongs to: broadcast to every session, or send to one by id.
    pub fn cluster(&self) -> &Cluster<Down> {
        &self.sender.cluster
    }

    /// Queues a message, waiting while the outgoing queue is full.
    pub async fn send(&self, message: Down) -> Result<(), SessionSendError> {
        self.sender.send(message).await
    }

    /// Queues a message now, applying the config's overflow policy if the queue is full.
    pub fn try_send(&self, message: Down) -> Result<Queued, SessionSendError> {
        self.sender.try_send(message)
    }

    /// The next message from the client; `None` once the session is closing or closed.
    pub async fn recv(&mut self) -> Option<Up> {
        self.receiver.recv().await
    }

    /// The codec the client chose with `Sec-WebSocket-Protocol` (`"cbor"`, ...), or `None`
    /// when it chose none and gets each type's default (`docs/protocol.md`).
    pub fn codec(&self) -> Option<&'static str> {
        self.sender.shared.codec.token
    }

    /// Whether the client speaks the Crimson protocol, `crimson.v1` (requests both ways).
    pub fn speaks_protocol(&self) -> bool {
        self.sender.shared.codec.framed
    }

    /// Asks the client `message` and waits at most `timeout` for its answer: see
    /// [`SessionSender::request`].
    pub async fn request(
        &self,
        message: Down,
        timeout: Duration,
    ) -> Result<Down::Response, RequestError>
    where
        Down: CrimsonRequest,
    {
        self.sender.request(message, timeout).await
    }

    /// The next message or request from the client (requests need the Crimson protocol:
    /// [`CrimsonConfig::protocol`](crate::CrimsonConfig::protocol)); `None` once the session
    /// is closing or closed. Answer a request with [`Request::respond`](crate::Request::respond).
    pub async fn recv_incoming(&mut self) -> Option<Incoming<Up>> {
        self.receiver.recv_incoming().await
    }

    /// The next message, waiting at most `timeout`: `Err` when the time ran out.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Up>, RecvTimeout> {
        self.receiver.recv_timeout(timeout).await
    }

    /// Waits until every message queued so far is written to the socket (or the session
    /// closed).
    pub async fn flush(&self) {
        self.sender.flush().await;
    }

    /// Closes the session after the queued messages are sent: a close frame with `code` and
    /// `reason` (cut to 123 bytes). Later sends fail.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.sender.close(code, reason);
    }

    /// Drops the connection at once, without a close frame, discarding queued messages.
    pub fn terminate(&self) {
        self.sender.terminate();
    }

    /// How the session ended, once it has.
    pub fn close_record(&self) -> Option<CloseRecord> {
        self.sender.close_record()
    }

    /// Messages that did not decode and were skipped ([`DecodeErrorPolicy::Skip`]).
    ///
    /// [`DecodeErrorPolicy::Skip`]: crate::DecodeErrorPolicy::Skip
    pub fn skipped(&self) -> u64 {
        self.sender.shared.skipped.load(Ordering::Relaxed)
    }

    /// Splits the session into a cloneable sender and the receiver.
    pub fn split(self) -> (SessionSender<Down>, SessionReceiver<Up>) {
        (self.sender, self.receiver)
    }
}

impl<Up, Down> Stream for CrimsonSession<Up, Down> {
    type Item = Up;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Up>> {
        std::pin::Pin::new(&mut self.receiver).poll_next(cx)
    }
}

/// The sending half of a session: cloneable, usable from any task.
pub struct SessionSender<Down> {
    shared: Arc<SessionState>,
    cluster: Cluster<Down>,
    _down: PhantomData<fn(Down)>,
}

impl<Down> Clone for SessionSender<Down> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            cluster: self.cluster.clone(),
            _down: PhantomData,
        }
    }
}

impl<Down> fmt::Debug for SessionSender<Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSender")
            .field("id", &self.shared.info.id)
            .field("outbox", &self.shared.outbox)
            .finish()
    }
}

impl<Down: CrimsonMessage> SessionSender<Down> {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.shared.info.id
    }

    /// The session's facts.
    pub fn info(&self) -> &SessionInfo {
        &self.shared.info
    }

    /// The cluster this session belongs to.
    pub fn cluster(&self) -> &Cluster<Down> {
        &self.cluster
    }

    /// Queues a message, waiting while the outgoing queue is full.
    pub async fn send(&self, message: Down) -> Result<(), SessionSendError> {
        let payload = self.encode(&message)?;
        self.shared.outbox.push(Outgoing::Single(payload)).await?;
        Ok(())
    }

    /// Queues a message now, applying the overflow policy if the queue is full.
    pub fn try_send(&self, message: Down) -> Result<Queued, SessionSendError> {
        let payload = self.encode(&message)?;
        Ok(self.shared.outbox.try_push(Outgoing::Single(payload))?)
    }

    /// `message` as this connection takes it: in its codec, behind the protocol's empty
    /// header line if it speaks the protocol.
    fn encode(&self, message: &Down) -> Result<crimson_core::Payload, SessionSendError> {
        let payload = message.encode_in(self.shared.codec.down)?;
        Ok(if self.shared.codec.framed {
            protocol::write(protocol::Kind::Message, &payload)
        } else {
            payload
        })
    }

    /// Waits until every message queued so far is written to the socket.
    pub async fn flush(&self) {
        self.shared.outbox.flushed().await;
    }

    /// Closes the session after the queued messages are sent: a close frame with `code` and
    /// `reason` (cut to 123 bytes). Later sends fail.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.shared.outbox.request_end(EndRequest::Close(
            code,
            close::truncate_reason(reason).into_owned(),
        ));
    }

    /// Drops the connection at once, discarding queued messages.
    pub fn terminate(&self) {
        self.shared.outbox.request_end(EndRequest::Terminate);
    }

    /// Whether the session has stopped accepting messages.
    pub fn is_closed(&self) -> bool {
        self.shared.outbox.is_closed()
    }

    /// How the session ended (or is ending), once the cause is known.
    pub fn close_record(&self) -> Option<CloseRecord> {
        self.shared.record.get().cloned()
    }
}

impl<Down: CrimsonRequest> SessionSender<Down> {
    /// Asks the client `message` and waits at most `timeout` for its answer, of the request
    /// type's `Response` type. Needs the Crimson protocol (the client asked for
    /// `crimson.v1.*` and [`CrimsonConfig::protocol`](crate::CrimsonConfig::protocol) is on);
    /// at most [`max_open_requests`](crate::CrimsonConfig::max_open_requests) wait at once.
    pub async fn request(
        &self,
        message: Down,
        timeout: Duration,
    ) -> Result<Down::Response, RequestError> {
        let shared = &self.shared;
        if !shared.codec.framed {
            return Err(RequestError::NoProtocol);
        }
        let (id, answer) = shared.pending.open().map_err(RequestError::TooManyOpen)?;
        // Forgets the request however this ends (an error, a timeout, a dropped future).
        let forget = Forget(&shared.pending, id);
        let body = message
            .encode_in(shared.codec.down)
            .map_err(SessionSendError::from)?;
        let frame = protocol::write(protocol::Kind::Request { id }, &body);
        shared
            .outbox
            .push(Outgoing::Single(frame))
            .await
            .map_err(SessionSendError::from)?;
        let answer = match tokio::time::timeout(timeout, answer).await {
            Err(_) => return Err(RequestError::Timeout(timeout)),
            Ok(Err(_)) => return Err(RequestError::Disconnected),
            Ok(Ok(answer)) => answer,
        };
        // Answered: the table no longer holds it, forgetting is a no-op.
        drop(forget);
        match answer {
            Ok(body) => {
                let codec = crimson_core::codec_index::<Down::Response>(shared.codec.token);
                Down::Response::decode_in(body.as_ref(), codec).map_err(RequestError::Decode)
            }
            Err((code, message)) => Err(RequestError::Rejected { code, message }),
        }
    }
}

/// Forgets a pending request when dropped.
struct Forget<'a>(&'a request::Pending, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// The receiving half of a session.
pub struct SessionReceiver<Up> {
    shared: Arc<SessionState>,
    incoming: incoming::Receiver<crate::request::Incoming<Up>>,
}

impl<Up> fmt::Debug for SessionReceiver<Up> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionReceiver")
            .field("id", &self.shared.info.id)
            .field("waiting", &self.incoming.len())
            .finish()
    }
}

/// [`CrimsonSession::recv_timeout`] ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no message arrived in time")]
pub struct RecvTimeout;

impl<Up> SessionReceiver<Up> {
    /// The next message; `None` once the session is closing or closed. A request (Crimson
    /// protocol) comes as its value, answered for you with an error (`500`, "not answered"):
    /// read with [`recv_incoming`](Self::recv_incoming) to answer requests.
    pub async fn recv(&mut self) -> Option<Up> {
        self.incoming.recv().await.map(Incoming::into_value)
    }

    /// The next message or request; `None` once the session is closing or closed.
    pub async fn recv_incoming(&mut self) -> Option<Incoming<Up>> {
        self.incoming.recv().await
    }

    /// The next message, waiting at most `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Up>, RecvTimeout> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| RecvTimeout)
    }
}

impl<Up> Stream for SessionReceiver<Up> {
    type Item = Up;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Up>> {
        self.incoming
            .poll_recv(cx)
            .map(|next| next.map(Incoming::into_value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_back_as_they_went_in() {
        let mut original = HeaderMap::new();
        original.insert("host", "example.com".parse().unwrap());
        original.append("x-many", "one".parse().unwrap());
        original.append("x-many", "two".parse().unwrap());
        let mut secret = http::HeaderValue::from_static("Bearer abc");
        secret.set_sensitive(true);
        original.insert("authorization", secret);
        original.insert("x-empty", http::HeaderValue::from_static(""));
        original.insert(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );

        let headers = Headers::new(&original);
        let copy = headers.get();
        assert_eq!(copy, &original);
        assert!(copy["authorization"].is_sensitive());
        assert!(!copy["host"].is_sensitive());
        assert_eq!(
            copy.get_all("x-many").iter().collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert!(std::ptr::eq(headers.get(), copy), "made once");
    }

    #[test]
    fn a_value_over_64_kib_is_kept_too() {
        let mut original = HeaderMap::new();
        original.insert("host", "example.com".parse().unwrap());
        let long = "x".repeat(70 << 10);
        original.insert("x-long", long.parse().unwrap());
        assert_eq!(Headers::new(&original).get(), &original);
    }

    #[test]
    fn no_headers() {
        assert!(Headers::new(&HeaderMap::new()).get().is_empty());
    }
}
