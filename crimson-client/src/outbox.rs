//! The client's outbox: a bounded queue of encoded messages that outlives connections.
//!
//! Unlike a server session's queue, it survives its connection: messages sent while the client
//! is connecting or retrying wait here and go out, in order, on the next connection. It is open
//! from `connect()` until the client is closed; closing discards (and counts) what is left.
//!
//! A message stays here until a connection's socket has accepted it. The writer first moves
//! what is queued *in flight* ([`take_all`](Outbox::take_all)), then hands the in-flight
//! messages to the socket one at a time, dropping each from here only once the socket took it
//! ([`handed_over`](Outbox::handed_over)). So however a connection ends (a failed write, a
//! timeout, its writer aborted or panicking), what is still in flight was never handed over:
//! [`requeue_in_flight`](Outbox::requeue_in_flight) puts it back at the front for the next
//! connection, and [`close`](Outbox::close) counts it as discarded.

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
    /// Waiting for a writer to take them.
    items: VecDeque<Payload>,
    /// Taken by the current connection's writer and not yet accepted by its socket, oldest
    /// first.
    in_flight: VecDeque<Payload>,
    open: bool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                in_flight: VecDeque::new(),
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

    /// Queues a message, or says why not. Messages in flight do not count toward the capacity.
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

    /// Moves every queued message in flight, behind any already there (order is kept);
    /// `false` when none was queued.
    pub(crate) fn take_all(&self) -> bool {
        let mut queue = self.lock();
        if queue.items.is_empty() {
            return false;
        }
        let Queue {
            items, in_flight, ..
        } = &mut *queue;
        in_flight.extend(items.drain(..));
        true
    }

    /// Moves every queued message in flight; waits while there is none.
    pub(crate) async fn next_batch(&self) {
        loop {
            if self.take_all() {
                return;
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check above
            // and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// The oldest message in flight (a cheap clone: payloads share their bytes), if any.
    pub(crate) fn next_in_flight(&self) -> Option<Payload> {
        self.lock().in_flight.front().cloned()
    }

    /// The socket accepted the oldest message in flight: it leaves the outbox.
    pub(crate) fn handed_over(&self) {
        self.lock().in_flight.pop_front();
    }

    /// Puts the messages still in flight, which no socket accepted, back at the front, ahead
    /// of anything queued since, so order is kept; returns how many. They may briefly exceed
    /// the capacity. Call it only once the writer that took them has stopped.
    pub(crate) fn requeue_in_flight(&self) -> usize {
        let mut queue = self.lock();
        let Queue {
            items, in_flight, ..
        } = &mut *queue;
        let requeued = in_flight.len();
        while let Some(payload) = in_flight.pop_back() {
            items.push_front(payload);
        }
        let any = !items.is_empty();
        drop(queue);
        if any {
            self.ready.notify_one();
        }
        requeued
    }

    /// Accepts messages from now on.
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// Refuses messages from now on and discards every message no socket accepted, queued or
    /// in flight; returns how many.
    pub(crate) fn close(&self) -> usize {
        let mut queue = self.lock();
        queue.open = false;
        let discarded = queue.items.len() + queue.in_flight.len();
        queue.items.clear();
        queue.in_flight.clear();
        discarded
    }

    /// How many messages no socket accepted yet: queued or in flight.
    pub(crate) fn len(&self) -> usize {
        let queue = self.lock();
        queue.items.len() + queue.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Payload {
        Payload::Text(crimson_core::Text::from_static(s))
    }

    /// Hands every message in flight over; returns them.
    fn hand_over_all(outbox: &Outbox) -> Vec<Payload> {
        std::iter::from_fn(|| {
            let next = outbox.next_in_flight()?;
            outbox.handed_over();
            Some(next)
        })
        .collect()
    }

    #[tokio::test]
    async fn bounded_ordered_and_closable() {
        let outbox = Outbox::new(2);
        assert!(matches!(outbox.push(text("a")), Err(SendError::Closed)));
        outbox.open();
        outbox.push(text("a")).unwrap();
        outbox.push(text("b")).unwrap();
        assert!(matches!(outbox.push(text("c")), Err(SendError::Full(2))));

        outbox.next_batch().await;
        assert_eq!(outbox.len(), 2, "in flight still counts");
        // "a" reached a socket; "b" never did: it goes back ahead of "c".
        assert_eq!(outbox.next_in_flight(), Some(text("a")));
        outbox.handed_over();
        outbox.push(text("c")).unwrap();
        assert_eq!(outbox.requeue_in_flight(), 1);
        assert_eq!(outbox.requeue_in_flight(), 0);
        outbox.next_batch().await;
        assert_eq!(hand_over_all(&outbox), [text("b"), text("c")]);
        assert_eq!(outbox.len(), 0);

        // Closing counts what is queued and what is in flight.
        outbox.push(text("d")).unwrap();
        outbox.next_batch().await;
        outbox.push(text("e")).unwrap();
        assert_eq!(outbox.close(), 2);
        assert_eq!(outbox.len(), 0);
        assert!(matches!(outbox.push(text("f")), Err(SendError::Closed)));
        assert_eq!(outbox.requeue_in_flight(), 0);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_push() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        outbox.open();
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                outbox.next_batch().await;
                hand_over_all(&outbox)
            })
        };
        tokio::task::yield_now().await;
        outbox.push(text("x")).unwrap();
        assert_eq!(writer.await.unwrap(), [text("x")]);
    }
}
