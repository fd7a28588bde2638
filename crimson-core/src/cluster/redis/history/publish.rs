//! A broadcast of a node with history in Redis: one script that numbers, keeps and
//! publishes it; this node's own sessions get it back through the node's subscription.

use std::time::Instant;

use super::{of, read, NodeHistory};
use crate::cluster::redis::wire::{self, Route};
use crate::cluster::redis::{io_error, Node, RedisCluster};
use crate::cluster::streams::stream_of;
use crate::cluster::{BoxFuture, ClusterError, Delivery, Target};
use crate::message::Payload;

impl RedisCluster {
    /// Whether broadcasts are publications in streams kept in Redis.
    pub(in crate::cluster::redis) fn history_in_redis(&self) -> bool {
        of(&self.shared).is_some()
    }

    /// Publishes a broadcast in its stream, in Redis; what this node's sessions got, once it
    /// came back (within `publish_timeout`).
    pub(in crate::cluster::redis) fn publish_in_stream(
        &self,
        payload: Payload,
        target: Target,
    ) -> BoxFuture<'_, Result<Delivery, ClusterError>> {
        let too_large = self.check_size(&payload);
        Box::pin(async move {
            let none = Delivery::default();
            too_large.map_err(|err| self.unavailable(none, err))?;
            if let Some(err) = self.unavailable_now() {
                return Err(self.unavailable(none, err));
            }
            let node = &self.shared;
            let Some(history) = of(node) else {
                return Err(self.unavailable(none, io_error("history is off", String::new())));
            };
            let deadline = Instant::now() + node.publish_timeout;
            let stream = stream_of(&target);
            let here = node.local.has_recipients(&stream);
            if here && node.local.stream_view(&stream).is_none() {
                // Subscribed and warm before publishing: this node's sessions get it.
                history
                    .ensure_warm(node, &stream, node.publish_timeout)
                    .await;
            }
            let published = self
                .within_publish_timeout(
                    deadline,
                    publish(node, history, &stream, &target, &payload),
                )
                .await;
            match published {
                Ok((epoch, offset, reached)) => {
                    let delivered = if here {
                        history
                            .delivery_of(&stream, &epoch, offset, deadline)
                            .await
                            .unwrap_or_default()
                    } else {
                        Delivery::default()
                    };
                    // Every node listens to `all`'s channel, this one too.
                    let listening = here || !stream.starts_with("room:");
                    Ok(Delivery {
                        remote_nodes: reached.saturating_sub(usize::from(listening)),
                        ..delivered
                    })
                }
                Err(err) => Err(self.unavailable(none, err)),
            }
        })
    }

    /// `publish`, bounded by `deadline`, and no longer than it takes to find Redis
    /// unavailable.
    async fn within_publish_timeout<T>(
        &self,
        deadline: Instant,
        publish: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let mut available = self.shared.available.clone();
        tokio::select! {
            result = publish => result,
            () = tokio::time::sleep_until(deadline.into()) => Err(io_error(
                "Redis did not confirm the publish in time",
                format!("no answer within {:?} (publish_timeout)", self.shared.publish_timeout),
            )),
            _ = available.wait_for(|up| !up) => Err(io_error(
                "Redis became unavailable while publishing",
                "a probe failed or a connection was lost".into(),
            )),
        }
    }
}

/// Runs the publish script: the epoch and offset Redis gave the publication, and how many
/// nodes' subscriptions it reached.
async fn publish(
    node: &Node,
    history: &NodeHistory,
    stream: &str,
    target: &Target,
    payload: &Payload,
) -> redis::RedisResult<(String, u64, usize)> {
    let _permit = history.publishes.try_acquire().map_err(|_| {
        io_error(
            "too many publishes waiting for Redis",
            format!(
                "{} waiting: Redis is too slow for this rate",
                super::MAX_PUBLISHES
            ),
        )
    })?;
    let message = wire::encode(
        node.local.node_id(),
        // Ordered by their offsets instead.
        wire::Position { stream: 0, seq: 0 },
        wire::micros(std::time::SystemTime::now()),
        &Route::Broadcast(target.clone()),
        payload,
    );
    let settings = &history.settings;
    let epoch = read::fresh_epoch();
    let size = settings.size().to_string();
    let ttl = read::ms(settings.ttl()).to_string();
    let hash_ttl = read::hash_ttl_ms(settings).to_string();
    let channel = node.names.stream_channel(stream);
    let args: [&[u8]; 7] = [
        epoch.as_bytes(),
        size.as_bytes(),
        ttl.as_bytes(),
        hash_ttl.as_bytes(),
        channel.as_bytes(),
        &message,
        read::publish_command(node).as_bytes(),
    ];
    let started = Instant::now();
    let value = history
        .scripts
        .publish
        .run_within(
            node,
            [
                &node.names.stream_state(stream),
                &node.names.history(stream),
            ],
            &args,
            node.publish_timeout,
        )
        .await;
    history
        .publish_duration
        .record(started.elapsed().as_secs_f64());
    let published = read::published(value?)?;
    history.published.add(1);
    Ok(published)
}
