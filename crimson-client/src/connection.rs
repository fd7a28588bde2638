//! One open connection, driven by one future: it reads and delivers what arrives, hands the
//! outbox to the connection's write queue, keeps the heartbeat, and closes, until the
//! connection ends.
//!
//! It sees the connection only as a [`Transport`]: `dial` gives it Crimson's own
//! `Connection` over TCP or TLS, and the tests below an in-memory one with no socket.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crimson_core::protocol::{self, Kind};
use crimson_core::transport::{Incoming, ReadError, Transport};
use crimson_core::{CloseCode, CrimsonMessage, PayloadRef};

use crate::outbox::{Item, ItemKind};
use crate::recovery::Out;
use crate::request::{Refusal, RequestError};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::error::ClientError;
use crate::shared::{ClientState, Stop};
use crimson_core::ClosedBy;

/// How many bytes of frames may wait for the socket before the outbox waits.
const MAX_WRITE_BUFFER: usize = 64 << 10;
/// How long, after the server broke the protocol, the client may still send what the
/// application queued in answer to what came before, and its close frame.
const PROTOCOL_ERROR_GRACE: Duration = Duration::from_millis(250);

/// How a connection ended.
pub(crate) struct Ended {
    pub(crate) code: CloseCode,
    pub(crate) reason: String,
    pub(crate) by: ClosedBy,
    /// What went wrong, when something did.
    pub(crate) error: Option<ClientError>,
}

impl Ended {
    fn failure(reason: impl Into<String>, error: ClientError) -> Self {
        Self {
            code: CloseCode::ABNORMAL,
            reason: reason.into(),
            by: ClosedBy::Failure,
            error: Some(error),
        }
    }
}

/// Runs an open connection until it ends.
pub(crate) async fn run<Down: CrimsonMessage + Clone, T: Transport>(
    conn: T,
    framed: bool,
    shared: &Arc<ClientState<Down>>,
    stop: watch::Receiver<Option<Stop>>,
) -> Ended {
    let now = Instant::now();
    let heartbeat = shared.config.heartbeat;
    let mut driver = Driver {
        conn: Some(conn),
        framed,
        shared,
        stop: Some(Box::pin(stop_requested(stop))),
        stopping: None,
        outcome: None,
        close_queued: false,
        close_written: false,
        reply_only: false,
        read_done: false,
        deadline: None,
        timer: Box::pin(tokio::time::sleep_until(now + Duration::from_secs(86_400))),
        armed: None,
        next_ping: heartbeat.map(|h| now + h.interval),
        ping_sent: None,
        handed: VecDeque::new(),
        failing: None,
    };
    let ended = poll_fn(|cx| driver.poll(cx)).await;
    shared
        .framed
        .store(false, std::sync::atomic::Ordering::Release);
    // Messages this connection took but never began to write go out on the next one; so do
    // requests, which are then known not to have left.
    for item in &driver.handed {
        if let ItemKind::Request(id) = item.kind {
            shared.requests.mark_sent(id, false);
        }
    }
    let requeued = shared.outbox.requeue(driver.handed.drain(..));
    shared.recovery.connection_lost();
    // Requests that may have reached the server: sent again if idempotent, failed if not.
    shared.requests.connection_lost(&shared.outbox);
    if requeued > 0 {
        tracing::debug!(
            requeued,
            "messages never written were put back in the outbox"
        );
    }
    ended
}

/// Resolves once a stop was requested, with the request (or the one the client makes when
/// its last handle is gone).
async fn stop_requested(mut stop: watch::Receiver<Option<Stop>>) -> Stop {
    let requested = stop
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|stop| stop.clone());
    requested.unwrap_or_else(|| Stop {
        code: CloseCode::GOING_AWAY,
        reason: "client dropped".into(),
    })
}

struct Driver<'a, Down, T> {
    conn: Option<T>,
    /// The connection speaks the Crimson protocol (`crimson.v1`).
    framed: bool,
    shared: &'a Arc<ClientState<Down>>,
    stop: Option<BoxFuture<'static, Stop>>,
    /// `disconnect()` (or the last handle dropped): write the outbox, then close.
    stopping: Option<Stop>,
    outcome: Option<Ended>,
    close_queued: bool,
    close_written: bool,
    /// The close handshake is ours to finish: once our close frame is written, we are done
    /// (the server closed first, or broke the protocol).
    reply_only: bool,
    read_done: bool,
    /// When the current close step gives up.
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    next_ping: Option<Instant>,
    ping_sent: Option<Instant>,
    /// Messages handed to the connection whose first byte is not written yet, oldest first.
    handed: VecDeque<Item>,
    /// The server broke the protocol: this close goes out at that time.
    failing: Option<(Stop, Instant)>,
}

impl<Down: CrimsonMessage + Clone, T: Transport> Driver<'_, Down, T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        loop {
            let now = Instant::now();
            let mut progress = self.poll_stop(cx, now);
            progress |= self.read(cx, now);
            progress |= self.write(cx, now);
            progress |= self.timers(cx, now);
            if self.conn.is_none() {
                return Poll::Ready(self.outcome.take().unwrap_or_else(|| {
                    Ended::failure(
                        "connection dropped",
                        ClientError::Connection(
                            "the server dropped the connection without a close frame".into(),
                        ),
                    )
                }));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn end(&mut self, outcome: Ended) {
        self.outcome.get_or_insert(outcome);
        self.conn = None;
    }

    fn poll_stop(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(stop) = self.stop.as_mut() else {
            return false;
        };
        let Poll::Ready(request) = stop.as_mut().poll(cx) else {
            return false;
        };
        self.stop = None;
        if self.outcome.is_none() {
            // What is queued goes out first, then the close frame, within the close timeout.
            self.deadline = Some(now + self.shared.config.close_timeout);
            self.stopping = Some(request);
        }
        true
    }

    fn read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.read_done {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let shared = self.shared;
        let framed = self.framed;
        let mut seen = false;
        let mut closed: Option<Option<(CloseCode, String)>> = None;
        let polled = conn.poll_read(cx, usize::MAX, &mut |incoming| {
            seen = true;
            match incoming {
                Incoming::Message(payload) if framed => receive(shared, payload),
                Incoming::Message(payload) => deliver(shared, payload),
                Incoming::Ping(_) | Incoming::Pong(_) => {
                    tracing::trace!("control frame in");
                }
                Incoming::Close(frame) => {
                    closed = Some(frame.map(|(code, reason)| (code, reason.to_owned())));
                }
            }
        });
        if seen {
            self.ping_sent = None;
            if let Some(heartbeat) = shared.config.heartbeat {
                self.next_ping = Some(now + heartbeat.interval);
            }
        }
        if let Some(frame) = closed {
            self.read_done = true;
            let (code, reason) = frame.unwrap_or((CloseCode::NO_STATUS, String::new()));
            tracing::debug!(code = code.as_u16(), %reason, "the server closed");
            let reply = if code == CloseCode::NO_STATUS {
                CloseCode::NORMAL
            } else {
                code
            };
            if self.close_written {
                // It answered our close.
                let stop = self.stopping.take();
                let outcome = match stop {
                    Some(stop) => Ended {
                        code: stop.code,
                        reason: stop.reason,
                        by: ClosedBy::Client,
                        error: None,
                    },
                    None => Ended {
                        code,
                        reason,
                        by: ClosedBy::Server,
                        error: None,
                    },
                };
                self.end(outcome);
                return true;
            }
            self.outcome.get_or_insert(Ended {
                code,
                reason,
                by: ClosedBy::Server,
                error: None,
            });
            if !self.close_queued {
                conn.close(reply, "");
                self.close_queued = true;
            }
            self.reply_only = true;
            self.deadline = Some(now + self.shared.config.close_timeout);
            return true;
        }
        match polled {
            Poll::Pending => seen,
            Poll::Ready(Ok(_)) => true,
            Poll::Ready(Err(err)) => {
                self.read_done = true;
                let writable = err.writable();
                let code = err.close_code();
                let reason = read_failed(&err);
                let outcome = Ended::failure(reason.clone(), ClientError::Connection(reason));
                if writable && !self.close_queued {
                    // Tell the server why (1002, 1007, 1009), once the application has had a
                    // moment to answer the messages that came before (their answers go out
                    // first).
                    self.outcome.get_or_insert(outcome);
                    self.reply_only = true;
                    let grace = now + self.shared.config.close_timeout.min(PROTOCOL_ERROR_GRACE);
                    self.failing = Some((
                        Stop {
                            code,
                            reason: err.to_string(),
                        },
                        grace,
                    ));
                } else {
                    self.end(outcome);
                }
                true
            }
        }
    }

    fn write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut progress = false;
        if !self.close_queued {
            let outbox = &self.shared.outbox;
            let handed_over = &mut self.handed;
            while conn.queued() < MAX_WRITE_BUFFER {
                let framed = self.framed;
                let requests = &self.shared.requests;
                let handed = outbox.hand_over(cx, 64, |item| {
                    let frame = match (item.kind, framed) {
                        (ItemKind::Message, false) => item.payload.clone(),
                        (ItemKind::Message, true) => protocol::write(Kind::Message, &item.payload),
                        (ItemKind::Request(id), true) => {
                            requests.mark_sent(id, true);
                            protocol::write(Kind::Request { id }, &item.payload)
                        }
                        (ItemKind::Request(id), false) => {
                            requests.answer(id, Err(RequestError::NoProtocol));
                            return;
                        }
                        (ItemKind::Frame, true) => item.payload.clone(),
                        // An answer for a connection that is gone: its request went with it.
                        (ItemKind::Frame, false) => return,
                    };
                    tracing::trace!(kind = %frame.kind(), len = frame.len(), "frame out");
                    // Nothing is sent after our close, which is queued only below.
                    if conn.send(&frame, None).is_ok() {
                        handed_over.push_back(item);
                    }
                });
                if handed == 0 {
                    break;
                }
                progress = true;
            }
            if let Some(stop) = &self.stopping {
                if outbox.len() == 0 {
                    conn.close(stop.code, &stop.reason);
                    self.close_queued = true;
                    progress = true;
                }
            }
        }
        if !conn.is_flushed() || (self.close_queued && !self.close_written) {
            let flushed = conn.poll_flush(cx);
            for _ in 0..conn.take_begun() {
                self.handed.pop_front();
            }
            match flushed {
                Poll::Ready(Ok(())) => {
                    progress = true;
                    if self.close_queued && !self.close_written {
                        self.close_written = true;
                        if self.reply_only {
                            // Our reply (or our protocol error's close) is out: done.
                            let outcome = self.outcome.take().unwrap_or_else(|| Ended {
                                code: CloseCode::NORMAL,
                                reason: String::new(),
                                by: ClosedBy::Server,
                                error: None,
                            });
                            self.end(outcome);
                        } else {
                            // Wait for the server's answer.
                            self.deadline = Some(now + self.shared.config.close_timeout);
                        }
                    }
                }
                Poll::Ready(Err(err)) => {
                    let reason = format!("writing failed: {err}");
                    if let Some(stop) = self.stopping.take() {
                        self.outcome.get_or_insert(Ended {
                            code: stop.code,
                            reason: stop.reason,
                            by: ClosedBy::Client,
                            error: None,
                        });
                    }
                    self.end(Ended::failure(
                        reason.clone(),
                        ClientError::Connection(reason),
                    ));
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    fn timers(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        if self.failing.as_ref().is_some_and(|(_, at)| now >= *at) {
            let (stop, _) = self.failing.take().expect("checked just above");
            self.deadline = Some(now + self.shared.config.close_timeout);
            self.stopping = Some(stop);
            progress = true;
        }
        if self.deadline.is_some_and(|at| now >= at) {
            self.deadline = None;
            tracing::debug!("the close did not finish in time: dropping the connection");
            let outcome = match self.stopping.take() {
                Some(stop) => Ended {
                    code: stop.code,
                    reason: stop.reason,
                    by: ClosedBy::Client,
                    error: None,
                },
                None => Ended::failure(
                    "close timed out",
                    ClientError::Connection("the close handshake did not finish in time".into()),
                ),
            };
            self.end(outcome);
            return true;
        }
        if let (Some(heartbeat), Some(conn)) = (self.shared.config.heartbeat, self.conn.as_mut()) {
            match (self.ping_sent, self.next_ping) {
                (None, Some(due)) if now >= due && !self.close_queued => {
                    tracing::trace!("ping out");
                    conn.ping(b"");
                    self.ping_sent = Some(now);
                    progress = true;
                }
                (Some(sent), _) if now >= sent + heartbeat.timeout => {
                    tracing::debug!(timeout = ?heartbeat.timeout, "no answer to a ping: the connection is dead");
                    self.end(Ended::failure(
                        format!("no answer to a ping within {:?}", heartbeat.timeout),
                        ClientError::Heartbeat(heartbeat.timeout),
                    ));
                    return true;
                }
                _ => {}
            }
        }
        let ping = match (self.ping_sent, self.shared.config.heartbeat) {
            (Some(sent), Some(heartbeat)) => Some(sent + heartbeat.timeout),
            _ => self.next_ping,
        };
        let failing = self.failing.as_ref().map(|(_, at)| *at);
        let next = [ping, self.deadline, failing].into_iter().flatten().min();
        if next != self.armed {
            if let Some(at) = next {
                self.timer.as_mut().reset(at);
            }
            self.armed = next;
        }
        if self.armed.is_some() && self.timer.as_mut().poll(cx).is_ready() {
            self.armed = None;
            progress = true;
        }
        progress
    }
}

/// A frame of the Crimson protocol: a message is delivered, an answer ends its request, a
/// request from the server is answered (by the `on_request` hook, or for it). A frame that
/// breaks the protocol is skipped and reported.
fn receive<Down: CrimsonMessage + Clone>(shared: &ClientState<Down>, frame: PayloadRef<'_>) {
    let (kind, body) = match protocol::read(frame) {
        Ok(split) => split,
        Err(err) => {
            shared.report(ClientError::Connection(format!(
                "skipped a frame that breaks the Crimson protocol: {err}"
            )));
            return;
        }
    };
    match kind {
        Kind::Message => deliver(shared, body),
        Kind::Response { id } => {
            shared.requests.answer(id, Ok(body.to_payload()));
        }
        Kind::Error { id, code } => {
            let message = String::from_utf8_lossy(body.as_bytes()).into_owned();
            shared
                .requests
                .answer(id, Err(RequestError::Rejected { code, message }));
        }
        Kind::Publication(at) => {
            let step = shared.recovery.publication(at, body);
            apply(shared, step, body);
        }
        Kind::Subscribed(at) => {
            let step = shared.recovery.subscribed(at);
            apply(shared, step, body);
        }
        Kind::Unsubscribed { stream } => {
            let step = shared.recovery.unsubscribed(stream);
            apply(shared, step, body);
        }
        Kind::Recovered { position, count } => {
            let step = shared.recovery.recovered(position, count);
            apply(shared, step, body);
        }
        Kind::Lost { position, reason } => {
            let step = shared.recovery.lost(position, reason);
            apply(shared, step, body);
        }
        Kind::Request { id } => {
            let answer = match &shared.config.hooks.on_request {
                Some(hook) => hook(body, shared.config.codec.token),
                None => Err(Refusal::new(500, "not answered")),
            };
            let frame = match answer {
                Ok(response) => protocol::write(Kind::Response { id }, &response),
                Err(refusal) => protocol::error(id, refusal.code, &refusal.message, body.kind()),
            };
            let item = Item {
                payload: frame,
                kind: ItemKind::Frame,
            };
            // An answer may go past the outbox's capacity (to twice it): never dropped in
            // silence, but a server that floods requests and reads nothing is told no more.
            if let Err(err) = shared.outbox.push_item(item, true) {
                shared.report(ClientError::Connection(format!(
                    "could not answer the server's request {id}: {err}"
                )));
            }
        }
        _ => {
            shared.report(ClientError::Connection(
                "skipped a Crimson protocol frame of a kind this client does not know".into(),
            ));
        }
    }
}

/// Delivers what a stream's frame gives the application, then tells how its recovery went.
fn apply<Down: CrimsonMessage + Clone>(
    shared: &ClientState<Down>,
    step: crate::recovery::Step,
    body: PayloadRef<'_>,
) {
    if let Some(stream) = step.unfollowed {
        shared.unfollowed(&stream);
    }
    if let Some(gap) = step.gap {
        shared.recovery_outcome(gap);
    }
    for out in step.deliver {
        match out {
            Out::This => deliver(shared, body),
            Out::Held(held) => deliver(shared, held.as_ref()),
        }
    }
    if let Some(outcome) = step.outcome {
        shared.recovery_outcome(outcome);
    }
}

/// Decodes one incoming message and hands it to every subscriber, or skips and reports it.
fn deliver<Down: CrimsonMessage + Clone>(shared: &ClientState<Down>, payload: PayloadRef<'_>) {
    tracing::trace!(kind = %payload.kind(), len = payload.len(), "frame in");
    match Down::decode_in(payload, shared.config.codec.down) {
        // The client keeps a subscription of its own (for `receive`), so this never fails.
        Ok(message) => drop(shared.incoming.send(message)),
        Err(err) => {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            shared.report(ClientError::Decode(err));
        }
    }
}

fn read_failed(err: &ReadError) -> String {
    match err {
        ReadError::TooBig { .. } => format!("an incoming message is over the size limit: {err}"),
        ReadError::Eof => "the server dropped the connection without a close frame".into(),
        ReadError::Io(err) => format!("the connection was lost: {err}"),
        other => format!("the server broke the WebSocket protocol: {other}"),
    }
}

#[cfg(test)]
mod tests {
    //! The connection loop over an in-memory [`Transport`]: no socket, no Crimson
    //! `Connection`, so the loop depends on the seam alone.

    use std::collections::VecDeque;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use crimson_core::transport::{
        AfterClose, DeflateCache, Incoming, Negotiated, ReadError, ReadOutcome, Transport,
    };
    use crimson_core::{CloseCode, ClosedBy, Payload, PayloadRef};
    use tokio::sync::watch;

    use crate::CrimsonClient;

    /// What the fake server says, in order.
    enum Line {
        Message(&'static str),
        /// Said once the client has written `after` messages.
        CloseAfter {
            after: usize,
            code: u16,
        },
    }

    #[derive(Default)]
    struct Wire {
        /// Messages and close frames the client wrote, as text.
        written: Vec<String>,
        /// Messages the client queued since the last `take_begun`, and not yet flushed.
        unflushed: usize,
        begun: usize,
    }

    struct Scripted {
        script: VecDeque<Line>,
        wire: Arc<Mutex<Wire>>,
        reader: Option<Waker>,
    }

    impl Transport for Scripted {
        fn poll_read(
            &mut self,
            cx: &mut Context<'_>,
            _max_messages: usize,
            on: &mut dyn FnMut(Incoming<'_>),
        ) -> Poll<Result<ReadOutcome, ReadError>> {
            let written = self.wire.lock().unwrap().written.len();
            match self.script.front() {
                Some(Line::Message(text)) => {
                    on(Incoming::Message(PayloadRef::Text(text)));
                    self.script.pop_front();
                    Poll::Ready(Ok(ReadOutcome {
                        messages: 1,
                        closed: false,
                    }))
                }
                Some(Line::CloseAfter { after, code }) if written >= *after => {
                    on(Incoming::Close(Some((CloseCode::from_u16(*code), "done"))));
                    self.script.pop_front();
                    Poll::Ready(Ok(ReadOutcome {
                        messages: 0,
                        closed: true,
                    }))
                }
                _ => {
                    self.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }

        fn send(&mut self, payload: &Payload, _: Option<&DeflateCache>) -> Result<(), AfterClose> {
            let text = String::from_utf8_lossy(payload.as_bytes()).into_owned();
            let mut wire = self.wire.lock().unwrap();
            wire.written.push(text);
            wire.unflushed += 1;
            drop(wire);
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
            Ok(())
        }

        fn ping(&mut self, _: &[u8]) {}

        fn close(&mut self, code: CloseCode, _: &str) {
            self.wire
                .lock()
                .unwrap()
                .written
                .push(format!("close {}", code.as_u16()));
        }

        fn close_now(&mut self, code: CloseCode, reason: &str) -> usize {
            self.close(code, reason);
            0
        }

        fn queued(&self) -> usize {
            self.wire.lock().unwrap().unflushed
        }

        fn is_flushed(&self) -> bool {
            self.queued() == 0
        }

        fn in_message(&self) -> bool {
            false
        }

        fn compression(&self) -> Option<&Negotiated> {
            None
        }

        fn take_begun(&mut self) -> usize {
            std::mem::take(&mut self.wire.lock().unwrap().begun)
        }

        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut wire = self.wire.lock().unwrap();
            wire.begun += std::mem::take(&mut wire.unflushed);
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_loop_runs_over_any_transport() {
        let client = CrimsonClient::<String, String>::builder()
            .url("ws://127.0.0.1:1/unused")
            .build()
            .unwrap();
        let shared = client.shared().clone();
        let mut incoming = client.incoming();
        shared.outbox.open();
        shared.outbox.push(Payload::Text("up 1".into())).unwrap();
        shared.outbox.push(Payload::Text("up 2".into())).unwrap();
        let wire = Arc::new(Mutex::new(Wire::default()));
        let transport = Scripted {
            script: VecDeque::from([
                Line::Message("down 1"),
                Line::Message("down 2"),
                Line::CloseAfter {
                    after: 2,
                    code: 4001,
                },
            ]),
            wire: wire.clone(),
            reader: None,
        };
        let (_stop, stop) = watch::channel(None);
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            super::run(transport, false, &shared, stop),
        )
        .await
        .expect("the loop ends when the server closes");

        assert_eq!((ended.code.as_u16(), ended.by), (4001, ClosedBy::Server));
        assert_eq!(ended.reason, "done");
        // Both messages went out in order, then the reply to the server's close, with its code.
        assert_eq!(wire.lock().unwrap().written, ["up 1", "up 2", "close 4001"]);
        assert_eq!(shared.outbox.len(), 0);
        use futures_util::StreamExt;
        for expected in ["down 1", "down 2"] {
            assert_eq!(incoming.next().await.unwrap().unwrap(), expected);
        }
    }
}
