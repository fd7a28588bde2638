//! [`RedisClusterBuilder`]: a node's settings, and why it could not start.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::names::Names;
use super::presence::PresenceQueue;
use super::relay::PayloadCheck;
use super::report::Reports;
use super::{health, presence, tasks, Node, RedisCluster, Tasks};
use crate::cluster::{LocalCluster, LocalClusterBuilder};
use crate::message::CrimsonMessage;

/// The default [`RedisClusterBuilder::max_payload`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Settings for a [`RedisCluster`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisClusterBuilder {
    url: String,
    prefix: String,
    heartbeat: Duration,
    max_backoff: Duration,
    timeout: Duration,
    probe_interval: Duration,
    probe_timeout: Duration,
    publish_timeout: Duration,
    max_payload: usize,
    check: Option<PayloadCheck>,
    local: LocalClusterBuilder,
}

impl RedisClusterBuilder {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            prefix: "crimson".into(),
            heartbeat: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            probe_interval: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(500),
            publish_timeout: Duration::from_millis(500),
            max_payload: DEFAULT_MAX_PAYLOAD,
            check: None,
            local: LocalCluster::builder(),
        }
    }

    /// The prefix of every key and channel (default `crimson`): one per application. A word
    /// without spaces or braces.
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

    /// How often the health probe PINGs Redis (default 300 ms), and how long it waits for
    /// the answer (default 500 ms): a hung Redis is found within about their sum, after which
    /// cross-node operations fail at once with `ClusterError::Unavailable` until a PING
    /// comes back.
    pub fn probe(mut self, every: Duration, deadline: Duration) -> Self {
        self.probe_interval = every.max(Duration::from_millis(10));
        self.probe_timeout = deadline.max(Duration::from_millis(10));
        self
    }

    /// The longest a broadcast or send waits for Redis to confirm its publish (default
    /// 500 ms; less when the health probe finds Redis unavailable meanwhile). Local delivery
    /// happens before the publish and never waits for it; past this wait the sender gets
    /// `ClusterError::Unavailable`.
    pub fn publish_timeout(mut self, wait: Duration) -> Self {
        self.publish_timeout = wait.max(Duration::from_millis(1));
        self
    }

    /// The largest payload relayed between nodes, in bytes (default [`DEFAULT_MAX_PAYLOAD`],
    /// 1 MiB). A larger broadcast is delivered locally and the sender gets
    /// `ClusterError::Unavailable` with a [`PayloadTooLarge`](super::PayloadTooLarge)
    /// source; a larger message arriving from Redis (which anyone who can write to it can
    /// publish) is dropped and counted ([`RedisStats::oversized`](super::RedisStats)). Give
    /// every node the same value.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Checks every payload relayed from Redis by decoding it as `Down`, the route's
    /// message type, before it reaches any session; one that does not decode is dropped,
    /// counted ([`RedisStats::undecodable`](super::RedisStats)) and logged (rate-limited).
    /// Costs one decode per relayed message on each node (not one per recipient).
    ///
    /// ```no_run
    /// # use crimson_core::cluster::redis::RedisCluster;
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisCluster::builder("redis://127.0.0.1:6379")
    ///     .check_payloads::<String>()
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn check_payloads<Down: CrimsonMessage>(mut self) -> Self {
        self.check = Some(PayloadCheck {
            type_name: std::any::type_name::<Down>(),
            check: |payload| Down::decode(payload).map(drop),
        });
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
        if self.prefix.is_empty()
            || self
                .prefix
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
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
        let queue = Arc::new(PresenceQueue::default());
        let (subscribed_tx, subscribed_rx) = watch::channel(false);
        let (healthy_tx, healthy_rx) = watch::channel(true);
        let shared = Arc::new(Node {
            local,
            names: Names::new(&self.prefix),
            commands,
            sharded: false,
            presence: queue.clone(),
            subscribed: subscribed_rx,
            healthy: healthy_rx,
            heartbeat: self.heartbeat,
            timeout: self.timeout,
            publish_timeout: self.publish_timeout,
            max_payload: self.max_payload,
            check: self.check,
            reports: Reports::new(),
        });
        let subscriber = tokio::spawn(tasks::subscribe(
            Arc::downgrade(&shared),
            client,
            subscribed_tx,
            self.max_backoff,
        ));
        let heartbeat = tokio::spawn(presence::run(
            Arc::downgrade(&shared),
            queue,
            self.heartbeat,
        ));
        let probe = tokio::spawn(health::probe(
            Arc::downgrade(&shared),
            healthy_tx,
            self.probe_interval,
            self.probe_timeout,
        ));
        let cluster = RedisCluster {
            shared,
            _tasks: Arc::new(Tasks(vec![subscriber, heartbeat, probe])),
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
    /// The prefix is empty or has white space or braces.
    BadPrefix(String),
}

impl fmt::Display for RedisClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url, err) => {
                write!(f, "`{url}` is not a Redis URL (redis://HOST:PORT): {err}")
            }
            Self::Connect(url, err) => write!(
                f,
                "cannot connect to Redis at {url}: {err} (is redis-server running there?)"
            ),
            Self::BadPrefix(prefix) => {
                write!(
                    f,
                    "`{prefix}` cannot be a Redis key prefix: use a non-empty word without \
                     spaces or braces"
                )
            }
        }
    }
}

impl std::error::Error for RedisClusterError {}
