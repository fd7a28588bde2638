//! The producers' side of the queue: [`OutboxSender`] (held by the handler's session and by
//! the live-session set) and the shared state itself as the [`Deliver`] that a session's
//! handle and its cluster push through. Pushing, waiting for room, asking the session to end,
//! and waiting until what was pushed is written.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use crimson_core::session::{Deliver, Outgoing, OverflowPolicy, QueueStats, Queued, SendError};
use crimson_core::CloseCode;

use super::shared::{wake, Inner};
use super::EndRequest;
use crate::engine::wake::identity;

impl Inner {
    /// Queues `message` now, applying the overflow policy if the queue is full.
    pub(crate) fn try_push(&self, message: Outgoing) -> Result<Queued, SendError> {
        let mut state = self.state();
        if state.closed || state.request.is_some() {
            return Err(SendError::Closed);
        }
        let queued = if state.live_len() < self.capacity {
            Queued::Queued
        } else {
            let dropped = match self.policy {
                OverflowPolicy::DropOldest => state.drop_oldest_live(self.capacity),
                OverflowPolicy::Disconnect => None,
            };
            let Some(noticed) = dropped else {
                // Full, and nothing may be dropped to make room.
                self.counted.overflowed.add(1);
                let reason = format!("slow consumer: {} messages were waiting", state.queue.len());
                self.put_request(state, EndRequest::CloseNow(CloseCode::POLICY, reason));
                return Err(SendError::Overflow);
            };
            self.noticed.fetch_add(noticed, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::SeqCst);
            self.counted.dropped.add(1);
            self.notify_flushed();
            Queued::DroppedOldest
        };
        state.queue.push_back(message);
        state.pushed += 1;
        self.report_depth(&mut state);
        let writer = self.take_writer(&mut state);
        drop(state);
        wake(writer);
        Ok(queued)
    }

    /// Asks the session to end. A more urgent request replaces a less urgent one that the
    /// writer has not taken yet; otherwise the first one stands. Returns whether it took.
    pub(crate) fn request_end(&self, request: EndRequest) -> bool {
        let state = self.state();
        if state.closed {
            return false;
        }
        let takes = state
            .request
            .as_ref()
            .is_none_or(|current| request.urgency() > current.urgency());
        if takes {
            self.put_request(state, request);
        }
        takes
    }

    /// Whether the queue has stopped accepting messages.
    pub(crate) fn is_closed(&self) -> bool {
        let state = self.state();
        state.closed || state.request.is_some()
    }
}

/// The producers' side: cloneable.
#[derive(Clone)]
pub(crate) struct OutboxSender {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl OutboxSender {
    /// Queues `message` now, applying the overflow policy if the queue is full.
    pub(crate) fn try_push(&self, message: Outgoing) -> Result<Queued, SendError> {
        self.inner.try_push(message)
    }

    /// Queues `message`, waiting while the queue is full; fails once the session is closing.
    ///
    /// Called from the session's own task (its handler), it does not wake that task: the task
    /// writes what its handler queued in the same round.
    pub(crate) async fn push(&self, message: Outgoing) -> Result<(), SendError> {
        let mut message = Some(message);
        let mut waiting: Option<RoomWaiter<'_>> = None;
        // The first try registers nothing: the queue is seldom full.
        if self.try_push_waiting(&mut message, &mut waiting).await? {
            return Ok(());
        }
        loop {
            // Enabled before the check: a writer that makes room after it wakes this wait.
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.try_push_waiting(&mut message, &mut waiting).await? {
                return Ok(());
            }
            room.await;
        }
    }

    /// Pushes `message` if there is room (`Ok(true)`); otherwise counts the caller as waiting
    /// for room (`Ok(false)`).
    async fn try_push_waiting<'a>(
        &'a self,
        message: &mut Option<Outgoing>,
        waiting: &mut Option<RoomWaiter<'a>>,
    ) -> Result<bool, SendError> {
        std::future::poll_fn(|cx| {
            let mut state = self.inner.state();
            if state.closed || state.request.is_some() {
                return Poll::Ready(Err(SendError::Closed));
            }
            if state.live_len() >= self.inner.capacity {
                if waiting.is_none() {
                    state.room_waiters += 1;
                    *waiting = Some(RoomWaiter(&self.inner));
                }
                return Poll::Ready(Ok(false));
            }
            state
                .queue
                .push_back(message.take().expect("pushed only once"));
            state.pushed += 1;
            // From the session's own task (its handler), no wake-up is needed: the task
            // writes what its handler queued in the same round.
            let own_task = state.own_task == Some(identity(cx.waker()))
                || state
                    .writer
                    .as_ref()
                    .is_some_and(|writer| writer.will_wake(cx.waker()));
            let writer = if own_task {
                // Nothing to wake, but the writer must look at the queue in this round.
                self.inner.writer_set.store(false, Ordering::Release);
                None
            } else {
                self.inner.take_writer(&mut state)
            };
            drop(state);
            wake(writer);
            Poll::Ready(Ok(true))
        })
        .await
    }

    /// Asks the session to end. A more urgent request replaces a less urgent one that the
    /// writer has not taken yet; otherwise the first one stands. Returns whether it took.
    pub(crate) fn request_end(&self, request: EndRequest) -> bool {
        self.inner.request_end(request)
    }

    /// Whether the queue has stopped accepting messages.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The queue as a cluster delivers to it: the shared state itself, so a broadcast reaches
    /// each session's queue through one pointer, not two.
    pub(crate) fn deliverer(&self) -> Arc<dyn Deliver> {
        self.inner.clone()
    }

    /// Waits until everything queued before the call has been written to the socket (or
    /// dropped, and counted so), or the queue has closed. Later pushes do not delay it.
    pub(crate) async fn flushed(&self) {
        let target = self.inner.state().pushed;
        self.inner.flush_waiters.fetch_add(1, Ordering::SeqCst);
        let _counted = FlushWaiter(&self.inner);
        loop {
            let flushed = self.inner.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            {
                let state = self.inner.state();
                // Under the lock, as a notice's count moves with its message's drop.
                let settled = (self.inner.sent.load(Ordering::SeqCst)
                    + self.inner.dropped.load(Ordering::SeqCst))
                .saturating_sub(self.inner.noticed.load(Ordering::SeqCst));
                if state.closed || settled >= target {
                    return;
                }
            }
            flushed.await;
        }
    }

    /// Messages dropped so far (overflow, or discarded when the session ended).
    #[cfg(test)]
    pub(super) fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Messages written so far.
    #[cfg(test)]
    pub(super) fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }
}

/// Keeps `room_waiters` right however the wait ends.
struct RoomWaiter<'a>(&'a Inner);

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0.state().room_waiters -= 1;
    }
}

/// Keeps `flush_waiters` right however the wait ends.
struct FlushWaiter<'a>(&'a Inner);

impl Drop for FlushWaiter<'_> {
    fn drop(&mut self) {
        self.0.flush_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Deliver for Inner {
    fn deliver(&self, message: Outgoing) -> Result<Queued, SendError> {
        self.try_push(message)
    }

    fn deliver_all(&self, messages: Vec<Outgoing>) -> Result<(), SendError> {
        // A recovery: together, past the capacity if need be (its size is bounded by the
        // history's recovery limit), and apart from it: live messages keep their room, and
        // dropping the oldest spares it.
        let mut state = self.state();
        if state.closed || state.request.is_some() {
            return Err(SendError::Closed);
        }
        if messages.is_empty() {
            return Ok(());
        }
        let start = state.pushed;
        state.pushed += messages.len() as u64;
        state.queue.extend(messages);
        let end = state.pushed;
        state.recoveries.push((start, end));
        self.report_depth(&mut state);
        let writer = self.take_writer(&mut state);
        drop(state);
        wake(writer);
        Ok(())
    }

    fn close(&self, code: CloseCode, reason: &str) {
        self.request_end(EndRequest::Close(
            code,
            crimson_core::close::truncate_reason(reason).into_owned(),
        ));
    }

    fn is_closed(&self) -> bool {
        Inner::is_closed(self)
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            waiting: self.state().queue.len() as u64,
        }
    }
}
