//! [`LocalCluster`]: the sessions of one process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::{
    BoxFuture, ClusterError, ClusterFull, Delivery, Membership, SendToError, SessionCluster, Target,
};
use crate::close::CloseCode;
use crate::message::Payload;
use crate::session::{random_u64, Ending, SessionHandle, SessionId, SessionInfo};

/// How many membership changes a slow subscriber may fall behind before it lags.
const MEMBERSHIP_BOUND: usize = 1024;

/// The close reason of a session that outlived [`LocalClusterBuilder::max_lifetime`]
/// (close code 1008, so clients reconnect).
pub const LIFETIME_OVER: &str = "session lifetime over";

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Member>,
    rooms: HashMap<String, HashSet<SessionId>>,
}

struct Member {
    handle: SessionHandle,
    rooms: HashSet<String>,
}

struct Inner {
    node: u64,
    state: RwLock<State>,
    max_connections: Option<usize>,
    max_lifetime: Option<Duration>,
    watchdog_interval: Duration,
    watchdog_started: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<Membership>,
}

/// The sessions of one process: rooms, a connection limit and a lifetime watchdog.
///
/// Cloning is cheap and shares the sessions. Built for 10k+ sessions: no lock is held across
/// an `.await`, a broadcast walks the sessions once under a read lock and queues one shared
/// payload for each, and each session's queue is bounded.
///
/// ```
/// use crimson_core::cluster::{Cluster, LocalCluster};
/// use crimson_core::session::{Outbox, OverflowPolicy, SessionHandle, SessionId, SessionInfo};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cluster: Cluster<String> = Cluster::new(LocalCluster::new());
/// let outbox = Outbox::new(16, OverflowPolicy::Disconnect);
/// let info = SessionInfo {
///     id: SessionId::on_node(cluster.node_id()),
///     connected_at: std::time::SystemTime::now(),
///     remote_addr: None,
///     path: "/chat".into(),
///     config: "chat".into(),
/// };
/// cluster.backend().add(SessionHandle::new(info, outbox.clone())).unwrap();
///
/// let delivery = cluster.broadcast(&"hello".to_string()).await.unwrap();
/// assert_eq!(delivery.delivered, 1);
/// assert_eq!(outbox.len(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct LocalCluster {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("LocalCluster")
            .field("node", &format_args!("{:016x}", self.inner.node))
            .field("sessions", &state.sessions.len())
            .field("rooms", &state.rooms.len())
            .field("max_connections", &self.inner.max_connections)
            .field("max_lifetime", &self.inner.max_lifetime)
            .finish()
    }
}

impl Default for LocalCluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings for a [`LocalCluster`] (Kotlin Crimson's `CrimsonLocalSessionCluster`).
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalClusterBuilder {
    max_connections: Option<usize>,
    max_lifetime: Option<Duration>,
    watchdog_interval: Duration,
}

impl LocalClusterBuilder {
    /// At most this many sessions; one more is refused and the server closes it with 1013
    /// "connection limit reached".
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = Some(limit);
        self
    }

    /// Close sessions older than this with 1008 [`LIFETIME_OVER`], so clients reconnect (and
    /// re-authenticate). Checked every [`watchdog_interval`](Self::watchdog_interval).
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// How often the lifetime watchdog runs (default 1 s; at least 10 ms).
    pub fn watchdog_interval(mut self, interval: Duration) -> Self {
        self.watchdog_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The cluster.
    pub fn build(self) -> LocalCluster {
        LocalCluster {
            inner: Arc::new(Inner {
                node: random_u64(),
                state: RwLock::default(),
                max_connections: self.max_connections,
                max_lifetime: self.max_lifetime,
                watchdog_interval: self.watchdog_interval,
                watchdog_started: std::sync::atomic::AtomicBool::new(false),
                events: broadcast::channel(MEMBERSHIP_BOUND).0,
            }),
        }
    }
}

impl LocalCluster {
    /// A cluster with no limits.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Settings: connection limit, session lifetime.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder {
            max_connections: None,
            max_lifetime: None,
            watchdog_interval: Duration::from_secs(1),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `payload` for this node's targeted sessions. What every backend does locally.
    pub fn deliver(&self, payload: &Payload, target: &Target) -> Delivery {
        let mut delivery = Delivery::default();
        let state = self.read();
        let mut offer = |member: &Member| {
            delivery.count(member.handle.outbox().try_push(payload.clone()));
        };
        match target {
            Target::All | Target::Except(_) => {
                for (id, member) in &state.sessions {
                    if target.matches(*id, |_| true) {
                        offer(member);
                    }
                }
            }
            Target::Room(room) | Target::RoomExcept(room, _) => {
                for id in state.rooms.get(room).into_iter().flatten() {
                    if let Some(member) = state.sessions.get(id) {
                        if target.matches(*id, |_| true) {
                            offer(member);
                        }
                    }
                }
            }
        }
        delivery
    }

    /// Queues `payload` for every session of this node for which `filter` returns true.
    pub fn deliver_filtered(
        &self,
        payload: &Payload,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        for member in self.read().sessions.values() {
            if filter(member.handle.info()) {
                delivery.count(member.handle.outbox().try_push(payload.clone()));
            }
        }
        delivery
    }

    /// Queues `payload` for a session of this node.
    pub fn deliver_to(&self, id: SessionId, payload: Payload) -> Result<(), SendToError> {
        let handle = self.get(id).ok_or(SendToError::NotFound(id))?;
        handle
            .outbox()
            .try_push(payload)
            .map(|_| ())
            .map_err(|err| SendToError::Send(id, err))
    }

    /// Starts the lifetime watchdog once, from inside a tokio runtime (tried again on every
    /// `add` until it starts).
    fn start_watchdog(&self) {
        use std::sync::atomic::Ordering;
        let Some(lifetime) = self.inner.max_lifetime else {
            return;
        };
        if self.inner.watchdog_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("LocalCluster's lifetime watchdog needs a tokio runtime: sessions are not aged out yet");
            return;
        };
        if self.inner.watchdog_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.watchdog_interval;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                LocalCluster { inner }.enforce_lifetime(lifetime);
            }
        });
    }

    /// Closes every session older than `lifetime` with 1008 [`LIFETIME_OVER`]; returns how
    /// many. The watchdog calls this; so may you.
    pub fn enforce_lifetime(&self, lifetime: Duration) -> usize {
        let expired: Vec<SessionHandle> = self
            .read()
            .sessions
            .values()
            .filter(|m| m.handle.age() >= lifetime)
            .map(|m| m.handle.clone())
            .collect();
        for handle in &expired {
            tracing::debug!(session_id = %handle.id(), "session lifetime over");
            handle
                .outbox()
                .end(Ending::Close(CloseCode::POLICY, LIFETIME_OVER.into()));
        }
        expired.len()
    }
}

impl SessionCluster for LocalCluster {
    fn node_id(&self) -> u64 {
        self.inner.node
    }

    fn add(&self, session: SessionHandle) -> Result<(), ClusterFull> {
        {
            let mut state = self.write();
            if let Some(limit) = self.inner.max_connections {
                if state.sessions.len() >= limit {
                    return Err(ClusterFull { limit });
                }
            }
            let info = session.info().clone();
            state.sessions.insert(
                session.id(),
                Member {
                    handle: session,
                    rooms: HashSet::new(),
                },
            );
            // No subscriber is not an error: nobody is listening.
            let _ = self.inner.events.send(Membership::Joined(info));
        }
        self.start_watchdog();
        Ok(())
    }

    fn remove(&self, id: SessionId) {
        let mut state = self.write();
        let Some(member) = state.sessions.remove(&id) else {
            return;
        };
        for room in member.rooms {
            if let Some(members) = state.rooms.get_mut(&room) {
                members.remove(&id);
                if members.is_empty() {
                    state.rooms.remove(&room);
                }
            }
        }
        let _ = self.inner.events.send(Membership::Left(id));
    }

    fn get(&self, id: SessionId) -> Option<SessionHandle> {
        self.read().sessions.get(&id).map(|m| m.handle.clone())
    }

    fn local_sessions(&self) -> Vec<SessionInfo> {
        self.read()
            .sessions
            .values()
            .map(|m| m.handle.info().clone())
            .collect()
    }

    fn local_len(&self) -> usize {
        self.read().sessions.len()
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, ClusterError>> {
        let len = self.local_len();
        Box::pin(async move { Ok(len) })
    }

    fn broadcast(
        &self,
        payload: Payload,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        let delivery = self.deliver(&payload, &target);
        Box::pin(async move { Ok(delivery) })
    }

    fn send_to(&self, id: SessionId, payload: Payload) -> BoxFuture<'_, Result<(), SendToError>> {
        let result = self.deliver_to(id, payload);
        Box::pin(async move { result })
    }

    fn join(&self, id: SessionId, room: &str) -> Result<(), SendToError> {
        super::check_room(room)?;
        let mut state = self.write();
        let member = state
            .sessions
            .get_mut(&id)
            .ok_or(SendToError::NotFound(id))?;
        if member.rooms.insert(room.to_owned()) {
            state.rooms.entry(room.to_owned()).or_default().insert(id);
            let _ = self
                .inner
                .events
                .send(Membership::JoinedRoom(id, room.to_owned()));
        }
        Ok(())
    }

    fn leave(&self, id: SessionId, room: &str) {
        let mut state = self.write();
        let Some(member) = state.sessions.get_mut(&id) else {
            return;
        };
        if member.rooms.remove(room) {
            if let Some(members) = state.rooms.get_mut(room) {
                members.remove(&id);
                if members.is_empty() {
                    state.rooms.remove(room);
                }
            }
            let _ = self
                .inner
                .events
                .send(Membership::LeftRoom(id, room.to_owned()));
        }
    }

    fn rooms_of(&self, id: SessionId) -> Vec<String> {
        let state = self.read();
        let mut rooms: Vec<String> = state
            .sessions
            .get(&id)
            .map(|m| m.rooms.iter().cloned().collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }

    fn membership(&self) -> broadcast::Receiver<Membership> {
        self.inner.events.subscribe()
    }

    fn deliver_local_filtered(
        &self,
        payload: &Payload,
        filter: &dyn Fn(&SessionInfo) -> bool,
    ) -> Delivery {
        self.deliver_filtered(payload, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Outbox, OverflowPolicy};

    fn session(cluster: &LocalCluster, path: &str, capacity: usize) -> (SessionHandle, Outbox) {
        let outbox = Outbox::new(capacity, OverflowPolicy::Disconnect);
        let info = SessionInfo {
            id: SessionId::on_node(cluster.node_id()),
            connected_at: std::time::SystemTime::now(),
            remote_addr: None,
            path: path.into(),
            config: "test".into(),
        };
        (SessionHandle::new(info, outbox.clone()), outbox)
    }

    fn text(s: &str) -> Payload {
        Payload::Text(s.into())
    }

    #[test]
    fn broadcast_counts_overflow_as_failed() {
        let cluster = LocalCluster::new();
        let (a, a_box) = session(&cluster, "/a", 4);
        let (b, b_box) = session(&cluster, "/b", 1);
        cluster.add(a).unwrap();
        cluster.add(b).unwrap();
        let all = cluster.deliver(&text("x"), &Target::All);
        assert_eq!((all.delivered, all.failed), (2, 0));
        let again = cluster.deliver(&text("y"), &Target::All);
        assert_eq!((again.delivered, again.failed), (1, 1));
        assert_eq!(a_box.len(), 2);
        assert!(b_box.is_closed());
    }

    #[test]
    fn rooms_and_exceptions() {
        let cluster = LocalCluster::new();
        let (a, a_box) = session(&cluster, "/a", 8);
        let (b, b_box) = session(&cluster, "/b", 8);
        let (a_id, b_id) = (a.id(), b.id());
        cluster.add(a).unwrap();
        cluster.add(b).unwrap();
        cluster.join(a_id, "red").unwrap();
        cluster.join(a_id, "blue").unwrap();
        cluster.join(b_id, "blue").unwrap();
        assert_eq!(
            cluster.rooms_of(a_id),
            vec!["blue".to_string(), "red".to_string()]
        );

        assert_eq!(
            cluster
                .deliver(&text("r"), &Target::Room("red".into()))
                .delivered,
            1
        );
        assert_eq!(
            cluster
                .deliver(&text("b"), &Target::Room("blue".into()))
                .delivered,
            2
        );
        assert_eq!(
            cluster
                .deliver(&text("b2"), &Target::RoomExcept("blue".into(), a_id))
                .delivered,
            1
        );
        assert_eq!(
            cluster.deliver(&text("e"), &Target::Except(b_id)).delivered,
            1
        );
        assert_eq!(
            cluster
                .deliver(&text("none"), &Target::Room("green".into()))
                .delivered,
            0
        );
        assert_eq!((a_box.len(), b_box.len()), (3, 2));

        cluster.leave(a_id, "red");
        assert_eq!(
            cluster
                .deliver(&text("r2"), &Target::Room("red".into()))
                .delivered,
            0
        );
        cluster.remove(b_id);
        assert_eq!(
            cluster
                .deliver(&text("b3"), &Target::Room("blue".into()))
                .delivered,
            1
        );
        assert!(matches!(
            cluster.join(b_id, "red"),
            Err(SendToError::NotFound(_))
        ));
    }

    #[test]
    fn ten_thousand_sessions_one_encoding() {
        let cluster = LocalCluster::new();
        let mut boxes = Vec::new();
        for n in 0..10_000 {
            let (handle, outbox) = session(&cluster, "/", 4);
            if n % 2 == 0 {
                cluster.join(handle.id(), "even").unwrap_err();
            }
            cluster.add(handle.clone()).unwrap();
            if n % 2 == 0 {
                cluster.join(handle.id(), "even").unwrap();
            }
            boxes.push(outbox);
        }
        let payload = text("tick");
        assert_eq!(cluster.deliver(&payload, &Target::All).delivered, 10_000);
        assert_eq!(
            cluster
                .deliver(&payload, &Target::Room("even".into()))
                .delivered,
            5_000
        );
        // Every queue holds the same shared bytes: one encoding, no copies.
        let mut batch = Vec::new();
        let first = boxes[0].clone();
        drain_now(&first, &mut batch);
        assert_eq!(batch[0].as_bytes().as_ptr(), payload.as_bytes().as_ptr());
    }

    /// Takes what is queued without an async runtime.
    fn drain_now(outbox: &Outbox, batch: &mut Vec<Payload>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(outbox.next_batch(batch));
    }

    #[test]
    fn connection_limit() {
        let cluster = LocalCluster::builder().max_connections(1).build();
        cluster.add(session(&cluster, "/", 1).0).unwrap();
        let err = cluster.add(session(&cluster, "/", 1).0).unwrap_err();
        assert_eq!(err.to_string(), "connection limit reached (1 sessions)");
    }

    #[test]
    fn membership_events() {
        let cluster = LocalCluster::new();
        let mut events = cluster.membership();
        let (a, _) = session(&cluster, "/a", 1);
        let id = a.id();
        cluster.add(a).unwrap();
        cluster.join(id, "r").unwrap();
        cluster.remove(id);
        assert!(matches!(events.try_recv(), Ok(Membership::Joined(info)) if info.id == id));
        assert_eq!(
            events.try_recv().unwrap(),
            Membership::JoinedRoom(id, "r".into())
        );
        assert_eq!(events.try_recv().unwrap(), Membership::Left(id));
    }

    #[tokio::test]
    async fn watchdog_closes_old_sessions() {
        let cluster = LocalCluster::builder()
            .max_lifetime(Duration::from_millis(30))
            .watchdog_interval(Duration::from_millis(10))
            .build();
        let (a, a_box) = session(&cluster, "/a", 1);
        cluster.add(a).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut batch = Vec::new();
        assert_eq!(
            a_box.next_batch(&mut batch).await,
            Some(Ending::Close(CloseCode::POLICY, LIFETIME_OVER.into()))
        );
    }
}
