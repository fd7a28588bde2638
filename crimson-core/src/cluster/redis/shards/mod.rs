//! The connections to Redis: one per server that owns slots, a *shard*: the one Redis, or
//! each master of a Redis Cluster. Crimson keeps these itself, so that what happens when a
//! server hangs, dies or is replaced is its own and tested:
//!
//! - commands and publishes go to the shard that owns their key's (or channel's) slot,
//!   over one multiplexed RESP3 connection per shard;
//! - subscriptions are kept per shard: every wanted channel is subscribed on the shard that
//!   owns it now (`SSUBSCRIBE` on a cluster, `SUBSCRIBE` on a single Redis), again after a
//!   reconnect or a failover;
//! - [`Shards::maintain`], run by the health task, refreshes a cluster's slot map
//!   (`CLUSTER SLOTS`), reconnects lost shards with backoff, probes every shard (`PING`, or
//!   `CLUSTER INFO` and its `cluster_state:ok` on a cluster) with a deadline, and says whether
//!   cross-node delivery works.

mod subscriptions;
mod topology;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Cmd, ConnectionInfo, PushInfo, RedisResult, Value};
use tokio::sync::{watch, Notify};

use self::subscriptions::Subscriptions;
use self::topology::addr_of;
use super::names::slot;

/// What a connection's pushes (messages, confirmations, its own loss) are handed to, with the
/// shard's address and the connection's id.
pub(crate) type PushHandler = Arc<dyn Fn(&str, u64, PushInfo) + Send + Sync>;

/// Redis Cluster's slot count.
const SLOTS: u32 = 16384;

fn io_error(what: &'static str, detail: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what, detail))
}

/// One server that owns slots.
pub(crate) struct Shard {
    /// `host:port`.
    pub(crate) addr: String,
    info: ConnectionInfo,
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    healthy: AtomicBool,
    /// When to try connecting again, and the backoff after that.
    retry: Mutex<(Instant, Duration)>,
}

impl Shard {
    fn new(addr: String, info: ConnectionInfo) -> Self {
        Self {
            addr,
            info,
            conn: Mutex::new(None),
            healthy: AtomicBool::new(false),
            retry: Mutex::new((Instant::now(), Duration::ZERO)),
        }
    }

    fn conn(&self) -> Option<(u64, MultiplexedConnection)> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_up(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.conn().is_some()
    }
}

/// Which slots which shard owns.
pub(super) struct Topology {
    /// `(first slot, last slot, shard)`, sorted.
    ranges: Vec<(u16, u16, usize)>,
    shards: Vec<Arc<Shard>>,
}

impl Topology {
    fn covers_all(&self) -> bool {
        let covered: u32 = self
            .ranges
            .iter()
            .map(|(a, b, _)| u32::from(*b) - u32::from(*a) + 1)
            .sum();
        covered == SLOTS
    }

    fn layout(&self) -> Vec<(u16, u16, &str)> {
        self.ranges
            .iter()
            .map(|(a, b, s)| (*a, *b, self.shards[*s].addr.as_str()))
            .collect()
    }
}

/// The shards of one node, and its subscriptions.
pub(crate) struct Shards {
    cluster: bool,
    seeds: Vec<ConnectionInfo>,
    timeout: Duration,
    probe_timeout: Duration,
    max_backoff: Duration,
    on_push: PushHandler,
    topology: RwLock<Arc<Topology>>,
    subs: tokio::sync::Mutex<Subscriptions>,
    /// Some wanted channel may not be subscribed on its shard.
    subs_dirty: AtomicBool,
    /// The slot map may be out of date (a MOVED reply).
    stale: AtomicBool,
    next_conn: AtomicU64,
    available: watch::Sender<bool>,
    /// Asks the health task for a round now (a connection was lost, a redirect seen).
    pub(crate) wake: Arc<Notify>,
}

/// Settings of a [`Shards`].
pub(crate) struct ShardsConfig {
    pub(crate) cluster: bool,
    pub(crate) seeds: Vec<ConnectionInfo>,
    pub(crate) timeout: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) max_backoff: Duration,
}

impl Shards {
    /// Shards not connected yet: [`start`](Self::start) connects them.
    pub(crate) fn new(config: ShardsConfig, on_push: PushHandler) -> Self {
        let first = &config.seeds[0];
        let topology = Topology {
            ranges: vec![(0, (SLOTS - 1) as u16, 0)],
            shards: vec![Arc::new(Shard::new(addr_of(first), first.clone()))],
        };
        Self {
            cluster: config.cluster,
            seeds: config.seeds,
            timeout: config.timeout,
            probe_timeout: config.probe_timeout,
            max_backoff: config.max_backoff,
            on_push,
            topology: RwLock::new(Arc::new(topology)),
            subs: tokio::sync::Mutex::new(Subscriptions::default()),
            subs_dirty: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            available: watch::channel(false).0,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Whether these are a Redis Cluster's masters.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Whether cross-node delivery works now.
    pub(crate) fn available(&self) -> watch::Receiver<bool> {
        self.available.subscribe()
    }

    /// Reads the slot map (and, on a cluster, connects every master) and subscribes to
    /// `channels`. Fails if any of it fails.
    pub(crate) async fn start(&self, channels: Vec<String>) -> RedisResult<()> {
        if self.cluster {
            self.refresh_topology().await?;
        }
        for shard in self.topology().shards.iter() {
            self.connect(shard).await?;
        }
        self.subs.lock().await.wanted.extend(channels);
        if !self.reconcile().await {
            return Err(io_error(
                "could not subscribe",
                "a SUBSCRIBE was refused or timed out".into(),
            ));
        }
        self.available.send_replace(true);
        Ok(())
    }

    pub(super) fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn shard_of(&self, topology: &Topology, key: &str) -> Option<usize> {
        if !self.cluster {
            return Some(0);
        }
        let slot = slot(key);
        let at = topology.ranges.partition_point(|(_, last, _)| *last < slot);
        topology
            .ranges
            .get(at)
            .filter(|(first, _, _)| *first <= slot)
            .map(|(_, _, shard)| *shard)
    }

    /// The connection of the shard that owns `key`, if it is up.
    pub(super) fn conn_for(
        &self,
        key: &str,
    ) -> RedisResult<(Arc<Shard>, u64, MultiplexedConnection)> {
        let topology = self.topology();
        let shard = self
            .shard_of(&topology, key)
            .map(|s| topology.shards[s].clone())
            .ok_or_else(|| io_error("no Redis Cluster master owns this slot", key.into()))?;
        let (id, conn) = shard
            .conn()
            .ok_or_else(|| io_error("no connection to Redis (reconnecting)", shard.addr.clone()))?;
        Ok((shard, id, conn))
    }

    /// Learns from a failed request: a lost connection is dropped (the health task
    /// reconnects it), a redirect means the slot map moved.
    pub(super) fn failed(&self, shard: &Shard, conn: u64, err: &redis::RedisError) {
        if err.redirect_node().is_some() {
            self.stale.store(true, Ordering::Release);
            self.wake.notify_one();
        } else if err.is_connection_dropped() || err.is_unrecoverable_error() || err.is_io_error() {
            self.lost(&shard.addr, conn);
        }
    }

    /// The connection `conn` of the shard at `addr` is gone: cross-node delivery stops at
    /// once, and the health task reconnects.
    pub(crate) fn lost(&self, addr: &str, conn: u64) {
        let topology = self.topology();
        let Some(shard) = topology.shards.iter().find(|s| s.addr == addr) else {
            return;
        };
        {
            let mut current = shard.conn.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_none_or(|(id, _)| *id != conn) {
                return;
            }
            *current = None;
        }
        shard.healthy.store(false, Ordering::Release);
        self.subs_dirty.store(true, Ordering::Release);
        self.available.send_replace(false);
        self.wake.notify_one();
    }

    /// Sends `cmd` to the shard that owns `key`.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        let (shard, id, mut conn) = self.conn_for(key)?;
        match cmd.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(err) => {
                self.failed(&shard, id, &err);
                Err(err)
            }
        }
    }

    /// Publishes on `channel` (`SPUBLISH` on a cluster); how many subscribers got it.
    pub(crate) fn publish_cmd(&self, channel: &str, message: &[u8]) -> Cmd {
        let mut cmd = redis::cmd(if self.cluster { "SPUBLISH" } else { "PUBLISH" });
        cmd.arg(channel).arg(message);
        cmd
    }

    async fn connect(&self, shard: &Arc<Shard>) -> RedisResult<()> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let on_push = self.on_push.clone();
        let addr = shard.addr.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_push_sender(move |info: PushInfo| {
                on_push(&addr, id, info);
                Ok::<(), std::convert::Infallible>(())
            });
        let client = redis::Client::open(shard.info.clone())?;
        let conn = tokio::time::timeout(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| {
            io_error(
                "could not connect in time",
                format!("{}: no answer within {:?}", shard.addr, self.timeout),
            )
        })??;
        *shard.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, conn));
        shard.healthy.store(true, Ordering::Release);
        *shard.retry.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), Duration::ZERO);
        self.subs_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Connects `shard` if it has no connection and its backoff is over; probes it
    /// otherwise. `Err` says what is wrong with it.
    async fn check(&self, shard: &Arc<Shard>) -> Result<(), String> {
        let Some((id, mut conn)) = shard.conn() else {
            let due = {
                let retry = shard.retry.lock().unwrap_or_else(|e| e.into_inner());
                Instant::now() >= retry.0
            };
            if !due {
                return Err(format!("{}: reconnecting", shard.addr));
            }
            return match self.connect(shard).await {
                Ok(()) => Ok(()),
                Err(err) => {
                    let mut retry = shard.retry.lock().unwrap_or_else(|e| e.into_inner());
                    let backoff = (retry.1 * 2)
                        .max(Duration::from_millis(100))
                        .min(self.max_backoff);
                    *retry = (Instant::now() + backoff, backoff);
                    Err(format!("{}: cannot connect: {err}", shard.addr))
                }
            };
        };
        let probe = if self.cluster {
            redis::cmd("CLUSTER").arg("INFO").clone()
        } else {
            redis::cmd("PING")
        };
        let answer =
            tokio::time::timeout(self.probe_timeout, probe.query_async::<Value>(&mut conn)).await;
        let result = match answer {
            Err(_) => Err(format!(
                "{}: no answer to a probe within {:?}",
                shard.addr, self.probe_timeout
            )),
            Ok(Err(err)) => {
                self.failed(shard, id, &err);
                Err(format!("{}: {err}", shard.addr))
            }
            Ok(Ok(value)) if self.cluster => {
                let info: String = redis::from_redis_value(value).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    Ok(())
                } else {
                    Err(format!("{}: cluster_state is not ok", shard.addr))
                }
            }
            Ok(Ok(_)) => Ok(()),
        };
        shard.healthy.store(result.is_ok(), Ordering::Release);
        result
    }

    /// One round of upkeep: the slot map (on a cluster), connections, probes,
    /// subscriptions. `Ok` when cross-node delivery works; else what is wrong.
    pub(crate) async fn maintain(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.cluster {
            if let Err(err) = self.refresh_topology().await {
                problems.push(format!("cannot read the cluster's slot map: {err}"));
            }
        }
        let topology = self.topology();
        let checks =
            futures_util::future::join_all(topology.shards.iter().map(|s| self.check(s))).await;
        problems.extend(checks.into_iter().filter_map(Result::err));
        if !topology.covers_all() {
            problems.push("some slots have no master".into());
        }
        if self.subs_dirty.load(Ordering::Acquire) && !self.reconcile().await {
            problems.push("some channels are not subscribed yet".into());
        }
        let up = problems.is_empty() && topology.shards.iter().all(|s| s.is_up());
        self.available.send_replace(up);
        if up {
            Ok(())
        } else if problems.is_empty() {
            Err("a connection was lost during the check".into())
        } else {
            Err(problems.join("; "))
        }
    }
}
