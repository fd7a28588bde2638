//! The read step: frames from the socket, decoded into the handler's input.
//!
//! The handler's input queue is bounded and the socket is read only for as many messages as
//! fit (and as the inbound rate allows), so a client that sends faster than its handler (or
//! its rate) allows is slowed down by TCP, alone. Bad input is refused with the close code
//! that names it, once the handler has answered what came before.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crimson_core::protocol::{self, Kind};
use crimson_core::session::Outgoing;
use crimson_core::transport::{Incoming, ReadError, Transport};
use crimson_core::{CloseCode, CrimsonMessage};
use tokio::time::Instant;

use super::ending::Event;
use super::incoming::TrySendError;
use super::Task;
use crate::config::DecodeErrorPolicy;
use crate::error::SessionError;
use crate::request::{Incoming as In, Reply, Request};

/// The most `resume` frames one connection may send (one per stream it follows).
pub(super) const MAX_RESUMES: usize = 64;

/// A stream's name, hashed: what a connection keeps of each stream it resumed.
fn stream_hash(stream: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    stream.hash(&mut hasher);
    hasher.finish()
}

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: CrimsonMessage,
{
    /// Reads once if there is room for what arrives; returns whether anything happened.
    ///
    /// Runs only when due: woken through its own waker (the socket, room in the handler's
    /// queue), the inbound rate's pause over, or not yet waiting for any of them.
    pub(super) fn read(&mut self, now: Instant) -> bool {
        if self.read_part.take() {
            self.read_due = true;
        }
        if !self.read_due {
            return false;
        }
        if self.read_done {
            self.read_due = false;
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            self.read_due = false;
            return false;
        };
        let mut cx = Context::from_waker(&self.read_waker);
        // How many messages may be taken now: what the handler's queue has room for, and
        // what the inbound rate allows. Once the input has ended, what arrives is discarded
        // (the socket is still read: the peer's close must be seen).
        let mut max = usize::MAX;
        if let Some(input) = &self.input {
            match input.poll_room(&mut cx) {
                Poll::Ready(Some(room)) => max = room,
                // The handler dropped its receiver: what arrives is discarded, counted.
                Poll::Ready(None) => {}
                Poll::Pending => {
                    // Woken when the handler takes a message.
                    self.held = true;
                    self.read_due = false;
                    return false;
                }
            }
        }
        self.held = false;
        if let Some(limiter) = &mut self.limiter {
            match limiter.allowance(now) {
                Ok(allowed) => max = max.min(allowed.max(1)),
                Err(resume) => {
                    // Due again when the timer says so.
                    self.resume_at = Some(resume);
                    self.read_due = false;
                    return false;
                }
            }
        }

        let settings = &*self.settings;
        let shared = &*self.shared;
        let input = &self.input;
        let limiter = &mut self.limiter;
        let events = &mut self.events;
        let unread = &mut self.unread;
        let cluster = &self.cluster;
        let resumed = &mut self.resumed;
        let mut seen = false;
        let mut refused = false;
        // A message for the handler wakes nothing: the handler is marked due below, and is
        // polled right after this step.
        let handler = &self.handler_waker;
        let mut delivered = false;
        // Counted here, added to the config's metrics once per read.
        let (mut messages, mut bytes, mut failed) = (0u64, 0u64, 0u64);
        let codec = self.shared.codec.up;
        let framed = self.shared.codec.framed;
        let mut on = |incoming: Incoming<'_>| {
            seen = true;
            match incoming {
                Incoming::Message(payload) => {
                    tracing::trace!(kind = %payload.kind(), len = payload.len(), "frame in");
                    messages += 1;
                    bytes += payload.len() as u64;
                    if let Some(limiter) = limiter.as_mut() {
                        limiter.take(payload.len());
                    }
                    let Some(tx) = input.as_ref().filter(|_| !refused) else {
                        *unread += 1;
                        return;
                    };
                    // The Crimson protocol: a header line before each message.
                    let (kind, body) = if framed {
                        match protocol::read(payload) {
                            Ok(split) => split,
                            Err(err) => {
                                refused = true;
                                tracing::warn!(error = %err, "broke the Crimson protocol");
                                settings
                                    .report(&shared.info, &SessionError::Protocol(err.to_string()));
                                events.push(Event::BadInput(
                                    CloseCode::PROTOCOL_ERROR,
                                    crimson_core::close::truncate_reason(&err.to_string())
                                        .into_owned(),
                                ));
                                return;
                            }
                        }
                    } else {
                        (Kind::Message, payload)
                    };
                    let request = match kind {
                        Kind::Message => None,
                        Kind::Request { id } => Some(id),
                        Kind::Response { id } => {
                            shared.pending.answer(id, Ok(body.to_payload()));
                            return;
                        }
                        Kind::Error { id, code } => {
                            let text = String::from_utf8_lossy(body.as_bytes()).into_owned();
                            shared.pending.answer(id, Err((code, text)));
                            return;
                        }
                        Kind::Resume(from) => {
                            // Each resume may queue a whole recovery past the queue's
                            // capacity: once per stream, and for at most 64 streams.
                            let hash = stream_hash(&from.stream);
                            let refusal = if resumed.contains(&hash) {
                                Some(format!(
                                    "crimson.v1: stream `{}` resumed twice on one connection",
                                    from.stream.chars().take(32).collect::<String>()
                                ))
                            } else if resumed.len() >= MAX_RESUMES {
                                Some(format!(
                                    "crimson.v1: more than {MAX_RESUMES} resume frames on one connection"
                                ))
                            } else {
                                None
                            };
                            if let Some(reason) = refusal {
                                refused = true;
                                events.push(Event::BadInput(
                                    CloseCode::POLICY,
                                    crimson_core::close::truncate_reason(&reason).into_owned(),
                                ));
                                return;
                            }
                            resumed.push(hash);
                            if let Some(cluster) = cluster {
                                cluster.resume(shared.info.id, from);
                            }
                            return;
                        }
                        // `Kind` may grow; what this version does not know is refused.
                        #[allow(unreachable_patterns)]
                        _ => {
                            refused = true;
                            events.push(Event::BadInput(
                                CloseCode::PROTOCOL_ERROR,
                                "crimson.v1: a frame kind a client may not send".into(),
                            ));
                            return;
                        }
                    };
                    match Up::decode_in(body, codec) {
                        Ok(up) => {
                            let item = match request {
                                None => In::Message(up),
                                Some(id) => In::Request(Request::new(
                                    up,
                                    id,
                                    Reply {
                                        outbox: shared.outbox.clone(),
                                        token: shared.codec.token,
                                        frame: shared.frame,
                                    },
                                )),
                            };
                            match tx.try_send(item, handler) {
                                Ok(()) => delivered = true,
                                Err(TrySendError::Closed(_) | TrySendError::Full(_)) => {
                                    *unread += 1;
                                }
                            }
                        }
                        Err(err) => {
                            failed += 1;
                            let error = SessionError::Decode(err);
                            tracing::warn!(error = %error, "message did not decode");
                            settings.report(&shared.info, &error);
                            let SessionError::Decode(err) = error else {
                                unreachable!("made just above")
                            };
                            match settings.decode_errors {
                                DecodeErrorPolicy::Close => {
                                    refused = true;
                                    let reason = format!(
                                        "invalid {} message for {}: {}",
                                        err.codec(),
                                        err.short_type_name(),
                                        err.reason()
                                    );
                                    events.push(Event::BadInput(
                                        CloseCode::INVALID_PAYLOAD,
                                        crimson_core::close::truncate_reason(&reason).into_owned(),
                                    ));
                                }
                                DecodeErrorPolicy::Skip => {
                                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                                    if let Some(id) = request {
                                        // Skipped, but answered: the client does not wait.
                                        let text = format!("the request did not decode: {err}");
                                        let answer = protocol::error(
                                            id,
                                            400,
                                            crimson_core::close::truncate_reason(&text).as_ref(),
                                            shared.frame,
                                        );
                                        let _ = shared.outbox.try_push(Outgoing::Single(answer));
                                    }
                                }
                            }
                        }
                    }
                }
                Incoming::Ping(_) | Incoming::Pong(_) => {}
                Incoming::Close(frame) => {
                    events.push(Event::PeerClosed(
                        frame.map(|(code, reason)| (code, reason.to_owned())),
                    ));
                }
            }
        };
        let polled = conn.poll_read(&mut cx, max, &mut on);
        if messages > 0 {
            let traffic = &self.metrics.traffic[self.shared.codec.index];
            traffic.messages_in.add(messages);
            traffic.bytes_in.add(bytes);
            traffic.decode_failures.add(failed);
        }
        if delivered {
            self.handler_due = true;
        }
        if seen {
            // Any frame says the peer is alive.
            self.ping_sent = None;
            if let Some((interval, _)) = self.settings.heartbeat {
                self.next_ping = Some(now + interval);
            }
        }
        match polled {
            Poll::Pending => {
                // Waiting for the socket.
                self.read_due = false;
                false
            }
            Poll::Ready(Ok(outcome)) => {
                if outcome.messages > 0 {
                    self.idle_until = None;
                }
                if outcome.closed {
                    self.read_done = true;
                }
                true
            }
            Poll::Ready(Err(err)) => {
                self.read_done = true;
                self.read_failed(err);
                true
            }
        }
    }

    /// Turns a read error into the ending's event, reporting it.
    fn read_failed(&mut self, err: ReadError) {
        let info = &self.shared.info;
        let event = match err {
            ReadError::Eof => {
                tracing::debug!("the client dropped the connection without a close frame");
                Event::Lost("connection dropped without a close frame".into())
            }
            ReadError::Io(err) => {
                tracing::debug!(error = %err, "connection failed");
                let reason = format!("connection failed: {err}");
                self.settings.report(info, &SessionError::Io(err));
                Event::Lost(reason)
            }
            err => {
                let code = err.close_code();
                let limit = self.settings.max_message_size;
                let reason = match &err {
                    ReadError::TooBig { .. } => {
                        format!("message too big: the limit is {limit} bytes")
                    }
                    other => other.to_string(),
                };
                // The hook's error says what its kind says once: no prefix twice.
                let error = match &err {
                    ReadError::TooBig { .. } => {
                        SessionError::TooBig(format!("the limit is {limit} bytes"))
                    }
                    ReadError::Busy { .. } => SessionError::Busy(reason.clone()),
                    ReadError::Protocol(what) => SessionError::Protocol((*what).to_owned()),
                    ReadError::InvalidCloseCode(code) => {
                        SessionError::Protocol(format!("invalid close code {code}"))
                    }
                    other => SessionError::Protocol(other.to_string()),
                };
                tracing::debug!(error = %error, "bad input");
                self.settings.report(info, &error);
                Event::BadInput(
                    code,
                    crimson_core::close::truncate_reason(&reason).into_owned(),
                )
            }
        };
        self.events.push(event);
    }
}
