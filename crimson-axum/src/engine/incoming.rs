//! A session's queue of decoded incoming messages: the connection's reader pushes, the
//! handler receives.
//!
//! A bounded single-producer, single-consumer queue that allocates nothing until a message
//! arrives and then only as much as is waiting (tokio's `mpsc` allocates a block of 32 slots
//! per channel up front: 1 KiB for a 32-byte message type, more for larger ones, on every idle
//! connection).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

/// A queue of at most `capacity` messages (at least 1).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            receiver: None,
            sender: None,
            sender_alive: true,
            receiver_alive: true,
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

struct Chan<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// The receiver waiting for a message.
    receiver: Option<Waker>,
    /// The sender waiting for room.
    sender: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

impl<T> Chan<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; recover the state all the same.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Why a message was not queued; it is handed back.
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    /// The queue is full.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The reader's end.
pub(crate) struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Queues `value` now, or hands it back. A receiver waiting in the task `current` wakes
    /// is not woken: that task polls it next (the session's handler, in the session's task).
    pub(crate) fn try_send(&self, value: T, current: &Waker) -> Result<(), TrySendError<T>> {
        let mut state = self.chan.state();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(value));
        }
        if state.queue.len() >= state.capacity {
            return Err(TrySendError::Full(value));
        }
        state.queue.push_back(value);
        let same_task = state
            .receiver
            .as_ref()
            .is_some_and(|receiver| receiver.will_wake(current));
        let receiver = if same_task {
            None
        } else {
            state.receiver.take()
        };
        drop(state);
        wake(receiver);
        Ok(())
    }

    /// How many more messages fit now: `Ready(Some(n))` with `n > 0`, `Ready(None)` once the
    /// receiver is gone, `Pending` while the queue is full (the receiver wakes the caller when
    /// it takes one).
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        let mut state = self.chan.state();
        if !state.receiver_alive {
            return Poll::Ready(None);
        }
        let room = state.capacity.saturating_sub(state.queue.len());
        if room == 0 {
            register(&mut state.sender, cx);
            return Poll::Pending;
        }
        Poll::Ready(Some(room))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.chan.state();
        state.sender_alive = false;
        let receiver = state.receiver.take();
        drop(state);
        wake(receiver);
    }
}

/// The handler's end.
pub(crate) struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// The next message; `None` once the sender is gone and the queue is empty.
    ///
    /// Takes part in tokio's cooperative budget, as tokio's own channels do: a handler
    /// that always finds a message waiting still yields to other tasks now and then.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.chan.state();
        let was_full = state.queue.len() >= state.capacity;
        if let Some(value) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > 16 {
                // A burst is over: give its memory back.
                state.queue = VecDeque::new();
            }
            let sender = if was_full { state.sender.take() } else { None };
            drop(state);
            wake(sender);
            coop.made_progress();
            return Poll::Ready(Some(value));
        }
        if !state.sender_alive {
            coop.made_progress();
            return Poll::Ready(None);
        }
        register(&mut state.receiver, cx);
        Poll::Pending
    }

    /// The next message; `None` once the sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Messages waiting now.
    pub(crate) fn len(&self) -> usize {
        self.chan.state().queue.len()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.chan.state();
        state.receiver_alive = false;
        let queue = std::mem::take(&mut state.queue);
        let sender = state.sender.take();
        drop(state);
        // Dropped outside the lock: a message's destructor may do anything.
        drop(queue);
        wake(sender);
    }
}

#[cfg(test)]
impl<T> Sender<T> {
    fn try_send_now(&self, value: T) -> Result<(), TrySendError<T>> {
        self.try_send(value, Waker::noop())
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn delivers_in_order_then_ends_when_the_sender_goes() {
        let (tx, mut rx) = channel(4);
        for n in 0..3 {
            tx.try_send_now(n).unwrap();
        }
        assert_eq!(rx.len(), 3);
        drop(tx);
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn full_queue_hands_the_message_back_and_room_is_signalled() {
        let (tx, mut rx) = channel(1);
        tx.try_send_now(1).unwrap();
        assert!(matches!(tx.try_send_now(2), Err(TrySendError::Full(2))));
        let sender = tokio::spawn(async move {
            let room = poll_fn(|cx| tx.poll_room(cx)).await;
            (tx, room)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sender.is_finished(), "no room while the queue is full");
        assert_eq!(rx.recv().await, Some(1));
        let (tx, room) = tokio::time::timeout(Duration::from_secs(5), sender)
            .await
            .expect("a receive makes room and wakes the sender")
            .unwrap();
        assert_eq!(room, Some(1));
        drop(rx);
        assert!(matches!(tx.try_send_now(3), Err(TrySendError::Closed(3))));
    }

    #[tokio::test]
    async fn receiver_waits_and_wakes_for_a_message() {
        let (tx, mut rx) = channel::<u32>(2);
        let receiver = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!receiver.is_finished());
        tx.try_send_now(7).unwrap();
        assert_eq!(receiver.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_dropped_receiver_wakes_a_waiting_sender() {
        let (tx, rx) = channel(1);
        tx.try_send_now(String::from("queued")).unwrap();
        let sender = tokio::spawn(async move { poll_fn(|cx| tx.poll_room(cx)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(sender.await.unwrap(), None);
    }

    #[test]
    fn allocates_nothing_until_a_message_arrives() {
        let (tx, rx) = channel::<[u8; 256]>(32);
        assert_eq!(rx.chan.state().queue.capacity(), 0);
        tx.try_send_now([0; 256]).unwrap();
        assert!(rx.chan.state().queue.capacity() >= 1);
    }
}
