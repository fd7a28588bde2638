//! Everything a session waits for with a deadline, on one timer: the next ping and its pong,
//! a stalled write, the handler's grace time and the close handshake, the inbound rate, the
//! first message (when an idle timeout is set), and a handler still running after its
//! connection ended.

use std::time::Duration;

use crimson_core::transport::Transport;
use crimson_core::{CloseCode, CrimsonMessage};
use std::future::Future;
use std::task::Context;
use tokio::time::Instant;

use super::ending::{Event, Phase};
use super::outbox::EndRequest;
use super::Task;
use crate::error::SessionError;

/// A deadline far enough away to mean "never".
pub(super) const FAR: Duration = Duration::from_secs(86_400 * 365);

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: CrimsonMessage,
{
    /// Acts on every deadline that has passed and arms the timer for the next one; returns
    /// whether anything happened.
    pub(super) fn timers(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let info = &self.shared.info;

        if let (Some((interval, timeout)), Some(conn)) = (self.settings.heartbeat, &mut self.conn) {
            match (self.ping_sent, self.next_ping) {
                (None, Some(due)) if now >= due && self.ending.phase() != Phase::Done => {
                    conn.ping(b"");
                    self.ping_sent = Some(now);
                    progress = true;
                }
                (Some(sent), _) if now >= sent + timeout => {
                    self.ping_sent = None;
                    if self.held {
                        // Reading waits for the handler: the peer's answer waits unread.
                        self.next_ping = Some(now + interval);
                    } else {
                        tracing::debug!(?timeout, "no answer to a ping: dropping the connection");
                        self.settings.report(info, &SessionError::PingTimeout);
                        self.events.push(Event::Lost(format!(
                            "no answer to a ping within {timeout:?}"
                        )));
                    }
                    progress = true;
                }
                _ => {}
            }
        }
        if let Some(since) = self.stall_since {
            let timeout = self.settings.write_timeout;
            if now >= since + timeout {
                self.stall_since = None;
                tracing::debug!(?timeout, "a write stalled: dropping the connection");
                self.settings
                    .report(info, &SessionError::WriteStalled(timeout));
                self.events
                    .push(Event::Lost(format!("no write progress within {timeout:?}")));
                progress = true;
            }
        }
        if self.deadline.is_some_and(|at| now >= at) {
            self.deadline = None;
            self.events.push(if self.ending.phase() == Phase::Draining {
                Event::GraceOver
            } else {
                Event::TimedOut
            });
            progress = true;
        }
        if self.resume_at.is_some_and(|at| now >= at) {
            self.resume_at = None;
            self.read_due = true;
            progress = true;
        }
        if self.idle_until.is_some_and(|at| now >= at) {
            self.idle_until = None;
            let timeout = self.settings.idle_timeout.unwrap_or_default();
            self.events.push(Event::Requested(EndRequest::Close(
                CloseCode::POLICY,
                format!("no message within {timeout:?}"),
            )));
            progress = true;
        }
        if self.handler_until.is_some_and(|at| now >= at) {
            self.handler_until = None;
            if self.handler.take().is_some() {
                tracing::warn!(
                    timeout = ?self.settings.close_timeout,
                    "session handler still running after its connection ended: cancelled"
                );
            }
            progress = true;
        }

        // One timer, at the earliest deadline.
        let ping = match (self.ping_sent, self.settings.heartbeat) {
            (Some(sent), Some((_, timeout))) => Some(sent + timeout),
            _ => self.next_ping.filter(|_| self.conn.is_some()),
        };
        let next = [
            ping,
            self.stall_since
                .map(|since| since + self.settings.write_timeout),
            self.deadline,
            self.resume_at,
            self.idle_until,
            self.handler_until,
        ]
        .into_iter()
        .flatten()
        .min();
        // Moving the timer costs: it is moved only to an earlier deadline. One armed too
        // early (a ping put off by traffic) fires, finds nothing due, and is armed again.
        let earlier = match (next, self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            if let Some(at) = next {
                self.timer.as_mut().reset(at);
                self.timer_polled = false;
            }
            self.armed = next;
        }
        // Polled once after it is set (to register the task), then only once its deadline
        // has passed: until then it cannot have fired.
        let due = self.armed.is_some_and(|at| now >= at);
        if self.armed.is_some()
            && (due || !self.timer_polled)
            && self.timer.as_mut().poll(cx).is_ready()
        {
            self.armed = None;
            progress = true;
        }
        self.timer_polled = self.armed.is_some();
        progress
    }
}
