//! [`RedisClusterBuilder`]: a node's settings, and why it could not start.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::names::Names;
use super::presence::PresenceQueue;
use super::{presence, tasks, Node, RedisCluster, Tasks};
use crate::cluster::{LocalCluster, LocalClusterBuilder};

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
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            prefix: "crimson".into(),
            heartbeat: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
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
        let shared = Arc::new(Node {
            local,
            names: Names::new(&self.prefix),
            commands,
            sharded: false,
            presence: queue.clone(),
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
        let heartbeat = tokio::spawn(presence::run(
            Arc::downgrade(&shared),
            queue,
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
