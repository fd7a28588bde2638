//! The write step: messages from the outgoing queue to the socket, flushed once per batch.
//!
//! Messages move from the queue only while the socket's write queue holds less than
//! `max_write_buffer` bytes, so a client that stops reading fills its own outgoing queue (and
//! meets its overflow policy), never the server's memory. A write that makes no progress for
//! `write_timeout` drops the connection.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use crimson_core::transport::Transport;
use crimson_core::CrimsonMessage;
use tokio::time::Instant;

use super::ending::Event;
use super::{Task, BATCH};

impl<T, Up> Task<T, Up>
where
    T: Transport,
    Up: CrimsonMessage,
{
    /// Moves what fits from the outgoing queue to the socket and flushes; returns whether the
    /// task should run another round: the ending has news, or messages are left in the queue
    /// with room for them now. Writing alone is not such news: the queue wakes the task for
    /// what comes next, so a session woken for one message polls its steps once, not twice.
    pub(super) fn write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            // Still woken by an end request while the handler finishes.
            self.outbox.register_only(cx);
            return false;
        };
        let mut progress = false;
        // Counted here, added to the config's metrics once per write.
        let (mut messages, mut bytes) = (0u64, 0u64);
        // The queue may hold more than the write buffer let us take.
        let mut left = false;
        if self.close_queued {
            self.outbox.register_only(cx);
        } else {
            loop {
                if conn.queued() >= self.settings.max_write_buffer {
                    left = true;
                    // Still woken by an end request while the socket is slow.
                    self.outbox.register_only(cx);
                    break;
                }
                // Registers the task for the next push or end request, too.
                let took = self.outbox.take(cx, BATCH, &mut self.batch);
                for message in self.batch.drain(..) {
                    tracing::trace!(len = message.payload().len(), "frame out");
                    match conn.send(message.payload(), message.deflate_cache()) {
                        Ok(()) => {
                            self.in_flight += 1;
                            messages += 1;
                            bytes += message.payload().len() as u64;
                        }
                        Err(_) => self.outbox.record_dropped(1),
                    }
                }
                if self.batch.capacity() > BATCH {
                    // What a backlog left behind.
                    self.batch = VecDeque::new();
                }
                if took.request {
                    // The ending takes it in the next round.
                    progress = true;
                }
                if !took.more {
                    break;
                }
            }
            if messages > 0 {
                let traffic = &self.metrics.traffic[self.shared.codec.index];
                traffic.messages_out.add(messages);
                traffic.bytes_out.add(bytes);
            }
            // Our close goes after everything queued before it.
            if self.close_pending.is_some() && self.outbox.is_empty() {
                let (code, reason) = self.close_pending.take().expect("checked just above");
                conn.close(code, &reason);
                self.close_queued = true;
                progress = true;
            }
        }
        // Pongs answered while reading go out here too.
        if !conn.is_flushed() || (self.close_queued && !self.close_written) {
            match conn.poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.outbox.record_sent(std::mem::take(&mut self.in_flight));
                    self.stall_since = None;
                    if self.close_queued && !self.close_written {
                        self.close_written = true;
                        self.events.push(Event::CloseWritten);
                        progress = true;
                    }
                    // Room again for what the buffer's limit left in the queue.
                    progress |= left;
                }
                Poll::Ready(Err(err)) => {
                    tracing::debug!(error = %err, "write failed");
                    self.events
                        .push(Event::Lost(format!("write failed: {err}")));
                    progress = true;
                }
                Poll::Pending => {
                    self.stall_since.get_or_insert(now);
                }
            }
        }
        progress
    }
}
