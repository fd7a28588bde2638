//! The state a queue's producers and its writer share: the queue itself and the waiting
//! wakers behind one lock, the counts and the flags beside it. The flags (`requested`,
//! `writer_set`) let the writer see without the lock that nothing changed since it last
//! looked.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Waker};

use crimson_core::session::{Outgoing, OverflowPolicy};
use tokio::sync::Notify;

use super::EndRequest;

pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    /// Wakes producers waiting for room (only when `room_waiters` says some are).
    pub(super) room: Notify,
    /// Wakes callers of `flushed` (only when `flush_waiters` says some are).
    pub(super) flushed: Notify,
    pub(super) capacity: usize,
    pub(super) policy: OverflowPolicy,
    pub(super) dropped: AtomicU64,
    pub(super) sent: AtomicU64,
    /// Notices of dropped publications queued in their place: each such message is counted
    /// dropped, and then its notice sent (or dropped), so `sent + dropped` runs this much
    /// ahead of the messages pushed.
    pub(super) noticed: AtomicU64,
    /// Callers waiting in `flushed`; updated and read sequentially consistently with `sent`
    /// and `dropped`, so a waiter either sees a count or is notified of it.
    pub(super) flush_waiters: AtomicUsize,
    /// An end request waits (read without the lock on every round of the session's task).
    pub(super) requested: AtomicBool,
    /// The writer's waker is registered and nothing was queued or requested since (likewise):
    /// while it holds, the writer has nothing new to look at.
    pub(super) writer_set: AtomicBool,
    /// The config's metrics of what is dropped.
    pub(super) counted: super::Counted,
}

pub(super) struct State {
    /// Allocated on the first push, shrunk after a backlog: an idle session's queue costs
    /// nothing.
    pub(super) queue: VecDeque<Outgoing>,
    /// The most urgent end request not yet taken by the writer.
    pub(super) request: Option<EndRequest>,
    /// The writer stopped taking messages: nothing more is accepted.
    pub(super) closed: bool,
    /// Messages accepted so far: each ends up sent or dropped.
    pub(super) pushed: u64,
    /// The queue's length as last added to the config's `queued` gauge.
    pub(super) reported: usize,
    /// The writer, woken by a push or a request.
    pub(super) writer: Option<Waker>,
    /// Producers waiting in `push` for room.
    pub(super) room_waiters: usize,
    /// The waker of the session's handler (its identity): a push from it wakes nothing, the
    /// writer runs next in the same round.
    pub(super) own_task: Option<(usize, usize)>,
    /// Recoveries still queued, as ranges `[start, end)` of push order (`pushed` before and
    /// after), oldest first: not counted against the capacity, and never dropped. A notice
    /// of dropped publications is one such range, of one message.
    pub(super) recoveries: Vec<(u64, u64)>,
    /// The notices of dropped publications still queued: their push-order index and stream.
    pub(super) notices: Vec<(u64, String)>,
}

impl State {
    /// The push-order index of the queue's first message.
    fn front(&self) -> u64 {
        self.pushed - self.queue.len() as u64
    }

    /// Messages queued outside recoveries: what the capacity bounds (a recovery is bounded
    /// by the history's recovery limit, and a connection resumes each stream once).
    pub(super) fn live_len(&mut self) -> usize {
        if self.recoveries.is_empty() {
            return self.queue.len();
        }
        let front = self.front();
        self.recoveries.retain(|&(_, end)| end > front);
        let recovering: u64 = self
            .recoveries
            .iter()
            .map(|&(start, end)| end - start.max(front))
            .sum();
        self.queue.len() - recovering as usize
    }

    /// Drops the oldest message that may be dropped: not part of a recovery, not a notice,
    /// not a control frame of the protocol ([`Outgoing::is_droppable`]). A publication's place
    /// is taken by a `lost` notice of its stream (reason `dropped`), which is never dropped
    /// itself, and which replaces that stream's earlier notice still queued: the client is
    /// told of each gap where it is. Returns how many more messages the queue now holds than
    /// were pushed (1 when a notice took the place of a message, 0 when it also replaced an
    /// earlier notice, or when none was made), or `None` when nothing may be dropped: only
    /// control frames are queued, or as many notices as the capacity (the queue is full).
    pub(super) fn drop_oldest_live(&mut self, capacity: usize) -> Option<u64> {
        let front = self.front();
        let index = self.oldest_droppable()?;
        let slot = (index - front) as usize;
        let Some(notice) = self.queue[slot].dropped_notice() else {
            self.remove(index);
            return Some(0);
        };
        let stream = self.queue[slot]
            .position()
            .map(|position| position.stream.clone())
            .unwrap_or_default();
        self.notices.retain(|&(at, _)| at >= front);
        let earlier = self.notices.iter().position(|(_, s)| *s == stream);
        if earlier.is_none() && self.notices.len() >= capacity {
            return None;
        }
        self.queue[slot] = notice;
        let at = self
            .recoveries
            .iter()
            .position(|&(start, _)| start > index)
            .unwrap_or(self.recoveries.len());
        self.recoveries.insert(at, (index, index + 1));
        let Some(earlier) = earlier else {
            self.notices.push((index, stream));
            return Some(1);
        };
        // Told by the later one: what the earlier one covered is before it.
        let (earlier, _) = self.notices.swap_remove(earlier);
        self.recoveries.retain(|&(start, _)| start != earlier);
        self.remove(earlier);
        self.notices.push((index, stream));
        Some(0)
    }

    /// The push-order index of the oldest message that may be dropped: outside the
    /// recoveries (and notices), and not a control frame.
    fn oldest_droppable(&self) -> Option<u64> {
        let front = self.front();
        let mut ranges = self
            .recoveries
            .iter()
            .filter(|&&(_, end)| end > front)
            .peekable();
        let mut index = front;
        while index < self.pushed {
            while let Some(&&(start, end)) = ranges.peek() {
                if end <= index {
                    ranges.next();
                } else if start <= index {
                    index = end;
                    ranges.next();
                } else {
                    break;
                }
            }
            if index >= self.pushed {
                break;
            }
            if self.queue[(index - front) as usize].is_droppable() {
                return Some(index);
            }
            index += 1;
        }
        None
    }

    /// Takes out the message at push-order `index`. Push order is counted from the back
    /// (`front` is `pushed` less the length): taking one out moves the front up one, so the
    /// recoveries and notices before it move up with it.
    fn remove(&mut self, index: u64) {
        for range in &mut self.recoveries {
            if range.1 <= index {
                range.0 += 1;
                range.1 += 1;
            }
        }
        for (at, _) in &mut self.notices {
            if *at < index {
                *at += 1;
            }
        }
        let front = self.front();
        self.queue.remove((index - front) as usize);
    }
}

impl Inner {
    /// Takes the writer's waker (under the lock) to wake it once the lock is released.
    pub(super) fn take_writer(&self, state: &mut State) -> Option<Waker> {
        let writer = state.writer.take();
        if writer.is_some() {
            self.writer_set.store(false, Ordering::Release);
        }
        writer
    }

    pub(super) fn set_writer(&self, state: &mut State, cx: &Context<'_>) {
        match &state.writer {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.writer = Some(cx.waker().clone()),
        }
        self.writer_set.store(true, Ordering::Release);
    }

    /// Moves the queue's share of the `queued` gauge to its length, once it is
    /// [`DEPTH_STEP`](super::DEPTH_STEP) away or the queue is empty.
    pub(super) fn report_depth(&self, state: &mut State) {
        let len = state.queue.len();
        if len.abs_diff(state.reported) >= super::DEPTH_STEP || (len == 0 && state.reported > 0) {
            self.counted.queued.add(len as f64 - state.reported as f64);
            state.reported = len;
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the state all the same.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn notify_flushed(&self) {
        if self.flush_waiters.load(Ordering::SeqCst) > 0 {
            self.flushed.notify_waiters();
        }
    }

    pub(super) fn notify_room(&self, waiters: usize) {
        if waiters > 0 {
            self.room.notify_waiters();
        }
    }

    /// Records `request` for the writer, then (with the lock released) wakes the writer and
    /// everyone waiting for room, who will find the session ending.
    pub(super) fn put_request(&self, mut state: MutexGuard<'_, State>, request: EndRequest) {
        state.request = Some(request);
        self.requested.store(true, Ordering::Release);
        let writer = self.take_writer(&mut state);
        let waiters = state.room_waiters;
        drop(state);
        wake(writer);
        self.notify_room(waiters);
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

pub(super) fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}
