//! The client's outbox: a bounded queue of encoded messages that outlives connections.
//!
//! Unlike a server session's queue, it survives its connection: messages sent while the client
//! is connecting or retrying wait here and go out, in order, on the next connection. It is open
//! from `connect()` until the client is closed; closing discards (and counts) what is left.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crimson_core::Payload;
use tokio::sync::Notify;

use crate::error::SendError;

pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the current connection's writer: a message arrived.
    ready: Notify,
    capacity: usize,
}

struct Queue {
    items: VecDeque<Payload>,
    open: bool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                open: false,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue consistent: take it anyway.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a message, or says why not.
    pub(crate) fn push(&self, payload: Payload) -> Result<(), SendError> {
        let mut queue = self.lock();
        if !queue.open {
            return Err(SendError::Closed);
        }
        if queue.items.len() >= self.capacity {
            return Err(SendError::Full(self.capacity));
        }
        queue.items.push_back(payload);
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// Moves every queued message into `batch` (in order); `false` when there was none.
    pub(crate) fn take_all(&self, batch: &mut Vec<Payload>) -> bool {
        let mut queue = self.lock();
        if queue.items.is_empty() {
            return false;
        }
        batch.extend(queue.items.drain(..));
        true
    }

    /// Moves every queued message into `batch` (in order); waits while there is none.
    pub(crate) async fn next_batch(&self, batch: &mut Vec<Payload>) {
        loop {
            if self.take_all(batch) {
                return;
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check above
            // and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// Puts messages that were taken but never handed to a socket back at the front, ahead of
    /// anything queued since, so order is kept. They may briefly exceed the capacity.
    pub(crate) fn requeue_front(&self, unsent: impl DoubleEndedIterator<Item = Payload>) {
        let mut queue = self.lock();
        if !queue.open {
            return;
        }
        for payload in unsent.rev() {
            queue.items.push_front(payload);
        }
        let any = !queue.items.is_empty();
        drop(queue);
        if any {
            self.ready.notify_one();
        }
    }

    /// Accepts messages from now on.
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// Refuses messages from now on and discards what is queued; returns how many.
    pub(crate) fn close(&self) -> usize {
        let mut queue = self.lock();
        queue.open = false;
        let discarded = queue.items.len();
        queue.items.clear();
        discarded
    }

    /// How many messages wait.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Payload {
        Payload::Text(crimson_core::Text::from_static(s))
    }

    #[tokio::test]
    async fn bounded_ordered_and_closable() {
        let outbox = Outbox::new(2);
        assert!(matches!(outbox.push(text("a")), Err(SendError::Closed)));
        outbox.open();
        outbox.push(text("a")).unwrap();
        outbox.push(text("b")).unwrap();
        assert!(matches!(outbox.push(text("c")), Err(SendError::Full(2))));

        let mut batch = Vec::new();
        outbox.next_batch(&mut batch).await;
        assert_eq!(batch, [text("a"), text("b")]);
        outbox.push(text("c")).unwrap();
        // "b" never reached a socket: it goes back ahead of "c".
        outbox.requeue_front(batch.drain(1..));
        outbox.next_batch(&mut batch).await;
        assert_eq!(batch, [text("a"), text("b"), text("c")]);

        outbox.push(text("d")).unwrap();
        assert_eq!(outbox.close(), 1);
        assert_eq!(outbox.len(), 0);
        assert!(matches!(outbox.push(text("e")), Err(SendError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_push() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        outbox.open();
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                outbox.next_batch(&mut batch).await;
                batch
            })
        };
        tokio::task::yield_now().await;
        outbox.push(text("x")).unwrap();
        assert_eq!(writer.await.unwrap(), [text("x")]);
    }
}
