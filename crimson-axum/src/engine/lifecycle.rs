//! The session's lifecycle as the task carries it out: end requests from the outgoing queue
//! and the events of each step go through the [`Ending`](super::ending::Ending), whose actions
//! are applied here to the connection, the queues and the deadlines; once the connection is
//! gone and the handler done, the close is recorded and `on_close` is called.

use crimson_core::transport::Transport;
use crimson_core::{CloseCode, CrimsonMessage};
use tokio::time::Instant;

use super::ending::{Action, Event, Phase};
use super::Task;

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: CrimsonMessage,
{
    /// Moves the outgoing queue's end request (close, terminate, overflow, shutdown) to the
    /// ending, ahead of the events of the step that just ran: a `close()` made before the
    /// handler returned is the cause, not the return. (The write step registers the task for the next one.)
    pub(super) fn take_requests(&mut self) -> bool {
        match self.outbox.take_request() {
            Some(request) => {
                self.events.insert(0, Event::Requested(request));
                true
            }
            None => false,
        }
    }

    /// Runs the events gathered so far through the ending, and does what it says.
    pub(super) fn apply_events(&mut self, now: Instant) {
        if self.events.is_empty() {
            return;
        }
        while !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            for event in events {
                let written = event == Event::CloseWritten;
                for action in self.ending.on(event) {
                    self.apply(action, now);
                }
                // Our close is out but the socket cannot be read: no answer can arrive.
                if written && self.read_done && self.ending.phase() == Phase::CloseSent {
                    self.events.push(Event::TimedOut);
                }
            }
        }
        if self.shared.record.get().is_none() {
            if let Some(record) = self.ending.record() {
                let _ = self.shared.record.set(record.clone());
            }
        }
    }

    fn apply(&mut self, action: Action, now: Instant) {
        match action {
            Action::EndInput => {
                self.input = None;
                self.idle_until = None;
            }
            Action::SendClose {
                code,
                reason,
                discard,
            } => {
                self.outbox.stop_accepting();
                if discard {
                    self.outbox.discard();
                    if let Some(conn) = self.conn.as_mut() {
                        conn.close_now(code, &reason);
                        self.close_queued = true;
                    }
                    self.outbox
                        .record_dropped(std::mem::take(&mut self.in_flight));
                } else {
                    self.close_pending = Some((code, reason));
                }
            }
            Action::StartGrace | Action::StartCloseTimer => {
                self.deadline = Some(now + self.settings.close_timeout);
            }
            Action::Drop => {
                if let Some(conn) = self.conn.take() {
                    drop(conn);
                    self.outbox.stop_accepting();
                    self.outbox.discard();
                    self.outbox
                        .record_dropped(std::mem::take(&mut self.in_flight));
                    // Out of the cluster now: nothing more is queued for a dead session.
                    self.guards = None;
                    // No answer can come: requests to the client fail now, not at their
                    // timeouts.
                    self.shared.pending.clear();
                    self.deadline = None;
                    self.stall_since = None;
                    self.next_ping = None;
                    self.ping_sent = None;
                    self.resume_at = None;
                    if self.handler.is_some() {
                        self.handler_until = Some(now + self.settings.close_timeout);
                    }
                }
            }
        }
    }

    /// Whether everything is over: the connection dropped and the handler done.
    pub(super) fn finished(&self) -> bool {
        self.conn.is_none() && self.handler.is_none()
    }

    /// The session is over: say so.
    pub(super) fn finish(&mut self) {
        let record = self
            .shared
            .record
            .get_or_init(|| self.ending.record().cloned().unwrap_or_else(dropped_record))
            .clone();
        if self.unread > 0 {
            tracing::debug!(
                unread = self.unread,
                "messages arrived after the handler's input ended"
            );
        }
        tracing::debug!(
            code = record.code.as_u16(),
            reason = %record.reason,
            by = %record.by,
            "session closed"
        );
        if self.accepted {
            self.metrics.closed(&record);
            if let Some(hook) = &self.settings.on_close {
                hook(&self.shared.info, &record);
            }
        }
    }
}

fn dropped_record() -> crimson_core::CloseRecord {
    crimson_core::CloseRecord {
        code: CloseCode::ABNORMAL,
        reason: "connection dropped".into(),
        by: crimson_core::ClosedBy::Failure,
    }
}
