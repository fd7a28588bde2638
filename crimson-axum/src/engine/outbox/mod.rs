//! A session's bounded outgoing queue: many producers ([`OutboxSender`], cloneable: the
//! handler, broadcasts, other tasks), one writer ([`OutboxReceiver`], not cloneable: the
//! session's task). "One writer" is a fact of the types.
//!
//! Producers also ask the session to end through it ([`EndRequest`]); the session's
//! [`Ending`](super::ending::Ending) decides what a request does.
//!
//! This file holds the queue's making and the end requests; the rest is split by side:
//!
//! - [`shared`]: the state both sides share, behind one lock, and the flags the writer reads
//!   without it;
//! - [`sender`]: the producers' handle (`try_push`, `push`, end requests, `flushed`) and the
//!   queue as a cluster delivers to it;
//! - [`receiver`]: the writer's half: taking batches, registering for the next wake-up, taking
//!   the end request, counting what was written or dropped.

mod receiver;
mod sender;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use crimson_core::metrics::{Counter, Gauge};
use crimson_core::session::OverflowPolicy;
use crimson_core::CloseCode;
use tokio::sync::Notify;

pub(crate) use self::receiver::OutboxReceiver;
pub(crate) use self::sender::OutboxSender;
use self::shared::{Inner, State};

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

/// The config's counters a queue adds to as it drops messages.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    /// Messages that will never be written: dropped to make room, or left when the session
    /// ended.
    pub(crate) dropped: Counter,
    /// Sessions closed because their queue was full (`OverflowPolicy::Disconnect`).
    pub(crate) overflowed: Counter,
    /// Messages waiting in the config's queues, each queue's share moved in steps of
    /// [`DEPTH_STEP`] (one gauge update per step, not per message).
    pub(crate) queued: Gauge,
}

/// How far a queue's length moves before its share of the `queued` gauge follows: the gauge
/// is right to within this many messages per session, at one atomic update per this many
/// pushes.
pub(crate) const DEPTH_STEP: usize = 8;

/// A new bounded queue.
#[cfg(test)]
pub(crate) fn outbox(capacity: usize, policy: OverflowPolicy) -> (OutboxSender, OutboxReceiver) {
    outbox_counted(capacity, policy, Counted::default())
}

/// A new bounded queue that adds what it drops to `counted`.
pub(crate) fn outbox_counted(
    capacity: usize,
    policy: OverflowPolicy,
    counted: Counted,
) -> (OutboxSender, OutboxReceiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            request: None,
            closed: false,
            pushed: 0,
            reported: 0,
            writer: None,
            room_waiters: 0,
            own_task: None,
            recoveries: Vec::new(),
            notices: Vec::new(),
        }),
        room: Notify::new(),
        flushed: Notify::new(),
        capacity: capacity.max(1),
        policy,
        dropped: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        noticed: AtomicU64::new(0),
        flush_waiters: AtomicUsize::new(0),
        requested: AtomicBool::new(false),
        writer_set: AtomicBool::new(false),
        counted,
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
