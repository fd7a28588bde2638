use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::close::CloseCode;
use crate::message::Payload;

/// What a full outgoing queue does with one more message.
///
/// A session's outgoing queue is bounded so that a client that stops reading can neither
/// delay other sessions nor grow the server's memory. Broadcasts and `try_send` apply this
/// policy at once; a session's own `send().await` waits for room instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Close the session with 1008 "slow consumer", discarding what it had queued (counted
    /// as dropped). The default: a client that cannot keep up reconnects and resynchronises.
    #[default]
    Disconnect,
    /// Drop the oldest queued message to make room, counting each drop. Suits feeds where
    /// only the latest state matters (prices, positions).
    DropOldest,
}

/// A message that could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is closing or gone.
    Closed,
    /// The queue was full and the policy is [`OverflowPolicy::Disconnect`]: the session is
    /// now being closed with 1008.
    Overflow,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "the session is closed",
            Self::Overflow => {
                "the session's outgoing queue is full: it is being closed as a slow consumer"
            }
        })
    }
}

impl std::error::Error for SendError {}

/// How a message was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued with room to spare.
    Queued,
    /// Queued after dropping the oldest queued message ([`OverflowPolicy::DropOldest`]).
    DroppedOldest,
}

/// How a session's writer is asked to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Send what is queued, then a close frame with this code and reason.
    Close(CloseCode, String),
    /// Discard what is queued and close at once with this code and reason (slow consumer,
    /// shutdown deadline).
    CloseNow(CloseCode, String),
    /// Drop the connection without a close frame.
    Terminate,
}

/// Past this many slots a drained queue is shrunk back to [`KEEP`].
const SHRINK_ABOVE: usize = 64;
/// What a drained queue keeps after a backlog.
const KEEP: usize = 8;

/// A session's bounded outgoing queue: many producers, one writer.
///
/// Producers (the session's handler, broadcasts, other tasks) push encoded payloads; the
/// session's writer takes everything that is ready in one go, writes it and flushes once.
/// Cloning shares the queue.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes producers waiting for room (only called when `State::room_waiters` says some
    /// are: a broadcast's writers then pay no extra lock per batch).
    room: Notify,
    /// Wakes callers of `flushed` (likewise only when `flush_waiters` says so).
    flushed: Notify,
    capacity: usize,
    policy: OverflowPolicy,
    dropped: AtomicU64,
    /// Counted without the queue's lock: the writer records every batch, and producers on
    /// other cores are contending for that lock.
    sent: AtomicU64,
    /// Callers waiting in `flushed`. With `sent` and `dropped` it is updated and read
    /// sequentially consistently, so a waiter either sees a count or is notified of it.
    flush_waiters: AtomicUsize,
}

struct State {
    /// Starts without an allocation and grows as payloads arrive: an idle session's queue
    /// costs nothing.
    queue: VecDeque<Payload>,
    ending: Option<Ending>,
    /// An ending was handed to the writer, or the writer is gone: nothing more is accepted.
    closed: bool,
    /// Payloads handed to the writer so far; those not yet counted in `sent` are in flight.
    taken: u64,
    /// Payloads accepted so far: each ends up sent or dropped.
    pushed: u64,
    /// The writer waiting in `next_batch`, woken by a push or an ending. Kept under the
    /// queue's own lock, so a push wakes it without any other synchronisation.
    writer: Option<Waker>,
    /// The writer waiting in `urgent`.
    urgent: Option<Waker>,
    /// Producers waiting in `push` for room.
    room_waiters: usize,
}

impl State {
    /// Takes the writer's waker for a new payload, to wake once the lock is released.
    fn take_writer(&mut self) -> Wake {
        Wake(self.writer.take(), None)
    }

    /// Takes both of the writer's wakers, for an ending.
    fn take_writer_urgent(&mut self) -> Wake {
        Wake(self.writer.take(), self.urgent.take())
    }
}

/// Wakers taken under the lock, woken after it is released.
struct Wake(Option<Waker>, Option<Waker>);

impl Wake {
    fn wake(self) {
        if let Some(waker) = self.0 {
            waker.wake();
        }
        if let Some(waker) = self.1 {
            waker.wake();
        }
    }
}

/// Keeps `State::room_waiters` right however the wait ends.
struct WaitingForRoom<'a> {
    outbox: &'a Outbox,
}

impl<'a> WaitingForRoom<'a> {
    fn new(outbox: &'a Outbox, state: &mut State) -> Self {
        state.room_waiters += 1;
        Self { outbox }
    }
}

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.outbox.state().room_waiters -= 1;
    }
}

/// Keeps `Inner::flush_waiters` right however the wait ends.
struct WaitingForFlush<'a> {
    inner: &'a Inner,
}

impl<'a> WaitingForFlush<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.flush_waiters.fetch_add(1, Ordering::SeqCst);
        Self { inner }
    }
}

impl Drop for WaitingForFlush<'_> {
    fn drop(&mut self) {
        self.inner.flush_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    fn notify_flushed(&self) {
        if self.flush_waiters.load(Ordering::SeqCst) > 0 {
            self.flushed.notify_waiters();
        }
    }
}

/// Stores `cx`'s waker in `slot` unless it is already there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Outbox")
            .field("queued", &state.queue.len())
            .field("capacity", &self.inner.capacity)
            .field("policy", &self.inner.policy)
            .field("closed", &state.closed)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Outbox {
    /// A queue of at most `capacity` payloads (at least 1).
    pub fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    ending: None,
                    closed: false,
                    taken: 0,
                    pushed: 0,
                    writer: None,
                    urgent: None,
                    room_waiters: 0,
                }),
                room: Notify::new(),
                flushed: Notify::new(),
                capacity,
                policy,
                dropped: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                flush_waiters: AtomicUsize::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the state all the same.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `payload` now, applying the overflow policy if the queue is full.
    pub fn try_push(&self, payload: Payload) -> Result<Queued, SendError> {
        let mut state = self.state();
        if state.closed || state.ending.is_some() {
            return Err(SendError::Closed);
        }
        let queued = if state.queue.len() < self.inner.capacity {
            Queued::Queued
        } else {
            match self.inner.policy {
                OverflowPolicy::DropOldest => {
                    state.queue.pop_front();
                    self.inner.dropped.fetch_add(1, Ordering::SeqCst);
                    self.inner.notify_flushed();
                    Queued::DroppedOldest
                }
                OverflowPolicy::Disconnect => {
                    let reason =
                        format!("slow consumer: {} messages were waiting", state.queue.len());
                    state.ending = Some(Ending::CloseNow(CloseCode::POLICY, reason));
                    let wake = state.take_writer_urgent();
                    drop(state);
                    wake.wake();
                    return Err(SendError::Overflow);
                }
            }
        };
        state.queue.push_back(payload);
        state.pushed += 1;
        let wake = state.take_writer();
        drop(state);
        wake.wake();
        Ok(queued)
    }

    /// Queues `payload`, waiting for room while the queue is full.
    pub async fn push(&self, payload: Payload) -> Result<(), SendError> {
        let mut waiting = None;
        loop {
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.state();
                if state.closed || state.ending.is_some() {
                    return Err(SendError::Closed);
                }
                if state.queue.len() < self.inner.capacity {
                    state.queue.push_back(payload);
                    state.pushed += 1;
                    let wake = state.take_writer();
                    drop(state);
                    wake.wake();
                    return Ok(());
                }
                if waiting.is_none() {
                    waiting = Some(WaitingForRoom::new(self, &mut state));
                }
            }
            room.await;
        }
    }

    /// Asks the writer to end. The first request wins; later ones are ignored, except that
    /// [`Ending::Terminate`] and [`Ending::CloseNow`] override a pending [`Ending::Close`].
    /// Returns whether this request took effect.
    pub fn end(&self, ending: Ending) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        let takes = matches!(
            (&state.ending, &ending),
            (None, _)
                | (
                    Some(Ending::Close(..)),
                    Ending::CloseNow(..) | Ending::Terminate
                )
                | (Some(Ending::CloseNow(..)), Ending::Terminate)
        );
        if takes {
            state.ending = Some(ending);
            let wake = state.take_writer_urgent();
            let room = state.room_waiters > 0;
            drop(state);
            wake.wake();
            if room {
                self.inner.room.notify_waiters();
            }
        }
        takes
    }

    /// The writer's side: waits until something is queued or an ending is asked for, moves
    /// every queued payload into `batch`, and returns the ending if there is one. After an
    /// ending is returned the queue accepts nothing more.
    ///
    /// There is one writer: a second task waiting here at the same time would take the
    /// first one's place.
    pub async fn next_batch(&self, batch: &mut Vec<Payload>) -> Option<Ending> {
        poll_fn(|cx| self.poll_next_batch(cx, batch)).await
    }

    fn poll_next_batch(
        &self,
        cx: &mut Context<'_>,
        batch: &mut Vec<Payload>,
    ) -> Poll<Option<Ending>> {
        let mut state = self.state();
        if let Some(ending) = state.ending.take() {
            state.closed = true;
            match ending {
                Ending::Close(..) => {
                    state.taken += state.queue.len() as u64;
                    batch.extend(state.queue.drain(..));
                }
                Ending::CloseNow(..) | Ending::Terminate => {
                    let discarded = state.queue.len() as u64;
                    state.queue.clear();
                    self.inner.dropped.fetch_add(discarded, Ordering::SeqCst);
                }
            }
            let room = state.room_waiters > 0;
            drop(state);
            if room {
                self.inner.room.notify_waiters();
            }
            self.inner.notify_flushed();
            return Poll::Ready(Some(ending));
        }
        if state.closed {
            return Poll::Ready(Some(Ending::Terminate));
        }
        if !state.queue.is_empty() {
            state.taken += state.queue.len() as u64;
            batch.extend(state.queue.drain(..));
            // A backlog is over: give its memory back rather than keep the largest size the
            // queue ever reached for the rest of the session (measured: ~3 KiB per session
            // after a 2-s stall under a broadcast every 100 ms, for good).
            if state.queue.capacity() > SHRINK_ABOVE {
                state.queue.shrink_to(KEEP);
            }
            let room = state.room_waiters > 0;
            drop(state);
            if room {
                self.inner.room.notify_waiters();
            }
            return Poll::Ready(None);
        }
        register(&mut state.writer, cx);
        Poll::Pending
    }

    /// Resolves once an ending that must not wait for queued payloads ([`Ending::CloseNow`],
    /// [`Ending::Terminate`]) is asked for: the writer races it against a slow write.
    pub async fn urgent(&self) {
        poll_fn(|cx| self.poll_urgent(cx)).await;
    }

    fn poll_urgent(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if matches!(state.ending, Some(Ending::CloseNow(..) | Ending::Terminate)) {
            return Poll::Ready(());
        }
        register(&mut state.urgent, cx);
        Poll::Pending
    }

    /// The writer is gone: refuse everything from now on and count what was still queued, and
    /// what the writer took but never recorded with [`record_sent`](Self::record_sent), as
    /// dropped. Returns how many were dropped. Nothing may be recorded as sent after this.
    pub fn finish(&self) -> u64 {
        let mut state = self.state();
        state.closed = true;
        state.ending = None;
        // Taken by the writer but never recorded as sent: lost with the connection.
        let in_flight = state
            .taken
            .saturating_sub(self.inner.sent.load(Ordering::SeqCst));
        state.taken -= in_flight;
        let discarded = state.queue.len() as u64 + in_flight;
        state.queue = VecDeque::new();
        let wake = state.take_writer_urgent();
        drop(state);
        wake.wake();
        self.inner.dropped.fetch_add(discarded, Ordering::SeqCst);
        self.inner.room.notify_waiters();
        self.inner.flushed.notify_waiters();
        discarded
    }

    /// Records that the writer wrote and flushed `count` payloads it had taken.
    pub fn record_sent(&self, count: usize) {
        self.inner.sent.fetch_add(count as u64, Ordering::SeqCst);
        self.inner.notify_flushed();
    }

    /// Waits until everything queued before the call has been written and flushed to the
    /// socket (or dropped, and counted so), or the queue has closed. Later pushes do not
    /// delay it.
    pub async fn flushed(&self) {
        let target = self.state().pushed;
        // Counted before the first check: a writer that counts after it sees the waiter.
        let _waiting = WaitingForFlush::new(&self.inner);
        loop {
            let flushed = self.inner.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            {
                let state = self.state();
                let settled = self.inner.sent.load(Ordering::SeqCst)
                    + self.inner.dropped.load(Ordering::SeqCst);
                if state.closed || settled >= target {
                    return;
                }
            }
            flushed.await;
        }
    }

    /// Payloads written to the socket so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Payloads dropped so far: by [`OverflowPolicy::DropOldest`], or discarded when the
    /// session closed at once or ended with messages still queued.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Payloads waiting now.
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue has stopped accepting payloads.
    pub fn is_closed(&self) -> bool {
        let state = self.state();
        state.closed || state.ending.is_some()
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(n: usize) -> Payload {
        Payload::Text(n.to_string().into())
    }

    #[tokio::test]
    async fn batches_take_everything_ready() {
        let outbox = Outbox::new(8, OverflowPolicy::Disconnect);
        for n in 0..3 {
            assert_eq!(outbox.try_push(text(n)), Ok(Queued::Queued));
        }
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        assert_eq!(batch, vec![text(0), text(1), text(2)]);
        assert!(outbox.is_empty());
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.flushed().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "three payloads are still in flight");
        outbox.record_sent(3);
        waiter.await.unwrap();
        assert_eq!(outbox.sent(), 3);
    }

    #[tokio::test]
    async fn flushed_waits_for_its_own_messages_only() {
        let outbox = Outbox::new(64, OverflowPolicy::Disconnect);
        outbox.try_push(text(0)).unwrap();
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.flushed().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A busy writer: every batch written, and more keeps arriving, so the queue is never
        // empty when waiters wake.
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        outbox.try_push(text(1)).unwrap();
        outbox.record_sent(batch.len());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("flushed returns once its own message is written")
            .unwrap();
        assert_eq!(outbox.len(), 1);
    }

    #[tokio::test]
    async fn disconnect_policy_closes_now_and_counts_discards() {
        let outbox = Outbox::new(2, OverflowPolicy::Disconnect);
        outbox.try_push(text(0)).unwrap();
        outbox.try_push(text(1)).unwrap();
        assert_eq!(outbox.try_push(text(2)), Err(SendError::Overflow));
        assert_eq!(outbox.try_push(text(3)), Err(SendError::Closed));
        let mut batch = Vec::new();
        let ending = outbox.next_batch(&mut batch).await;
        assert_eq!(
            ending,
            Some(Ending::CloseNow(
                CloseCode::POLICY,
                "slow consumer: 2 messages were waiting".into()
            ))
        );
        assert!(batch.is_empty());
        assert_eq!(outbox.dropped(), 2);
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest() {
        let outbox = Outbox::new(2, OverflowPolicy::DropOldest);
        for n in 0..5 {
            outbox.try_push(text(n)).unwrap();
        }
        assert_eq!(outbox.dropped(), 3);
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        assert_eq!(batch, vec![text(3), text(4)]);
    }

    #[tokio::test]
    async fn close_flushes_the_queue_first() {
        let outbox = Outbox::new(4, OverflowPolicy::Disconnect);
        outbox.try_push(text(0)).unwrap();
        assert!(outbox.end(Ending::Close(CloseCode::NORMAL, "bye".into())));
        assert!(!outbox.end(Ending::Close(CloseCode::GOING_AWAY, "later".into())));
        assert_eq!(outbox.try_push(text(1)), Err(SendError::Closed));
        let mut batch = Vec::new();
        let ending = outbox.next_batch(&mut batch).await;
        assert_eq!(batch, vec![text(0)]);
        assert_eq!(ending, Some(Ending::Close(CloseCode::NORMAL, "bye".into())));
        assert_eq!(outbox.dropped(), 0);
    }

    #[tokio::test]
    async fn push_waits_for_room_and_fails_when_closed() {
        let outbox = Outbox::new(1, OverflowPolicy::Disconnect);
        outbox.push(text(0)).await.unwrap();
        let producer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(text(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !producer.is_finished(),
            "push must wait while the queue is full"
        );
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        outbox.record_sent(batch.len());
        producer.await.unwrap().unwrap();
        assert_eq!(outbox.len(), 1);

        let blocked = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(text(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(outbox.finish(), 1);
        assert_eq!(blocked.await.unwrap(), Err(SendError::Closed));
        assert_eq!(outbox.dropped(), 1);
    }

    #[tokio::test]
    async fn cancelled_waits_give_back_their_count() {
        let outbox = Outbox::new(1, OverflowPolicy::Disconnect);
        outbox.try_push(text(0)).unwrap();
        let short = Duration::from_millis(10);
        assert!(tokio::time::timeout(short, outbox.push(text(1)))
            .await
            .is_err());
        assert!(tokio::time::timeout(short, outbox.flushed()).await.is_err());
        let room_waiters = outbox.state().room_waiters;
        let flush_waiters = outbox.inner.flush_waiters.load(Ordering::SeqCst);
        assert_eq!((room_waiters, flush_waiters), (0, 0));
    }

    #[tokio::test]
    async fn waiters_are_woken_only_while_counted() {
        let outbox = Outbox::new(1, OverflowPolicy::Disconnect);
        outbox.try_push(text(0)).unwrap();
        let flusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.flushed().await })
        };
        let pusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(text(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            (
                outbox.state().room_waiters,
                outbox.inner.flush_waiters.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, pusher)
            .await
            .expect("taking the batch makes room")
            .unwrap()
            .unwrap();
        outbox.record_sent(batch.len());
        tokio::time::timeout(wait, flusher)
            .await
            .expect("writing the batch wakes flushed")
            .unwrap();
    }

    #[tokio::test]
    async fn a_backlog_gives_its_memory_back_once_drained() {
        let outbox = Outbox::new(256, OverflowPolicy::Disconnect);
        for n in 0..200 {
            outbox.try_push(text(n)).unwrap();
        }
        assert!(outbox.state().queue.capacity() >= 200);
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        assert_eq!(batch.len(), 200);
        assert!(outbox.state().queue.capacity() <= SHRINK_ABOVE);
    }

    #[tokio::test]
    async fn writer_wakes_for_a_late_push() {
        let outbox = Outbox::new(4, OverflowPolicy::Disconnect);
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                outbox.next_batch(&mut batch).await;
                batch
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        outbox.try_push(text(7)).unwrap();
        assert_eq!(writer.await.unwrap(), vec![text(7)]);
    }
}
