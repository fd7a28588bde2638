//! Session clusters: every live session of a route, on one node or many, reachable all at
//! once, by room, or by id.
//!
//! [`Cluster<Down>`] is the typed handle handlers and the rest of an app use: it encodes a
//! message once and hands the shared payload to a [`SessionCluster`] backend:
//!
//! - [`LocalCluster`]: the sessions of this process.
//! - `RedisCluster` (feature `redis`): many server nodes acting as one through Redis pub/sub.
//!
//! A broadcast never waits on a slow session: each session's bounded queue and its
//! [`OverflowPolicy`](crate::session::OverflowPolicy) decide what a full queue does, and the
//! returned [`Delivery`] counts what happened.

mod ack;
mod handle;
mod local;
mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod streams;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use ack::{AckError, AckStream, RemoteAck, RemoteAcks};
pub use handle::Cluster;
pub use local::{LocalCluster, LocalClusterBuilder, MembershipStream, LIFETIME_OVER};
pub use streams::History;

use crate::message::Payload;
use crate::session::{Queued, SendError, SessionHandle, SessionId, SessionInfo};

/// Makes the message being sent in its type's codec `index` (`CrimsonMessage::CODECS`; 0 is
/// the default), from the value itself: what a backend uses for its sessions of other codecs.
pub type Encoder<'a> = &'a dyn Fn(usize) -> Result<Payload, crate::EncodeError>;

/// A boxed future, as [`SessionCluster`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which sessions a broadcast is for. Every target works across nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every session.
    All,
    /// Every session but one (typically the sender).
    Except(SessionId),
    /// The sessions in a room.
    Room(String),
    /// The sessions in a room but one.
    RoomExcept(String, SessionId),
}

impl Target {
    /// Whether `id`, a member of `in_room`, is targeted.
    pub fn matches(&self, id: SessionId, in_room: impl FnOnce(&str) -> bool) -> bool {
        match self {
            Self::All => true,
            Self::Except(except) => id != *except,
            Self::Room(room) => in_room(room),
            Self::RoomExcept(room, except) => id != *except && in_room(room),
        }
    }
}

/// What a broadcast reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Sessions on this node the message was queued for.
    pub delivered: usize,
    /// Of those, sessions that dropped their oldest queued message to make room.
    pub dropped_oldest: usize,
    /// Sessions on this node the message could not be queued for: closing, or over their
    /// queue bound (and now being closed as slow consumers).
    pub failed: usize,
    /// Other nodes the message was published to (each delivers to its own sessions and
    /// counts on its own side); 0 for a single-node cluster.
    pub remote_nodes: usize,
}

impl Delivery {
    /// Counts one session's queueing result.
    pub fn count(&mut self, result: Result<Queued, SendError>) {
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

/// A cluster operation that could not be carried out, or only in part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The message did not encode.
    #[error("{0}")]
    Encode(#[source] crate::EncodeError),
    /// The backend (Redis) is unreachable. `local` says what this node's sessions got: local
    /// delivery goes on during an outage.
    #[error(
        "the cluster backend is unavailable ({source}); {} local session(s) were reached",
        .local.delivered
    )]
    Unavailable {
        /// What this node's own sessions received.
        local: Delivery,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The session is on another node and the backend could not reach it.
    #[error("the cluster backend failed: {0}")]
    Remote(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// As many acknowledged broadcasts as the backend allows already wait for other nodes'
    /// answers; nobody was asked. Drop or finish one (or wait) and ask again.
    #[error(
        "{limit} acknowledged broadcasts already wait for other nodes' answers; nobody was \
         asked (finish or drop one and ask again)"
    )]
    TooManyAcks {
        /// The limit.
        limit: usize,
    },
}

/// A message for one session that did not reach its queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendToError {
    /// No live session has this id (on this node, or, for a remote id, the id's node is not
    /// live).
    #[error("no live session has id {0}")]
    NotFound(SessionId),
    /// The message could not be encoded.
    #[error("{0}")]
    Encode(#[source] crate::EncodeError),
    /// The session's queue refused it.
    #[error("session {0}: {1}")]
    Send(SessionId, #[source] SendError),
    /// The session is on another node and the backend could not reach it.
    #[error("{0}")]
    Backend(#[source] ClusterError),
    /// A room name that is empty or longer than [`MAX_ROOM_LEN`] bytes.
    #[error("room name `{0}` is empty or longer than {max} bytes", max = MAX_ROOM_LEN)]
    RoomName(String),
}

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 1024;

/// Checks a room name: 1 to [`MAX_ROOM_LEN`] bytes.
pub(crate) fn check_room(room: &str) -> Result<(), SendToError> {
    if room.is_empty() || room.len() > MAX_ROOM_LEN {
        let shown: String = room.chars().take(32).collect();
        return Err(SendToError::RoomName(shown));
    }
    Ok(())
}

/// `Err("{name} must be at least {min:?} (got {got:?})")` when `got` is under `min`: a
/// builder's setting out of its range.
pub(crate) fn at_least(name: &str, got: Duration, min: Duration) -> Result<(), String> {
    if got < min {
        return Err(format!("{name} must be at least {min:?} (got {got:?})"));
    }
    Ok(())
}

/// The session limit of a cluster's node was reached: the server closes the new session with
/// 1013 so the client retries later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection limit reached ({limit} sessions)")]
pub struct ClusterFull {
    /// The limit.
    pub limit: usize,
}

/// A change in a cluster's membership on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Membership {
    /// A session joined the cluster.
    Joined(SessionInfo),
    /// A session left the cluster.
    Left(SessionId),
    /// A session joined a room.
    JoinedRoom(SessionId, String),
    /// A session left a room.
    LeftRoom(SessionId, String),
    /// The subscriber fell behind and this many changes went by unseen; query the cluster
    /// for the current state.
    Lagged(u64),
}

/// A cluster backend: where sessions live and how payloads reach them.
///
/// Every backend keeps this node's sessions in a [`LocalCluster`] ([`local`](Self::local));
/// what spans nodes (counts, room sizes and members, broadcasts, sends by id) defaults to this
/// node alone, so a single-node backend implements one method and a multi-node one overrides
/// what crosses nodes. Applications use the typed [`Cluster`] handle, which encodes once and
/// calls these. Nothing here holds a lock across an `.await`.
///
/// ```
/// use crimson_core::cluster::{Cluster, LocalCluster, SessionCluster};
///
/// /// A backend that only logs what it is asked to broadcast, then delivers locally.
/// #[derive(Debug, Default)]
/// struct Logged(LocalCluster);
///
/// impl SessionCluster for Logged {
///     fn local(&self) -> &LocalCluster {
///         &self.0
///     }
/// }
///
/// let cluster: Cluster<String> = Cluster::new(Logged::default());
/// assert_eq!(cluster.node().len(), 0);
/// ```
pub trait SessionCluster: Send + Sync + fmt::Debug + 'static {
    /// This node's own sessions.
    fn local(&self) -> &LocalCluster;

    /// This node's id: the node part of the [`SessionId`]s it hands out.
    fn node_id(&self) -> u64 {
        self.local().node_id()
    }

    /// Adds a session of this node; refused past the node's connection limit.
    fn add(&self, session: SessionHandle) -> Result<(), ClusterFull> {
        self.local().add(session)
    }

    /// Removes a session of this node (and from its rooms).
    fn remove(&self, id: SessionId) {
        self.local().remove(id);
    }

    /// Puts a session of this node in a room (created on first use).
    fn join(&self, id: SessionId, room: &str) -> Result<(), SendToError> {
        self.local().join(id, room)
    }

    /// Takes a session of this node out of a room.
    fn leave(&self, id: SessionId, room: &str) {
        self.local().leave(id, room);
    }

    /// How many sessions the whole cluster has.
    fn count(&self) -> BoxFuture<'_, Result<usize, ClusterError>> {
        let len = self.local().len();
        Box::pin(async move { Ok(len) })
    }

    /// How many sessions are in `room`, across the cluster.
    fn room_len(&self, room: &str) -> BoxFuture<'_, Result<usize, ClusterError>> {
        let len = self.local().room_members(room).len();
        Box::pin(async move { Ok(len) })
    }

    /// The sessions in `room`, across the cluster.
    fn room_members(&self, room: &str) -> BoxFuture<'_, Result<Vec<SessionId>, ClusterError>> {
        let members = self.local().room_members(room);
        Box::pin(async move { Ok(members) })
    }

    /// Queues `payload` for every targeted session, on every node.
    fn broadcast(
        &self,
        payload: Payload,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        let delivery = self.local().deliver(&payload, &target);
        Box::pin(async move { Ok(delivery) })
    }

    /// Queues `payload` for the session with this id, wherever it lives.
    fn send_to(&self, id: SessionId, payload: Payload) -> BoxFuture<'_, Result<(), SendToError>> {
        let result = self.local().deliver_to(id, payload);
        Box::pin(async move { result })
    }

    /// [`broadcast`](Self::broadcast) of a message whose value is at hand: `encode` makes it
    /// for this node's recipients of other codecs, before this returns (the future does not
    /// hold it). By default `encode` is not used and those recipients get `payload`
    /// re-encoded ([`crate::transcode`]), as a broadcast relayed from another node is.
    fn broadcast_in(
        &self,
        payload: Payload,
        encode: Encoder<'_>,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        let _ = encode;
        self.broadcast(payload, target)
    }

    /// Turns history on, so that clients of the protocol that reconnect recover what they
    /// missed ([`History`]): by default in this node's memory
    /// ([`LocalCluster::set_history`]); a backend that spans nodes keeps it where every
    /// node reads it (`RedisCluster`: in Redis). An error, with the settings already kept,
    /// if history is on with other settings. What `CrimsonConfig::history` calls.
    fn set_history(&self, history: History) -> Result<(), History> {
        self.local().set_history(history)
    }

    /// A reconnected client of session `id` (of this node) presents `from`, its last
    /// position in a stream: the session gets what it missed or is told why not
    /// ([`LocalCluster::resume`]). What the server does with each `resume` frame.
    fn resume(&self, id: SessionId, from: crate::protocol::Position) {
        self.local().resume(id, from);
    }

    /// [`send_to`](Self::send_to) of a message whose value is at hand: `encode` makes it for
    /// a session of this node that speaks another codec, before this returns. By default
    /// `encode` is not used (see [`broadcast_in`](Self::broadcast_in)).
    fn send_to_in(
        &self,
        id: SessionId,
        payload: Payload,
        encode: Encoder<'_>,
    ) -> BoxFuture<'_, Result<(), SendToError>> {
        let _ = encode;
        self.send_to(id, payload)
    }

    /// Asks the sessions `target` names on **other nodes** `payload` (a request, in its
    /// type's default codec; each node makes it in its sessions' codecs), for
    /// [`Cluster::broadcast_with_ack`]: what those nodes say, until each has answered for
    /// every session it asked or `timeout` (and the backend's grace) has passed. `None` when
    /// there are no other nodes: the default, for a single-node backend. Fails at once, with
    /// nobody asked, when other nodes cannot be reached.
    fn ask_remote(
        &self,
        payload: Payload,
        target: Target,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Option<RemoteAcks>, ClusterError>> {
        let _ = (payload, target, timeout);
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::EncodeError;

    #[test]
    fn error_texts_and_sources() {
        let encode = || EncodeError::new::<u8>("CBOR", "boom");
        let id: SessionId = "00000000000000ab-7".parse().unwrap();

        let err = ClusterError::Encode(encode());
        assert_eq!(err.to_string(), "cannot encode `u8` as CBOR: boom");
        assert_eq!(err.source().unwrap().to_string(), encode().to_string());

        let local = Delivery {
            delivered: 3,
            ..Delivery::default()
        };
        let err = ClusterError::Unavailable {
            local,
            source: "redis down".into(),
        };
        assert_eq!(
            err.to_string(),
            "the cluster backend is unavailable (redis down); 3 local session(s) were reached"
        );
        assert_eq!(err.source().unwrap().to_string(), "redis down");

        let err = ClusterError::Remote("timed out".into());
        assert_eq!(err.to_string(), "the cluster backend failed: timed out");
        assert_eq!(err.source().unwrap().to_string(), "timed out");

        let err = SendToError::NotFound(id);
        assert_eq!(err.to_string(), "no live session has id 00000000000000ab-7");
        assert!(err.source().is_none());

        let err = SendToError::Encode(encode());
        assert_eq!(err.to_string(), "cannot encode `u8` as CBOR: boom");
        assert!(err.source().is_some());

        let err = SendToError::Send(id, SendError::Closed);
        assert_eq!(
            err.to_string(),
            "session 00000000000000ab-7: the session is closed"
        );
        assert_eq!(err.source().unwrap().to_string(), "the session is closed");

        let err = SendToError::Backend(ClusterError::Remote("timed out".into()));
        assert_eq!(err.to_string(), "the cluster backend failed: timed out");
        assert_eq!(
            err.source().unwrap().to_string(),
            "the cluster backend failed: timed out"
        );

        let err = SendToError::RoomName(String::new());
        assert_eq!(
            err.to_string(),
            "room name `` is empty or longer than 1024 bytes"
        );
        assert!(err.source().is_none());

        assert_eq!(
            ClusterFull { limit: 2 }.to_string(),
            "connection limit reached (2 sessions)"
        );
    }
}
