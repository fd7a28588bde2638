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
//! counted on that node ([`RedisCluster::relay_failures`]) and logged at warn.
//!
//! Outage: while Redis is unreachable, local delivery goes on and cross-node operations
//! return [`ClusterError::Unavailable`] (with what the local sessions got). The node
//! reconnects and resubscribes by itself, backing off from 100 ms to
//! [`RedisClusterBuilder::max_backoff`] (2 s by default), logging at warn while it retries
//! and at error when an operation fails; cross-node delivery resumes within that bound of
//! Redis returning.
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
mod names;
mod presence;
mod tasks;
pub(crate) mod wire;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::builder::{RedisClusterBuilder, RedisClusterError};
use self::conn::{Batch, Conn};
use self::names::{node_field, Names};
use self::presence::PresenceQueue;
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
    pub(crate) subscribed: watch::Receiver<bool>,
    pub(crate) heartbeat: Duration,
    pub(crate) timeout: Duration,
    /// Relayed messages that reached this node but not their session (gone, or full).
    pub(crate) relay_failures: AtomicU64,
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

struct Tasks([JoinHandle<()>; 2]);

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
            .field("subscribed", &*self.shared.subscribed.borrow())
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

    /// Whether the node is subscribed to Redis right now (false during an outage).
    pub fn is_connected(&self) -> bool {
        *self.shared.subscribed.borrow()
    }

    /// Messages other nodes relayed to this node that did not reach their session: it had
    /// left, or its queue refused them. Each is also logged at warn.
    pub fn relay_failures(&self) -> u64 {
        self.shared.relay_failures.load(Ordering::Relaxed)
    }

    fn unavailable_now(&self) -> Option<redis::RedisError> {
        (!self.is_connected()).then(|| {
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

    async fn publish(
        &self,
        channel: &str,
        message: bytes::Bytes,
    ) -> Result<usize, redis::RedisError> {
        let mut conn = self.shared.commands.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message.as_ref())
            .query_async(&mut conn)
            .await
    }
}

fn del(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("DEL");
    c.arg(key);
    c
}

fn unavailable(local: Delivery, err: redis::RedisError) -> ClusterError {
    tracing::error!(error = %err, "Redis is unavailable: cross-node delivery failed");
    ClusterError::Unavailable {
        local,
        source: Box::new(err),
    }
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
        Box::pin(async move {
            // During an outage, fail at once rather than wait on a timeout per broadcast.
            if let Some(err) = self.unavailable_now() {
                return Err(unavailable(local, err));
            }
            match self.publish(&self.shared.names.broadcast(), message).await {
                Ok(receivers) => {
                    // This node is subscribed too (and skips its own messages).
                    local.remote_nodes = receivers.saturating_sub(usize::from(self.is_connected()));
                    Ok(local)
                }
                Err(err) => Err(unavailable(local, err)),
            }
        })
    }

    fn send_to(&self, id: SessionId, payload: Payload) -> BoxFuture<'_, Result<(), SendToError>> {
        Box::pin(async move {
            if id.node() == self.node_id() {
                return self.shared.local.deliver_to(id, payload);
            }
            if let Some(err) = self.unavailable_now() {
                return Err(SendToError::Backend(unavailable(Delivery::default(), err)));
            }
            let message = wire::encode(self.node_id(), &Route::Session(id), &payload);
            match self
                .publish(&self.shared.names.node_channel(id.node()), message)
                .await
            {
                Ok(0) => Err(SendToError::NotFound(id)),
                Ok(_) => Ok(()),
                Err(err) => Err(SendToError::Backend(unavailable(Delivery::default(), err))),
            }
        })
    }
}
