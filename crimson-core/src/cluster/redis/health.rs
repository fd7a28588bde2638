//! The health task: every `probe_interval` (and at once when a connection is lost) it has
//! the shards refresh the slot map, reconnect and probe ([`Shards::maintain`]), logs when
//! cross-node delivery stops and resumes (one line each way, not one per message), asks
//! for this node's presence to be rewritten when Redis comes back, and logs the tails of
//! the rate-limited reports.
//!
//! [`Shards::maintain`]: super::shards::Shards::maintain

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Node;
use crate::metrics::{Counter, Gauge};

/// The least time between two rounds, however often a round is asked for.
const MIN_GAP: Duration = Duration::from_millis(20);

/// Runs rounds until the node is dropped.
pub(super) async fn run(shared: Weak<Node>, wake: Arc<Notify>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since: Option<Instant> = None;
    let up = Gauge::new("crimson_redis_up", &[]);
    let reconnects = Counter::new("crimson_redis_reconnects_total", &[]);
    up.set(1.0);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = wake.notified() => {}
        }
        let Some(node) = shared.upgrade() else { return };
        node.reports.flush();
        let was_up = *node.available.borrow();
        let state = node.shards.maintain().await;
        if state.is_ok() && !was_up {
            // Reconnected (perhaps at once, to a Redis that restarted empty): what streams
            // with history missed meanwhile is read back, or said lost.
            super::history::catch_up(&node);
        }
        match (state, down_since) {
            (Ok(()), None) => {}
            (Ok(()), Some(since)) => {
                down_since = None;
                up.set(1.0);
                reconnects.add(1);
                tracing::warn!(
                    down_for = ?since.elapsed(),
                    "Redis is available again: cross-node delivery resumes"
                );
                // Redis may have restarted empty, or a shard been replaced.
                node.presence.resync();
            }
            (Err(reason), None) => {
                down_since = Some(Instant::now());
                up.set(0.0);
                tracing::error!(
                    %reason,
                    "Redis is unavailable: cross-node operations fail at once until it is back"
                );
            }
            (Err(_), Some(_)) => {}
        }
        drop(node);
        tokio::time::sleep(MIN_GAP).await;
    }
}
