//! [`RedisCluster`]: many server nodes acting as one, through Redis pub/sub (feature `redis`),
//! on one Redis or on a Redis Cluster.
//!
//! Each node keeps its own sessions in a [`LocalCluster`] and delivers to them directly. A
//! broadcast is also published on a broadcast channel, a room broadcast on the room's
//! channel, and every other node that listens there delivers it to its own sessions; a send
//! to a session on another node is published on that node's channel (a [`SessionId`] names
//! its node). Payloads travel as bytes, never hex.
//!
//! # One Redis or a Redis Cluster
//!
//! [`RedisCluster::builder`] takes `redis://HOST:PORT` for one Redis (6 or later: pub/sub
//! runs over RESP3 on the command connections), or a Redis Cluster's seed nodes as
//! `redis+cluster://HOST:PORT,HOST:PORT…` (a plain `redis://` URL of any cluster node works
//! too: the node asks). On a cluster, pub/sub is *sharded* (`SSUBSCRIBE`/`SPUBLISH`, Redis
//! 7): a message goes only to the master that owns its channel's slot, which sends it to the
//! nodes subscribed there, instead of travelling to every server of the cluster.
//!
//! - A room's channel and its presence keys share the hash tag `{room:NAME}`, so one shard
//!   holds all of a room (and its history, once there is one). Only nodes with members in a
//!   room subscribe to its channel.
//! - A node's channel and its session hash share `{node:ID}`.
//! - Broadcasts to everyone go over [`RedisClusterBuilder::broadcast_channels`] channels
//!   (16 by default) tagged `{all:0}` … `{all:15}`, which spread over the shards. Every node
//!   subscribes to all of them and publishes on the one its id picks: its own broadcasts
//!   stay in order, and the broadcasts of many nodes spread over all shards instead of
//!   making one shard fan out every message (with few nodes, few shards are used).
//!
//! Crimson keeps the connections itself, one per master: it reads the slot map (`CLUSTER
//! SLOTS`) on every probe, so when a master dies and its replica takes over it connects to
//! the new master and subscribes there again. redis-rs's own cluster client is not used for
//! this: it does not notice a failover without a redirect, and its `PING` to all masters
//! succeeds with one of them down.
//!
//! # Presence
//!
//! Every node writes its sessions to a hash, and its members of each room to a set per
//! room, that expire unless the node's heartbeat refreshes them, so a crashed node's
//! sessions and room members disappear from cluster-wide counts ([`Cluster::count`],
//! [`Cluster::room_len`], [`Cluster::room_members`]) on their own within three heartbeats.
//! Heartbeats are stamped with Redis's own clock (a script calling `TIME` on the shard of
//! the nodes key), so clock skew between machines does not matter. Joins and leaves reach
//! Redis in the background, batched (one pipeline per shard per burst): a join counts
//! cluster-wide one round trip after [`Cluster::join`] returns, and by then its node is
//! subscribed to the room's channel.
//!
//! A send to a session on another node fails with `NotFound` when no node listens on that
//! node's channel (it is gone); if the node is live but the session has just left, the
//! message is counted on that node ([`RedisCluster::relay_failures`], [`RedisStats`]).
//!
//! # Outage, hang, failover
//!
//! A health probe asks every shard every 300 ms with a 500 ms deadline (`PING`; on a cluster
//! `CLUSTER INFO`, which must say `cluster_state:ok`) ([`RedisClusterBuilder::probe`]), so a
//! Redis that stops answering (down, or hung) is found within about 0.8 s, a lost connection
//! at once. Local delivery always happens first and never waits for Redis. A publish waits
//! at most [`RedisClusterBuilder::publish_timeout`] (500 ms), less if Redis is found
//! unavailable meanwhile; from then on cross-node operations fail at once: broadcasts and
//! sends return [`ClusterError::Unavailable`] (with what the local sessions got), counts
//! return an error. The node reconnects by itself (backing off up to
//! [`RedisClusterBuilder::max_backoff`], 2 s by default), subscribes again, and rewrites its
//! presence when Redis is back.
//!
//! Nothing is lost silently. A publish that fails is an error for its sender. Every message
//! a node publishes on a channel carries a sequence number, so a receiver that misses some
//! (its subscription was down, Redis dropped them, or their publish failed) counts them
//! ([`RedisStats::lost`]) when the next one from that node on that channel arrives.
//! Failures are counted ([`RedisStats`]) and logged at most once per 5 s per kind, with the
//! count since the previous line, never once per message.
//!
//! Relayed input is checked: anything that can write to Redis can publish on these channels.
//! A payload over [`RedisClusterBuilder::max_payload`] (1 MiB) is dropped (and refused on the
//! sending side with [`PayloadTooLarge`]); with [`RedisClusterBuilder::check_payloads`], one
//! that does not decode as the route's message type is dropped; a message that is not in
//! Crimson's format is dropped. Each is counted in [`RedisStats`] and logged, rate-limited.
//! Answers to acknowledged broadcasts (below) are of the request's response type, so
//! `check_payloads` does not apply to them; their size does.
//!
//! # Acknowledged broadcasts
//!
//! [`Cluster::broadcast_with_ack`] asks the sessions of every node. The asking node publishes
//! the request where a broadcast to the same target goes (its payload in the default codec)
//! before it asks its own sessions; every node that gets it asks its targeted sessions (each
//! in its codec, made once per codec), publishes at once on the asking node's channel which
//! sessions it asked, then relays their answers there as they come (what is ready at once in
//! one message), each by the request's timeout at the latest. The asking node knows how many
//! nodes got the request (the publish's receiver count, less itself), so its stream ends as
//! soon as every node has said which sessions it asked and each of those has answered; at
//! the latest a second after the timeout, when a listed session not heard from yields a
//! timeout and a node never heard from is counted
//! ([`AckStream::silent_nodes`](crate::cluster::AckStream::silent_nodes),
//! [`RedisStats::acks_silent_nodes`]).
//!
//! Bounded on both sides. A node has at most [`MAX_OPEN_ACKS`] acknowledged broadcasts
//! waiting for other nodes (past that [`ClusterError::TooManyAcks`], nobody asked), and
//! serves at most [`MAX_SERVING`] of other nodes' at once, each for at most
//! [`MAX_ACK_TIMEOUT`] (past that it answers for each session it names that it was not
//! asked); one node lists at most `max_payload / 16` sessions for one ask (the rest are not
//! asked, and counted). An ask takes from what other nodes publish no more than it asked
//! for: each node's first list, only as many nodes as got it, only a node's own sessions,
//! each session's first answer, nothing after the deadline or once its stream is dropped.
//! What is ignored or not served is counted ([`RedisStats::acks_ignored`],
//! [`RedisStats::acks_unserved`]) and logged, rate-limited. Nodes of an older version do not
//! know these messages: they count them as malformed, ask nobody, and the asking node
//! counts them as silent.
//!
//! # History
//!
//! With history on ([`RedisClusterBuilder::history`], or `CrimsonConfig::history` on a
//! route of this cluster), the streams live in Redis, shared by every node on it: a
//! broadcast is a publication numbered, kept (a Redis Stream, capped at the history's size,
//! expiring after its time to live) and published by one Lua script, on the room's channel
//! or, for the stream `all`, on broadcast channel 0. Every node, the publishing one too,
//! delivers it when it comes back on its subscription, in offset order; a node that missed
//! some (its subscription was down) reads them back from the stream, or tells its sessions
//! what it cannot (`lost`); a resume on any node reads the stream. A client that fails over
//! to another node recovers there. Redis that lost the keys (restarted without
//! persistence, flushed) is a new epoch: `epoch_changed`. During an outage a broadcast with
//! history fails at once, for this node's sessions too: a publication is in the stream or
//! nowhere. Details and bounds: `history/mod.rs`.
//!
//! A limit: on a Redis Cluster, a failover loses the writes its replica had not received
//! yet (Redis replicates asynchronously). The offsets of publications made in the last
//! moments before it are then given again to new ones, which nodes that delivered the first
//! take for duplicates: those few are missed without a `lost`. One Redis restarted without
//! persistence is not affected (a new epoch).
//!
//! # Keys and channels
//!
//! All start with the app's prefix `P` (`crimson` by default), so two apps on one Redis
//! never cross. Give every cluster of one app its own prefix too (say `chat` and `prices`):
//! nodes with the same prefix relay each other's payloads. `ID` is a node id in 16 hex
//! digits; `K` a broadcast channel's number.
//!
//! | name | what | hash tag (shard) |
//! |---|---|---|
//! | `P:{all:K}:ch` | channel: broadcasts (and acknowledged broadcasts) to all, and all but one | `all:K` |
//! | `P:{room:NAME}:ch` | channel: broadcasts (and acknowledged broadcasts) to a room | `room:NAME` |
//! | `P:{room:NAME}:node:ID` | set: node `ID`'s sessions in room `NAME`; expires | `room:NAME` |
//! | `P:{node:ID}:ch` | channel: sends to one session of node `ID`; answers to its acknowledged broadcasts | `node:ID` |
//! | `P:{node:ID}:sessions` | hash: session id → `path`, `config`, connect time; expires | `node:ID` |
//! | `P:nodes` | sorted set: node → last heartbeat (ms, Redis's clock) | the key |
//! | `P:{room:NAME}:history`, `P:{all:0}:history` | stream: a stream's history (with history on), entry `0-OFFSET` → `m` message, `t` time; capped, expires | `room:NAME`, `all:0` |
//! | `P:{room:NAME}:stream`, `P:{all:0}:stream` | hash: a stream's epoch `e` and last offset `o`; expires a day (or twice the history's time to live) after its last use | `room:NAME`, `all:0` |
//!
//! ```no_run
//! use crimson_core::cluster::{Cluster, LocalCluster};
//! use crimson_core::cluster::redis::RedisCluster;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One Redis; for a Redis Cluster: "redis+cluster://10.0.0.1:7000,10.0.0.2:7000".
//! let backend = RedisCluster::builder("redis://127.0.0.1:6379")
//!     .prefix("chat")
//!     .check_payloads::<String>()
//!     .local(LocalCluster::builder().max_connections(10_000))
//!     .build()
//!     .await?;
//! let cluster: Cluster<String> = Cluster::new(backend);
//! # Ok(()) }
//! ```

mod acks;
mod answer;
mod batch;
mod builder;
mod health;
mod history;
mod names;
mod presence;
mod publish;
mod relay;
mod report;
mod shards;
pub(crate) mod wire;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cluster::Encoder;

pub use self::acks::{MAX_ACK_TIMEOUT, MAX_OPEN_ACKS};
pub use self::answer::MAX_SERVING;
use self::batch::Batch;
pub use self::builder::{RedisClusterBuilder, RedisClusterError, DEFAULT_MAX_PAYLOAD};
use self::names::{broadcast_channel_of, node_field, Names};
use self::presence::PresenceQueue;
use self::relay::{PayloadCheck, Sequences};
pub use self::report::RedisStats;
use self::report::Reports;
use self::shards::Shards;
use self::wire::Route;
#[cfg(doc)]
use super::Cluster;
use super::{
    BoxFuture, ClusterError, ClusterFull, Delivery, LocalCluster, RemoteAcks, SendToError,
    SessionCluster, Target,
};
use crate::message::Payload;
use crate::session::{SessionHandle, SessionId};

/// One node: its sessions, its connections, and what its background tasks share.
pub(crate) struct Node {
    pub(crate) local: LocalCluster,
    pub(crate) names: Names,
    pub(crate) shards: Shards,
    /// Whether cross-node delivery works now (the shards' view).
    pub(crate) available: watch::Receiver<bool>,
    pub(crate) presence: Arc<PresenceQueue>,
    pub(crate) publisher: mpsc::Sender<publish::Request>,
    pub(crate) broadcast_channels: u16,
    pub(crate) heartbeat: Duration,
    pub(crate) timeout: Duration,
    /// How long a broadcast waits for its publish.
    pub(crate) publish_timeout: Duration,
    /// The largest payload relayed, in bytes.
    pub(crate) max_payload: usize,
    /// How relayed payloads are checked, if they are.
    pub(crate) check: Option<PayloadCheck>,
    pub(crate) reports: Reports,
    pub(crate) sequences: Sequences,
    /// `crimson_redis_relay_lag_seconds`: from a broadcast on another node to its relay here.
    pub(crate) lag: crate::metrics::Histogram,
    /// This node's acknowledged broadcasts waiting for other nodes' answers.
    pub(crate) acks: Arc<acks::Table>,
    /// Permits to serve other nodes' acknowledged broadcasts, [`MAX_SERVING`] in all.
    pub(crate) serving: Arc<tokio::sync::Semaphore>,
    /// The streams' history in Redis, once history is on (`history/`).
    pub(crate) history: std::sync::OnceLock<history::NodeHistory>,
}

impl Node {
    /// How long a node's presence outlives its last heartbeat.
    pub(crate) fn heartbeat_ttl_ms(&self) -> u64 {
        (self.heartbeat * 3).as_millis() as u64
    }

    /// Runs a Redis request with the command timeout.
    pub(crate) async fn with_deadline<T>(
        &self,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(io_error(
                    "Redis did not answer in time",
                    format!("no answer within {timeout:?}"),
                ))
            })
    }

    /// Publishes through the node's publisher; how many subscribers got it. Waits at most
    /// `publish_timeout`, and no longer than it takes to find Redis unavailable.
    pub(crate) async fn publish(
        &self,
        channel: String,
        route: Route,
        payload: Payload,
    ) -> Result<usize, redis::RedisError> {
        let (reply, answer) = oneshot::channel();
        let request = publish::Request {
            channel,
            route,
            payload,
            at: std::time::SystemTime::now(),
            reply: Some(reply),
        };
        self.publisher.try_send(request).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => io_error(
                "too many publishes waiting for Redis",
                format!("{} queued: Redis is too slow for this rate", publish::QUEUE),
            ),
            mpsc::error::TrySendError::Closed(_) => {
                io_error("the publisher stopped", "the node is shutting down".into())
            }
        })?;
        let wait = self.publish_timeout;
        let mut available = self.available.clone();
        tokio::select! {
            result = answer => result.unwrap_or_else(|_| Err(io_error(
                "the publisher dropped the publish",
                "the node is shutting down, or Redis timed out".into(),
            ))),
            () = tokio::time::sleep(wait) => Err(io_error(
                "Redis did not confirm the publish in time",
                format!("no answer within {wait:?} (publish_timeout)"),
            )),
            _ = available.wait_for(|up| !up) => Err(io_error(
                "Redis became unavailable while publishing",
                "a probe failed or a connection was lost".into(),
            )),
        }
    }

    /// Queues a message nobody waits on (an acknowledged broadcast's `Asked` or `Answers`,
    /// sent from the relay, which must not wait): in order with every other publish. What
    /// does not reach Redis is counted ([`RedisStats::acks_unserved`]).
    pub(crate) fn publish_unawaited(&self, channel: String, route: Route) {
        let request = publish::Request {
            channel,
            route,
            payload: answer::empty(),
            at: std::time::SystemTime::now(),
            reply: None,
        };
        if let Err(err) = self.publisher.try_send(request) {
            let why = match &err {
                mpsc::error::TrySendError::Full(_) => "too many publishes wait for Redis",
                mpsc::error::TrySendError::Closed(_) => "the node is shutting down",
            };
            publish::unanswered(self, &err.into_inner().route, &why);
        }
    }
}

fn io_error(what: &'static str, detail: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what, detail))
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        // The last handle is gone: stop, as a crashed node would (presence expires on its own).
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A session cluster spanning every node that uses the same Redis (or Redis Cluster) and
/// prefix.
///
/// Cloning is cheap and shares the node. Dropping the last clone stops the node's tasks;
/// [`leave_cluster`](Self::leave_cluster) first removes its presence at once.
#[derive(Clone)]
pub struct RedisCluster {
    shared: Arc<Node>,
    /// Held for its `Drop`: the last clone stops the node's tasks.
    _tasks: Arc<Tasks>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("prefix", &self.shared.names.prefix())
            .field("redis_cluster", &self.shared.shards.is_cluster())
            .field("local", &self.shared.local)
            .field("available", &self.is_connected())
            .finish()
    }
}

impl RedisCluster {
    /// Settings for a node on the Redis at `url`: `redis://HOST:PORT` for one Redis (or a
    /// node of a Redis Cluster, found out by asking it), `redis+cluster://HOST:PORT,HOST:PORT`
    /// (or several `redis://` URLs separated by commas) for a Redis Cluster's seed nodes;
    /// `rediss` for TLS.
    pub fn builder(url: impl Into<String>) -> RedisClusterBuilder {
        RedisClusterBuilder::new(url.into())
    }

    /// This node's own sessions.
    pub fn local(&self) -> &LocalCluster {
        &self.shared.local
    }

    /// Whether cross-node delivery works right now: every shard connected, answering the
    /// health probe, and holding this node's subscriptions. False during an outage, a hang
    /// or a failover, when cross-node operations fail at once with
    /// [`ClusterError::Unavailable`].
    pub fn is_connected(&self) -> bool {
        *self.shared.available.borrow()
    }

    /// Whether Redis is a Redis Cluster (sharded pub/sub), rather than one server.
    pub fn is_redis_cluster(&self) -> bool {
        self.shared.shards.is_cluster()
    }

    /// Messages other nodes relayed to this node that did not reach their session: it had
    /// left, or its queue refused them. Also in [`stats`](Self::stats).
    pub fn relay_failures(&self) -> u64 {
        self.shared.reports.relay.total()
    }

    /// What this node counted: failed publishes, relayed messages dropped and why, messages
    /// that never arrived.
    pub fn stats(&self) -> RedisStats {
        self.shared.reports.stats()
    }

    fn unavailable_now(&self) -> Option<redis::RedisError> {
        (!self.is_connected()).then(|| {
            io_error(
                "Redis is unavailable",
                "outage, hang, failover or reconnecting; retry later".into(),
            )
        })
    }

    /// Leaves the cluster cleanly: removes this node's presence (sessions, room members,
    /// heartbeat) now instead of letting it expire. The node keeps delivering to its local
    /// sessions; its heartbeat writes its presence again unless it is dropped.
    pub async fn leave_cluster(&self) -> Result<(), ClusterError> {
        let node = &self.shared;
        let id = node.local.node_id();
        let mut batch = Batch::new();
        let nodes = node.names.nodes();
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&nodes).arg(node_field(id));
        batch.add(&nodes, zrem);
        let sessions = node.names.sessions(id);
        batch.add(&sessions, del(&sessions));
        for room in node.local.rooms() {
            let key = node.names.room_node(&room, id);
            batch.add(&key, del(&key));
        }
        node.with_deadline(batch.run(&node.shards))
            .await
            .map(drop)
            .map_err(|err| ClusterError::Remote(Box::new(err)))
    }

    /// Publishes through the node's publisher (see [`Node::publish`]).
    async fn publish(
        &self,
        channel: String,
        route: Route,
        payload: Payload,
    ) -> Result<usize, redis::RedisError> {
        self.shared.publish(channel, route, payload).await
    }

    /// How many of this node's acknowledged broadcasts wait for other nodes' answers now (at
    /// most [`MAX_OPEN_ACKS`]): one per [`AckStream`](crate::cluster::AckStream) not yet
    /// ended nor dropped.
    pub fn open_acks(&self) -> usize {
        self.shared.acks.len()
    }

    /// Refuses a payload other nodes would drop.
    fn check_size(&self, payload: &Payload) -> Result<(), PayloadTooLarge> {
        let max = self.shared.max_payload;
        if payload.len() > max {
            return Err(PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        Ok(())
    }

    /// Counts and reports a failed publish; the error its sender gets.
    fn unavailable(
        &self,
        local: Delivery,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> ClusterError {
        self.shared.reports.publish_failed(&err);
        ClusterError::Unavailable {
            local,
            source: Box::new(err),
        }
    }

    /// The channel a broadcast to `target` goes on, and whether this node listens to it.
    fn channel_of(&self, target: &Target) -> (String, bool) {
        let node = &self.shared;
        match target {
            Target::All | Target::Except(_) => {
                let k = broadcast_channel_of(node.local.node_id(), node.broadcast_channels);
                (node.names.broadcast(k), true)
            }
            Target::Room(room) | Target::RoomExcept(room, _) => (
                node.names.room_channel(room),
                !node.local.room_members(room).is_empty(),
            ),
        }
    }
}

/// A payload over [`RedisClusterBuilder::max_payload`]: delivered locally, not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a payload of {len} bytes is over max_payload ({max} bytes), so it was not relayed to \
     other nodes; send less, or raise RedisClusterBuilder::max_payload on every node"
)]
pub struct PayloadTooLarge {
    /// The payload's size, in bytes.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

fn del(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("DEL");
    c.arg(key);
    c
}

fn remote(err: redis::RedisError) -> ClusterError {
    ClusterError::Remote(Box::new(err))
}

impl SessionCluster for RedisCluster {
    fn local(&self) -> &LocalCluster {
        &self.shared.local
    }

    fn add(&self, session: SessionHandle) -> Result<(), ClusterFull> {
        let id = session.id();
        self.shared.local.add(session)?;
        self.shared.presence.session(id);
        Ok(())
    }

    fn remove(&self, id: SessionId) {
        let rooms = self.shared.local.rooms_of(id);
        self.shared.local.remove(id);
        self.shared.presence.session(id);
        for room in &rooms {
            self.shared.presence.membership(room, id);
        }
    }

    fn join(&self, id: SessionId, room: &str) -> Result<(), SendToError> {
        self.shared.local.join(id, room)?;
        self.shared.presence.membership(room, id);
        Ok(())
    }

    fn leave(&self, id: SessionId, room: &str) {
        self.shared.local.leave(id, room);
        self.shared.presence.membership(room, id);
    }

    /// History in Redis, shared by every node on it (see the module's docs, "History").
    fn set_history(&self, history: super::History) -> Result<(), super::History> {
        history::enable(&self.shared, history)
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, ClusterError>> {
        Box::pin(async move {
            if let Some(err) = self.unavailable_now() {
                return Err(remote(err));
            }
            presence::count(&self.shared).await.map_err(remote)
        })
    }

    fn room_len(&self, room: &str) -> BoxFuture<'_, Result<usize, ClusterError>> {
        let room = room.to_owned();
        Box::pin(async move {
            if let Some(err) = self.unavailable_now() {
                return Err(remote(err));
            }
            presence::room_len(&self.shared, &room)
                .await
                .map_err(remote)
        })
    }

    fn room_members(&self, room: &str) -> BoxFuture<'_, Result<Vec<SessionId>, ClusterError>> {
        let room = room.to_owned();
        Box::pin(async move {
            if let Some(err) = self.unavailable_now() {
                return Err(remote(err));
            }
            presence::room_members(&self.shared, &room)
                .await
                .map_err(remote)
        })
    }

    fn broadcast(
        &self,
        payload: Payload,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        if self.history_in_redis() {
            return self.publish_in_stream(payload, target);
        }
        let local = self.shared.local.deliver(&payload, &target);
        self.publish_broadcast(local, payload, target)
    }

    fn broadcast_in(
        &self,
        payload: Payload,
        encode: Encoder<'_>,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        if self.history_in_redis() {
            // Every node's sessions, this one's too, get it from Redis, re-encoded from the
            // payload for other codecs.
            return self.publish_in_stream(payload, target);
        }
        let local = self
            .shared
            .local
            .deliver_with(&payload, Some(encode), &target);
        self.publish_broadcast(local, payload, target)
    }

    fn send_to(&self, id: SessionId, payload: Payload) -> BoxFuture<'_, Result<(), SendToError>> {
        let here = (id.node() == self.node_id())
            .then(|| self.shared.local.deliver_to(id, payload.clone()));
        self.send_remote(here, id, payload)
    }

    fn send_to_in(
        &self,
        id: SessionId,
        payload: Payload,
        encode: Encoder<'_>,
    ) -> BoxFuture<'_, Result<(), SendToError>> {
        let here = (id.node() == self.node_id()).then(|| {
            self.shared
                .local
                .deliver_to_with(id, payload.clone(), Some(encode))
        });
        self.send_remote(here, id, payload)
    }

    fn ask_remote(
        &self,
        payload: Payload,
        target: Target,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Option<RemoteAcks>, ClusterError>> {
        let too_large = self.check_size(&payload);
        let (channel, _) = self.channel_of(&target);
        Box::pin(async move {
            let nobody = Delivery::default();
            too_large.map_err(|err| self.unavailable(nobody, err))?;
            if let Some(err) = self.unavailable_now() {
                return Err(self.unavailable(nobody, err));
            }
            let timeout = timeout.min(MAX_ACK_TIMEOUT);
            let deadline = tokio::time::Instant::now() + timeout + acks::GRACE;
            let events = self
                .shared
                .acks
                .open(Arc::downgrade(&self.shared), timeout, deadline)?;
            let route = Route::Ask {
                ask: events.id(),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                target,
            };
            match self.publish(channel, route, payload).await {
                // This node hears its own request on a channel it listens to (before the
                // publish's answer: one connection carries both), and skips it.
                Ok(receivers) => Ok(Some(RemoteAcks::new(events.published(receivers), events))),
                Err(err) => Err(self.unavailable(nobody, err)),
            }
        })
    }
}

impl RedisCluster {
    /// Publishes a broadcast already delivered on this node (`local`) to the other nodes.
    fn publish_broadcast(
        &self,
        mut local: Delivery,
        payload: Payload,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        let too_large = self.check_size(&payload);
        let (channel, listening) = self.channel_of(&target);
        Box::pin(async move {
            too_large.map_err(|err| self.unavailable(local, err))?;
            // During an outage, fail at once rather than wait on a timeout per broadcast.
            if let Some(err) = self.unavailable_now() {
                return Err(self.unavailable(local, err));
            }
            match self
                .publish(channel, Route::Broadcast(target), payload)
                .await
            {
                Ok(receivers) => {
                    // This node skips its own messages on a channel it listens to.
                    local.remote_nodes = receivers.saturating_sub(usize::from(listening));
                    Ok(local)
                }
                Err(err) => Err(self.unavailable(local, err)),
            }
        })
    }

    /// Sends to a session of another node through Redis; `here`: the outcome of a session of
    /// this node, already delivered.
    fn send_remote(
        &self,
        here: Option<Result<(), SendToError>>,
        id: SessionId,
        payload: Payload,
    ) -> BoxFuture<'_, Result<(), SendToError>> {
        Box::pin(async move {
            if let Some(here) = here {
                return here;
            }
            let none = Delivery::default();
            if let Err(err) = self.check_size(&payload) {
                return Err(SendToError::Backend(self.unavailable(none, err)));
            }
            if let Some(err) = self.unavailable_now() {
                return Err(SendToError::Backend(self.unavailable(none, err)));
            }
            let channel = self.shared.names.node_channel(id.node());
            match self.publish(channel, Route::Session(id), payload).await {
                Ok(0) => Err(SendToError::NotFound(id)),
                Ok(_) => Ok(()),
                Err(err) => Err(SendToError::Backend(self.unavailable(none, err))),
            }
        })
    }
}
