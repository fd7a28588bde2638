//! Runs one session: a reader, a writer and the handler, and how they end together.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crimson_core::__ws::{as_payload, into_message, Liveness};
use crimson_core::session::Ending;
use crimson_core::{close, CloseCode, CrimsonMessage, Payload};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::config::{CrimsonConfig, DecodeErrorPolicy};
use crate::error::SessionError;
use crate::handler::Prepared;
use crate::session::{CrimsonSession, Shared};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

fn report<Up, Down>(config: &CrimsonConfig<Up, Down>, shared: &Shared, err: &SessionError) {
    if let Some(hook) = &config.on_error {
        hook(&shared.info, err);
    }
}

/// Drives a session over an upgraded connection until it has ended.
pub(crate) async fn run<Up, Down>(
    ws: Ws,
    config: CrimsonConfig<Up, Down>,
    shared: Arc<Shared>,
    handler: Option<Prepared<Up, Down>>,
    mut shutdown: watch::Receiver<bool>,
) where
    Up: CrimsonMessage,
    Down: CrimsonMessage,
{
    let (sink, stream) = ws.split();
    let liveness = Arc::new(Liveness::new());
    let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_queue);
    // Without a handler (a refused session) nothing reads: let the reader discard at once.
    let incoming_rx = handler.is_some().then_some(incoming_rx);

    let span = tracing::Span::current();
    let mut writer = tokio::spawn(
        write_loop(sink, config.clone(), shared.clone(), liveness.clone()).instrument(span.clone()),
    );
    let mut reader = tokio::spawn(
        read_loop::<Up, Down>(
            stream,
            config.clone(),
            shared.clone(),
            incoming_tx,
            liveness,
        )
        .instrument(span.clone()),
    );

    let mut handler_task = handler.zip(incoming_rx).map(|(handler, incoming_rx)| {
        let session = CrimsonSession::new(shared.clone(), incoming_rx, config.cluster.clone());
        tokio::spawn(handler(session).instrument(span.clone()))
    });

    let mut writer_done = false;
    let mut reader_done = false;
    let mut deadline: Option<Instant> = None;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            read = &mut reader, if !reader_done => {
                reader_done = true;
                // After EOF or a failure nothing more can be written; after a bad message the
                // reader has asked for a close frame (1007, 1009, 1002) and the writer sends it.
                let writable = matches!(read, Ok(ReaderEnd::Writable));
                if !writable {
                    shared.outbox.end(Ending::Terminate);
                } else if handler_task.is_none() {
                    shared.apply_pending();
                }
                if writer_done {
                    break;
                }
                if !writable {
                    deadline.get_or_insert_with(|| Instant::now() + config.close_timeout);
                }
                // Writable: the held close goes out once the handler is done (bounded by
                // close_timeout), then the writer ends and so does the session.
            }
            ended = &mut writer, if !writer_done => {
                writer_done = true;
                if reader_done {
                    break;
                }
                let terminated = matches!(ended, Ok(WriterEnd::Terminated));
                let peer_closed = shared.close_record().is_some_and(|c| c.by_peer);
                if terminated && !peer_closed {
                    break;
                }
                // A close frame went out (or the peer's close is being answered): give the
                // peer `close_timeout` to finish the handshake.
                deadline.get_or_insert_with(|| Instant::now() + config.close_timeout);
            }
            joined = async { handler_task.as_mut().expect("guarded").await }, if handler_task.is_some() => {
                handler_task = None;
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
                        report(&config, &shared, &SessionError::HandlerPanic(message));
                        shared.close(CloseCode::INTERNAL_ERROR, "internal server error");
                    }
                    Err(_) => shared.close(CloseCode::GOING_AWAY, "handler cancelled"),
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => break,
            changed = shutdown.wait_for(|down| *down), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    shared.close(CloseCode::GOING_AWAY, "server shutting down");
                }
            }
        }
    }
    reader.abort();
    writer.abort();
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
                        report(&config, &shared, &SessionError::HandlerPanic(message));
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
    mut stream: SplitStream<Ws>,
    config: CrimsonConfig<Up, Down>,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Up>,
    liveness: Arc<Liveness>,
) -> ReaderEnd {
    let mut deliver = Some(incoming);
    let mut unread = 0u64;
    while let Some(next) = stream.next().await {
        let message = match next {
            Ok(message) => message,
            Err(err) => {
                return if read_failed(&config, &shared, err) {
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
                        Err(mpsc::error::TrySendError::Full(up)) => {
                            // The handler is behind: stop reading (TCP slows the client down)
                            // and do not mistake the unread pongs for a dead peer.
                            liveness.set_held(true);
                            let sent = tx.send(up).await.map_err(|_| ());
                            liveness.set_held(false);
                            liveness.touch();
                            sent
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
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
                    report(&config, &shared, &error);
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
    mut sink: SplitSink<Ws, Message>,
    config: CrimsonConfig<Up, Down>,
    shared: Arc<Shared>,
    liveness: Arc<Liveness>,
) -> WriterEnd {
    let outbox = shared.outbox.clone();
    let mut batch: Vec<Payload> = Vec::new();
    let mut pings = config.ping_period.map(|period| {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut ping_sent: Option<Instant> = None;

    loop {
        let pong_deadline = ping_sent.map(|at| at + config.pong_timeout);
        tokio::select! {
            ending = outbox.next_batch(&mut batch) => {
                if !batch.is_empty() {
                    let count = batch.len();
                    let stalled_at = Instant::now() + config.write_timeout;
                    let mut pong_deadline = pong_deadline;
                    let wrote = {
                        let write = write_batch(&mut sink, &batch);
                        tokio::pin!(write);
                        // The write may wait on a slow reader; an urgent ending, the pong deadline
                        // and the stall limit all stay armed meanwhile.
                        loop {
                            tokio::select! {
                                wrote = &mut write => break wrote,
                                () = outbox.urgent() => break Ok(false),
                                () = tokio::time::sleep_until(stalled_at) => {
                                    return write_stalled(&config, &shared);
                                }
                                () = sleep_until(pong_deadline), if pong_deadline.is_some() => {
                                    let sent = ping_sent.take().expect("guarded");
                                    pong_deadline = None;
                                    if !liveness.seen_since(sent) && !liveness.held() {
                                        return ping_timeout(&config, &shared);
                                    }
                                }
                            }
                        }
                    };
                    batch.clear();
                    match wrote {
                        Ok(true) => outbox.record_sent(count),
                        Ok(false) => {}
                        Err(err) => return write_failed(&config, &shared, err),
                    }
                }
                match ending {
                    None => {}
                    Some(Ending::Close(code, reason) | Ending::CloseNow(code, reason)) => {
                        let (code, reason) = sendable(code, &reason);
                        // An overflow asks for its close inside the queue: record it here.
                        shared.record_close(code, reason.clone(), false);
                        let frame = CloseFrame { code: code.as_u16().into(), reason: reason.into() };
                        let _ = tokio::time::timeout(config.close_timeout, sink.send(Message::Close(Some(frame)))).await;
                        return WriterEnd::Closed;
                    }
                    Some(Ending::Terminate) => return WriterEnd::Terminated,
                }
            }
            _ = async { pings.as_mut().expect("guarded").tick().await }, if pings.is_some() && ping_sent.is_none() => {
                ping_sent = Some(Instant::now());
                match tokio::time::timeout(config.write_timeout, sink.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return write_failed(&config, &shared, err),
                    Err(_) => return write_stalled(&config, &shared),
                }
            }
            () = sleep_until(pong_deadline), if pong_deadline.is_some() => {
                let sent = ping_sent.take().expect("guarded");
                if !liveness.seen_since(sent) && !liveness.held() {
                    return ping_timeout(&config, &shared);
                }
            }
        }
    }
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

/// Feeds every payload (cloning a payload copies no bytes), then flushes once. `Ok(true)`
/// when all were written. Cancel-safe in the sense that matters here: the batch is left whole.
async fn write_batch(
    sink: &mut SplitSink<Ws, Message>,
    batch: &[Payload],
) -> Result<bool, WsError> {
    for payload in batch.iter() {
        sink.feed(into_message(payload.clone())).await?;
    }
    sink.flush().await?;
    Ok(true)
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
