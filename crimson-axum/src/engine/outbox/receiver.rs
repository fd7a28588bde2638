//! The writer's side of the queue: [`OutboxReceiver`], owned by the session's task. It takes
//! messages in batches (all of them in one lock when they fit), registers the task for the
//! next push or end request (without the lock when nothing changed), takes the end request,
//! stops accepting when the session closes, and counts what was written or dropped.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Waker};

use crimson_core::session::Outgoing;

use super::shared::Inner;
use super::EndRequest;
use crate::engine::wake::identity;

/// Past this many slots a drained queue is shrunk back.
const SHRINK_ABOVE: usize = 64;

/// The writer's side: one per queue, owned by the session's task.
pub(crate) struct OutboxReceiver {
    pub(super) inner: Arc<Inner>,
    /// The last [`take`](Self::take) left the queue empty.
    pub(super) drained: bool,
    /// The registered waker's identity (data and vtable pointers: what `will_wake` compares),
    /// so that the writer can tell without the lock that it is still the one registered.
    pub(super) registered: Option<(usize, usize)>,
}

/// What [`OutboxReceiver::take`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Took {
    /// Messages are left in the queue (more than the batch could take).
    pub(crate) more: bool,
    /// An end request waits.
    pub(crate) request: bool,
}

impl fmt::Debug for OutboxReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxReceiver").finish_non_exhaustive()
    }
}

impl OutboxReceiver {
    /// Moves up to `max` queued messages into `batch` (which the writer empties between
    /// calls) and registers the task to be woken by the next push or end request; says
    /// whether messages are left and whether an end request waits.
    ///
    /// One lock per call at most, none when nothing can have changed: the queue was empty
    /// when last looked at and no producer has taken the registered waker since (a push and a
    /// request both do).
    pub(crate) fn take(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        batch: &mut VecDeque<Outgoing>,
    ) -> Took {
        if self.drained
            && self.inner.writer_set.load(Ordering::Acquire)
            && !self.inner.requested.load(Ordering::Acquire)
            && self.is_registered(cx)
        {
            return Took::default();
        }
        let mut state = self.inner.state();
        self.inner.set_writer(&mut state, cx);
        self.registered = Some(identity(cx.waker()));
        let request = state.request.is_some();
        let len = state.queue.len();
        if len == 0 {
            self.drained = true;
            return Took {
                more: false,
                request,
            };
        }
        if len <= max && batch.is_empty() {
            // All of it: the two buffers change places, nothing is copied under the lock.
            std::mem::swap(&mut state.queue, batch);
        } else {
            batch.extend(state.queue.drain(..len.min(max)));
        }
        if state.queue.is_empty() && state.queue.capacity() > SHRINK_ABOVE {
            // A backlog is over: give its memory back.
            state.queue = VecDeque::new();
        }
        let more = !state.queue.is_empty();
        self.inner.report_depth(&mut state);
        self.drained = !more;
        let waiters = state.room_waiters;
        drop(state);
        self.inner.notify_room(waiters);
        Took { more, request }
    }

    /// Names the waker the session's handler is polled with: its pushes wake nothing.
    pub(crate) fn set_own_task(&mut self, handler: &Waker) {
        self.inner.state().own_task = Some(identity(handler));
    }

    /// Registers the task to be woken by the next push or end request, without taking
    /// anything (while the session closes and takes no more messages).
    pub(crate) fn register_only(&mut self, cx: &mut Context<'_>) {
        if self.inner.writer_set.load(Ordering::Acquire) && self.is_registered(cx) {
            return;
        }
        let mut state = self.inner.state();
        self.inner.set_writer(&mut state, cx);
        self.registered = Some(identity(cx.waker()));
        // A push took the waker since the last `take` (or the task's waker changed): what it
        // queued is still there, and `take`'s look without the lock must not miss it once
        // the waker is registered again.
        self.drained = state.queue.is_empty();
    }

    fn is_registered(&self, cx: &Context<'_>) -> bool {
        self.registered == Some(identity(cx.waker()))
    }

    /// Whether no message waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.state().queue.is_empty()
    }

    /// The end request waiting, if any (taken: asking again returns `None`). Without the lock
    /// while none waits; registering for the next one is [`take`](Self::take)'s work.
    pub(crate) fn take_request(&mut self) -> Option<EndRequest> {
        if !self.inner.requested.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.inner.state();
        self.inner.requested.store(false, Ordering::Release);
        state.request.take()
    }

    /// Stops accepting messages (the session is closing): producers get `Closed` from now on,
    /// and those waiting for room are woken.
    pub(crate) fn stop_accepting(&mut self) {
        let mut state = self.inner.state();
        state.closed = true;
        let waiters = state.room_waiters;
        drop(state);
        self.inner.notify_room(waiters);
        self.inner.notify_flushed();
    }

    /// Discards every queued message (counted as dropped); returns how many.
    pub(crate) fn discard(&mut self) -> u64 {
        let mut state = self.inner.state();
        let discarded = state.queue.len() as u64;
        state.queue = VecDeque::new();
        self.inner.report_depth(&mut state);
        drop(state);
        self.inner.dropped.fetch_add(discarded, Ordering::SeqCst);
        self.inner.counted.dropped.add(discarded);
        self.inner.notify_flushed();
        discarded
    }

    /// Records that `count` messages taken earlier were written to the socket.
    pub(crate) fn record_sent(&mut self, count: u64) {
        if count > 0 {
            self.inner.sent.fetch_add(count, Ordering::SeqCst);
            self.inner.notify_flushed();
        }
    }

    /// Records that `count` messages taken earlier will never be written (the connection
    /// ended first).
    pub(crate) fn record_dropped(&mut self, count: u64) {
        if count > 0 {
            self.inner.dropped.fetch_add(count, Ordering::SeqCst);
            self.inner.counted.dropped.add(count);
            self.inner.notify_flushed();
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        // The session is over: refuse everything and count what was still queued.
        self.stop_accepting();
        self.discard();
        let writer = self.inner.take_writer(&mut self.inner.state());
        drop(writer);
    }
}
