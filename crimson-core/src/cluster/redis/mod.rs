//! [`RedisCluster`]: many server nodes acting as one, through Redis pub/sub (feature `redis`).
//!
//! Each node keeps its own sessions in a [`LocalCluster`] and delivers to them directly. A
//! broadcast is also published on the app's broadcast channel, and every other node delivers
//! it to its own sessions; a send to a session on another node is published on that node's
//! channel (a [`SessionId`] names its node). Payloads travel as bytes, never hex.
//!
//! Presence: every node writes its sessions to a hash that expires unless the node's
//! heartbeat refreshes it, so a crashed node's sessions disappear from cluster-wide counts on
//! their own within three heartbeats. Heartbeats are stamped with Redis's own clock (`TIME`),
//! so clock skew between nodes does not matter.
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
//!
//! | name | what |
//! |---|---|
//! | `{prefix}:broadcast` | channel: broadcasts and room broadcasts |
//! | `{prefix}:node:{node}` | channel: sends to one session of `node` |
//! | `{prefix}:presence:{node}` | hash: session id → `path`, `config`, connect time; expires |
//! | `{prefix}:nodes` | sorted set: node → last heartbeat (ms) |
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

mod tasks;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::wire::Route;
use super::{
    BoxFuture, ClusterError, ClusterFull, Delivery, LocalCluster, LocalClusterBuilder, SendToError,
    SessionCluster, Target,
};
use crate::message::Payload;
use crate::session::{SessionHandle, SessionId, SessionInfo};

/// Settings for a [`RedisCluster`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisClusterBuilder {
    url: String,
    prefix: String,
    heartbeat: Duration,
    max_backoff: Duration,
    timeout: Duration,
    local: LocalClusterBuilder,
}

impl RedisClusterBuilder {
    /// The prefix of every key and channel (default `crimson`): one per application.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often this node refreshes its presence (default 5 s); presence expires after
    /// three heartbeats without one.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(50));
        self
    }

    /// The longest wait between reconnection attempts (default 2 s).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max.max(Duration::from_millis(100));
        self
    }

    /// How long one Redis command or connection attempt may take (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This node's own limits: connection limit, session lifetime.
    pub fn local(mut self, local: LocalClusterBuilder) -> Self {
        self.local = local;
        self
    }

    /// Connects to Redis and starts this node's subscriber and heartbeat. Fails if Redis
    /// cannot be reached now; once running, the node survives outages on its own.
    pub async fn build(self) -> Result<RedisCluster, RedisClusterError> {
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(RedisClusterError::BadPrefix(self.prefix));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|err| RedisClusterError::Url(self.url.clone(), err))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.max_backoff);
        let commands = tokio::time::timeout(
            self.timeout,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| RedisClusterError::Connect(self.url.clone(), "timed out".into()))?
        .map_err(|err| RedisClusterError::Connect(self.url.clone(), err.to_string()))?;

        let local = self.local.build();
        let node = local.node_id();
        let names = Names::new(&self.prefix, node);
        let (presence_tx, presence_rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed_rx) = watch::channel(false);
        let shared = Arc::new(Node {
            local,
            names,
            commands,
            presence: presence_tx,
            subscribed: subscribed_rx,
            heartbeat: self.heartbeat,
            timeout: self.timeout,
            relay_failures: Default::default(),
        });
        let subscriber = tokio::spawn(tasks::subscribe(
            Arc::downgrade(&shared),
            client,
            subscribed_tx,
            self.max_backoff,
        ));
        let heartbeat = tokio::spawn(tasks::heartbeat(
            Arc::downgrade(&shared),
            presence_rx,
            self.heartbeat,
        ));
        let cluster = RedisCluster {
            shared,
            _tasks: Arc::new(Tasks([subscriber, heartbeat])),
        };
        // Wait (briefly) for the first subscription, so that a message published right
        // after `build` returns is not missed.
        let mut subscribed = cluster.shared.subscribed.clone();
        let _ = tokio::time::timeout(self.timeout, subscribed.wait_for(|s| *s)).await;
        Ok(cluster)
    }
}

/// Why a [`RedisCluster`] could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisClusterError {
    /// The URL is not a Redis URL.
    Url(String, redis::RedisError),
    /// Redis could not be reached.
    Connect(String, String),
    /// The prefix is empty or has white space.
    BadPrefix(String),
}

impl fmt::Display for RedisClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url, err) => {
                write!(f, "`{url}` is not a Redis URL (redis://HOST:PORT): {err}")
            }
            Self::Connect(url, err) => write!(f, "cannot connect to Redis at {url}: {err}"),
            Self::BadPrefix(prefix) => {
                write!(
                    f,
                    "`{prefix}` cannot be a Redis key prefix: use a non-empty word without spaces"
                )
            }
        }
    }
}

impl std::error::Error for RedisClusterError {}

/// Key and channel names of one node of one app.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) broadcast: String,
    pub(crate) node_channel: String,
    pub(crate) presence: String,
    pub(crate) nodes: String,
    prefix: String,
}

impl Names {
    fn new(prefix: &str, node: u64) -> Self {
        Self {
            broadcast: format!("{prefix}:broadcast"),
            node_channel: format!("{prefix}:node:{node:016x}"),
            presence: format!("{prefix}:presence:{node:016x}"),
            nodes: format!("{prefix}:nodes"),
            prefix: prefix.to_owned(),
        }
    }

    fn node_channel_of(&self, node: u64) -> String {
        format!("{}:node:{node:016x}", self.prefix)
    }

    pub(crate) fn presence_of(&self, node: &str) -> String {
        format!("{}:presence:{node}", self.prefix)
    }
}

/// A change to this node's presence hash.
#[derive(Debug)]
pub(crate) enum PresenceOp {
    Add(SessionInfo),
    Remove(SessionId),
    /// Rewrite the whole hash at the next heartbeat (after a reconnect).
    Resync,
}

pub(crate) struct Node {
    pub(crate) local: LocalCluster,
    pub(crate) names: Names,
    pub(crate) commands: ConnectionManager,
    pub(crate) presence: mpsc::UnboundedSender<PresenceOp>,
    pub(crate) subscribed: watch::Receiver<bool>,
    pub(crate) heartbeat: Duration,
    pub(crate) timeout: Duration,
    /// Relayed messages that reached this node but not their session (gone, or full).
    pub(crate) relay_failures: std::sync::atomic::AtomicU64,
}

impl Node {
    /// How long a node's presence outlives its last heartbeat.
    pub(crate) fn heartbeat_ttl_ms(&self) -> u64 {
        (self.heartbeat * 3).as_millis() as u64
    }
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
/// [`leave`](Self::leave) first removes its presence at once.
#[derive(Clone)]
pub struct RedisCluster {
    shared: Arc<Node>,
    /// Held for its `Drop`: the last clone stops the node's tasks.
    _tasks: Arc<Tasks>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("prefix", &self.shared.names.prefix)
            .field("local", &self.shared.local)
            .field("subscribed", &*self.shared.subscribed.borrow())
            .finish()
    }
}

impl RedisCluster {
    /// Settings for a node on the Redis at `url` (`redis://HOST:PORT`).
    pub fn builder(url: impl Into<String>) -> RedisClusterBuilder {
        RedisClusterBuilder {
            url: url.into(),
            prefix: "crimson".into(),
            heartbeat: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            local: LocalCluster::builder(),
        }
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
        self.shared
            .relay_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn unavailable_now(&self) -> Option<redis::RedisError> {
        (!self.is_connected()).then(|| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "not subscribed to Redis (outage or reconnecting)",
            ))
        })
    }

    /// Leaves the cluster cleanly: removes this node's presence now instead of letting it
    /// expire. The node keeps delivering to its local sessions.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let mut conn = self.shared.commands.clone();
        let node = format!("{:016x}", self.shared.local.node_id());
        redis::pipe()
            .del(&self.shared.names.presence)
            .zrem(&self.shared.names.nodes, node)
            .query_async::<()>(&mut conn)
            .await
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

fn unavailable(local: Delivery, err: redis::RedisError) -> ClusterError {
    tracing::error!(error = %err, "Redis is unavailable: cross-node delivery failed");
    ClusterError::Unavailable {
        local,
        source: Box::new(err),
    }
}

impl SessionCluster for RedisCluster {
    fn local(&self) -> &LocalCluster {
        &self.shared.local
    }

    fn add(&self, session: SessionHandle) -> Result<(), ClusterFull> {
        let info = session.info().clone();
        self.shared.local.add(session)?;
        let _ = self.shared.presence.send(PresenceOp::Add(info));
        Ok(())
    }

    fn remove(&self, id: SessionId) {
        self.shared.local.remove(id);
        let _ = self.shared.presence.send(PresenceOp::Remove(id));
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, ClusterError>> {
        Box::pin(async move {
            if let Some(err) = self.unavailable_now() {
                return Err(ClusterError::Remote(Box::new(err)));
            }
            tasks::cluster_len(&self.shared)
                .await
                .map_err(|err| ClusterError::Remote(Box::new(err)))
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
            match self.publish(&self.shared.names.broadcast, message).await {
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
                .publish(&self.shared.names.node_channel_of(id.node()), message)
                .await
            {
                Ok(0) => Err(SendToError::NotFound(id)),
                Ok(_) => Ok(()),
                Err(err) => Err(SendToError::Backend(unavailable(Delivery::default(), err))),
            }
        })
    }
}
