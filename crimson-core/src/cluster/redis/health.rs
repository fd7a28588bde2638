//! The health probe: a PING every `probe_interval` with a `probe_timeout` deadline on the
//! command connection. A PING that fails or does not come back in time marks Redis
//! unavailable at once, so cross-node operations fail fast (instead of each waiting for its
//! own timeout) until a PING comes back; then this node's presence is rewritten.

use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Node;

/// Probes Redis until the node is dropped. Also logs the tails of throttled reports.
pub(super) async fn probe(
    shared: Weak<Node>,
    healthy: watch::Sender<bool>,
    every: Duration,
    deadline: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let Some(node) = shared.upgrade() else { return };
        node.reports.flush();
        let mut conn = node.commands.clone();
        drop(node);

        let answer = tokio::time::timeout(
            deadline,
            redis::cmd("PING").query_async::<redis::Value>(&mut conn),
        )
        .await;
        let failure = match answer {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!("no answer to PING within {deadline:?}")),
        };
        match (failure, down_since) {
            (None, None) => {}
            (None, Some(since)) => {
                down_since = None;
                healthy.send_replace(true);
                tracing::warn!(
                    down_for = ?since.elapsed(),
                    "Redis answers again: cross-node delivery resumes"
                );
                if let Some(node) = shared.upgrade() {
                    // Redis may have restarted empty.
                    node.presence.resync();
                }
            }
            (Some(reason), None) => {
                down_since = Some(Instant::now());
                healthy.send_replace(false);
                tracing::error!(
                    %reason,
                    "Redis is unavailable: cross-node operations fail at once until it answers again"
                );
            }
            (Some(_), Some(_)) => {}
        }
    }
}
