//! [`MemorySink`]: a session queue in memory, for tests and for cluster backends' own tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{Deliver, Outgoing, Queued, SendError};
use crate::close::CloseCode;

/// A [`Deliver`] that keeps what it is given, up to a bound. One message more is refused
/// with [`SendError::Overflow`] and closes the sink (1008 "slow consumer"), as a server's
/// session does by default; [`close`](Deliver::close) records the request. A closed sink
/// refuses everything.
#[derive(Debug)]
pub struct MemorySink {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    closed: Option<(CloseCode, String)>,
}

impl MemorySink {
    /// A sink for at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            capacity,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages kept so far.
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every message kept so far, oldest first.
    pub fn take(&self) -> Vec<Outgoing> {
        self.state().queue.drain(..).collect()
    }

    /// The close asked for, if any.
    pub fn close_request(&self) -> Option<(CloseCode, String)> {
        self.state().closed.clone()
    }
}

impl Deliver for MemorySink {
    fn deliver(&self, message: Outgoing) -> Result<Queued, SendError> {
        let mut state = self.state();
        if state.closed.is_some() {
            return Err(SendError::Closed);
        }
        if state.queue.len() >= self.capacity {
            state.closed = Some((CloseCode::POLICY, "slow consumer".into()));
            return Err(SendError::Overflow);
        }
        state.queue.push_back(message);
        Ok(Queued::Queued)
    }

    fn close(&self, code: CloseCode, reason: &str) {
        let mut state = self.state();
        if state.closed.is_none() {
            state.closed = Some((code, reason.to_owned()));
        }
    }

    fn is_closed(&self) -> bool {
        self.state().closed.is_some()
    }
}
