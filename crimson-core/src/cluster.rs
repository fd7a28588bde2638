//! Session clusters: every live session of a route, reachable by id, by filter or all at once.
//!
//! [`LocalCluster`] holds the sessions of one process. A broadcast encodes its message once and
//! queues the same shared payload for every recipient; it never waits on a slow session, whose
//! own [`OverflowPolicy`](crate::session::OverflowPolicy) decides what a full queue does.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::EncodeError;
use crate::message::CrimsonMessage;
use crate::session::{Queued, SendError, SessionHandle, SessionId, SessionInfo};

/// What a broadcast reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Sessions the message was queued for.
    pub delivered: usize,
    /// Of those, sessions that dropped their oldest queued message to make room.
    pub dropped_oldest: usize,
    /// Sessions the message could not be queued for: closing, or over their queue bound
    /// (and now being closed as slow consumers).
    pub failed: usize,
}

impl Delivery {
    fn count(&mut self, result: Result<Queued, SendError>) {
        match result {
            Ok(Queued::Queued) => self.delivered += 1,
            Ok(Queued::DroppedOldest) => {
                self.delivered += 1;
                self.dropped_oldest += 1;
            }
            Err(_) => self.failed += 1,
        }
    }
}

/// A message for one session that did not reach its queue.
#[derive(Debug)]
pub enum SendToError {
    /// No live session has this id.
    NotFound(SessionId),
    /// The message could not be encoded.
    Encode(EncodeError),
    /// The session's queue refused it.
    Send(SessionId, SendError),
}

impl fmt::Display for SendToError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "no live session has id {id}"),
            Self::Encode(err) => err.fmt(f),
            Self::Send(id, err) => write!(f, "session {id}: {err}"),
        }
    }
}

impl std::error::Error for SendToError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(err) => Some(err),
            Self::Send(_, err) => Some(err),
            Self::NotFound(_) => None,
        }
    }
}

/// The sessions of one process whose messages to clients are `Down`.
///
/// Cloning is cheap and shares the sessions. The server adds a session when it connects and
/// removes it when it ends; code anywhere (a handler, an HTTP route, a timer) reaches them.
///
/// ```
/// use crimson_core::cluster::LocalCluster;
/// use crimson_core::session::{Outbox, OverflowPolicy, SessionHandle, SessionId, SessionInfo};
///
/// let cluster = LocalCluster::<String>::new();
/// let outbox = Outbox::new(16, OverflowPolicy::Disconnect);
/// let info = SessionInfo {
///     id: SessionId::next(),
///     connected_at: std::time::SystemTime::now(),
///     remote_addr: None,
///     path: "/chat".into(),
///     config: "chat".into(),
/// };
/// cluster.add(SessionHandle::new(info, outbox.clone()));
///
/// let delivery = cluster.broadcast(&"hello".to_string()).unwrap();
/// assert_eq!(delivery.delivered, 1);
/// assert_eq!(outbox.len(), 1);
/// ```
pub struct LocalCluster<Down> {
    sessions: Arc<RwLock<HashMap<SessionId, SessionHandle>>>,
    _down: PhantomData<fn(&Down)>,
}

impl<Down> Clone for LocalCluster<Down> {
    fn clone(&self) -> Self {
        Self {
            sessions: self.sessions.clone(),
            _down: PhantomData,
        }
    }
}

impl<Down> Default for LocalCluster<Down> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Down> fmt::Debug for LocalCluster<Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCluster")
            .field("sessions", &self.len())
            .finish()
    }
}

impl<Down> LocalCluster<Down> {
    /// An empty cluster.
    pub fn new() -> Self {
        Self {
            sessions: Arc::default(),
            _down: PhantomData,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<SessionId, SessionHandle>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<SessionId, SessionHandle>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session.
    pub fn add(&self, session: SessionHandle) {
        self.write().insert(session.id(), session);
    }

    /// Removes a session, returning it if it was there.
    pub fn remove(&self, id: SessionId) -> Option<SessionHandle> {
        self.write().remove(&id)
    }

    /// The session with this id.
    pub fn get(&self, id: SessionId) -> Option<SessionHandle> {
        self.read().get(&id).cloned()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The facts of every live session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.read().values().map(|s| s.info().clone()).collect()
    }
}

impl<Down: CrimsonMessage> LocalCluster<Down> {
    /// Sends `message` to every session.
    pub fn broadcast(&self, message: &Down) -> Result<Delivery, EncodeError> {
        self.broadcast_filter(message, |_| true)
    }

    /// Sends `message` to every session for which `filter` returns true.
    pub fn broadcast_filter(
        &self,
        message: &Down,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Result<Delivery, EncodeError> {
        let payload = message.encode()?;
        let mut delivery = Delivery::default();
        for session in self.read().values() {
            if filter(session.info()) {
                delivery.count(session.outbox().try_push(payload.clone()));
            }
        }
        Ok(delivery)
    }

    /// Sends `message` to the session with this id.
    pub fn send_to(&self, id: SessionId, message: &Down) -> Result<Queued, SendToError> {
        let session = self.get(id).ok_or(SendToError::NotFound(id))?;
        let payload = message.encode().map_err(SendToError::Encode)?;
        session
            .outbox()
            .try_push(payload)
            .map_err(|err| SendToError::Send(id, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Outbox, OverflowPolicy};

    fn session(path: &str, capacity: usize) -> (SessionHandle, Outbox) {
        let outbox = Outbox::new(capacity, OverflowPolicy::Disconnect);
        let info = SessionInfo {
            id: SessionId::next(),
            connected_at: std::time::SystemTime::now(),
            remote_addr: None,
            path: path.into(),
            config: "test".into(),
        };
        (SessionHandle::new(info, outbox.clone()), outbox)
    }

    #[test]
    fn broadcast_shares_one_encoding_and_counts() {
        let cluster = LocalCluster::<String>::new();
        let (a, a_box) = session("/a", 4);
        let (b, b_box) = session("/b", 1);
        cluster.add(a);
        cluster.add(b);
        let all = cluster.broadcast(&"x".to_string()).unwrap();
        assert_eq!(
            all,
            Delivery {
                delivered: 2,
                dropped_oldest: 0,
                failed: 0
            }
        );
        // b's queue (bound 1) is full now: it overflows and is being closed.
        let again = cluster.broadcast(&"y".to_string()).unwrap();
        assert_eq!(
            again,
            Delivery {
                delivered: 1,
                dropped_oldest: 0,
                failed: 1
            }
        );
        assert_eq!(a_box.len(), 2);
        assert!(b_box.is_closed());
    }

    #[test]
    fn filter_and_targeted_send() {
        let cluster = LocalCluster::<String>::new();
        let (a, a_box) = session("/a", 4);
        let (b, b_box) = session("/b", 4);
        let b_id = b.id();
        cluster.add(a);
        cluster.add(b);
        let only_a = cluster
            .broadcast_filter(&"x".to_string(), |s| s.path == "/a")
            .unwrap();
        assert_eq!(only_a.delivered, 1);
        assert_eq!((a_box.len(), b_box.len()), (1, 0));
        cluster.send_to(b_id, &"direct".to_string()).unwrap();
        assert_eq!(b_box.len(), 1);
        cluster.remove(b_id);
        let gone = cluster.send_to(b_id, &"late".to_string()).unwrap_err();
        assert_eq!(gone.to_string(), format!("no live session has id {b_id}"));
        assert_eq!(cluster.len(), 1);
    }
}
