//! [`RedisClusterBuilder`]: a node's settings, and why it could not start.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use tokio::sync::mpsc;

use super::names::Names;
use super::presence::PresenceQueue;
use super::relay::{self, PayloadCheck, Sequences};
use super::report::Reports;
use super::shards::{Shards, ShardsConfig};
use super::{health, presence, publish, Node, RedisCluster, Tasks};
use crate::cluster::{at_least, History, LocalCluster, LocalClusterBuilder};
use crate::message::CrimsonMessage;

/// The default [`RedisClusterBuilder::max_payload`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The shortest [`RedisClusterBuilder::heartbeat`].
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// The shortest [`RedisClusterBuilder::max_backoff`].
const MIN_MAX_BACKOFF: Duration = Duration::from_millis(100);
/// The shortest interval and deadline of [`RedisClusterBuilder::probe`].
const MIN_PROBE: Duration = Duration::from_millis(10);
/// The shortest [`RedisClusterBuilder::publish_timeout`].
const MIN_PUBLISH_TIMEOUT: Duration = Duration::from_millis(1);

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
    broadcast_channels: u16,
    local: LocalClusterBuilder,
    history: Option<History>,
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
            broadcast_channels: 16,
            local: LocalCluster::builder(),
            history: None,
        }
    }

    /// The prefix of every key and channel (default `crimson`): one per application. A word
    /// without spaces or braces.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often this node refreshes its presence (default 5 s; at least 50 ms, or
    /// [`build`](Self::build) fails); presence expires after three heartbeats without one.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The longest wait between reconnection attempts (default 2 s; at least 100 ms, or
    /// [`build`](Self::build) fails).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
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
    /// comes back. Each is at least 10 ms, or [`build`](Self::build) fails.
    pub fn probe(mut self, every: Duration, deadline: Duration) -> Self {
        self.probe_interval = every;
        self.probe_timeout = deadline;
        self
    }

    /// The longest a broadcast or send waits for Redis to confirm its publish (default
    /// 500 ms; less when the health probe finds Redis unavailable meanwhile). Local delivery
    /// happens before the publish and never waits for it; past this wait the sender gets
    /// `ClusterError::Unavailable`. At least 1 ms, or [`build`](Self::build)
    /// fails.
    pub fn publish_timeout(mut self, wait: Duration) -> Self {
        self.publish_timeout = wait;
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

    /// Keeps each stream's recent publications in Redis, shared by every node on it, so
    /// that clients of the Crimson protocol recover what they missed on whichever node they
    /// reconnect to ([`History`]; off by default; what `CrimsonConfig::history` turns on,
    /// too). A history given to [`local`](Self::local) is kept in Redis as well. Give every
    /// node the same settings.
    pub fn history(mut self, history: History) -> Self {
        self.history = Some(history);
        self
    }

    /// This node's own limits: connection limit, session lifetime.
    pub fn local(mut self, local: LocalClusterBuilder) -> Self {
        self.local = local;
        self
    }

    /// How many channels carry broadcasts to all sessions (default 16). Every node
    /// subscribes to all of them and publishes on one, picked by its id, so that its own
    /// broadcasts stay in order; on a Redis Cluster the channels' hash tags spread them over
    /// the shards, so that broadcasts from many nodes do not all land on one shard. Give every
    /// node the same value. At least 1, or [`build`](Self::build) fails.
    pub fn broadcast_channels(mut self, channels: u16) -> Self {
        self.broadcast_channels = channels;
        self
    }

    /// The first setting out of its range, named with its range and the value given.
    fn check_settings(&self) -> Result<(), String> {
        at_least("heartbeat", self.heartbeat, MIN_HEARTBEAT)?;
        at_least("max_backoff", self.max_backoff, MIN_MAX_BACKOFF)?;
        at_least("probe interval", self.probe_interval, MIN_PROBE)?;
        at_least("probe deadline", self.probe_timeout, MIN_PROBE)?;
        at_least("publish_timeout", self.publish_timeout, MIN_PUBLISH_TIMEOUT)?;
        if self.broadcast_channels == 0 {
            return Err("broadcast_channels must be at least 1 (got 0)".to_owned());
        }
        self.local.check().map_err(|err| format!("local {err}"))
    }

    /// Connects to Redis and starts this node's background tasks. Fails if a setting is out
    /// of its range ([`RedisClusterError::InvalidSetting`]), or if Redis (every master of a
    /// Redis Cluster) cannot be reached now; once running, the node survives outages and
    /// failovers on its own.
    pub async fn build(self) -> Result<RedisCluster, RedisClusterError> {
        self.check_settings()
            .map_err(RedisClusterError::InvalidSetting)?;
        if self.prefix.is_empty()
            || self
                .prefix
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(RedisClusterError::BadPrefix(self.prefix));
        }
        let (mut cluster, seeds) = parse_spec(&self.url)?;
        let connect_error = |err: String| RedisClusterError::Connect(self.url.clone(), err);
        if !cluster {
            cluster = is_cluster_node(&seeds[0], self.timeout)
                .await
                .map_err(connect_error)?;
        }

        let config = ShardsConfig {
            cluster,
            seeds,
            timeout: self.timeout,
            probe_timeout: self.probe_timeout,
            max_backoff: self.max_backoff,
        };
        let names = Names::new(&self.prefix);
        let mut local = self.local;
        // History is kept in Redis, where every node reads it, not in this node's memory.
        let history = self.history.or(local.history.take());
        let local = local.build();
        let node_id = local.node_id();
        let mut channels = vec![names.node_channel(node_id)];
        channels.extend((0..self.broadcast_channels).map(|k| names.broadcast(k)));
        let queue = Arc::new(PresenceQueue::default());
        let (publisher, requests) = mpsc::channel(publish::QUEUE);
        let shared = Arc::new_cyclic(|weak| {
            let shards = Shards::new(config, relay::push_handler(weak.clone()));
            Node {
                local,
                names,
                available: shards.available(),
                shards,
                presence: queue.clone(),
                publisher,
                broadcast_channels: self.broadcast_channels,
                heartbeat: self.heartbeat,
                timeout: self.timeout,
                publish_timeout: self.publish_timeout,
                max_payload: self.max_payload,
                check: self.check,
                reports: Reports::new(),
                sequences: Sequences::default(),
                lag: crate::metrics::Histogram::new("crimson_redis_relay_lag_seconds", &[]),
                acks: Arc::default(),
                serving: Arc::new(tokio::sync::Semaphore::new(super::MAX_SERVING)),
                history: std::sync::OnceLock::new(),
            }
        });
        if let Some(history) = history {
            // A new node: nothing is on yet.
            let _ = super::history::enable(&shared, history);
        }
        shared
            .shards
            .start(channels)
            .await
            .map_err(|err| connect_error(err.to_string()))?;

        let weak = Arc::downgrade(&shared);
        let tasks = vec![
            tokio::spawn(presence::run(weak.clone(), queue, self.heartbeat)),
            tokio::spawn(health::run(
                weak.clone(),
                shared.shards.wake.clone(),
                self.probe_interval,
            )),
            tokio::spawn(publish::run(weak, requests, self.publish_timeout)),
        ];
        Ok(RedisCluster {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }
}

/// Seeds of `spec`: `redis://HOST:PORT` (one Redis, or one node of a cluster), or
/// `redis+cluster://HOST:PORT,HOST:PORT…` / several `redis://` URLs separated by commas (a
/// Redis Cluster's seed nodes). `rediss` for TLS. Whether it is surely a cluster.
fn parse_spec(spec: &str) -> Result<(bool, Vec<ConnectionInfo>), RedisClusterError> {
    let bad = |err: redis::RedisError| RedisClusterError::Url(spec.to_owned(), err);
    let spec = spec.trim();
    let (cluster, urls): (bool, Vec<String>) =
        if let Some((scheme, rest)) = spec.split_once("+cluster://") {
            // One set of credentials and options for every seed.
            let tail_at = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(tail_at);
            let (userinfo, hosts) = match authority.rsplit_once('@') {
                Some((user, hosts)) => (format!("{user}@"), hosts),
                None => (String::new(), authority),
            };
            let urls = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
                .collect();
            (true, urls)
        } else {
            let urls: Vec<String> = spec
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            (urls.len() > 1, urls)
        };
    if urls.is_empty() {
        return Err(bad(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no host",
        ))));
    }
    let seeds = urls
        .iter()
        .map(|url| {
            let info = url.as_str().into_connection_info().map_err(bad)?;
            // Pub/sub on the command connections: RESP3 pushes.
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            Ok(info.set_redis_settings(settings))
        })
        .collect::<Result<_, _>>()?;
    Ok((cluster, seeds))
}

/// Whether the server at `seed` is a Redis Cluster node (`INFO cluster`).
async fn is_cluster_node(seed: &ConnectionInfo, timeout: Duration) -> Result<bool, String> {
    let ask = async {
        let client = redis::Client::open(seed.clone())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(info)) => Ok(info.contains("cluster_enabled:1")),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Why a [`RedisCluster`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisClusterError {
    /// The URL is not a Redis URL.
    #[error(
        "`{0}` is not a Redis URL: use redis://HOST:PORT for one Redis, or \
         redis+cluster://HOST:PORT,HOST:PORT for a Redis Cluster ({1})"
    )]
    Url(String, redis::RedisError),
    /// Redis (or a master of the cluster) could not be reached, or refused a subscription.
    #[error(
        "cannot connect to Redis at {0}: {1} (is redis-server 6 or later \
         running there, and for a Redis Cluster every master?)"
    )]
    Connect(String, String),
    /// The prefix is empty or has white space or braces.
    #[error(
        "`{0}` cannot be a Redis key prefix: use a non-empty word without \
         spaces or braces"
    )]
    BadPrefix(String),
    /// A setting out of its range, e.g. `heartbeat must be at least 50ms (got 10ms)`: the
    /// text names the setting, its range and the value given.
    #[error("invalid Redis cluster setting: {0}")]
    InvalidSetting(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `build` gives for `builder`, before it tries to reach Redis.
    async fn refusal(builder: RedisClusterBuilder) -> String {
        match builder.build().await {
            Err(err @ RedisClusterError::InvalidSetting(_)) => err.to_string(),
            Err(other) => panic!("expected an invalid setting, got {other}"),
            Ok(_) => panic!("expected an invalid setting, got a cluster"),
        }
    }

    fn builder() -> RedisClusterBuilder {
        // Nothing listens there: a builder with a bad setting never connects.
        RedisCluster::builder("redis://127.0.0.1:1")
    }

    #[tokio::test]
    async fn settings_under_their_minimum_are_refused() {
        let ms = Duration::from_millis;
        let cases = [
            (
                builder().heartbeat(ms(10)),
                "heartbeat must be at least 50ms (got 10ms)",
            ),
            (
                builder().max_backoff(ms(99)),
                "max_backoff must be at least 100ms (got 99ms)",
            ),
            (
                builder().probe(ms(5), ms(500)),
                "probe interval must be at least 10ms (got 5ms)",
            ),
            (
                builder().probe(ms(300), Duration::ZERO),
                "probe deadline must be at least 10ms (got 0ns)",
            ),
            (
                builder().publish_timeout(Duration::ZERO),
                "publish_timeout must be at least 1ms (got 0ns)",
            ),
            (
                builder().publish_timeout(Duration::from_micros(500)),
                "publish_timeout must be at least 1ms (got 500\u{b5}s)",
            ),
            (
                builder().broadcast_channels(0),
                "broadcast_channels must be at least 1 (got 0)",
            ),
            (
                builder().local(LocalCluster::builder().watchdog_interval(ms(1))),
                "local watchdog_interval must be at least 10ms (got 1ms)",
            ),
        ];
        for (builder, expected) in cases {
            assert_eq!(
                refusal(builder).await,
                format!("invalid Redis cluster setting: {expected}")
            );
        }
    }

    #[test]
    fn settings_at_their_minimum_are_accepted() {
        let ms = Duration::from_millis;
        let builder = builder()
            .heartbeat(ms(50))
            .max_backoff(ms(100))
            .probe(ms(10), ms(10))
            .publish_timeout(ms(1))
            .broadcast_channels(1)
            .local(LocalCluster::builder().watchdog_interval(ms(10)));
        assert_eq!(builder.check_settings(), Ok(()));
        // The last value given counts, as for every setting.
        let builder = builder.heartbeat(ms(10)).heartbeat(ms(60));
        assert_eq!(builder.check_settings(), Ok(()));
    }

    #[test]
    fn other_errors_read_as_before() {
        assert_eq!(
            RedisClusterError::BadPrefix("a b".into()).to_string(),
            "`a b` cannot be a Redis key prefix: use a non-empty word without spaces or braces"
        );
        assert_eq!(
            RedisClusterError::Connect("redis://h:1".into(), "refused".into()).to_string(),
            "cannot connect to Redis at redis://h:1: refused (is redis-server 6 or later \
             running there, and for a Redis Cluster every master?)"
        );
        assert_eq!(
            super::super::PayloadTooLarge { len: 5, max: 4 }.to_string(),
            "a payload of 5 bytes is over max_payload (4 bytes), so it was not relayed to \
             other nodes; send less, or raise RedisClusterBuilder::max_payload on every node"
        );
    }
}
