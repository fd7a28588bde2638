//! A Redis node's background work: the subscriber that relays other nodes' messages, and the
//! heartbeat that keeps this node's presence alive.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::wire::{self, Route};
use super::{Node, PresenceOp};
use crate::session::SessionInfo;

/// Redis's own clock, in milliseconds: every node stamps and reads heartbeats with it, so
/// clock skew between nodes does not matter.
async fn redis_now_ms(conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
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
/// backoff whenever the subscription is lost. A PING every heartbeat on the subscription
/// notices a connection that died without closing.
pub(super) async fn subscribe(
    shared: Weak<Node>,
    client: redis::Client,
    subscribed: watch::Sender<bool>,
    max_backoff: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let Some(node) = shared.upgrade() else { return };
        let channels = [
            node.names.broadcast.clone(),
            node.names.node_channel.clone(),
        ];
        let (timeout, keepalive) = (node.timeout, node.heartbeat);
        drop(node);

        let connected = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            for channel in &channels {
                pubsub.subscribe(channel).await?;
            }
            Ok::<_, redis::RedisError>(pubsub.split())
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))
        .and_then(|connected| connected.map_err(|err| err.to_string()));

        match connected {
            Ok((mut sink, mut messages)) => {
                if failures > 0 {
                    tracing::warn!(attempts = failures, "reconnected to Redis and resubscribed");
                }
                failures = 0;
                backoff = Duration::from_millis(100);
                subscribed.send_replace(true);
                let mut pings =
                    tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
                let lost = loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let Some(node) = shared.upgrade() else { return };
                                relay(&node, bytes::Bytes::copy_from_slice(message.get_payload_bytes()));
                            }
                            None => break "the connection closed".to_string(),
                        },
                        _ = pings.tick() => {
                            match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(err)) => break err.to_string(),
                                Err(_) => break format!("no answer to a ping within {timeout:?}"),
                            }
                        }
                    }
                };
                subscribed.send_replace(false);
                tracing::error!(reason = %lost, "lost the Redis subscription: cross-node messages stop until it is back");
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
fn relay(node: &Node, message: bytes::Bytes) {
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
                node.relay_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "a message relayed from another node did not reach its session");
            }
        }
    }
}

/// Keeps this node's presence: applies adds and removes as they come (in one pipeline per
/// burst), refreshes the hash's expiry and the node's heartbeat, and rewrites the whole hash
/// after any failure or when Redis lost it (restart, eviction).
pub(super) async fn heartbeat(
    shared: Weak<Node>,
    mut ops: mpsc::UnboundedReceiver<PresenceOp>,
    every: Duration,
) {
    let ttl_ms = (every * 3).as_millis() as u64;
    let mut ticks = tokio::time::interval(every);
    let mut dirty = true;
    loop {
        let first = tokio::select! {
            _ = ticks.tick() => None,
            op = ops.recv() => match op {
                Some(op) => Some(op),
                None => return,
            },
        };
        let Some(node) = shared.upgrade() else { return };
        let mut conn = node.commands.clone();
        let names = &node.names;

        if let Some(first) = first {
            // A burst of changes: everything waiting goes in one round trip.
            let mut pipe = redis::pipe();
            let mut changes = 0;
            for op in std::iter::once(first).chain(std::iter::from_fn(|| ops.try_recv().ok())) {
                match op {
                    PresenceOp::Resync => dirty = true,
                    PresenceOp::Add(info) => {
                        pipe.hset(&names.presence, info.id.to_string(), presence_value(&info))
                            .ignore();
                        changes += 1;
                    }
                    PresenceOp::Remove(id) => {
                        pipe.hdel(&names.presence, id.to_string()).ignore();
                        changes += 1;
                    }
                }
            }
            // While dirty, the next tick rewrites everything anyway.
            if !dirty && changes > 0 {
                pipe.pexpire(&names.presence, ttl_ms as i64).ignore();
                if let Err(err) = pipe.query_async::<()>(&mut conn).await {
                    tracing::error!(error = %err, "cannot update presence in Redis; will rewrite it when Redis is back");
                    dirty = true;
                }
            }
            continue;
        }

        // A heartbeat: stamp the node, and rewrite the presence hash if it may be wrong.
        let rewrite = dirty;
        let beat = async {
            let now = redis_now_ms(&mut conn).await?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .zadd(&names.nodes, format!("{:016x}", node.local.node_id()), now)
                .ignore()
                .zrembyscore(&names.nodes, 0, now.saturating_sub(ttl_ms))
                .ignore();
            if rewrite {
                pipe.del(&names.presence).ignore();
                let sessions = node.local.sessions();
                for chunk in sessions.chunks(512) {
                    let fields: Vec<(String, String)> = chunk
                        .iter()
                        .map(|s| (s.id.to_string(), presence_value(s)))
                        .collect();
                    pipe.hset_multiple(&names.presence, &fields).ignore();
                }
            }
            pipe.pexpire(&names.presence, ttl_ms as i64);
            let (refreshed,): (bool,) = pipe.query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(refreshed)
        }
        .await;
        match beat {
            Ok(refreshed) => {
                // No hash while this node has sessions: Redis lost it (eviction, flush).
                let lost = !refreshed && !node.local.is_empty();
                if lost && !rewrite {
                    tracing::warn!("this node's presence was missing in Redis: rewriting it");
                }
                dirty = lost;
            }
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
/// heartbeat is recent (by Redis's clock).
pub(super) async fn cluster_len(node: &Arc<Node>) -> Result<usize, redis::RedisError> {
    let mut conn = node.commands.clone();
    let now = redis_now_ms(&mut conn).await?;
    let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&node.names.nodes)
        .arg(now.saturating_sub(node.heartbeat_ttl_ms()))
        .arg("+inf")
        .query_async(&mut conn)
        .await?;
    if live.is_empty() {
        return Ok(node.local.len());
    }
    let mut pipe = redis::pipe();
    for id in &live {
        pipe.hlen(node.names.presence_of(id));
    }
    let counts: Vec<usize> = pipe.query_async(&mut conn).await?;
    Ok(counts.into_iter().sum())
}
