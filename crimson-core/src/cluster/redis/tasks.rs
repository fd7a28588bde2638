//! A Redis node's subscriber: relays other nodes' messages to this node's sessions.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::relay;
use super::Node;

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
            node.names.broadcast(),
            node.names.node_channel(node.local.node_id()),
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
                // Redis may have restarted empty: write this node's presence again.
                if let Some(node) = shared.upgrade() {
                    node.presence.resync();
                }
                let mut pings =
                    tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
                let lost = loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let Some(node) = shared.upgrade() else { return };
                                relay::relay(&node, bytes::Bytes::copy_from_slice(message.get_payload_bytes()));
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
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}
