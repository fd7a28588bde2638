//! [`RedisCluster`]: many server nodes acting as one, through Redis pub/sub (feature `redis`).
//!
//! Each node keeps its own sessions in a [`LocalCluster`] and delivers to them directly. A
//! broadcast is also published on the app's broadcast channel, and every other node delivers
//! it to its own sessions; a send to a session on another node is published on that node's
//! channel (a [`SessionId`] names its node). Payloads travel as bytes, never hex.
//!
//! Presence: every node writes its sessions to a hash, and its members of each room to a set
//! per room, that expire unless the node's heartbeat refreshes them, so a crashed node's
//! sessions and room members disappear from cluster-wide counts ([`Cluster::count`],
//! [`Cluster::room_len`], [`Cluster::room_members`]) on their own within three heartbeats.
//! Heartbeats are stamped with Redis's own clock (`TIME`), so clock skew between nodes does
//! not matter. Joins and leaves reach Redis in the background, batched (one pipeline per
//! burst): a join counts cluster-wide one round trip after [`Cluster::join`] returns.
//!
//! A send to a session on another node fails with `NotFound` when that node is gone (no one
//! listens on its channel); if the node is live but the session has just left, the message is
//! counted on that node ([`RedisCluster::relay_failures`], [`RedisCluster::stats`]).
//!
//! Outage and hang: a health probe PINGs Redis every 300 ms with a 500 ms deadline
//! ([`RedisClusterBuilder::probe`]), so a Redis that stops answering (down, or hung) is
//! found within about 0.8 s. Local delivery always happens first and never waits for Redis.
//! A publish waits at most [`RedisClusterBuilder::publish_timeout`] (500 ms), less if the
//! probe finds Redis unavailable meanwhile; from then on cross-node operations fail at once:
//! broadcasts and sends return [`ClusterError::Unavailable`] (with what the local sessions
//! got), counts return an error. The node reconnects and resubscribes by itself, backing off
//! from 100 ms to [`RedisClusterBuilder::max_backoff`] (2 s by default), and rewrites its
//! presence when Redis answers again. Failures are counted ([`RedisStats`]) and logged at most
//! once per 5 s per kind, with the count since the previous line, never once per message.
//!
//! Relayed input is checked: anything that can write to Redis can publish on these channels.
//! A payload over [`RedisClusterBuilder::max_payload`] (1 MiB) is dropped (and refused on the
//! sending side with [`PayloadTooLarge`]); with [`RedisClusterBuilder::check_payloads`], one
//! that does not decode as the route's message type is dropped; a message that is not in
//! Crimson's format is dropped. Each is counted in [`RedisStats`] and logged, rate-limited.
//!
//! Keys and channels all start with the app's prefix (`crimson` by default), so two apps on
//! one Redis never cross. Give every cluster of one app its own prefix too (say `chat` and
//! `prices`): nodes with the same prefix relay each other's payloads.
//!
//! Names carry a hash tag (`{…}`) so that what belongs together shares one Redis Cluster
//! slot: a node's channel and sessions (`{node:ID}`), a room's presence (`{room:NAME}`).
//! `ID` is the node id in 16 hex digits; `P` the prefix.
//!
//! | name | what |
//! |---|---|
//! | `P:broadcast` | channel: broadcasts and room broadcasts |
//! | `P:{node:ID}:ch` | channel: sends to one session of node `ID` |
//! | `P:{node:ID}:sessions` | hash: session id → `path`, `config`, connect time; expires |
//! | `P:{room:NAME}:node:ID` | set: the sessions of node `ID` in room `NAME`; expires |
//! | `P:nodes` | sorted set: node → last heartbeat (ms, Redis's clock) |
//!
//! ```no_run
//! use crimson_core::cluster::{Cluster, LocalCluster};
//! use crimson_core::cluster::redis::RedisCluster;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = RedisCluster::builder("redis://127.0.0.1:6379")
//!     .prefix("chat")
//!     .local(LocalCluster::builder().max_connections(10_000))
//!     .build()
//!     .await?;
//! let cluster: Cluster<String> = Cluster::new(backend);
//! # Ok(()) }
//! ```

mod builder;
mod conn;
mod health;
mod names;
mod presence;
mod relay;
mod report;
mod tasks;
pub(crate) mod wire;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::builder::{RedisClusterBuilder, RedisClusterError, DEFAULT_MAX_PAYLOAD};
use self::conn::{Batch, Conn};
use self::names::{node_field, Names};
use self::presence::PresenceQueue;
use self::relay::PayloadCheck;
pub use self::report::RedisStats;
use self::report::Reports;
use self::wire::Route;
#[cfg(doc)]
use super::Cluster;
use super::{
    BoxFuture, ClusterError, ClusterFull, Delivery, LocalCluster, SendToError, SessionCluster,
    Target,
};
use crate::message::Payload;
use crate::session::{SessionHandle, SessionId};

/// One node: its sessions, its connection, and what its background tasks share.
pub(crate) struct Node {
    pub(crate) local: LocalCluster,
    pub(crate) names: Names,
    pub(crate) commands: Conn,
    /// Whether Redis is a cluster (pipelines split by hash tag).
    pub(crate) sharded: bool,
    pub(crate) presence: Arc<PresenceQueue>,
    /// Whether the subscription is up (the subscriber's view).
    pub(crate) subscribed: watch::Receiver<bool>,
    /// Whether Redis answers (the health probe's view).
    pub(crate) healthy: watch::Receiver<bool>,
    pub(crate) heartbeat: Duration,
    pub(crate) timeout: Duration,
    /// How long a broadcast waits for its publish.
    pub(crate) publish_timeout: Duration,
    /// The largest payload relayed, in bytes.
    pub(crate) max_payload: usize,
    /// How relayed payloads are checked, if they are.
    pub(crate) check: Option<PayloadCheck>,
    pub(crate) reports: Reports,
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
            .unwrap_or_else(|_| Err(no_answer(timeout)))
    }
}

fn no_answer(timeout: Duration) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "Redis did not answer in time",
        format!("no answer within {timeout:?}"),
    ))
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

/// A session cluster spanning every node that uses the same Redis and prefix.
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
            .field("local", &self.shared.local)
            .field("available", &self.is_connected())
            .finish()
    }
}

impl RedisCluster {
    /// Settings for a node on the Redis at `url` (`redis://HOST:PORT`).
    pub fn builder(url: impl Into<String>) -> RedisClusterBuilder {
        RedisClusterBuilder::new(url.into())
    }

    /// This node's own sessions.
    pub fn local(&self) -> &LocalCluster {
        &self.shared.local
    }

    /// Whether cross-node delivery works right now: subscribed, and Redis answered the last
    /// health probe. False during an outage or a hang, when cross-node operations fail at
    /// once with [`ClusterError::Unavailable`].
    pub fn is_connected(&self) -> bool {
        *self.shared.subscribed.borrow() && *self.shared.healthy.borrow()
    }

    /// Messages other nodes relayed to this node that did not reach their session: it had
    /// left, or its queue refused them. Also in [`stats`](Self::stats).
    pub fn relay_failures(&self) -> u64 {
        self.shared.reports.relay.total()
    }

    /// What this node counted: failed publishes, relayed messages dropped and why.
    pub fn stats(&self) -> RedisStats {
        self.shared.reports.stats()
    }

    fn unavailable_now(&self) -> Option<redis::RedisError> {
        if !*self.shared.healthy.borrow() {
            return Some(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis did not answer the last health probe (outage or hang)",
            )));
        }
        (!*self.shared.subscribed.borrow()).then(|| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "not subscribed to Redis (outage or reconnecting)",
            ))
        })
    }

    /// Leaves the cluster cleanly: removes this node's presence (sessions, room members,
    /// heartbeat) now instead of letting it expire. The node keeps delivering to its local
    /// sessions; its heartbeat writes its presence again unless it is dropped.
    pub async fn leave_cluster(&self) -> Result<(), ClusterError> {
        let node = &self.shared;
        let id = node.local.node_id();
        let mut batch = Batch::new(node.sharded);
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
        node.with_deadline(batch.run(&node.commands))
            .await
            .map(drop)
            .map_err(|err| ClusterError::Remote(Box::new(err)))
    }

    /// Publishes `message` on `channel`; the number of subscribers that got it. Waits at
    /// most `publish_timeout`, and no longer than it takes the health probe to find Redis
    /// unavailable.
    async fn publish(
        &self,
        channel: &str,
        message: bytes::Bytes,
    ) -> Result<usize, redis::RedisError> {
        let node = &self.shared;
        let mut conn = node.commands.clone();
        let mut healthy = node.healthy.clone();
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel).arg(message.as_ref());
        let publish = command.query_async(&mut conn);
        let wait = node.publish_timeout;
        tokio::select! {
            result = publish => result,
            () = tokio::time::sleep(wait) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis did not confirm the publish in time",
                format!("no answer within {wait:?} (publish_timeout)"),
            ))),
            _ = healthy.wait_for(|up| !up) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis stopped answering the health probe while publishing",
            ))),
        }
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
}

/// A payload over [`RedisClusterBuilder::max_payload`]: delivered locally, not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// The payload's size, in bytes.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

impl fmt::Display for PayloadTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a payload of {} bytes is over max_payload ({} bytes), so it was not relayed to \
             other nodes; send less, or raise RedisClusterBuilder::max_payload on every node",
            self.len, self.max
        )
    }
}

impl std::error::Error for PayloadTooLarge {}

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
        let mut local = self.shared.local.deliver(&payload, &target);
        let message = wire::encode(self.node_id(), &Route::Broadcast(target), &payload);
        let too_large = self.check_size(&payload);
        Box::pin(async move {
            too_large.map_err(|err| self.unavailable(local, err))?;
            // During an outage, fail at once rather than wait on a timeout per broadcast.
            if let Some(err) = self.unavailable_now() {
                return Err(self.unavailable(local, err));
            }
            match self.publish(&self.shared.names.broadcast(), message).await {
                Ok(receivers) => {
                    // This node is subscribed too (and skips its own messages).
                    local.remote_nodes = receivers.saturating_sub(1);
                    Ok(local)
                }
                Err(err) => Err(self.unavailable(local, err)),
            }
        })
    }

    fn send_to(&self, id: SessionId, payload: Payload) -> BoxFuture<'_, Result<(), SendToError>> {
        Box::pin(async move {
            if id.node() == self.node_id() {
                return self.shared.local.deliver_to(id, payload);
            }
            let none = Delivery::default();
            if let Err(err) = self.check_size(&payload) {
                return Err(SendToError::Backend(self.unavailable(none, err)));
            }
            if let Some(err) = self.unavailable_now() {
                return Err(SendToError::Backend(self.unavailable(none, err)));
            }
            let message = wire::encode(self.node_id(), &Route::Session(id), &payload);
            match self
                .publish(&self.shared.names.node_channel(id.node()), message)
                .await
            {
                Ok(0) => Err(SendToError::NotFound(id)),
                Ok(_) => Ok(()),
                Err(err) => Err(SendToError::Backend(self.unavailable(none, err))),
            }
        })
    }
}
