//! One open connection: a reader (here) and a writer task fed by the outbox, with the
//! heartbeat, until the connection ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crimson_core::__ws::{as_payload, into_message, Liveness};
use crimson_core::{CloseCode, CrimsonMessage, PayloadRef};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument;

use crate::client::{Shared, Stop};
use crate::dial::Ws;
use crate::error::ClientError;
use crate::event::ClosedBy;
use crate::outbox::Outbox;

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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs an open connection until it ends: reads here, writes in a task of its own.
pub(crate) async fn run<Down: CrimsonMessage + Clone>(
    ws: Ws,
    shared: &Arc<Shared<Down>>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Ended {
    let close_timeout = shared.config.close_timeout;
    let (sink, mut stream) = ws.split();
    let liveness = Arc::new(Liveness::new());
    let peer_closed = Arc::new(Notify::new());
    let mut writer = tokio::spawn(
        write_loop(
            sink,
            shared.clone(),
            liveness.clone(),
            peer_closed.clone(),
            stop.clone(),
        )
        .in_current_span(),
    );

    let mut outcome: Option<Ended> = None;
    let mut deadline: Option<Instant> = None;
    let mut writer_done = false;
    let mut stopping = false;
    let mut reading = true;
    loop {
        tokio::select! {
            next = stream.next(), if reading => match next {
                Some(Ok(message)) => {
                    liveness.touch();
                    if let Some(payload) = as_payload(&message) {
                        deliver(shared, payload);
                    } else if let Message::Close(frame) = message {
                        let (code, reason) = match frame {
                            Some(frame) => (CloseCode::from_u16(frame.code.into()), frame.reason.to_string()),
                            None => (CloseCode::NO_STATUS, String::new()),
                        };
                        tracing::debug!(code = code.as_u16(), %reason, "the server closed");
                        outcome.get_or_insert(Ended { code, reason, by: ClosedBy::Server, error: None });
                        // tungstenite answers on the next read; the writer must send no more.
                        peer_closed.notify_one();
                        deadline.get_or_insert_with(|| Instant::now() + close_timeout);
                    } else {
                        tracing::trace!(kind = message_kind(&message), "control frame in");
                    }
                }
                Some(Err(err)) => {
                    // The server broke the protocol, but the socket can still be written:
                    // give the application a moment to answer what it received just before
                    // (the writer sends it), then drop the connection.
                    let writable = matches!(err, WsError::Protocol(_) | WsError::Utf8(_) | WsError::Capacity(_));
                    outcome.get_or_insert_with(|| read_failed(err));
                    if !writable || writer_done {
                        break;
                    }
                    reading = false;
                    let grace = Instant::now() + close_timeout.min(PROTOCOL_ERROR_GRACE);
                    deadline = Some(deadline.map_or(grace, |at| at.min(grace)));
                }
                None => break,
            },
            ended = &mut writer, if !writer_done => {
                writer_done = true;
                let ended = ended.unwrap_or_else(|err| WriterEnd::Failed(format!("the writer task failed: {err}")));
                match ended {
                    WriterEnd::CloseSent(stop) => {
                        outcome.get_or_insert(Ended { code: stop.code, reason: stop.reason, by: ClosedBy::Client, error: None });
                        deadline = Some(Instant::now() + close_timeout);
                    }
                    // No close frame went out, so no answer will come: drop the connection.
                    WriterEnd::CloseUnsent(stop) => {
                        outcome.get_or_insert(Ended { code: stop.code, reason: stop.reason, by: ClosedBy::Client, error: None });
                        break;
                    }
                    WriterEnd::PeerClosed => {}
                    WriterEnd::Heartbeat(timeout) if outcome.is_none() => {
                        outcome = Some(Ended::failure(format!("no answer to a ping within {timeout:?}"), ClientError::Heartbeat(timeout)));
                        break;
                    }
                    WriterEnd::Failed(reason) if outcome.is_none() => {
                        outcome = Some(Ended::failure(reason.clone(), ClientError::Connection(reason)));
                        break;
                    }
                    // The close handshake is under way: let it finish.
                    WriterEnd::Heartbeat(_) | WriterEnd::Failed(_) => {}
                }
            }
            _ = stop_requested(&mut stop), if !stopping => {
                stopping = true;
                // The writer sends what is queued and the close frame within `close_timeout`,
                // then the server has `close_timeout` to answer; this is only a safety net.
                let cap = Instant::now() + 2 * close_timeout;
                deadline = Some(deadline.map_or(cap, |at| at.min(cap)));
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                tracing::debug!("the close handshake did not finish in time: dropping the connection");
                break;
            }
        }
    }
    if !writer_done {
        // The writer may be blocked on a socket that will never drain, or idle. Aborting takes
        // effect at its next await point and it never blocks between them, so this wait is
        // short; it matters, because until the writer has stopped it may still hand a message
        // to the socket.
        writer.abort();
        let _ = writer.await;
    }
    // Whatever the writer took but the connection never took from it goes back to the front
    // of the outbox: it goes out on the next connection, or is counted as discarded when the
    // client closes.
    let requeued = shared.outbox.requeue_in_flight();
    if requeued > 0 {
        tracing::debug!(
            requeued,
            "messages never written were put back in the outbox"
        );
    }
    outcome.unwrap_or_else(|| {
        Ended::failure(
            "connection dropped",
            ClientError::Connection(
                "the server dropped the connection without a close frame".into(),
            ),
        )
    })
}

/// How long, after the server broke the protocol, the writer may still send what the
/// application queued in answer to the messages that came before.
const PROTOCOL_ERROR_GRACE: Duration = Duration::from_millis(250);

/// Resolves once a stop was requested, with the request (`None` when the client is gone).
async fn stop_requested(stop: &mut watch::Receiver<Option<Stop>>) -> Option<Stop> {
    stop.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|stop| stop.clone())
}

fn message_kind(message: &Message) -> &'static str {
    match message {
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        _ => "other",
    }
}

/// Decodes one incoming message and hands it to every subscriber, or skips and reports it.
fn deliver<Down: CrimsonMessage + Clone>(shared: &Shared<Down>, payload: PayloadRef<'_>) {
    tracing::trace!(kind = %payload.kind(), len = payload.len(), "frame in");
    match Down::decode(payload) {
        // The client keeps a subscription of its own (for `receive`), so this never fails.
        Ok(message) => drop(shared.incoming.send(message)),
        Err(err) => {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            shared.report(ClientError::Decode(err));
        }
    }
}

fn read_failed(err: WsError) -> Ended {
    let reason = match err {
        WsError::Capacity(err) => format!("an incoming message is over the size limit: {err}"),
        WsError::Protocol(err) => format!("the server broke the WebSocket protocol: {err}"),
        WsError::Io(err) => err.to_string(),
        other => other.to_string(),
    };
    Ended::failure(reason.clone(), ClientError::Connection(reason))
}

/// How the writer finished. What it had taken from the outbox and not written is still in
/// flight there, whichever way it ended.
enum WriterEnd {
    /// It wrote what was queued and a close frame.
    CloseSent(Stop),
    /// It was asked to close but could not write what was queued and the close frame within
    /// the close timeout, or the close frame failed.
    CloseUnsent(Stop),
    /// The server closed: it stopped writing.
    PeerClosed,
    /// No answer to a ping within the heartbeat timeout.
    Heartbeat(Duration),
    /// A write failed.
    Failed(String),
}

/// The stop request, or the one the client makes when its last handle is gone.
fn or_dropped(requested: Option<Stop>) -> Stop {
    requested.unwrap_or_else(|| Stop {
        code: CloseCode::GOING_AWAY,
        reason: "client dropped".into(),
    })
}

async fn write_loop<Down>(
    mut sink: SplitSink<Ws, Message>,
    shared: Arc<Shared<Down>>,
    liveness: Arc<Liveness>,
    peer_closed: Arc<Notify>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> WriterEnd {
    let outbox = &shared.outbox;
    let heartbeat = shared.config.heartbeat;
    let close_timeout = shared.config.close_timeout;
    let mut pings = heartbeat.map(|heartbeat| {
        let mut interval =
            tokio::time::interval_at(Instant::now() + heartbeat.interval, heartbeat.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut ping_sent: Option<Instant> = None;
    // Whether the oldest message in flight waits in the sink's own slot (see `write_in_flight`).
    let mut in_slot = false;

    loop {
        let pong_timeout = heartbeat.map_or(Duration::MAX, |heartbeat| heartbeat.timeout);
        let pong_deadline = ping_sent.map(|at| at + pong_timeout);
        tokio::select! {
            biased;
            () = peer_closed.notified() => return WriterEnd::PeerClosed,
            requested = stop_requested(&mut stop) => {
                return close(&mut sink, outbox, &mut in_slot, or_dropped(requested), close_timeout).await;
            }
            () = outbox.next_batch() => {
                let written = {
                    let write = write_in_flight(&mut sink, outbox, &mut in_slot);
                    tokio::pin!(write);
                    loop {
                        let pong_deadline = ping_sent.map(|at| at + pong_timeout);
                        tokio::select! {
                            wrote = &mut write => {
                                break wrote.map_err(|err| Interrupted::End(WriterEnd::Failed(format!("writing failed: {err}"))));
                            }
                            () = sleep_until(pong_deadline), if pong_deadline.is_some() => {
                                if !ping_answered(&liveness, ping_sent.take()) {
                                    break Err(Interrupted::End(WriterEnd::Heartbeat(pong_timeout)));
                                }
                            }
                            () = peer_closed.notified() => break Err(Interrupted::End(WriterEnd::PeerClosed)),
                            // A stalled write must not hold up a close: the close carries it on
                            // from the first message not yet written.
                            requested = stop_requested(&mut stop) => break Err(Interrupted::Stop(or_dropped(requested))),
                        }
                    }
                };
                // Messages never written stay in flight in the outbox: the connection puts
                // them back once this task has ended.
                match written {
                    Ok(()) => {}
                    Err(Interrupted::End(end)) => return end,
                    Err(Interrupted::Stop(request)) => {
                        return close(&mut sink, outbox, &mut in_slot, request, close_timeout).await;
                    }
                }
            }
            _ = async { pings.as_mut().expect("guarded").tick().await }, if pings.is_some() && ping_sent.is_none() => {
                ping_sent = Some(Instant::now());
                tracing::trace!("ping out");
                match tokio::time::timeout(pong_timeout, sink.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return WriterEnd::Failed(format!("writing a ping failed: {err}")),
                    Err(_) => return WriterEnd::Heartbeat(pong_timeout),
                }
            }
            () = sleep_until(pong_deadline), if pong_deadline.is_some() => {
                if !ping_answered(&liveness, ping_sent.take()) {
                    tracing::debug!(timeout = ?pong_timeout, "no answer to a ping: the connection is dead");
                    return WriterEnd::Heartbeat(pong_timeout);
                }
            }
        }
    }
}

/// Why a write in progress was cut short.
enum Interrupted {
    /// The writer is done.
    End(WriterEnd),
    /// A close was asked for: finish writing, then close.
    Stop(Stop),
}

/// Writes what is in flight and everything queued, then the close frame, within
/// `close_timeout`. What tungstenite did not take in time stays in flight in the outbox.
async fn close(
    sink: &mut SplitSink<Ws, Message>,
    outbox: &Outbox,
    in_slot: &mut bool,
    request: Stop,
    close_timeout: Duration,
) -> WriterEnd {
    let close = async {
        loop {
            write_in_flight(sink, outbox, in_slot).await?;
            if !outbox.take_all() {
                break;
            }
        }
        let frame = CloseFrame {
            code: request.code.as_u16().into(),
            reason: request.reason.clone().into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let closed = tokio::time::timeout(close_timeout, close)
        .await
        .unwrap_or_else(|_| Err(WsError::Io(std::io::ErrorKind::TimedOut.into())));
    match closed {
        Ok(()) => WriterEnd::CloseSent(request),
        Err(err) => {
            tracing::debug!(error = %err, "could not write the queue and the close frame in time");
            WriterEnd::CloseUnsent(request)
        }
    }
}

fn ping_answered(liveness: &Liveness, ping_sent: Option<Instant>) -> bool {
    ping_sent.is_none_or(|at| liveness.seen_since(at))
}

/// Hands the messages in flight to the connection, oldest first, then flushes once.
///
/// A message leaves the outbox only once tungstenite has taken its frame: from then on bytes of
/// it may reach the server, so it must never be sent again. Feeding the split sink is not
/// enough: the sink keeps the last message fed in a slot of its own and passes it on to
/// tungstenite only when next polled ready or flushed, which waits for tungstenite's buffer to
/// drain. `in_slot` says the oldest message in flight sits in that slot; it outlives this
/// future, so a write cut short (by a stop request) and taken up again by the close passes that
/// message on instead of feeding it twice. However this ends (an error, a timeout, this future
/// dropped, the task aborted), the messages still in flight are exactly those tungstenite never
/// took.
async fn write_in_flight(
    sink: &mut SplitSink<Ws, Message>,
    outbox: &Outbox,
    in_slot: &mut bool,
) -> Result<(), WsError> {
    loop {
        // Passes the message in the slot, if any, to tungstenite.
        let ready = std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)).await;
        if let Err(err) = ready {
            // The connection is broken: whether or not the message left the slot, it never
            // made it into a frame tungstenite could send, and stays in flight.
            *in_slot = false;
            return Err(err);
        }
        if std::mem::take(in_slot) {
            outbox.handed_over();
        }
        let Some(payload) = outbox.next_in_flight() else {
            break;
        };
        tracing::trace!(kind = %payload.kind(), len = payload.len(), "frame out");
        sink.start_send_unpin(into_message(payload))?;
        *in_slot = true;
    }
    sink.flush().await
}
