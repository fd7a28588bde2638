//! The slot map of a Redis Cluster: read from `CLUSTER SLOTS`, followed when masters change.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, RedisResult, Value};

use super::{io_error, Shard, Shards, Topology};

impl Shards {
    /// Reads `CLUSTER SLOTS` from a reachable master (or a seed) and, if the masters
    /// changed, switches to them: unchanged shards keep their connection.
    pub(super) async fn refresh_topology(&self) -> RedisResult<()> {
        let current = self.topology();
        let mut last_err = None;
        let mut layout = None;
        // Masters we are connected to first, then the seeds.
        for shard in current.shards.iter() {
            let Some((_, mut conn)) = shard.conn() else {
                continue;
            };
            match self.cluster_slots(&mut conn, &shard.info).await {
                Ok(found) => {
                    layout = Some(found);
                    break;
                }
                Err(err) => last_err = Some(err),
            }
        }
        if layout.is_none() {
            for seed in &self.seeds {
                let answer = async {
                    let client = redis::Client::open(seed.clone())?;
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(
                            &redis::AsyncConnectionConfig::new()
                                .set_connection_timeout(Some(self.probe_timeout)),
                        )
                        .await?;
                    self.cluster_slots(&mut conn, seed).await
                };
                match tokio::time::timeout(self.timeout, answer).await {
                    Ok(Ok(found)) => {
                        layout = Some(found);
                        break;
                    }
                    Ok(Err(err)) => last_err = Some(err),
                    Err(_) => {
                        last_err = Some(io_error("no answer in time", addr_of(seed)));
                    }
                }
            }
        }
        let Some(mut layout) = layout else {
            return Err(last_err.unwrap_or_else(|| io_error("no seed", String::new())));
        };
        layout.sort_by_key(|(first, _, _)| *first);
        let unchanged = {
            let now = current.layout();
            now.len() == layout.len()
                && now
                    .iter()
                    .zip(&layout)
                    .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && a.2 == addr_of(&b.2))
        };
        self.stale.store(false, Ordering::Release);
        if unchanged {
            return Ok(());
        }
        let mut shards: Vec<Arc<Shard>> = Vec::new();
        let mut ranges = Vec::new();
        for (first, last, info) in layout {
            let addr = addr_of(&info);
            let index = match shards.iter().position(|s| s.addr == addr) {
                Some(index) => index,
                None => {
                    let shard = current
                        .shards
                        .iter()
                        .find(|s| s.addr == addr)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Shard::new(addr, info)));
                    shards.push(shard);
                    shards.len() - 1
                }
            };
            ranges.push((first, last, index));
        }
        let masters: Vec<&str> = shards.iter().map(|s| s.addr.as_str()).collect();
        tracing::info!(?masters, "the Redis Cluster's masters changed");
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Topology { ranges, shards });
        self.subs_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// `CLUSTER SLOTS`: each slot range and its master's connection settings.
    async fn cluster_slots(
        &self,
        conn: &mut MultiplexedConnection,
        asked: &ConnectionInfo,
    ) -> RedisResult<Vec<(u16, u16, ConnectionInfo)>> {
        let reply: Value = tokio::time::timeout(
            self.probe_timeout,
            redis::cmd("CLUSTER").arg("SLOTS").query_async(conn),
        )
        .await
        .map_err(|_| io_error("no answer to CLUSTER SLOTS in time", addr_of(asked)))??;
        let bad = || io_error("unexpected CLUSTER SLOTS reply", addr_of(asked));
        let Value::Array(ranges) = reply else {
            return Err(bad());
        };
        let mut layout = Vec::new();
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(bad());
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad());
            };
            let host: String = master
                .first()
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .unwrap_or_default();
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(bad());
            };
            // An empty or unknown host means "the node you asked".
            let host = if host.is_empty() || host == "?" {
                host_of(asked)
            } else {
                host
            };
            let port = u16::try_from(*port).map_err(|_| bad())?;
            let first = u16::try_from(*first).map_err(|_| bad())?;
            let last = u16::try_from(*last).map_err(|_| bad())?;
            layout.push((first, last, with_addr(asked, host, port)));
        }
        Ok(layout)
    }
}

/// `host:port` of a connection's settings.
pub(super) fn addr_of(info: &ConnectionInfo) -> String {
    info.addr().to_string()
}

fn host_of(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".into(),
    }
}

/// `seed`'s settings (credentials, TLS) for another server.
fn with_addr(seed: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    seed.clone().set_addr(addr)
}
