//! A Redis node's background work: the subscriber that relays other nodes' messages, and the
//! heartbeat that keeps this node's presence alive.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::wire::{self, Route};
use super::{PresenceOp, Shared};
use crate::cluster::SessionCluster;
use crate::session::SessionInfo;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The presence hash's value for a session: path, config and connect time, tab-separated.
fn presence_value(info: &SessionInfo) -> String {
    let at = info
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{}\t{}\t{at}", info.path, info.config)
}

/// Subscribes to this node's channels and relays what arrives, reconnecting with bounded
/// backoff whenever the subscription is lost.
pub(super) async fn subscribe(
    shared: Weak<Shared>,
    client: redis::Client,
    subscribed: watch::Sender<bool>,
    max_backoff: Duration,
    timeout: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let Some(node) = shared.upgrade() else { return };
        let channels = [
            node.names.broadcast.clone(),
            node.names.node_channel.clone(),
        ];
        drop(node);

        let connected = async {
            let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|err| err.to_string())?;
            for channel in &channels {
                pubsub
                    .subscribe(channel)
                    .await
                    .map_err(|err| err.to_string())?;
            }
            Ok::<_, String>(pubsub)
        }
        .await;

        match connected {
            Ok(pubsub) => {
                if failures > 0 {
                    tracing::warn!(attempts = failures, "reconnected to Redis and resubscribed");
                }
                failures = 0;
                backoff = Duration::from_millis(100);
                subscribed.send_replace(true);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(node) = shared.upgrade() else { return };
                    relay(
                        &node,
                        bytes::Bytes::copy_from_slice(message.get_payload_bytes()),
                    );
                }
                subscribed.send_replace(false);
                tracing::error!(
                    "lost the Redis subscription: cross-node messages stop until it is back"
                );
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(error = %err, attempt = failures, retry_in = ?backoff, "cannot subscribe to Redis");
            }
        }
        // Redis may have restarted empty: write this node's presence again.
        if let Some(node) = shared.upgrade() {
            let _ = node.presence.send(PresenceOp::Resync);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Delivers one relayed message to this node's sessions.
fn relay(node: &Shared, message: bytes::Bytes) {
    let relay = match wire::decode(message) {
        Ok(relay) => relay,
        Err(err) => {
            tracing::error!(error = %err, "dropped a message from Redis that is not a Crimson cluster message");
            return;
        }
    };
    if relay.origin == node.local.node_id() {
        // Our own broadcast: delivered locally when it was sent.
        return;
    }
    match relay.route {
        Route::Broadcast(target) => {
            let delivery = node.local.deliver(&relay.payload, &target);
            tracing::trace!(?delivery, "relayed a broadcast");
        }
        Route::Session(id) => {
            if let Err(err) = node.local.deliver_to(id, relay.payload) {
                tracing::debug!(error = %err, "relayed send did not reach its session");
            }
        }
    }
}

/// Keeps this node's presence: applies adds and removes as they come, refreshes the hash's
/// expiry and the node's heartbeat, and rewrites the whole hash after any failure.
pub(super) async fn heartbeat(
    shared: Weak<Shared>,
    mut ops: mpsc::UnboundedReceiver<PresenceOp>,
    every: Duration,
) {
    let ttl_ms = (every * 3).as_millis() as u64;
    let mut ticks = tokio::time::interval(every);
    let mut dirty = true;
    loop {
        let op = tokio::select! {
            _ = ticks.tick() => None,
            op = ops.recv() => match op {
                Some(op) => Some(op),
                None => return,
            },
        };
        let Some(node) = shared.upgrade() else { return };
        let mut conn = node.commands.clone();
        let names = &node.names;
        let result = match op {
            Some(PresenceOp::Resync) => {
                dirty = true;
                continue;
            }
            Some(PresenceOp::Add(info)) if !dirty => {
                redis::pipe()
                    .hset(&names.presence, info.id.to_string(), presence_value(&info))
                    .pexpire(&names.presence, ttl_ms as i64)
                    .query_async::<()>(&mut conn)
                    .await
            }
            Some(PresenceOp::Remove(id)) if !dirty => {
                redis::pipe()
                    .hdel(&names.presence, id.to_string())
                    .query_async::<()>(&mut conn)
                    .await
            }
            // While dirty, the next tick rewrites everything.
            Some(_) => continue,
            None => {
                let mut pipe = redis::pipe();
                pipe.zadd(
                    &names.nodes,
                    format!("{:016x}", node.local.node_id()),
                    now_ms(),
                )
                .zrembyscore(&names.nodes, 0, now_ms().saturating_sub(ttl_ms));
                if dirty {
                    pipe.atomic().del(&names.presence);
                    let sessions = node.local.local_sessions();
                    for chunk in sessions.chunks(512) {
                        let fields: Vec<(String, String)> = chunk
                            .iter()
                            .map(|s| (s.id.to_string(), presence_value(s)))
                            .collect();
                        pipe.hset_multiple(&names.presence, &fields);
                    }
                }
                pipe.pexpire(&names.presence, ttl_ms as i64);
                pipe.query_async::<()>(&mut conn).await
            }
        };
        match result {
            Ok(()) => dirty = false,
            Err(err) => {
                if !dirty {
                    tracing::error!(error = %err, "cannot update presence in Redis; will rewrite it when Redis is back");
                }
                dirty = true;
            }
        }
        drop(node);
    }
}

/// Sessions across every live node: the sum of the presence hashes of the nodes whose
/// heartbeat is recent.
pub(super) async fn cluster_len(node: &Arc<Shared>) -> Result<usize, redis::RedisError> {
    let mut conn = node.commands.clone();
    let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&node.names.nodes)
        .arg(now_ms().saturating_sub(node.heartbeat_ttl_ms()))
        .arg("+inf")
        .query_async(&mut conn)
        .await?;
    if live.is_empty() {
        return Ok(node.local.local_len());
    }
    let mut pipe = redis::pipe();
    for id in &live {
        pipe.hlen(node.names.presence_of(id));
    }
    let counts: Vec<usize> = pipe.query_async(&mut conn).await?;
    Ok(counts.into_iter().sum())
}
