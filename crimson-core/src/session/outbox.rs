use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A session's bounded outgoing queue: many producers, one writer.
///
/// Producers (the session's handler, broadcasts, other tasks) push encoded payloads; the
/// session's writer task takes everything that is ready in one go, writes it and flushes once.
/// Cloning shares the queue.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the writer: a payload or an ending arrived.
    writer: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    /// Wakes callers of `flushed`: the writer wrote a batch, or ended.
    flushed: Notify,
    capacity: usize,
    policy: OverflowPolicy,
    dropped: AtomicU64,
    sent: AtomicU64,
    /// Payloads accepted so far: each ends up sent or dropped.
    pushed: AtomicU64,
}

struct State {
    queue: VecDeque<Payload>,
    ending: Option<Ending>,
    /// An ending was handed to the writer, or the writer is gone: nothing more is accepted.
    closed: bool,
    /// Payloads the writer has taken but not yet reported written.
    in_flight: usize,
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
                    queue: VecDeque::with_capacity(capacity.min(16)),
                    ending: None,
                    closed: false,
                    in_flight: 0,
                }),
                writer: Notify::new(),
                room: Notify::new(),
                flushed: Notify::new(),
                capacity,
                policy,
                dropped: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                pushed: AtomicU64::new(0),
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
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    self.inner.flushed.notify_waiters();
                    Queued::DroppedOldest
                }
                OverflowPolicy::Disconnect => {
                    let reason =
                        format!("slow consumer: {} messages were waiting", state.queue.len());
                    state.ending = Some(Ending::CloseNow(CloseCode::POLICY, reason));
                    drop(state);
                    self.inner.writer.notify_one();
                    return Err(SendError::Overflow);
                }
            }
        };
        state.queue.push_back(payload);
        self.inner.pushed.fetch_add(1, Ordering::Relaxed);
        drop(state);
        self.inner.writer.notify_one();
        Ok(queued)
    }

    /// Queues `payload`, waiting for room while the queue is full.
    pub async fn push(&self, payload: Payload) -> Result<(), SendError> {
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
                    self.inner.pushed.fetch_add(1, Ordering::Relaxed);
                    drop(state);
                    self.inner.writer.notify_one();
                    return Ok(());
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
            drop(state);
            self.inner.writer.notify_one();
            self.inner.room.notify_waiters();
        }
        takes
    }

    /// The writer's side: waits until something is queued or an ending is asked for, moves
    /// every queued payload into `batch`, and returns the ending if there is one. After an
    /// ending is returned the queue accepts nothing more.
    pub async fn next_batch(&self, batch: &mut Vec<Payload>) -> Option<Ending> {
        loop {
            {
                let mut state = self.state();
                if let Some(ending) = state.ending.take() {
                    state.closed = true;
                    match ending {
                        Ending::Close(..) => {
                            state.in_flight += state.queue.len();
                            batch.extend(state.queue.drain(..));
                        }
                        Ending::CloseNow(..) | Ending::Terminate => {
                            let discarded = state.queue.len() as u64;
                            state.queue.clear();
                            self.inner.dropped.fetch_add(discarded, Ordering::Relaxed);
                        }
                    }
                    drop(state);
                    self.inner.room.notify_waiters();
                    self.inner.flushed.notify_waiters();
                    return Some(ending);
                }
                if state.closed {
                    return Some(Ending::Terminate);
                }
                if !state.queue.is_empty() {
                    state.in_flight += state.queue.len();
                    batch.extend(state.queue.drain(..));
                    drop(state);
                    self.inner.room.notify_waiters();
                    return None;
                }
            }
            self.inner.writer.notified().await;
        }
    }

    /// Resolves once an ending that must not wait for queued payloads ([`Ending::CloseNow`],
    /// [`Ending::Terminate`]) is asked for: the writer races it against a slow write.
    pub async fn urgent(&self) {
        loop {
            {
                let state = self.state();
                if matches!(state.ending, Some(Ending::CloseNow(..) | Ending::Terminate)) {
                    return;
                }
            }
            // The writer's own wake-up: `next_batch` re-checks the state before it waits,
            // so taking a wake-up here loses nothing.
            self.inner.writer.notified().await;
        }
    }

    /// The writer is gone: refuse everything from now on and count what was still queued as
    /// dropped. Returns how many were dropped.
    pub fn finish(&self) -> u64 {
        let mut state = self.state();
        state.closed = true;
        state.ending = None;
        let discarded = (state.queue.len() + state.in_flight) as u64;
        state.queue.clear();
        state.in_flight = 0;
        drop(state);
        self.inner.dropped.fetch_add(discarded, Ordering::Relaxed);
        self.inner.room.notify_waiters();
        self.inner.flushed.notify_waiters();
        discarded
    }

    /// Records that the writer wrote and flushed `count` payloads it had taken.
    pub fn record_sent(&self, count: usize) {
        {
            let mut state = self.state();
            state.in_flight = state.in_flight.saturating_sub(count);
        }
        self.inner.sent.fetch_add(count as u64, Ordering::Relaxed);
        self.inner.flushed.notify_waiters();
    }

    /// Waits until everything queued before the call has been written and flushed to the
    /// socket (or dropped, and counted so), or the queue has closed. Later pushes do not
    /// delay it.
    pub async fn flushed(&self) {
        let target = self.inner.pushed.load(Ordering::Relaxed);
        loop {
            let flushed = self.inner.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            {
                let state = self.state();
                let settled = self.inner.sent.load(Ordering::Relaxed)
                    + self.inner.dropped.load(Ordering::Relaxed);
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
