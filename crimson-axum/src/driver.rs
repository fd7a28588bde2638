//! Runs one session: a reader, a writer and the handler, and how they end together.
//!
//! The reader and the writer are two futures polled by the session's own task (the handler
//! runs in a task of its own): an idle connection then costs one task, not three, and the
//! connection needs no lock shared between tasks. They take turns on the WebSocket through
//! [`Conn`], whose lock is only ever held inside a single poll, so it is never contended.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use crimson_core::__ws::{as_payload, into_message, Liveness};
use crimson_core::cluster::SessionCluster;
use crimson_core::session::{Ending, SessionHandle, SessionId};
use crimson_core::{close, CloseCode, CrimsonMessage, Payload};
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, Sink, Stream};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::config::{CrimsonConfig, DecodeErrorPolicy};
use crate::error::SessionError;
use crate::handler::Prepared;
use crate::incoming;
use crate::layer::Registry;
use crate::session::{CrimsonSession, Shared};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// The reader's waker: it records that the read side woke the session's task, then wakes it.
struct ReadWake {
    shared: Arc<ReadWaker>,
    /// A waker for `shared`, made once.
    waker: Waker,
}

impl ReadWake {
    fn new() -> Self {
        let shared = Arc::new(ReadWaker {
            // The first call reads.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(shared.clone());
        Self { shared, waker }
    }
}

struct ReadWaker {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl std::task::Wake for ReadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The connection, shared by the reader and the writer futures of one task.
struct Conn(Mutex<Option<Ws>>);

impl Conn {
    fn new(ws: Ws) -> Self {
        Self(Mutex::new(Some(ws)))
    }

    fn with<R>(&self, f: impl FnOnce(Pin<&mut Ws>) -> R) -> R {
        // Held for one poll only and never across an await; both users are polled by the
        // same task, one at a time. Nothing panics while holding it, but recover anyway.
        let mut ws = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ws = ws
            .as_mut()
            .expect("the connection is used after it was dropped");
        f(Pin::new(ws))
    }

    /// Drops the connection (the reader and the writer are done with it).
    fn close(&self) {
        let ws = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(ws);
    }

    /// The next frame. `wake` is the reader's own waker: the session's task is woken for
    /// many things (every batch to write), and only a wake-up for the reader makes it read.
    async fn next(&self, wake: &ReadWake) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| {
            wake.shared.task.register(cx.waker());
            if !wake.shared.woken.swap(false, Ordering::AcqRel) {
                // Nothing happened on the read side since the last read left off.
                return Poll::Pending;
            }
            let mut cx = std::task::Context::from_waker(&wake.waker);
            let next = self.with(|ws| ws.poll_next(&mut cx));
            if next.is_ready() {
                // More frames may be buffered already: the next call reads at once.
                wake.shared.woken.store(true, Ordering::Release);
            }
            next
        })
        .await
    }

    /// Writes `message` and flushes.
    async fn send(&self, message: Message) -> Result<(), WsError> {
        let mut message = Some(message);
        poll_fn(|cx| {
            self.with(|mut ws| {
                if message.is_some() {
                    ready!(ws.as_mut().poll_ready(cx))?;
                    ws.as_mut()
                        .start_send(message.take().expect("checked just above"))?;
                }
                ws.poll_flush(cx)
            })
        })
        .await
    }
}

fn report<Up, Down>(config: &CrimsonConfig<Up, Down>, shared: &Shared, err: &SessionError) {
    if let Some(hook) = &config.on_error {
        hook(&shared.info, err);
    }
}

/// A session's task: waits for the upgrade, joins the cluster, and drives the session until
/// it has ended.
pub(crate) async fn session<Up, Down>(
    on_upgrade: OnUpgrade,
    config: CrimsonConfig<Up, Down>,
    shared: Arc<Shared>,
    prepared: Prepared<Up, Down>,
    registry: Arc<Registry>,
) where
    Up: CrimsonMessage,
    Down: CrimsonMessage,
{
    // In a block of its own: what is only needed to set the connection up is then not kept
    // in the session's future for its whole life.
    let conn = {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "the WebSocket upgrade failed");
                return;
            }
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_size)
            .write_buffer_size(config.write_buffer_size)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_frame_size));
        // Without a handshake to do this completes at once; not awaiting it keeps its state out
        // of the session's future, which is most of an idle connection's memory.
        let Some(ws) =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .now_or_never()
        else {
            tracing::error!("setting up the WebSocket did not complete at once");
            return;
        };
        Conn::new(ws)
    };
    let _live = registry.enter();
    let shutdown = registry.shutdown.subscribe();

    let cluster = &**config.cluster.backend();
    let handle = SessionHandle::new(shared.info.clone(), shared.outbox.clone());
    // Leaves the cluster however the task ends, a panicking hook included.
    let (_member, handler) = match cluster.add(handle) {
        Ok(()) => {
            tracing::debug!("session connected");
            let member = Membership {
                cluster,
                id: shared.info.id,
            };
            if let Some(hook) = &config.on_connect {
                hook(&shared.info);
            }
            (Some(member), Some(prepared))
        }
        Err(full) => {
            tracing::debug!(limit = full.limit, "connection limit reached");
            shared.close(CloseCode::TRY_AGAIN_LATER, "connection limit reached");
            (None, None)
        }
    };
    run(&conn, &config, &shared, handler, shutdown).await;
}

/// A session's place in its cluster, given up on drop.
struct Membership<'a> {
    cluster: &'a dyn SessionCluster,
    id: SessionId,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.cluster.remove(self.id);
    }
}

/// Drives a session over an upgraded connection until it has ended.
async fn run<Up, Down>(
    conn: &Conn,
    config: &CrimsonConfig<Up, Down>,
    shared: &Arc<Shared>,
    handler: Option<Prepared<Up, Down>>,
    shutdown: watch::Receiver<bool>,
) where
    Up: CrimsonMessage,
    Down: CrimsonMessage,
{
    let (incoming_tx, incoming_rx) = incoming::channel(config.incoming_queue);
    let mut handler_task = handler.map(|handler| {
        let session = CrimsonSession::new(shared.clone(), incoming_rx, config.cluster.clone());
        tokio::spawn(handler(session).instrument(tracing::Span::current()))
    });
    // Without a handler (a refused session) the receiver is gone and the reader discards
    // at once.

    supervise(
        conn,
        config,
        shared,
        incoming_tx,
        &mut handler_task,
        shutdown,
    )
    .await;
    // The reader and the writer are gone: drop the connection now, not after the handler.
    conn.close();
    let discarded = shared.outbox.finish();
    if discarded > 0 {
        tracing::debug!(discarded, "session ended with messages still queued");
    }

    // The connection is gone; the handler sees `recv() == None` and failing sends. Give it
    // `close_timeout` to return, then stop it.
    if let Some(mut task) = handler_task {
        tokio::select! {
            joined = &mut task => {
                if let Err(err) = joined {
                    if err.is_panic() {
                        let message = panic_message(err.into_panic());
                        tracing::error!(panic = %message, "session handler panicked");
                        report(config, shared, &SessionError::HandlerPanic(message));
                    }
                }
            }
            () = tokio::time::sleep(config.close_timeout) => {
                tracing::warn!("session handler still running {:?} after its connection ended: aborted", config.close_timeout);
                task.abort();
            }
        }
    }

    shared.record_close(CloseCode::ABNORMAL, "connection dropped", true);
    let record = shared.close_record().expect("recorded just above");
    tracing::debug!(code = record.code.as_u16(), reason = %record.reason, by_peer = record.by_peer, "session closed");
    if let Some(hook) = &config.on_close {
        hook(&shared.info, record.code, &record.reason);
    }
}

/// Polls the reader, the writer and the handler's task until the connection is done.
async fn supervise<Up, Down>(
    conn: &Conn,
    config: &CrimsonConfig<Up, Down>,
    shared: &Arc<Shared>,
    incoming: incoming::Sender<Up>,
    handler_task: &mut Option<tokio::task::JoinHandle<()>>,
    mut shutdown: watch::Receiver<bool>,
) where
    Up: CrimsonMessage,
    Down: CrimsonMessage,
{
    let liveness = Liveness::new();
    // A panic in either (a codec's decode, an `on_error` hook) ends that side as a failed
    // connection would, and the session's teardown still runs.
    let reader = AssertUnwindSafe(read_loop::<Up, Down>(
        conn, config, shared, incoming, &liveness,
    ))
    .catch_unwind();
    let writer = AssertUnwindSafe(write_loop(conn, config, shared, &liveness)).catch_unwind();
    tokio::pin!(reader, writer);

    let mut writer_done = false;
    let mut reader_done = false;
    // The close handshake's time limit, once one is under way (boxed: only a closing session
    // pays for the timer).
    let mut closing: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            read = &mut reader, if !reader_done => {
                reader_done = true;
                // After EOF or a failure nothing more can be written; after a bad message the
                // reader has asked for a close frame (1007, 1009, 1002) and the writer sends it.
                let writable = match read {
                    Ok(end) => matches!(end, ReaderEnd::Writable),
                    Err(panic) => {
                        panicked(shared, "reader", panic);
                        false
                    }
                };
                if !writable {
                    shared.outbox.end(Ending::Terminate);
                } else if handler_task.is_none() {
                    shared.apply_pending();
                }
                if writer_done {
                    break;
                }
                if !writable {
                    closing.get_or_insert_with(|| Box::pin(tokio::time::sleep(config.close_timeout)));
                }
                // Writable: the held close goes out once the handler is done (bounded by
                // close_timeout), then the writer ends and so does the session.
            }
            ended = &mut writer, if !writer_done => {
                writer_done = true;
                if reader_done {
                    break;
                }
                let terminated = match ended {
                    Ok(end) => matches!(end, WriterEnd::Terminated),
                    Err(panic) => {
                        panicked(shared, "writer", panic);
                        shared.outbox.end(Ending::Terminate);
                        true
                    }
                };
                let peer_closed = shared.close_record().is_some_and(|c| c.by_peer);
                if terminated && !peer_closed {
                    break;
                }
                // A close frame went out (or the peer's close is being answered): give the
                // peer `close_timeout` to finish the handshake.
                closing.get_or_insert_with(|| Box::pin(tokio::time::sleep(config.close_timeout)));
            }
            joined = async { handler_task.as_mut().expect("guarded").await }, if handler_task.is_some() => {
                *handler_task = None;
                match joined {
                    Ok(()) => {
                        // Bad input's close, if any, goes out now: the handler has answered
                        // everything that came before it.
                        if !shared.apply_pending() {
                            shared.close(CloseCode::NORMAL, "session ended");
                        }
                    }
                    Err(err) if err.is_panic() => {
                        let message = panic_message(err.into_panic());
                        tracing::error!(panic = %message, "session handler panicked");
                        report(config, shared, &SessionError::HandlerPanic(message));
                        shared.close(CloseCode::INTERNAL_ERROR, "internal server error");
                    }
                    Err(_) => shared.close(CloseCode::GOING_AWAY, "handler cancelled"),
                }
            }
            () = async { closing.as_mut().expect("guarded").await }, if closing.is_some() => break,
            changed = shutdown.wait_for(|down| *down), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    shared.close(CloseCode::GOING_AWAY, "server shutting down");
                }
            }
        }
    }
}

/// Reports a panic in the session's reader or writer (user code runs in both: decoding,
/// hooks); the connection is dropped as after a failure.
fn panicked(shared: &Shared, side: &str, panic: Box<dyn std::any::Any + Send>) {
    let message = panic_message(panic);
    tracing::error!(panic = %message, "the session's {side} panicked: dropping the connection");
    shared.record_close(CloseCode::ABNORMAL, "internal error", false);
    // Not reported through `on_error`: that hook may be what panicked.
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}

/// How the reader finished.
enum ReaderEnd {
    /// The connection is over (EOF, a failure, the peer's close).
    Gone,
    /// A bad message: the reader asked for a close frame, which can still be written.
    Writable,
}

async fn read_loop<Up: CrimsonMessage, Down: CrimsonMessage>(
    conn: &Conn,
    config: &CrimsonConfig<Up, Down>,
    shared: &Arc<Shared>,
    incoming: incoming::Sender<Up>,
    liveness: &Liveness,
) -> ReaderEnd {
    let mut deliver = Some(incoming);
    let mut unread = 0u64;
    let wake = ReadWake::new();
    while let Some(next) = conn.next(&wake).await {
        let message = match next {
            Ok(message) => message,
            Err(err) => {
                return if read_failed(config, shared, err) {
                    ReaderEnd::Writable
                } else {
                    ReaderEnd::Gone
                };
            }
        };
        liveness.touch();
        if let Some(payload) = as_payload(&message) {
            tracing::trace!(kind = %payload.kind(), len = payload.len(), "frame in");
            let Some(tx) = &deliver else {
                // Closing: the client sent this before it saw our close.
                continue;
            };
            match Up::decode(payload) {
                Ok(up) => {
                    let sent = match tx.try_send(up) {
                        Ok(()) => Ok(()),
                        Err(incoming::TrySendError::Full(up)) => {
                            // The handler is behind: stop reading (TCP slows the client down)
                            // and do not mistake the unread pongs for a dead peer.
                            liveness.set_held(true);
                            let sent = Box::pin(tx.send(up)).await.map_err(|_| ());
                            liveness.set_held(false);
                            liveness.touch();
                            sent
                        }
                        Err(incoming::TrySendError::Closed(_)) => Err(()),
                    };
                    if sent.is_err() {
                        unread += 1;
                        if unread == 1 {
                            tracing::debug!("the handler dropped its receiver: incoming messages are discarded (counted)");
                        }
                    }
                }
                Err(err) => {
                    let error = SessionError::Decode(err);
                    tracing::warn!(error = %error, "message did not decode");
                    report(config, shared, &error);
                    let SessionError::Decode(err) = error else {
                        unreachable!()
                    };
                    match config.decode_errors {
                        DecodeErrorPolicy::Close => {
                            let reason = format!(
                                "invalid {} message for {}: {}",
                                err.codec(),
                                err.short_type_name(),
                                err.reason()
                            );
                            shared.close_after_handler(
                                CloseCode::INVALID_PAYLOAD,
                                &reason,
                                config.close_timeout,
                            );
                            deliver = None;
                        }
                        DecodeErrorPolicy::Skip => {
                            shared.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        } else if let Message::Close(frame) = message {
            let (code, reason) = match frame {
                Some(frame) => (
                    CloseCode::from_u16(frame.code.into()),
                    frame.reason.to_string(),
                ),
                None => (CloseCode::NO_STATUS, String::new()),
            };
            shared.record_close(code, reason, true);
            // tungstenite queues the close reply and sends it on the next read; the writer
            // must send nothing more.
            deliver = None;
            shared.outbox.end(Ending::Terminate);
        }
    }
    if unread > 0 {
        tracing::debug!(
            unread,
            "messages arrived after the handler stopped receiving"
        );
    }
    ReaderEnd::Gone
}

/// Reports a read error; returns whether a close frame was asked for (the socket can still
/// be written to).
fn read_failed<Up, Down>(
    config: &CrimsonConfig<Up, Down>,
    shared: &Arc<Shared>,
    err: WsError,
) -> bool {
    match err {
        WsError::Capacity(err) => {
            let error = SessionError::TooBig(err.to_string());
            tracing::warn!(error = %error, "message over the limit");
            report(config, shared, &error);
            shared.close_after_handler(
                CloseCode::TOO_BIG,
                &format!(
                    "message too big: the limit is {} bytes",
                    config.max_message_size
                ),
                config.close_timeout,
            );
            true
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            tracing::debug!("the client dropped the connection without a close frame");
            shared.record_close(
                CloseCode::ABNORMAL,
                "connection dropped without a close frame",
                true,
            );
            false
        }
        WsError::Protocol(err) => {
            let error = SessionError::Protocol(err.to_string());
            tracing::debug!(error = %error, "protocol error");
            report(config, shared, &error);
            shared.close_after_handler(
                CloseCode::PROTOCOL_ERROR,
                &err.to_string(),
                config.close_timeout,
            );
            true
        }
        WsError::Utf8(err) => {
            let error = SessionError::Protocol(format!("invalid UTF-8 in a text frame: {err}"));
            report(config, shared, &error);
            shared.close_after_handler(
                CloseCode::INVALID_PAYLOAD,
                "invalid UTF-8 in a text frame",
                config.close_timeout,
            );
            true
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => false,
        WsError::Io(err) => {
            tracing::debug!(error = %err, "connection failed");
            report(config, shared, &SessionError::Io(err));
            shared.record_close(CloseCode::ABNORMAL, "connection failed", true);
            false
        }
        other => {
            let error = SessionError::Protocol(other.to_string());
            report(config, shared, &error);
            shared.record_close(CloseCode::ABNORMAL, "connection failed", true);
            false
        }
    }
}

/// How the writer finished.
enum WriterEnd {
    /// It sent a close frame (or tried to, within the close timeout).
    Closed,
    /// It stopped without a close frame: terminate, a failed write, a ping timeout.
    Terminated,
}

async fn write_loop<Up, Down>(
    conn: &Conn,
    config: &CrimsonConfig<Up, Down>,
    shared: &Shared,
    liveness: &Liveness,
) -> WriterEnd {
    let outbox = &shared.outbox;
    let mut batch: Vec<Payload> = Vec::new();
    // One timer for the heartbeat: when the next ping is due or, while one is out, when its
    // pong is. It is reset only when that changes, not for every batch.
    let mut next_ping = config.ping_period.map(|period| Instant::now() + period);
    let mut ping_sent: Option<Instant> = None;
    let due = |ping_sent: Option<Instant>, next_ping: Option<Instant>| match ping_sent {
        Some(at) => Some(at + config.pong_timeout),
        None => next_ping,
    };
    let mut armed = due(ping_sent, next_ping);
    let timer = tokio::time::sleep_until(armed.unwrap_or_else(far_future));
    tokio::pin!(timer);

    loop {
        let now_due = due(ping_sent, next_ping);
        if now_due != armed {
            armed = now_due;
            if let Some(at) = armed {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            ending = outbox.next_batch(&mut batch) => {
                if !batch.is_empty() {
                    let count = batch.len();
                    let wrote = {
                        let write = write_batch(conn, &mut batch);
                        tokio::pin!(write);
                        // Most writes complete at once (the socket has room): only a write
                        // that has to wait arms the stall limit and watches for an urgent end.
                        match poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                            Poll::Ready(wrote) => wrote,
                            Poll::Pending => {
                                // Boxed: only a write that waits pays for its timers, and an
                                // idle session's future stays small.
                                let slow = Box::pin(async {
                                    let stalled = tokio::time::sleep(config.write_timeout);
                                    tokio::pin!(stalled);
                                    // The write waits on a slow reader; an urgent ending, the
                                    // pong deadline and the stall limit all stay armed meanwhile.
                                    loop {
                                        tokio::select! {
                                            wrote = &mut write => break Ok(wrote),
                                            () = outbox.urgent() => break Ok(Ok(false)),
                                            () = &mut stalled => break Err(write_stalled(config, shared)),
                                            () = &mut timer, if armed.is_some() && ping_sent.is_some() => {
                                                let sent = ping_sent.take().expect("guarded");
                                                if !liveness.seen_since(sent) && !liveness.held() {
                                                    break Err(ping_timeout(config, shared));
                                                }
                                                armed = next_ping;
                                                if let Some(at) = armed {
                                                    timer.as_mut().reset(at);
                                                }
                                            }
                                        }
                                    }
                                });
                                match slow.await {
                                    Ok(wrote) => wrote,
                                    Err(end) => return end,
                                }
                            }
                        }
                    };
                    batch.clear();
                    // After a backlog, give the batch's memory back (the queue does the same).
                    if batch.capacity() > 64 {
                        batch.shrink_to(8);
                    }
                    match wrote {
                        Ok(true) => outbox.record_sent(count),
                        Ok(false) => {}
                        Err(err) => return write_failed(config, shared, err),
                    }
                }
                match ending {
                    None => {}
                    Some(Ending::Close(code, reason) | Ending::CloseNow(code, reason)) => {
                        let (code, reason) = sendable(code, &reason);
                        // An overflow asks for its close inside the queue: record it here.
                        shared.record_close(code, reason.clone(), false);
                        let frame = CloseFrame { code: code.as_u16().into(), reason: reason.into() };
                        let send = conn.send(Message::Close(Some(frame)));
                        let _ = Box::pin(tokio::time::timeout(config.close_timeout, send)).await;
                        return WriterEnd::Closed;
                    }
                    Some(Ending::Terminate) => return WriterEnd::Terminated,
                }
            }
            () = &mut timer, if armed.is_some() => {
                match ping_sent.take() {
                    // The pong was due: any frame since the ping will do.
                    Some(sent) => {
                        if !liveness.seen_since(sent) && !liveness.held() {
                            return ping_timeout(config, shared);
                        }
                    }
                    None => {
                        let now = Instant::now();
                        ping_sent = Some(now);
                        next_ping = config.ping_period.map(|period| now + period);
                        let send = conn.send(Message::Ping(Default::default()));
                        match Box::pin(tokio::time::timeout(config.write_timeout, send)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => return write_failed(config, shared, err),
                            Err(_) => return write_stalled(config, shared),
                        }
                    }
                }
                // Polled to completion: it must be reset before it is polled again.
                armed = None;
            }
        }
    }
}

/// A deadline that never comes in practice, for a timer that is not armed.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// A close code and reason fit to send: a code an endpoint may send (else 1011, saying so)
/// and a reason of at most 123 bytes.
fn sendable(code: CloseCode, reason: &str) -> (CloseCode, String) {
    if code.is_sendable() {
        (code, close::truncate_reason(reason).into_owned())
    } else {
        tracing::error!(
            code = code.as_u16(),
            "a close with a code that may not be sent was asked for: sending 1011"
        );
        let reason = format!("invalid close code {code} requested");
        (CloseCode::INTERNAL_ERROR, reason)
    }
}

/// Writes every payload of the batch, moving each out (a broadcast's shared bytes are then
/// not counted up and down again), then flushes once; one lock of the connection per poll.
/// `Ok(true)` when all were written. Cancelled, it leaves what it did not write in the batch.
async fn write_batch(conn: &Conn, batch: &mut [Payload]) -> Result<bool, WsError> {
    let mut next = 0;
    poll_fn(|cx| {
        conn.with(|mut ws| {
            while let Some(slot) = batch.get_mut(next) {
                ready!(ws.as_mut().poll_ready(cx))?;
                let payload = std::mem::replace(slot, Payload::Binary(Bytes::new()));
                ws.as_mut().start_send(into_message(payload))?;
                next += 1;
            }
            ready!(ws.as_mut().poll_flush(cx))?;
            Poll::Ready(Ok(true))
        })
    })
    .await
}

fn write_stalled<Up, Down>(config: &CrimsonConfig<Up, Down>, shared: &Shared) -> WriterEnd {
    tracing::debug!(timeout = ?config.write_timeout, "a write stalled: dropping the connection");
    let error = SessionError::WriteStalled(config.write_timeout);
    report(config, shared, &error);
    shared.record_close(
        CloseCode::ABNORMAL,
        format!("no write progress within {:?}", config.write_timeout),
        false,
    );
    shared.outbox.end(Ending::Terminate);
    WriterEnd::Terminated
}

fn ping_timeout<Up, Down>(config: &CrimsonConfig<Up, Down>, shared: &Shared) -> WriterEnd {
    tracing::debug!(timeout = ?config.pong_timeout, "no pong: dropping the connection");
    report(config, shared, &SessionError::PingTimeout);
    shared.record_close(
        CloseCode::ABNORMAL,
        format!("no answer to a ping within {:?}", config.pong_timeout),
        false,
    );
    shared.outbox.end(Ending::Terminate);
    WriterEnd::Terminated
}

fn write_failed<Up, Down>(
    config: &CrimsonConfig<Up, Down>,
    shared: &Shared,
    err: WsError,
) -> WriterEnd {
    match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {}
        WsError::Io(err) => {
            tracing::debug!(error = %err, "write failed");
            report(config, shared, &SessionError::Io(err));
            shared.record_close(CloseCode::ABNORMAL, "connection failed", true);
        }
        other => tracing::debug!(error = %other, "write failed"),
    }
    shared.outbox.end(Ending::Terminate);
    WriterEnd::Terminated
}
