//! [`CrimsonClient`]: the handle users hold, and the state it shares with its connection task.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crimson_core::close::truncate_reason;
use crimson_core::{CloseCode, CrimsonMessage, CrimsonRequest};
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::error::{ConnectError, DisconnectError, ReceiveError, SendError};
use crate::event::{ClientEvent, Subscription};
use crate::outbox::{Item, ItemKind};
use crate::request::{RequestError, Requests};
use crate::shared::{ClientState, Run, RunEnd};
use crate::state::ConnectionState;
use crate::supervisor;

/// A typed WebSocket client that sends `Up` and receives `Down` — the same type parameters as
/// the server route's `CrimsonSession<Up, Down>` — and reconnects by itself.
///
/// Build one with [`builder`](Self::builder), start it with [`connect`](Self::connect). See
/// the [crate docs](crate) for a worked example and the delivery guarantees.
///
/// Cloning is cheap and shares the client. When the last clone is dropped the client closes
/// its connection (1001, "client dropped") and its task ends; subscriptions then end too.
pub struct CrimsonClient<Up, Down> {
    handle: Arc<Handle<Down>>,
    _up: PhantomData<fn(Up)>,
}

impl<Up, Down> Clone for CrimsonClient<Up, Down> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            _up: PhantomData,
        }
    }
}

impl<Up, Down> fmt::Debug for CrimsonClient<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("CrimsonClient")
            .field("up", &std::any::type_name::<Up>())
            .field("down", &std::any::type_name::<Down>())
            .field("state", &*shared.state.borrow())
            .field("queued", &shared.outbox.len())
            .field("config", &shared.config)
            .finish_non_exhaustive()
    }
}

/// The user-facing owner: dropping the last one stops the connection task.
struct Handle<Down> {
    shared: Arc<ClientState<Down>>,
}

impl<Down> Drop for Handle<Down> {
    fn drop(&mut self) {
        self.shared
            .request_stop(CloseCode::GOING_AWAY, "client dropped");
    }
}

impl<Up, Down> CrimsonClient<Up, Down>
where
    Up: CrimsonMessage,
    Down: CrimsonMessage + Clone,
{
    pub(crate) fn from_config(config: Config) -> Self {
        let shared = ClientState::new(config);
        Self {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
            _up: PhantomData,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ClientState<Down>> {
        &self.handle.shared
    }

    /// Starts connecting, now, and returns a future that resolves when the first connection
    /// is made.
    ///
    /// The client runs in its own task from this call on: awaiting the returned
    /// [`Connecting`] is optional (`client.connect();` alone starts it) and dropping it stops
    /// nothing. It resolves to `Ok(())` once the client is connected, or to an error when the
    /// client closes first: the retry policy gave up ([`ConnectError::GaveUp`] with the last
    /// error), or [`disconnect`](Self::disconnect) was called. With a retry policy that never
    /// gives up it waits for as long as the server is unreachable: wrap it in
    /// [`tokio::time::timeout`] to bound the wait.
    ///
    /// Calling it while the client is already connecting, connected or retrying starts
    /// nothing new and waits for the same connection. It must be called inside a Tokio
    /// runtime ([`ConnectError::NoRuntime`] otherwise).
    pub fn connect(&self) -> Connecting {
        let started = self.shared().start();
        Connecting {
            inner: Box::pin(async move {
                let (mut state, mut done) = started?;
                tokio::select! {
                    biased;
                    connected = state.wait_for(ConnectionState::is_connected) => {
                        if connected.is_ok() {
                            return Ok(());
                        }
                    }
                    _ = done.wait_for(Option::is_some) => {}
                }
                let end = done.borrow().clone();
                match end {
                    Some(RunEnd {
                        connected: true, ..
                    }) => Ok(()),
                    Some(RunEnd {
                        error: Some(err), ..
                    }) => Err(ConnectError::GaveUp(err)),
                    _ => Err(ConnectError::Disconnected),
                }
            }),
        }
    }

    /// Closes the connection with `code` and `reason` and stops reconnecting; resolves once
    /// the client is [`Closed`](ConnectionState::Closed).
    ///
    /// When connected, what is already in the outbox is written first (a write in progress,
    /// even one stalled on a server that stopped reading, is carried on), then a close frame,
    /// within the [`close_timeout`](crate::CrimsonClientBuilder::close_timeout); then the server's
    /// answer is awaited for up to the close timeout again. What could not be written in time
    /// is discarded, and no answer is awaited when the close frame could not be sent. When
    /// connecting or retrying, the attempt is abandoned. Either way, messages that were never
    /// written are counted and reported as [`ClientError::Discarded`](crate::ClientError::Discarded) (see the
    /// [crate docs](crate#delivery)). The reason is cut to 123 bytes. Disconnecting a closed
    /// client does nothing. A later [`connect`](Self::connect) starts again.
    ///
    /// Fails only for a code a close frame may not carry (1005, 1006, 1015, or outside
    /// 1000–4999).
    pub async fn disconnect(&self, code: CloseCode, reason: &str) -> Result<(), DisconnectError> {
        if !code.is_sendable() {
            return Err(DisconnectError::InvalidCode(code));
        }
        if let Some(mut done) = self.shared().request_stop(code, &truncate_reason(reason)) {
            let _ = done.wait_for(Option::is_some).await;
        }
        Ok(())
    }

    /// Queues `message` for the server; never waits.
    ///
    /// `Ok` means the message is in the outbox: it is written to a connection in order, on
    /// this one or, if the client is connecting or retrying or this connection ends first, on
    /// the next one; or, if the client closes before that, it is counted as
    /// [`discarded`](Self::discarded) and reported. It fails when the client is
    /// [`Closed`](ConnectionState::Closed), when the outbox is full, or when the message does
    /// not encode. See the [crate docs](crate#delivery) for exactly what is and is not
    /// guaranteed.
    pub fn send(&self, message: Up) -> Result<(), SendError> {
        let payload = message.encode_in(self.shared().config.codec.up)?;
        self.shared().outbox.push(payload)
    }

    /// Asks the server `request` and waits at most `timeout` for its answer, of the request
    /// type's `Response` type (`docs/protocol.md`, Crimson protocol). The server's handler
    /// answers it (`recv_incoming` and `Request::respond` on a server whose config turns the
    /// protocol on).
    ///
    /// A request is never sent twice behind your back: it fails with
    /// [`RequestError::Disconnected`] when the client is not connected, and when the
    /// connection ends before the answer (the server may or may not have had it). Use
    /// [`request_idempotent`](Self::request_idempotent) for one that may be sent again.
    pub async fn request(
        &self,
        request: Up,
        timeout: Duration,
    ) -> Result<Up::Response, RequestError>
    where
        Up: CrimsonRequest,
    {
        self.ask(request, timeout, false).await
    }

    /// [`request`](Self::request) for a request that may safely reach the server more than
    /// once: asked while disconnected, it waits in the outbox for the next connection; cut
    /// off by a lost connection, it is sent again on the next one. Within `timeout` in all.
    pub async fn request_idempotent(
        &self,
        request: Up,
        timeout: Duration,
    ) -> Result<Up::Response, RequestError>
    where
        Up: CrimsonRequest,
    {
        self.ask(request, timeout, true).await
    }

    async fn ask(
        &self,
        request: Up,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<Up::Response, RequestError>
    where
        Up: CrimsonRequest,
    {
        let shared = self.shared();
        let codec = &shared.config.codec;
        let connected = *shared.state.borrow() == ConnectionState::Connected;
        if !idempotent {
            if !connected {
                return Err(RequestError::Disconnected);
            }
            if !shared.framed.load(Ordering::Acquire) {
                return Err(RequestError::NoProtocol);
            }
        }
        let body = request.encode_in(codec.up)?;
        let (id, answer) = shared.requests.open(idempotent.then(|| body.clone()))?;
        // Forgets the request however this ends early (an error, a timeout, a dropped future).
        let _forget = Forget(&shared.requests, id);
        shared.outbox.push_item(
            Item {
                payload: body,
                kind: ItemKind::Request(id),
            },
            false,
        )?;
        let body = match tokio::time::timeout(timeout, answer).await {
            Err(_) => return Err(RequestError::Timeout(timeout)),
            Ok(Err(_)) => return Err(RequestError::Disconnected),
            Ok(Ok(answer)) => answer?,
        };
        let index = crimson_core::codec_index::<Up::Response>(codec.token);
        Up::Response::decode_in(body.as_ref(), index).map_err(RequestError::Decode)
    }

    /// How many of this client's requests wait for answers.
    pub fn open_requests(&self) -> usize {
        self.shared().requests.len()
    }

    /// The next incoming message, waiting at most `timeout`.
    ///
    /// It reads the client's own subscription, made when the client was built, so a message
    /// that arrives between two calls is not missed. If more than the
    /// [`incoming_queue`](crate::CrimsonClientBuilder::incoming_queue) arrive between calls the
    /// next call fails with [`ReceiveError::Lagged`] (how many were skipped) and the one after
    /// returns the oldest message still held. Calls from several tasks take turns. Use
    /// [`incoming`](Self::incoming) for a stream, or for several consumers.
    pub async fn receive(&self, timeout: Duration) -> Result<Down, ReceiveError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut receiver = tokio::time::timeout_at(deadline, self.shared().receiver.lock())
            .await
            .map_err(|_| ReceiveError::Timeout(timeout))?;
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                Err(ReceiveError::Lagged(missed))
            }
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                Err(ReceiveError::Timeout(timeout))
            }
        }
    }

    /// A new stream of every message that arrives from now on, across reconnects.
    ///
    /// Any number of subscribers may exist; each gets every message. One that falls more than
    /// [`incoming_queue`](crate::CrimsonClientBuilder::incoming_queue) behind gets
    /// `Err(Lagged(n))` and goes on (see [`Subscription`]); a slow subscriber never slows the
    /// connection. Messages that do not decode are not in it: they are skipped and reported
    /// ([`ClientError::Decode`](crate::ClientError::Decode)).
    pub fn incoming(&self) -> Subscription<Down> {
        Subscription::new(self.shared().incoming.subscribe())
    }

    /// A new stream of everything that happens from now on: state changes, connections,
    /// closes and errors, in order (see [`ClientEvent`]).
    pub fn events(&self) -> Subscription<ClientEvent> {
        Subscription::new(self.shared().events.subscribe())
    }

    /// The connection state, as a watch that always holds the latest one.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared().state.subscribe()
    }

    /// How many messages wait in the outbox: accepted by [`send`](Self::send) and not yet
    /// written to a connection, including those the writer has taken but the connection has
    /// not (a write in progress or stalled).
    pub fn queued(&self) -> usize {
        self.shared().outbox.len()
    }

    /// Where the client stands in each stream it has had publications of (Crimson
    /// protocol only): after a reconnect it resumes from these by itself, so that the
    /// application gets what it missed, or a [`ClientEvent::NotRecovered`].
    ///
    /// [`ClientEvent::NotRecovered`]: crate::ClientEvent::NotRecovered
    pub fn positions(&self) -> Vec<crimson_core::protocol::Position> {
        self.shared().recovery.positions()
    }

    /// The streams whose missed publications could not be recovered after the last
    /// reconnect, and why (the state behind each [`ClientEvent::NotRecovered`]): a stream
    /// leaves the list when a later reconnect recovers it. Empty while nothing was missed.
    ///
    /// [`ClientEvent::NotRecovered`]: crate::ClientEvent::NotRecovered
    pub fn not_recovered(&self) -> Vec<(String, String)> {
        self.shared()
            .not_recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(stream, reason)| (stream.clone(), reason.clone()))
            .collect()
    }

    /// How many incoming messages were skipped because they did not decode.
    pub fn skipped(&self) -> u64 {
        self.shared().skipped.load(Ordering::Relaxed)
    }

    /// How many messages [`send`](Self::send) accepted were discarded because the client closed
    /// before it could write them to a connection (see the [crate docs](crate#delivery)).
    pub fn discarded(&self) -> u64 {
        self.shared().discarded.load(Ordering::Relaxed)
    }
}

/// The future [`CrimsonClient::connect`] returns: resolves when the first connection is made.
///
/// The connection was started when `connect` was called; awaiting this only waits for the
/// outcome, and dropping it stops nothing.
pub struct Connecting {
    inner: BoxFuture<'static, Result<(), ConnectError>>,
}

impl Future for Connecting {
    type Output = Result<(), ConnectError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for Connecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connecting").finish_non_exhaustive()
    }
}

type Started = (
    watch::Receiver<ConnectionState>,
    watch::Receiver<Option<RunEnd>>,
);

impl<Down: CrimsonMessage + Clone> ClientState<Down> {
    /// Starts the connection task unless it runs; returns watches for its state and its end.
    fn start(self: &Arc<Self>) -> Result<Started, ConnectError> {
        let mut slot = self.run_slot();
        if let Some(run) = slot.as_ref() {
            return Ok((self.state.subscribe(), run.done.clone()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let (stop_tx, stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(None);
        self.outbox.open();
        self.set_state(ConnectionState::Connecting);
        *slot = Some(Run {
            stop: stop_tx,
            done: done_rx.clone(),
        });
        drop(slot);
        runtime.spawn(supervisor::run(self.clone(), stop_rx, done_tx));
        Ok((self.state.subscribe(), done_rx))
    }
}

/// Forgets a pending request when dropped (a no-op once it was answered).
struct Forget<'a>(&'a Requests, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Subscription;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_cross_tasks() {
        send_sync::<CrimsonClient<String, String>>();
        send::<Connecting>();
        send::<Subscription<String>>();
        send::<Subscription<ClientEvent>>();
    }

    #[test]
    fn debug_shows_types_and_state() {
        let client = CrimsonClient::<String, crimson_core::Bytes>::builder()
            .url("ws://127.0.0.1:1/x?token=secret")
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(debug.contains("up: \"alloc::string::String\""), "{debug}");
        assert!(debug.contains("state: Closed"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn connect_outside_a_runtime_says_so() {
        let client = CrimsonClient::<String, String>::builder()
            .url("ws://127.0.0.1:1/x")
            .build()
            .unwrap();
        let err = futures_util::FutureExt::now_or_never(client.connect())
            .expect("ready at once")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "connect() needs a Tokio runtime: call it from inside one"
        );
        assert!(client.state().borrow().is_closed());
    }
}
