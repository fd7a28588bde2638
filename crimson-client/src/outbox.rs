//! The client's outbox: a bounded queue of encoded messages that outlives connections.
//!
//! Unlike a server session's queue, it survives its connection: messages sent while the client
//! is connecting or retrying wait here and go out, in order, on the next connection. It is open
//! from `connect()` until the client is closed; closing discards (and counts) what is left.
//!
//! A connection takes messages from here into its write queue; once the first byte of a
//! message has been written to the socket, bytes of it may reach the server, so it is never
//! sent again. A message whose writing had not begun when its connection ended is put back at
//! the front ([`requeue`](Outbox::requeue)) and goes out, in order, on the next connection (or
//! is counted as discarded when the client closes).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Waker};

use crimson_core::metrics::Gauge;
use crimson_core::Payload;

use crate::error::SendError;

pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    /// `crimson_client_outbox_depth`: what waits here, summed over the process's clients.
    depth: Gauge,
}

/// What waits in the outbox: a message, a request, or an answer to the server's request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// The message's (or request's) encoded body, without the protocol's header line; for an
    /// answer, the whole frame.
    pub(crate) payload: Payload,
    pub(crate) kind: ItemKind,
}

/// How an [`Item`] goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A message: behind an empty header line when the connection speaks the protocol.
    Message,
    /// A request with this id: only on a connection that speaks the protocol.
    Request(u64),
    /// A whole protocol frame (an answer to the server), sent as it is.
    Frame,
}

impl Item {
    pub(crate) fn message(payload: Payload) -> Self {
        Self {
            payload,
            kind: ItemKind::Message,
        }
    }
}

struct Queue {
    items: VecDeque<Item>,
    open: bool,
    /// The current connection, woken by a push.
    writer: Option<Waker>,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                open: false,
                writer: None,
            }),
            capacity,
            depth: Gauge::new("crimson_client_outbox_depth", &[]),
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
        self.push_item(Item::message(payload), false)
    }

    /// Queues `item`; `answer`: an answer the server waits for, which may go past the
    /// capacity, up to twice it (a server that floods requests and reads nothing cannot grow
    /// the queue further).
    pub(crate) fn push_item(&self, item: Item, answer: bool) -> Result<(), SendError> {
        let mut queue = self.lock();
        if !queue.open {
            return Err(SendError::Closed);
        }
        let bound = if answer {
            self.capacity * 2
        } else {
            self.capacity
        };
        if queue.items.len() >= bound {
            return Err(SendError::Full(bound));
        }
        queue.items.push_back(item);
        let writer = queue.writer.take();
        drop(queue);
        self.depth.add(1.0);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
    }

    /// Hands up to `max` items, oldest first, to `send`, which takes each into a
    /// connection's write queue; registers `cx` to be woken by the next push when there is
    /// none. Returns how many were handed over.
    pub(crate) fn hand_over(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        mut send: impl FnMut(Item),
    ) -> usize {
        let mut queue = self.lock();
        let mut handed = 0;
        while handed < max {
            let Some(item) = queue.items.pop_front() else {
                break;
            };
            send(item);
            handed += 1;
        }
        if queue.items.is_empty() {
            match &queue.writer {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => queue.writer = Some(cx.waker().clone()),
            }
        }
        drop(queue);
        if handed > 0 {
            self.depth.add(-(handed as f64));
        }
        handed
    }

    /// Puts messages a connection took but never began to write back at the front, ahead of
    /// anything queued since, in order; returns how many. They may briefly exceed the capacity.
    pub(crate) fn requeue(&self, untouched: impl DoubleEndedIterator<Item = Item>) -> usize {
        let mut queue = self.lock();
        let mut count = 0;
        for item in untouched.rev() {
            queue.items.push_front(item);
            count += 1;
        }
        drop(queue);
        self.depth.add(count as f64);
        count
    }

    /// Accepts messages from now on.
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// Refuses messages from now on and discards every message not handed to a connection;
    /// returns how many.
    pub(crate) fn close(&self) -> usize {
        let mut queue = self.lock();
        queue.open = false;
        queue.writer = None;
        let discarded = queue.items.len();
        queue.items.clear();
        drop(queue);
        self.depth.add(-(discarded as f64));
        discarded
    }

    /// Empties the queue; how many it held.
    #[cfg(test)]
    pub(crate) fn hand_over_all(&self) -> usize {
        let mut queue = self.lock();
        let count = queue.items.len();
        queue.items.clear();
        drop(queue);
        self.depth.add(-(count as f64));
        count
    }

    /// How many messages wait for a connection.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn text(s: &'static str) -> Payload {
        Payload::Text(crimson_core::Text::from_static(s))
    }

    #[test]
    fn bounded_ordered_and_closable() {
        let outbox = Outbox::new(2);
        assert!(matches!(outbox.push(text("a")), Err(SendError::Closed)));
        outbox.open();
        outbox.push(text("a")).unwrap();
        outbox.push(text("b")).unwrap();
        assert!(matches!(outbox.push(text("c")), Err(SendError::Full(2))));
        let mut cx = Context::from_waker(Waker::noop());
        let mut sent = Vec::new();
        assert_eq!(outbox.hand_over(&mut cx, 1, |i| sent.push(i.payload)), 1);
        outbox.push(text("c")).unwrap();
        assert_eq!(outbox.hand_over(&mut cx, 8, |i| sent.push(i.payload)), 2);
        assert_eq!(sent, [text("a"), text("b"), text("c")]);
        // "c" never left: it goes back ahead of "d".
        outbox.push(text("d")).unwrap();
        assert_eq!(outbox.requeue([Item::message(text("c"))].into_iter()), 1);
        assert_eq!(outbox.hand_over(&mut cx, 8, |i| sent.push(i.payload)), 2);
        assert_eq!(&sent[3..], [text("c"), text("d")]);
        outbox.push(text("d")).unwrap();
        assert_eq!(outbox.close(), 1);
        assert_eq!(outbox.len(), 0);
        assert!(matches!(outbox.push(text("e")), Err(SendError::Closed)));
    }
}
