//! [`LocalCluster`]: the sessions of one process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::metrics::{self as broadcast_metrics, BroadcastMetrics};
use super::{
    at_least, ClusterFull, Delivery, Encoder, Membership, SendToError, SessionCluster, Target,
};
use crate::close::CloseCode;
use crate::message::Payload;
use crate::session::{random_u64, Outgoing, SessionHandle, SessionId, SessionInfo, SharedPayload};

/// How many membership changes a slow subscriber may fall behind before it lags.
const MEMBERSHIP_BOUND: usize = 1024;

/// The shortest [`LocalClusterBuilder::watchdog_interval`].
const MIN_WATCHDOG_INTERVAL: Duration = Duration::from_millis(10);

/// The close reason of a session that outlived [`LocalClusterBuilder::max_lifetime`]
/// (close code 1008, so clients reconnect).
pub const LIFETIME_OVER: &str = "session lifetime over";

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Member>,
    rooms: HashMap<String, HashSet<SessionId>>,
}

/// One broadcast's payload in each codec its recipients speak, each made once, on the first
/// recipient that speaks it, and shared by all of them (with its compressed frame).
struct Variants<'a> {
    default: Outgoing,
    /// Makes the message in another codec from its value, when the value is at hand (a
    /// broadcast from this node); otherwise the default payload is re-encoded (a relayed one).
    encode: Option<Encoder<'a>>,
    /// Codec index and framing, and the payload so (`None`: it did not encode).
    others: Vec<((usize, bool), Option<Outgoing>)>,
}

impl<'a> Variants<'a> {
    fn new(payload: &Payload, encode: Option<Encoder<'a>>) -> Self {
        Self {
            default: Outgoing::Shared(SharedPayload::new(payload.clone())),
            encode,
            others: Vec::new(),
        }
    }

    /// Queues the broadcast for `handle` in its codec, and counts how that went.
    fn offer(&mut self, handle: &SessionHandle, delivery: &mut Delivery) {
        let wire = (handle.codec(), handle.is_framed());
        let message = if wire == (0, false) {
            self.default.clone()
        } else {
            let made = match self.others.iter().find(|(made, _)| *made == wire) {
                Some((_, made)) => made.clone(),
                None => {
                    let made = match encoded(handle, self.default.payload(), self.encode) {
                        Ok(payload) => Some(Outgoing::Shared(SharedPayload::new(payload))),
                        Err(err) => {
                            tracing::warn!(codec = wire.0, %err, "a broadcast did not re-encode for its recipients of another codec");
                            None
                        }
                    };
                    self.others.push((wire, made.clone()));
                    made
                }
            };
            let Some(message) = made else {
                delivery.failed += 1;
                return;
            };
            message
        };
        delivery.count(handle.deliver(message));
    }
}

/// `payload` (of the default codec) as `handle` takes it: made by `encode` from the value
/// when there is one, else re-encoded; behind the protocol's header line if the session
/// speaks it.
fn encoded(
    handle: &SessionHandle,
    payload: &Payload,
    encode: Option<Encoder<'_>>,
) -> Result<Payload, crate::EncodeError> {
    match encode {
        Some(encode) if handle.codec() != 0 => Ok(handle.frame(encode(handle.codec())?)),
        _ => handle.transcode(payload),
    }
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
    /// Resolved on the first broadcast (after the application installed its recorder).
    metrics: std::sync::OnceLock<BroadcastMetrics>,
}

/// The sessions of one process: rooms, a connection limit and a lifetime watchdog.
///
/// Cloning is cheap and shares the sessions. Built for 10k+ sessions: no lock is held across
/// an `.await`, a broadcast walks the sessions once under a read lock and queues one shared
/// payload for each, and each session's queue is bounded.
///
/// ```
/// use crimson_core::cluster::{Cluster, LocalCluster};
/// use std::sync::Arc;
/// use crimson_core::session::{MemorySink, SessionHandle, SessionId, SessionInfo};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cluster: Cluster<String> = Cluster::new(LocalCluster::new());
/// let sink = Arc::new(MemorySink::new(16));
/// let info = SessionInfo {
///     id: SessionId::on_node(cluster.node_id()),
///     connected_at: std::time::SystemTime::now(),
///     remote_addr: None,
///     path: "/chat".into(),
///     config: "chat".into(),
/// };
/// cluster.backend().add(SessionHandle::new(info, sink.clone())).unwrap();
///
/// let delivery = cluster.broadcast(&"hello".to_string()).await.unwrap();
/// assert_eq!(delivery.delivered, 1);
/// assert_eq!(sink.len(), 1);
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

    /// How often the lifetime watchdog runs (default 1 s; at least 10 ms, or
    /// [`build`](Self::build) panics).
    pub fn watchdog_interval(mut self, interval: Duration) -> Self {
        self.watchdog_interval = interval;
        self
    }

    /// The first setting out of its range, named with its range and the value given.
    pub(crate) fn check(&self) -> Result<(), String> {
        at_least(
            "watchdog_interval",
            self.watchdog_interval,
            MIN_WATCHDOG_INTERVAL,
        )
    }

    /// The cluster.
    ///
    /// # Panics
    ///
    /// If a setting is out of its range (a [`watchdog_interval`](Self::watchdog_interval)
    /// under 10 ms): a mistake in the program, found at startup.
    #[track_caller]
    pub fn build(self) -> LocalCluster {
        if let Err(err) = self.check() {
            panic!("LocalCluster settings are invalid: {err}");
        }
        LocalCluster {
            inner: Arc::new(Inner {
                node: random_u64(),
                state: RwLock::default(),
                max_connections: self.max_connections,
                max_lifetime: self.max_lifetime,
                watchdog_interval: self.watchdog_interval,
                watchdog_started: std::sync::atomic::AtomicBool::new(false),
                events: broadcast::channel(MEMBERSHIP_BOUND).0,
                metrics: std::sync::OnceLock::new(),
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

    /// Queues `payload` for this node's targeted sessions, made once per codec they speak
    /// (re-encoded from `payload` for the others: see [`crate::transcode`]) and shared by all
    /// of them. What every backend does locally.
    pub fn deliver(&self, payload: &Payload, target: &Target) -> Delivery {
        self.deliver_with(payload, None, target)
    }

    /// [`deliver`](Self::deliver), with `encode` to make the message for recipients of other
    /// codecs from its value (see [`SessionCluster::broadcast_in`]).
    pub fn deliver_with(
        &self,
        payload: &Payload,
        encode: Option<Encoder<'_>>,
        target: &Target,
    ) -> Delivery {
        let started = broadcast_metrics::start();
        let mut variants = Variants::new(payload, encode);
        let mut delivery = Delivery::default();
        let state = self.read();
        let mut offer = |member: &Member| variants.offer(&member.handle, &mut delivery);
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
        drop(state);
        self.metrics().record(Some(target), started, &delivery);
        delivery
    }

    fn metrics(&self) -> &BroadcastMetrics {
        self.inner.metrics.get_or_init(BroadcastMetrics::new)
    }

    /// Queues `payload` for every session of this node for which `filter` returns true, made
    /// once per codec they speak and shared.
    pub fn broadcast_local(
        &self,
        payload: &Payload,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Delivery {
        self.broadcast_local_with(payload, None, filter)
    }

    /// [`broadcast_local`](Self::broadcast_local), with `encode` to make the message for
    /// recipients of other codecs from its value.
    pub fn broadcast_local_with(
        &self,
        payload: &Payload,
        encode: Option<Encoder<'_>>,
        filter: impl Fn(&SessionInfo) -> bool,
    ) -> Delivery {
        let started = broadcast_metrics::start();
        let mut variants = Variants::new(payload, encode);
        let mut delivery = Delivery::default();
        for member in self.read().sessions.values() {
            if filter(member.handle.info()) {
                variants.offer(&member.handle, &mut delivery);
            }
        }
        self.metrics().record(None, started, &delivery);
        delivery
    }

    /// Queues `payload` for a session of this node.
    pub fn deliver_to(&self, id: SessionId, payload: Payload) -> Result<(), SendToError> {
        self.deliver_to_with(id, payload, None)
    }

    /// [`deliver_to`](Self::deliver_to), with `encode` to make the message from its value if
    /// the session speaks another codec.
    pub fn deliver_to_with(
        &self,
        id: SessionId,
        payload: Payload,
        encode: Option<Encoder<'_>>,
    ) -> Result<(), SendToError> {
        let handle = self.get(id).ok_or(SendToError::NotFound(id))?;
        let payload = encoded(&handle, &payload, encode).map_err(SendToError::Encode)?;
        handle
            .deliver(Outgoing::Single(payload))
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
            handle.close(CloseCode::POLICY, LIFETIME_OVER);
        }
        expired.len()
    }
}

impl LocalCluster {
    /// This node's id: the node part of the session ids it hands out.
    pub fn node_id(&self) -> u64 {
        self.inner.node
    }

    /// Adds a session; refused past the connection limit.
    pub fn add(&self, session: SessionHandle) -> Result<(), ClusterFull> {
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

    /// Removes a session (and from its rooms).
    pub fn remove(&self, id: SessionId) {
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

    /// The sessions of this node that `target` names, now.
    pub fn handles(&self, target: &Target) -> Vec<SessionHandle> {
        let state = self.read();
        match target {
            Target::All | Target::Except(_) => state
                .sessions
                .iter()
                .filter(|(id, _)| target.matches(**id, |_| true))
                .map(|(_, member)| member.handle.clone())
                .collect(),
            Target::Room(room) | Target::RoomExcept(room, _) => state
                .rooms
                .get(room)
                .into_iter()
                .flatten()
                .filter(|id| target.matches(**id, |_| true))
                .filter_map(|id| state.sessions.get(id).map(|m| m.handle.clone()))
                .collect(),
        }
    }

    /// A session of this node.
    pub fn get(&self, id: SessionId) -> Option<SessionHandle> {
        self.read().sessions.get(&id).map(|m| m.handle.clone())
    }

    /// The facts of every session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.read()
            .sessions
            .values()
            .map(|m| m.handle.info().clone())
            .collect()
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts a session in a room (created on first use; 1 to 1024 bytes of name).
    pub fn join(&self, id: SessionId, room: &str) -> Result<(), SendToError> {
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

    /// Takes a session out of a room.
    pub fn leave(&self, id: SessionId, room: &str) {
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

    /// The rooms a session is in, sorted.
    pub fn rooms_of(&self, id: SessionId) -> Vec<String> {
        let state = self.read();
        let mut rooms: Vec<String> = state
            .sessions
            .get(&id)
            .map(|m| m.rooms.iter().cloned().collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }

    /// The sessions of this node in `room`.
    pub fn room_members(&self, room: &str) -> Vec<SessionId> {
        self.read()
            .rooms
            .get(room)
            .map(|members| members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The names of the rooms that have sessions on this node.
    pub fn rooms(&self) -> Vec<String> {
        self.read().rooms.keys().cloned().collect()
    }

    /// Changes in this node's membership, as they happen (Kotlin Crimson's session flow). A
    /// subscriber that falls more than 1024 changes behind gets [`Membership::Lagged`] with
    /// the number it missed, then goes on.
    pub fn membership(&self) -> MembershipStream {
        MembershipStream::new(self.inner.events.subscribe())
    }
}

impl SessionCluster for LocalCluster {
    fn local(&self) -> &LocalCluster {
        self
    }

    fn broadcast_in(
        &self,
        payload: Payload,
        encode: Encoder<'_>,
        target: Target,
    ) -> super::BoxFuture<'_, Result<Delivery, super::ClusterError>> {
        let delivery = self.deliver_with(&payload, Some(encode), &target);
        Box::pin(async move { Ok(delivery) })
    }

    fn send_to_in(
        &self,
        id: SessionId,
        payload: Payload,
        encode: Encoder<'_>,
    ) -> super::BoxFuture<'_, Result<(), SendToError>> {
        let result = self.deliver_to_with(id, payload, Some(encode));
        Box::pin(async move { result })
    }
}

/// Changes in a node's membership, from [`LocalCluster::membership`]: a [`Stream`] of
/// [`Membership`].
///
/// [`Stream`]: futures_core::Stream
pub struct MembershipStream {
    next: Pin<Box<dyn Future<Output = Next> + Send>>,
}

type Next = (
    Result<Membership, broadcast::error::RecvError>,
    broadcast::Receiver<Membership>,
);

impl fmt::Debug for MembershipStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipStream").finish_non_exhaustive()
    }
}

impl MembershipStream {
    fn new(receiver: broadcast::Receiver<Membership>) -> Self {
        Self {
            next: Box::pin(Self::recv(receiver)),
        }
    }

    async fn recv(mut receiver: broadcast::Receiver<Membership>) -> Next {
        let next = receiver.recv().await;
        (next, receiver)
    }

    /// The next change; `None` once the cluster is gone.
    pub async fn next(&mut self) -> Option<Membership> {
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }
}

impl futures_core::Stream for MembershipStream {
    type Item = Membership;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Membership>> {
        let (next, receiver) = std::task::ready!(self.next.as_mut().poll(cx));
        let item = match next {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Membership::Lagged(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        };
        self.next = Box::pin(Self::recv(receiver));
        std::task::Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Deliver, MemorySink};

    fn session(
        cluster: &LocalCluster,
        path: &str,
        capacity: usize,
    ) -> (SessionHandle, Arc<MemorySink>) {
        let outbox = Arc::new(MemorySink::new(capacity));
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

    /// A message in three "codecs" (the text, upper-cased, reversed) that counts its
    /// encodings: a broadcast makes each codec's payload once, whoever receives it.
    struct Counted;

    static ENCODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl crate::CrimsonMessage for Counted {
        const FRAME: crate::FrameKind = crate::FrameKind::Text;
        const CODEC: &'static str = "plain";
        const CODECS: &'static [crate::CodecInfo] = &[
            crate::CodecInfo {
                token: "plain",
                name: "plain",
                frame: crate::FrameKind::Text,
            },
            crate::CodecInfo {
                token: "upper",
                name: "upper",
                frame: crate::FrameKind::Text,
            },
            crate::CodecInfo {
                token: "bad",
                name: "bad",
                frame: crate::FrameKind::Text,
            },
        ];

        fn encode(&self) -> Result<Payload, crate::EncodeError> {
            Ok(text("hi"))
        }

        fn decode(_: crate::PayloadRef<'_>) -> Result<Self, crate::DecodeError> {
            Ok(Self)
        }

        fn encode_in(&self, codec: usize) -> Result<Payload, crate::EncodeError> {
            ENCODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match codec {
                1 => Ok(text("HI")),
                2 => Err(crate::EncodeError::new::<Self>("bad", "never encodes")),
                _ => self.encode(),
            }
        }
    }

    #[test]
    fn a_broadcast_is_made_once_per_codec_its_recipients_speak() {
        let cluster = LocalCluster::new();
        let mut boxes = Vec::new();
        for codec in [0, 1, 0, 1, 1, 2] {
            let (handle, outbox) = session(&cluster, "/c", 4);
            cluster.add(handle.speaking::<Counted>(codec)).unwrap();
            boxes.push((codec, outbox));
        }
        let delivery = cluster.deliver(&text("hi"), &Target::All);
        assert_eq!((delivery.delivered, delivery.failed), (5, 1));
        assert_eq!(
            ENCODED.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "once for \"upper\", once (failing) for \"bad\""
        );
        let mut shared = Vec::new();
        for (codec, outbox) in &boxes {
            let got = outbox.take();
            match codec {
                2 => assert!(got.is_empty(), "a payload that did not encode is not sent"),
                _ => {
                    assert_eq!(got.len(), 1);
                    let Outgoing::Shared(payload) = &got[0] else {
                        panic!("broadcasts are shared: {got:?}");
                    };
                    assert_eq!(payload.payload(), &text(["hi", "HI"][*codec]));
                    shared.push((*codec, payload.clone()));
                }
            }
        }
        // From the value: a broadcast of this node makes other codecs with the encoder it is
        // given, not by re-encoding the default payload (which a lossy codec could spoil).
        let made = std::cell::Cell::new(0);
        let encode = |codec: usize| {
            made.set(made.get() + 1);
            Ok(text(&format!("value in {codec}")))
        };
        let delivery = cluster.deliver_with(&text("hi"), Some(&encode), &Target::All);
        assert_eq!((delivery.delivered, delivery.failed), (6, 0));
        assert_eq!(made.get(), 2, "once per codec other than the default");
        let upper: Vec<_> = boxes
            .iter()
            .filter(|(codec, _)| *codec == 1)
            .map(|(_, outbox)| outbox.take()[0].payload().clone())
            .collect();
        assert_eq!(upper, vec![text("value in 1"); 3]);
        assert_eq!(
            ENCODED.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the default payload was not re-encoded"
        );
        // One shared payload per codec (its compressed frame is made once, too).
        for (codec, payload) in &shared {
            for (other, same) in &shared {
                assert_eq!(codec == other, payload.ptr_eq(same), "{codec} {other}");
            }
        }
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

    /// Feature `metrics`: each broadcast records its fan-out, its failures and its duration
    /// under its kind of target, with the handles of the recorder installed at the first one.
    #[cfg(feature = "metrics")]
    #[test]
    fn broadcasts_record_their_fan_out_by_target() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let cluster = LocalCluster::new();
        let (a, _a_box) = session(&cluster, "/a", 4);
        let (b, _b_box) = session(&cluster, "/b", 1);
        let a_id = a.id();
        cluster.add(a).unwrap();
        cluster.add(b).unwrap();
        cluster.join(a_id, "red").unwrap();
        metrics::with_local_recorder(&recorder, || {
            cluster.deliver(&text("x"), &Target::All);
            // b's queue (1) is full now: it fails and is closed.
            cluster.deliver(&text("y"), &Target::All);
            cluster.deliver(&text("z"), &Target::Room("red".into()));
        });
        // Later broadcasts use the handles resolved at the first one.
        cluster.broadcast_local(&text("w"), |_| true);

        let mut figures = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let target = key.key().labels().next().unwrap().value().to_owned();
            figures.insert((key.key().name().to_owned(), target), value);
        }
        let histogram =
            |values: &[f64]| DebugValue::Histogram(values.iter().map(|v| (*v).into()).collect());
        let get = |name: &str, target: &str| &figures[&(name.to_owned(), target.to_owned())];
        assert_eq!(
            get("crimson_broadcast_recipients", "all"),
            &histogram(&[2.0, 1.0])
        );
        assert_eq!(
            get("crimson_broadcast_recipients", "room"),
            &histogram(&[1.0])
        );
        assert_eq!(
            get("crimson_broadcast_recipients", "filter"),
            &histogram(&[1.0])
        );
        assert_eq!(
            get("crimson_broadcast_failed_total", "all"),
            &DebugValue::Counter(1)
        );
        assert_eq!(
            get("crimson_broadcast_failed_total", "room"),
            &DebugValue::Counter(0)
        );
        match get("crimson_broadcast_duration_seconds", "all") {
            DebugValue::Histogram(durations) => assert_eq!(durations.len(), 2),
            other => panic!("not a histogram: {other:?}"),
        }
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
        let first = boxes[0].take();
        assert_eq!(
            first[0].payload().as_bytes().as_ptr(),
            payload.as_bytes().as_ptr()
        );
    }

    #[test]
    fn connection_limit() {
        let cluster = LocalCluster::builder().max_connections(1).build();
        cluster.add(session(&cluster, "/", 1).0).unwrap();
        let err = cluster.add(session(&cluster, "/", 1).0).unwrap_err();
        assert_eq!(err.to_string(), "connection limit reached (1 sessions)");
    }

    #[tokio::test]
    async fn membership_events_and_lag() {
        let cluster = LocalCluster::new();
        let mut events = cluster.membership();
        let (a, _) = session(&cluster, "/a", 1);
        let id = a.id();
        cluster.add(a).unwrap();
        cluster.join(id, "r").unwrap();
        cluster.remove(id);
        assert!(matches!(events.next().await, Some(Membership::Joined(info)) if info.id == id));
        assert_eq!(
            events.next().await,
            Some(Membership::JoinedRoom(id, "r".into()))
        );
        assert_eq!(events.next().await, Some(Membership::Left(id)));
        // A subscriber that falls behind is told how much it missed.
        for _ in 0..MEMBERSHIP_BOUND + 10 {
            let (s, _) = session(&cluster, "/", 1);
            cluster.add(s).unwrap();
        }
        assert_eq!(events.next().await, Some(Membership::Lagged(10)));
        assert!(matches!(events.next().await, Some(Membership::Joined(_))));
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
        assert_eq!(
            a_box.close_request(),
            Some((CloseCode::POLICY, LIFETIME_OVER.into()))
        );
    }

    #[test]
    #[should_panic(
        expected = "LocalCluster settings are invalid: watchdog_interval must be at least 10ms (got 5ms)"
    )]
    fn watchdog_interval_under_10ms_is_refused() {
        // Clamped to 10 ms before; now a mistake found when the cluster is built.
        let _ = LocalCluster::builder()
            .watchdog_interval(Duration::from_millis(5))
            .build();
    }

    #[test]
    fn watchdog_interval_of_10ms_is_accepted() {
        let builder = LocalCluster::builder().watchdog_interval(Duration::from_millis(10));
        assert_eq!(builder.check(), Ok(()));
        assert_eq!(
            LocalCluster::builder()
                .watchdog_interval(Duration::ZERO)
                .check(),
            Err("watchdog_interval must be at least 10ms (got 0ns)".to_owned())
        );
    }
}
