//! A session's bounded outgoing queue: many producers ([`OutboxSender`], cloneable: the
//! handler, broadcasts, other tasks), one writer ([`OutboxReceiver`], not cloneable: the
//! session's task). "One writer" is a fact of the types.
//!
//! Producers also ask the session to end through it ([`EndRequest`]); the session's
//! [`Ending`](super::ending::Ending) decides what a request does.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crimson_core::session::{Deliver, Outgoing, OverflowPolicy, QueueStats, Queued, SendError};
use crimson_core::CloseCode;
use tokio::sync::Notify;

use super::wake::identity;

/// Past this many slots a drained queue is shrunk back.
const SHRINK_ABOVE: usize = 64;

/// How a producer asks the session to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndRequest {
    /// Send what is queued, then close with this code and reason.
    Close(CloseCode, String),
    /// Discard what is queued and close at once (a slow consumer).
    CloseNow(CloseCode, String),
    /// Drop the connection without a close frame.
    Terminate,
}

impl EndRequest {
    fn urgency(&self) -> u8 {
        match self {
            Self::Close(..) => 0,
            Self::CloseNow(..) => 1,
            Self::Terminate => 2,
        }
    }
}

/// A new bounded queue.
pub(crate) fn outbox(capacity: usize, policy: OverflowPolicy) -> (OutboxSender, OutboxReceiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            request: None,
            closed: false,
            pushed: 0,
            writer: None,
            room_waiters: 0,
            own_task: None,
        }),
        room: Notify::new(),
        flushed: Notify::new(),
        capacity: capacity.max(1),
        policy,
        dropped: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        flush_waiters: AtomicUsize::new(0),
        requested: AtomicBool::new(false),
        writer_set: AtomicBool::new(false),
    });
    (
        OutboxSender {
            inner: inner.clone(),
        },
        OutboxReceiver {
            inner,
            drained: true,
            registered: None,
        },
    )
}

struct Inner {
    state: Mutex<State>,
    /// Wakes producers waiting for room (only when `room_waiters` says some are).
    room: Notify,
    /// Wakes callers of `flushed` (only when `flush_waiters` says some are).
    flushed: Notify,
    capacity: usize,
    policy: OverflowPolicy,
    dropped: AtomicU64,
    sent: AtomicU64,
    /// Callers waiting in `flushed`; updated and read sequentially consistently with `sent`
    /// and `dropped`, so a waiter either sees a count or is notified of it.
    flush_waiters: AtomicUsize,
    /// An end request waits (read without the lock on every round of the session's task).
    requested: AtomicBool,
    /// The writer's waker is registered and nothing was queued or requested since (likewise):
    /// while it holds, the writer has nothing new to look at.
    writer_set: AtomicBool,
}

struct State {
    /// Allocated on the first push, shrunk after a backlog: an idle session's queue costs
    /// nothing.
    queue: VecDeque<Outgoing>,
    /// The most urgent end request not yet taken by the writer.
    request: Option<EndRequest>,
    /// The writer stopped taking messages: nothing more is accepted.
    closed: bool,
    /// Messages accepted so far: each ends up sent or dropped.
    pushed: u64,
    /// The writer, woken by a push or a request.
    writer: Option<Waker>,
    /// Producers waiting in `push` for room.
    room_waiters: usize,
    /// The waker of the session's handler (its identity): a push from it wakes nothing, the
    /// writer runs next in the same round.
    own_task: Option<(usize, usize)>,
}

impl Inner {
    /// Takes the writer's waker (under the lock) to wake it once the lock is released.
    fn take_writer(&self, state: &mut State) -> Option<Waker> {
        let writer = state.writer.take();
        if writer.is_some() {
            self.writer_set.store(false, Ordering::Release);
        }
        writer
    }

    fn set_writer(&self, state: &mut State, cx: &Context<'_>) {
        match &state.writer {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.writer = Some(cx.waker().clone()),
        }
        self.writer_set.store(true, Ordering::Release);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the state all the same.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify_flushed(&self) {
        if self.flush_waiters.load(Ordering::SeqCst) > 0 {
            self.flushed.notify_waiters();
        }
    }

    fn notify_room(&self, waiters: usize) {
        if waiters > 0 {
            self.room.notify_waiters();
        }
    }
}

impl Inner {
    /// Queues `message` now, applying the overflow policy if the queue is full.
    pub(crate) fn try_push(&self, message: Outgoing) -> Result<Queued, SendError> {
        let mut state = self.state();
        if state.closed || state.request.is_some() {
            return Err(SendError::Closed);
        }
        let queued = if state.queue.len() < self.capacity {
            Queued::Queued
        } else {
            match self.policy {
                OverflowPolicy::DropOldest => {
                    state.queue.pop_front();
                    self.dropped.fetch_add(1, Ordering::SeqCst);
                    self.notify_flushed();
                    Queued::DroppedOldest
                }
                OverflowPolicy::Disconnect => {
                    let reason =
                        format!("slow consumer: {} messages were waiting", state.queue.len());
                    state.request = Some(EndRequest::CloseNow(CloseCode::POLICY, reason));
                    self.requested.store(true, Ordering::Release);
                    let writer = self.take_writer(&mut state);
                    let waiters = state.room_waiters;
                    drop(state);
                    wake(writer);
                    self.notify_room(waiters);
                    return Err(SendError::Overflow);
                }
            }
        };
        state.queue.push_back(message);
        state.pushed += 1;
        let writer = self.take_writer(&mut state);
        drop(state);
        wake(writer);
        Ok(queued)
    }

    /// Asks the session to end. A more urgent request replaces a less urgent one that the
    /// writer has not taken yet; otherwise the first one stands. Returns whether it took.
    pub(crate) fn request_end(&self, request: EndRequest) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        let takes = state
            .request
            .as_ref()
            .is_none_or(|current| request.urgency() > current.urgency());
        if takes {
            state.request = Some(request);
            self.requested.store(true, Ordering::Release);
            let writer = self.take_writer(&mut state);
            let waiters = state.room_waiters;
            drop(state);
            wake(writer);
            self.notify_room(waiters);
        }
        takes
    }

    /// Whether the queue has stopped accepting messages.
    pub(crate) fn is_closed(&self) -> bool {
        let state = self.state();
        state.closed || state.request.is_some()
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The producers' side: cloneable.
#[derive(Clone)]
pub(crate) struct OutboxSender {
    inner: Arc<Inner>,
}

impl fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Outbox")
            .field("queued", &state.queue.len())
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("closed", &(state.closed || state.request.is_some()))
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
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
            if state.queue.len() >= self.inner.capacity {
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
                let settled = self.inner.sent.load(Ordering::SeqCst)
                    + self.inner.dropped.load(Ordering::SeqCst);
                if state.closed || settled >= target {
                    return;
                }
            }
            flushed.await;
        }
    }

    /// Messages dropped so far (overflow, or discarded when the session ended).
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Messages written so far.
    #[cfg(test)]
    fn sent(&self) -> u64 {
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

/// The writer's side: one per queue, owned by the session's task.
pub(crate) struct OutboxReceiver {
    inner: Arc<Inner>,
    /// The last [`take`](Self::take) left the queue empty.
    drained: bool,
    /// The registered waker's identity (data and vtable pointers: what `will_wake` compares),
    /// so that the writer can tell without the lock that it is still the one registered.
    registered: Option<(usize, usize)>,
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
        drop(state);
        self.inner.dropped.fetch_add(discarded, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crimson_core::Payload;

    use super::*;

    fn text(n: usize) -> Outgoing {
        Outgoing::Single(Payload::Text(n.to_string().into()))
    }

    fn take_now(rx: &mut OutboxReceiver, max: usize) -> Vec<Outgoing> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut batch = VecDeque::new();
        let _ = rx.take(&mut cx, max, &mut batch);
        batch.into()
    }

    #[tokio::test]
    async fn batches_flush_waits_for_its_own_messages() {
        let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
        for n in 0..3 {
            assert_eq!(tx.try_push(text(n)), Ok(Queued::Queued));
        }
        assert_eq!(take_now(&mut rx, 2), vec![text(0), text(1)]);
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.flushed().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "three messages are not written yet");
        assert_eq!(take_now(&mut rx, 8), vec![text(2)]);
        rx.record_sent(3);
        waiter.await.unwrap();
        assert_eq!(tx.sent(), 3);
    }

    #[test]
    fn overflow_asks_to_close_now() {
        let (tx, mut rx) = outbox(2, OverflowPolicy::Disconnect);
        tx.try_push(text(0)).unwrap();
        tx.try_push(text(1)).unwrap();
        assert_eq!(tx.try_push(text(2)), Err(SendError::Overflow));
        assert_eq!(tx.try_push(text(3)), Err(SendError::Closed));
        assert_eq!(
            rx.take_request(),
            Some(EndRequest::CloseNow(
                CloseCode::POLICY,
                "slow consumer: 2 messages were waiting".into()
            ))
        );
        assert_eq!(rx.discard(), 2);
        assert_eq!(tx.dropped(), 2);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let (tx, mut rx) = outbox(2, OverflowPolicy::DropOldest);
        for n in 0..5 {
            tx.try_push(text(n)).unwrap();
        }
        assert_eq!(tx.dropped(), 3);
        assert_eq!(take_now(&mut rx, 8), vec![text(3), text(4)]);
    }

    #[test]
    fn more_urgent_requests_replace_less_urgent_ones() {
        let (tx, mut rx) = outbox(2, OverflowPolicy::Disconnect);
        assert!(tx.request_end(EndRequest::Close(CloseCode::NORMAL, "a".into())));
        assert!(!tx.request_end(EndRequest::Close(CloseCode::GOING_AWAY, "b".into())));
        assert!(tx.request_end(EndRequest::Terminate));
        assert!(!tx.request_end(EndRequest::CloseNow(CloseCode::POLICY, "c".into())));
        assert_eq!(rx.take_request(), Some(EndRequest::Terminate));
        assert_eq!(rx.take_request(), None);
    }

    #[tokio::test]
    async fn push_waits_for_room_and_fails_when_closed() {
        let (tx, mut rx) = outbox(1, OverflowPolicy::Disconnect);
        tx.push(text(0)).await.unwrap();
        let producer = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.push(text(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !producer.is_finished(),
            "push waits while the queue is full"
        );
        assert_eq!(take_now(&mut rx, 8), vec![text(0)]);
        tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .expect("taking makes room")
            .unwrap()
            .unwrap();
        let blocked = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.push(text(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        rx.stop_accepting();
        assert_eq!(blocked.await.unwrap(), Err(SendError::Closed));
        assert_eq!(tx.inner.state().room_waiters, 0);
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn pushes_wake_the_writer_once_until_it_takes() {
        let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
        tx.try_push(text(0)).unwrap();
        tx.try_push(text(1)).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "one wake for two pushes");
        assert_eq!(
            rx.take(&mut cx, 1, &mut batch),
            Took {
                more: true,
                request: false
            }
        );
        batch.clear();
        assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
        assert_eq!(Vec::from(std::mem::take(&mut batch)), vec![text(1)]);
        // Nothing new: nothing taken, and the next push wakes again.
        assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
        assert!(batch.is_empty());
        tx.try_push(text(2)).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 2);
        assert_eq!(rx.take(&mut cx, 8, &mut batch), Took::default());
        assert_eq!(Vec::from(batch), vec![text(2)]);
    }

    #[test]
    fn a_request_wakes_the_writer_and_take_reports_it() {
        let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        let _ = rx.take(&mut cx, 8, &mut batch);
        assert!(tx.request_end(EndRequest::Terminate));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            rx.take(&mut cx, 8, &mut batch),
            Took {
                more: false,
                request: true
            }
        );
        assert_eq!(rx.take_request(), Some(EndRequest::Terminate));
        assert_eq!(rx.take_request(), None);
    }

    /// A push from the writer's own task (its handler) wakes nothing, but the writer's next
    /// take in the same round finds it.
    #[tokio::test]
    async fn the_writers_own_push_is_taken_without_a_wake() {
        let (tx, mut rx) = outbox(8, OverflowPolicy::Disconnect);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        let _ = rx.take(&mut cx, 8, &mut batch);
        let mut push = std::pin::pin!(tx.push(text(7)));
        assert!(std::future::Future::poll(push.as_mut(), &mut cx).is_ready());
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        let _ = rx.take(&mut cx, 8, &mut batch);
        assert_eq!(Vec::from(batch), vec![text(7)]);
    }

    #[test]
    fn an_idle_queue_holds_no_memory_after_a_backlog() {
        let (tx, mut rx) = outbox(256, OverflowPolicy::Disconnect);
        for n in 0..200 {
            tx.try_push(text(n)).unwrap();
        }
        assert_eq!(take_now(&mut rx, 1000).len(), 200);
        assert_eq!(tx.inner.state().queue.capacity(), 0);
    }
}
