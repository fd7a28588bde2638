//! [`LocalCluster`]: the sessions of one process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::metrics::{self as broadcast_metrics, BroadcastMetrics};
use super::streams::{self, History, Streams};
use super::{
    at_least, ClusterFull, Delivery, Encoder, Membership, SendToError, SessionCluster, Target,
};
use crate::close::CloseCode;
use crate::message::Payload;
use crate::protocol::{Kind, LostReason, Position};
use crate::session::{random_u64, Outgoing, SessionHandle, SessionId, SessionInfo, SharedPayload};

pub(crate) mod backed;

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
    /// The header of the protocol's sessions: a publication's position in its stream, or a
    /// plain message.
    kind: Kind,
}

impl<'a> Variants<'a> {
    fn new(payload: &Payload, encode: Option<Encoder<'a>>) -> Self {
        Self {
            default: Outgoing::Shared(SharedPayload::new(payload.clone())),
            encode,
            others: Vec::new(),
            kind: Kind::Message,
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
                    let made = match encoded(
                        handle,
                        self.default.payload(),
                        self.encode,
                        &self.kind,
                    ) {
                        Ok(payload) => Some(Outgoing::Shared(match &self.kind {
                            // A queue that drops it tells the client so.
                            Kind::Publication(position) if wire.1 => {
                                SharedPayload::publication(payload, position.clone())
                            }
                            _ => SharedPayload::new(payload),
                        })),
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
                if let (Kind::Publication(position), true) = (&self.kind, wire.1) {
                    // Never a silent gap: the client is told where the publication was.
                    let lost = backed::lost_frame(handle, position.clone(), LostReason::Dropped);
                    if let Err(err) = handle.deliver(lost) {
                        tracing::debug!(%err, session_id = %handle.id(), "a dropped publication was not told");
                    }
                }
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
    kind: &Kind,
) -> Result<Payload, crate::EncodeError> {
    match encode {
        Some(encode) if handle.codec() != 0 => Ok(handle.frame_as(kind, encode(handle.codec())?)),
        _ => handle.transcode_as(kind, payload),
    }
}

/// Tells a session where it follows a stream from.
fn subscribed(handle: &SessionHandle, position: Position) {
    let frame = empty_frame(handle, Kind::Subscribed(position));
    if let Err(err) = handle.deliver(Outgoing::Control(frame)) {
        tracing::debug!(%err, session_id = %handle.id(), "a stream's position was not queued");
    }
}

/// A session starts following `stream` (`handle`, if it speaks the protocol): told where
/// from if the stream is warm, else when it is. False when the stream is not warm (the
/// caller asks its source to warm it, once the locks are released).
fn follow(stream: &mut streams::Stream, name: &str, handle: Option<&SessionHandle>) -> bool {
    if stream.warm {
        if let Some(handle) = handle {
            subscribed(handle, stream.position(name));
        }
        return true;
    }
    if let Some(handle) = handle {
        stream.wait_for_position(handle);
    }
    false
}

/// A frame of `kind` with an empty body, as `handle`'s codec sends frames.
fn empty_frame(handle: &SessionHandle, kind: Kind) -> Payload {
    let body = match handle.frame_kind() {
        crate::FrameKind::Text => Payload::Text("".into()),
        crate::FrameKind::Binary => Payload::Binary(bytes::Bytes::new()),
    };
    crate::protocol::write(kind, &body)
}

struct Member {
    handle: SessionHandle,
    rooms: HashSet<String>,
    /// Resumes of rooms' streams the session has not joined yet: answered when it joins.
    /// Boxed: one word on every session, where an empty `Vec` would take three.
    #[allow(clippy::box_collection)]
    waiting: Option<Box<Vec<Position>>>,
    /// The rooms a session of the protocol left on this connection (told `unsub`), the last
    /// [`MAX_WAITING_RESUMES`], by [`room_hash`] (8 bytes each, however long the name): a
    /// resume of one of them, read after it, is not answered (its client forgot the stream).
    /// Boxed likewise.
    #[allow(clippy::box_collection)]
    left: Option<Box<Vec<u64>>>,
}

/// The most resumes one session may have waiting for a join.
const MAX_WAITING_RESUMES: usize = 64;

/// A room's name as a session's list of rooms left keeps it.
fn room_hash(room: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    room.hash(&mut hasher);
    hasher.finish()
}

/// The longest epoch a waiting resume may name: the server's own are 8 characters, so a
/// longer one is answered `epoch_changed` at once rather than kept until a join.
const MAX_EPOCH: usize = 64;

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
    /// Streams and their history, once history is on.
    streams: std::sync::OnceLock<Streams>,
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
    pub(crate) history: Option<History>,
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

    /// Keep each stream's recent publications, so that clients of the Crimson protocol that
    /// reconnect recover what they missed ([`History`]; off by default).
    pub fn history(mut self, history: History) -> Self {
        self.history = Some(history);
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
                streams: match self.history {
                    Some(history) => std::sync::OnceLock::from(Streams::new(history)),
                    None => std::sync::OnceLock::new(),
                },
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
            history: None,
        }
    }

    /// Turns history on ([`LocalClusterBuilder::history`]) for a cluster already built; an
    /// error if it is already on with other settings.
    pub fn set_history(&self, history: History) -> Result<(), History> {
        let streams = self.inner.streams.get_or_init(|| Streams::new(history));
        if streams.history == history {
            Ok(())
        } else {
            Err(streams.history)
        }
    }

    /// The history settings, if history is on.
    pub fn history(&self) -> Option<History> {
        self.inner.streams.get().map(|streams| streams.history)
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
        // With history, a publication in its stream: its offset is taken, and it is queued
        // for every recipient, under the stream's lock, so that every session gets the
        // stream in offset order. (Streams backed by another source number their
        // publications there: see `deliver_next`.)
        let own = self.inner.streams.get().filter(|s| s.source.is_none());
        let stream = own.map(|streams| {
            let name = streams::stream_of(target);
            let stream = streams.get_or_make(&name);
            (streams, name, stream)
        });
        let _publishing = stream.as_ref().map(|(streams, name, stream)| {
            let mut stream = streams::lock(stream);
            stream.publish(&streams.history, payload);
            variants.kind = Kind::Publication(stream.position(name));
            stream
        });
        let delivery = self.offer_target(&mut variants, target);
        self.metrics().record(Some(target), started, &delivery);
        delivery
    }

    /// Offers `variants` to every session of this node `target` names.
    fn offer_target(&self, variants: &mut Variants<'_>, target: &Target) -> Delivery {
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
        let payload =
            encoded(&handle, &payload, encode, &Kind::Message).map_err(SendToError::Encode)?;
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
        let mut cold = false;
        {
            // With history, a session of the protocol follows `all` from now on: told where
            // that is under the stream's lock, so each publication is either before it or
            // delivered to the session after it. (A backed stream that is not warm yet
            // tells it once it is; every session is a recipient to warm it for.)
            let streams = self.inner.streams.get();
            let stream = streams
                .filter(|s| session.is_framed() || s.source.is_some())
                .map(|streams| streams.get_or_make(streams::ALL));
            let mut all = stream.as_deref().map(streams::lock);
            let mut state = self.write();
            if let Some(limit) = self.inner.max_connections {
                if state.sessions.len() >= limit {
                    return Err(ClusterFull { limit });
                }
            }
            let info = session.info().clone();
            let following = (all.is_some() && session.is_framed()).then(|| session.clone());
            state.sessions.insert(
                session.id(),
                Member {
                    handle: session,
                    rooms: HashSet::new(),
                    waiting: None,
                    left: None,
                },
            );
            // No subscriber is not an error: nobody is listening.
            let _ = self.inner.events.send(Membership::Joined(info));
            drop(state);
            if let Some(stream) = &mut all {
                cold = !follow(stream, streams::ALL, following.as_ref());
            }
        }
        if cold {
            self.warm_up(streams::ALL);
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
        // With history, a session of the protocol that joins follows the room's stream from
        // now on (told where that is under the stream's lock), unless a resume of it waited
        // for this join.
        let name = format!("room:{room}");
        let joining = match self.inner.streams.get() {
            Some(streams) => {
                let handle = self.get(id).ok_or(SendToError::NotFound(id))?;
                (handle.is_framed() || streams.source.is_some())
                    .then(|| (handle, streams.get_or_make(&name)))
            }
            None => None,
        };
        let mut following = joining
            .as_ref()
            .map(|(handle, stream)| (handle, streams::lock(stream)));
        let mut state = self.write();
        let member = state
            .sessions
            .get_mut(&id)
            .ok_or(SendToError::NotFound(id))?;
        // A resume of this room's stream waited for the join: answered now. Publications
        // made meanwhile are queued live as well as recovered; the client keeps each once.
        let resume = member.waiting.as_mut().and_then(|waiting| {
            let at = waiting.iter().position(|from| from.stream == name)?;
            Some(waiting.swap_remove(at))
        });
        if let Some(left) = &mut member.left {
            let hash = room_hash(room);
            left.retain(|other| *other != hash);
        }
        if member.rooms.insert(room.to_owned()) {
            state.rooms.entry(room.to_owned()).or_default().insert(id);
            let _ = self
                .inner
                .events
                .send(Membership::JoinedRoom(id, room.to_owned()));
        }
        drop(state);
        if let Some(from) = resume {
            drop(following);
            self.resume(id, from);
        } else if let Some((handle, mut stream)) = following.take() {
            let framed = handle.is_framed().then_some(handle);
            if !follow(&mut stream, &name, framed) {
                drop(stream);
                self.warm_up(&name);
            }
        }
        Ok(())
    }

    /// A client of session `id` that reconnected presents `from`, the last position it got
    /// in a stream: the session is sent `recovered` and what was missed, in order, or `lost`
    /// and why (`docs/protocol.md`, "Streams and recovery"). A room's stream is answered once
    /// the session is in the room (at its join, if it has not joined yet). What the server
    /// does with each `resume` frame; a session that is gone is skipped.
    pub fn resume(&self, id: SessionId, mut from: Position) {
        let Some(streams) = self.inner.streams.get() else {
            self.answer_lost(id, from.stream, String::new(), 0, LostReason::Unknown);
            return;
        };
        if let Some(room) = from.stream.strip_prefix("room:") {
            let mut state = self.write();
            let Some(member) = state.sessions.get_mut(&id) else {
                return;
            };
            if !member.rooms.contains(room) {
                if member
                    .left
                    .as_ref()
                    .is_some_and(|left| left.contains(&room_hash(room)))
                {
                    // Left on this connection: its client was told `unsub` and forgot the
                    // stream before it read an answer.
                    return;
                }
                // What waits is kept until the session leaves, so only what a join can answer
                // waits: a room no session can join, or an epoch the server never made, is
                // answered now (the join's `sub` then says where the room stands).
                let now = if super::check_room(room).is_err() {
                    Some(LostReason::Unknown)
                } else if from.epoch.len() > MAX_EPOCH {
                    Some(LostReason::EpochChanged)
                } else {
                    None
                };
                if let Some(reason) = now {
                    drop(state);
                    self.answer_lost(id, from.stream, String::new(), 0, reason);
                    return;
                }
                // Decoded from percent-encoding: up to three times the room's bytes reserved.
                from.stream.shrink_to_fit();
                from.epoch.shrink_to_fit();
                let waiting = member.waiting.get_or_insert_with(Box::default);
                waiting.retain(|other| other.stream != from.stream);
                if waiting.len() < MAX_WAITING_RESUMES {
                    waiting.push(from);
                    return;
                }
                drop(state);
                self.answer_lost(id, from.stream, String::new(), 0, LostReason::OverLimit);
                return;
            }
        } else if from.stream != streams::ALL {
            self.answer_lost(id, from.stream, String::new(), 0, LostReason::Unknown);
            return;
        }
        if let Some(source) = &streams.source {
            // Answered by the backend, once it has read the stream's history.
            source.resume(id, from);
            return;
        }
        let Some(stream) = streams.get(&from.stream) else {
            // Nothing kept: the stream is new since the client's position (a restart, or
            // forgotten), whatever that position was.
            self.answer_lost(id, from.stream, String::new(), 0, LostReason::EpochChanged);
            return;
        };
        let mut stream = streams::lock(&stream);
        let Some(handle) = self.get(id) else { return };
        if !self.follows(id, &from.stream) {
            // It left the room since: its client was told `unsub` and forgot the stream.
            return;
        }
        let now = stream.position(&from.stream);
        let frames = match stream.missed(&streams.history, &from) {
            Ok(missed) => {
                let mut frames = Vec::with_capacity(missed.len() + 1);
                let mut failed = false;
                frames.push(Outgoing::Single(empty_frame(
                    &handle,
                    Kind::Recovered {
                        position: now.clone(),
                        count: missed.len() as u64,
                    },
                )));
                for entry in missed {
                    let kind = Kind::Publication(Position {
                        offset: entry.offset,
                        ..now.clone()
                    });
                    match handle.transcode_as(&kind, &entry.payload) {
                        Ok(frame) => frames.push(Outgoing::Single(frame)),
                        Err(err) => {
                            tracing::warn!(%err, stream = %now.stream, "a kept publication did not re-encode for a recovery");
                            frames.truncate(0);
                            failed = true;
                            self.metrics().recovery(LostReason::Unknown.as_str(), 0);
                            frames.push(Outgoing::Single(empty_frame(
                                &handle,
                                Kind::Lost {
                                    position: now.clone(),
                                    reason: LostReason::Unknown.to_string(),
                                },
                            )));
                            break;
                        }
                    }
                }
                if !failed {
                    self.metrics().recovery("recovered", frames.len() - 1);
                }
                frames
            }
            Err(reason) => {
                self.metrics().recovery(reason.as_str(), 0);
                vec![Outgoing::Single(empty_frame(
                    &handle,
                    Kind::Lost {
                        position: now,
                        reason: reason.to_string(),
                    },
                ))]
            }
        };
        // Under the stream's lock: no publication of the stream gets between them.
        if let Err(err) = handle.deliver_all(frames) {
            tracing::debug!(%err, session_id = %id, "a recovery was not queued");
        }
    }

    /// Whether session `id` gets `stream`'s publications: every session gets `all`'s, a
    /// room's members their room's. Called under the stream's lock, to answer a resume only
    /// while the session follows the stream.
    pub(crate) fn follows(&self, id: SessionId, stream: &str) -> bool {
        match stream.strip_prefix("room:") {
            Some(room) => self
                .read()
                .sessions
                .get(&id)
                .is_some_and(|member| member.rooms.contains(room)),
            None => true,
        }
    }

    fn answer_lost(
        &self,
        id: SessionId,
        stream: String,
        epoch: String,
        offset: u64,
        reason: LostReason,
    ) {
        let Some(handle) = self.get(id) else { return };
        self.metrics().recovery(reason.as_str(), 0);
        let frame = empty_frame(
            &handle,
            Kind::Lost {
                position: Position {
                    stream,
                    epoch,
                    offset,
                },
                reason: reason.to_string(),
            },
        );
        if let Err(err) = handle.deliver(Outgoing::Control(frame)) {
            tracing::debug!(%err, session_id = %id, "a recovery's answer was not queued");
        }
    }

    /// Takes a session out of a room.
    pub fn leave(&self, id: SessionId, room: &str) {
        // With history, a session of the protocol is told it no longer follows the room's
        // stream (`unsub`), under the stream's lock: after every publication it got, before
        // any it did not.
        let streams = self.inner.streams.get();
        let name = streams.map(|_| format!("room:{room}"));
        let stream = streams
            .zip(name.as_deref())
            .and_then(|(streams, name)| streams.get(name));
        let mut locked = stream.as_ref().map(|stream| streams::lock(stream));
        let mut state = self.write();
        let Some(member) = state.sessions.get_mut(&id) else {
            return;
        };
        if !member.rooms.remove(room) {
            return;
        }
        if let Some(stream) = &mut locked {
            // Not told where it follows the stream from once it is warm: it does not.
            stream.pending.retain(|waiting| waiting.id() != id);
        }
        let told = name.filter(|_| member.handle.is_framed()).map(|name| {
            let left = member.left.get_or_insert_with(Box::default);
            if left.len() >= MAX_WAITING_RESUMES {
                left.remove(0);
            }
            left.push(room_hash(room));
            (member.handle.clone(), name)
        });
        if let Some(members) = state.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                state.rooms.remove(room);
            }
        }
        if let Some((handle, name)) = told {
            // Under the state's lock too (a stream forgotten meanwhile has no lock to take):
            // a join and its `sub` come after it.
            let frame = empty_frame(&handle, Kind::Unsubscribed { stream: name });
            if let Err(err) = handle.deliver(Outgoing::Control(frame)) {
                tracing::debug!(%err, session_id = %id, "a room's unsub was not queued");
            }
        }
        let _ = self
            .inner
            .events
            .send(Membership::LeftRoom(id, room.to_owned()));
        drop(state);
        drop(locked);
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
    /// Taken by the tests that encode `Counted`, so that one's count is its own.
    static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
        let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
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
            let target = key
                .key()
                .labels()
                .next()
                .map_or(String::new(), |label| label.value().to_owned());
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

    /// Feature `metrics`: each resume's outcome is counted, and so are the messages sent.
    #[cfg(feature = "metrics")]
    #[test]
    fn recoveries_are_counted_by_outcome() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let cluster = LocalCluster::builder()
            .history(super::History::new(2, Duration::MAX))
            .build();
        let (a, _a_box) = session(&cluster, "/a", 16);
        let a = a.framing(true);
        let id = a.id();
        metrics::with_local_recorder(&recorder, || {
            cluster.add(a).unwrap();
            for n in 0..3 {
                cluster.deliver(&text(&n.to_string()), &Target::All);
            }
            let at = |epoch: &str, offset| Position {
                stream: "all".into(),
                epoch: epoch.into(),
                offset,
            };
            let epoch = cluster
                .inner
                .streams
                .get()
                .unwrap()
                .get("all")
                .map(|s| streams::lock(&s).position("all").epoch)
                .unwrap();
            cluster.resume(id, at(&epoch, 1));
            cluster.resume(id, at(&epoch, 0));
            cluster.resume(id, at("other", 3));
        });
        let mut figures = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let label = key
                .key()
                .labels()
                .next()
                .map_or(String::new(), |label| label.value().to_owned());
            figures.insert((key.key().name().to_owned(), label), value);
        }
        let get = |name: &str, label: &str| figures.get(&(name.to_owned(), label.to_owned()));
        assert_eq!(
            get("crimson_recoveries_total", "recovered"),
            Some(&DebugValue::Counter(1))
        );
        assert_eq!(
            get("crimson_recoveries_total", "history_too_short"),
            Some(&DebugValue::Counter(1))
        );
        assert_eq!(
            get("crimson_recoveries_total", "epoch_changed"),
            Some(&DebugValue::Counter(1))
        );
        assert_eq!(
            get("crimson_recovered_messages_total", ""),
            Some(&DebugValue::Counter(2))
        );
    }

    /// With history, a session of the protocol that leaves a room is told `unsub` after the
    /// room's last publication it got, and a resume of that room read afterwards on the same
    /// connection is not answered (its client forgot the stream); a plain session is told
    /// nothing.
    #[test]
    fn leaving_a_room_is_told_and_its_late_resume_dropped() {
        let cluster = LocalCluster::builder()
            .history(super::History::new(4, Duration::MAX))
            .build();
        let (framed, framed_box) = session(&cluster, "/c", 16);
        let (plain, plain_box) = session(&cluster, "/c", 16);
        let (framed, plain) = (framed.framing(true), plain);
        let (a, b) = (framed.id(), plain.id());
        cluster.add(framed).unwrap();
        cluster.add(plain).unwrap();
        cluster.join(a, "x").unwrap();
        cluster.join(b, "x").unwrap();
        cluster.deliver(&text("in"), &Target::Room("x".into()));
        cluster.leave(a, "x");
        cluster.leave(b, "x");
        cluster.leave(a, "x");
        cluster.deliver(&text("out"), &Target::Room("x".into()));
        let frames: Vec<String> = framed_box
            .take()
            .iter()
            .map(|o| String::from_utf8(o.payload().as_bytes().to_vec()).unwrap())
            .collect();
        let epoch = frames[1].split(' ').nth(2).unwrap().to_owned();
        assert_eq!(
            frames[1..],
            [
                format!("sub s=room%3Ax {epoch} o=0\n"),
                format!("pub s=room%3Ax {epoch} o=1\nin"),
                "unsub s=room%3Ax\n".to_owned(),
            ],
            "told once, after what it got"
        );
        assert_eq!(plain_box.take().len(), 1, "the plain session got `in` only");
        cluster.resume(
            a,
            Position {
                stream: "room:x".into(),
                epoch: epoch.trim_start_matches("e=").into(),
                offset: 0,
            },
        );
        assert!(
            framed_box.take().is_empty(),
            "a resume of a room left is not answered"
        );
        // Joined again: followed again, from where the room stands.
        cluster.join(a, "x").unwrap();
        let again = framed_box.take();
        assert_eq!(
            again[0].payload().as_bytes(),
            format!("sub s=room%3Ax {epoch} o=2\n").as_bytes()
        );
    }

    /// With history, a publication that does not encode in a session's codec is no silent
    /// gap: a session of the protocol is told `lost … reason=dropped` at its position. Frames
    /// of the protocol carry their position, so that a queue that drops one can say so too.
    #[test]
    fn a_publication_that_does_not_encode_is_told_as_dropped() {
        let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
        let cluster = LocalCluster::builder()
            .history(super::History::new(4, Duration::MAX))
            .build();
        let mut boxes = Vec::new();
        for (codec, framed) in [(0, true), (2, true), (2, false)] {
            let (handle, outbox) = session(&cluster, "/c", 8);
            cluster
                .add(handle.framing(framed).speaking::<Counted>(codec))
                .unwrap();
            boxes.push(outbox);
        }
        let delivery = cluster.deliver(&text("hi"), &Target::All);
        assert_eq!((delivery.delivered, delivery.failed), (1, 2));
        let got: Vec<_> = boxes.iter().map(|outbox| outbox.take()).collect();
        // Each session of the protocol was told where it follows `all` from first.
        assert_eq!(got[0].len(), 2);
        let position = got[0][1].position().expect("a publication").clone();
        assert_eq!((position.stream.as_str(), position.offset), ("all", 1));
        assert_eq!(got[1].len(), 2);
        assert_eq!(got[1][1].position(), None);
        assert_eq!(
            got[1][1].payload().as_bytes(),
            format!("lost s=all e={} o=1 reason=dropped\n", position.epoch).as_bytes()
        );
        assert!(got[2].is_empty(), "a plain session cannot be told");
    }

    /// A room's resume waits for the join, so what waits is bounded: a room name no session
    /// can join, or an epoch the server never made, is answered at once, and nothing waits.
    #[test]
    fn resumes_that_can_never_be_answered_by_a_join_do_not_wait() {
        let cluster = LocalCluster::builder()
            .history(super::History::new(4, Duration::MAX))
            .build();
        let (a, a_box) = session(&cluster, "/a", 16);
        let id = a.id();
        cluster.add(a.framing(true)).unwrap();
        a_box.take();
        let frames = |sink: &MemorySink| -> Vec<String> {
            sink.take()
                .iter()
                .map(|o| String::from_utf8_lossy(o.payload().as_bytes()).into_owned())
                .collect()
        };
        let waiting = |cluster: &LocalCluster| {
            cluster.read().sessions[&id]
                .waiting
                .as_ref()
                .map_or(0, |w| w.len())
        };
        let long_room = format!("room:{}", "x".repeat(3000));
        cluster.resume(
            id,
            Position {
                stream: long_room.clone(),
                epoch: "e".into(),
                offset: 1,
            },
        );
        cluster.resume(
            id,
            Position {
                stream: "room:".into(),
                epoch: "e".into(),
                offset: 1,
            },
        );
        cluster.resume(
            id,
            Position {
                stream: "room:lobby".into(),
                epoch: "e".repeat(3000),
                offset: 1,
            },
        );
        assert_eq!(
            waiting(&cluster),
            0,
            "nothing that a join could answer waits"
        );
        let answers = frames(&a_box);
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert!(answers[0].ends_with(" e= o=0 reason=unknown_position\n"));
        assert_eq!(
            answers[1],
            "lost s=room%3A e= o=0 reason=unknown_position\n"
        );
        assert_eq!(
            answers[2],
            "lost s=room%3Alobby e= o=0 reason=epoch_changed\n"
        );
        // A room it may join still waits for the join.
        cluster.resume(
            id,
            Position {
                stream: "room:lobby".into(),
                epoch: "e".into(),
                offset: 1,
            },
        );
        assert_eq!(waiting(&cluster), 1);
        assert!(frames(&a_box).is_empty());
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
