//! The reads a node makes on its own (where a stream stands, what it missed), each a task,
//! at most `MAX_READS` at once, each within the node's command timeout.

use std::sync::Weak;
use std::time::Duration;

use super::arrive::admit;
use super::{of, read, spawn, NodeHistory, MAX_READS, MAX_RETRY};
use crate::cluster::redis::Node;
use crate::protocol::LostReason;

/// Finds where `stream` stands in Redis, until it is found or not wanted any more.
pub(super) async fn warm_up(weak: Weak<Node>, stream: String, ticket: u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(node) = weak.upgrade() else { return };
        let Some(history) = node.history.get() else {
            return;
        };
        let wanted = history.with_sequencer(&node, &stream, |seq, _| {
            if !seq.is_current(ticket) {
                return false;
            }
            if !seq.is_holding() && !node.local.has_recipients(&stream) {
                seq.cancel();
                return false;
            }
            true
        });
        if wanted != Some(true) {
            return;
        }
        match warm(&node, history, &stream, true).await {
            Ok((epoch, last)) => {
                history.with_sequencer(&node, &stream, |seq, fx| {
                    if seq.is_holding() || node.local.has_recipients(&stream) {
                        seq.warmed(ticket, &epoch, last, fx);
                    } else if seq.is_current(ticket) {
                        // Left meanwhile (and its channel perhaps with it): warmed up again
                        // when someone joins.
                        seq.cancel();
                    }
                });
                return;
            }
            Err(err) => node.reports.history_failed(&format_args!(
                "stream {stream}: cannot read where it stands: {err}"
            )),
        }
        drop(node);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RETRY);
    }
}

/// Reads where `stream` stands (made with a fresh epoch if Redis has none), after
/// subscribing to its channel if `subscribe`: publications after it reach the subscription.
pub(super) async fn warm(
    node: &Node,
    history: &NodeHistory,
    stream: &str,
    subscribe: bool,
) -> redis::RedisResult<(String, u64)> {
    let channel = node.names.stream_channel(stream);
    if subscribe && !node.shards.subscribe(vec![channel]).await {
        return Err(crate::cluster::redis::io_error(
            "not subscribed to the stream's channel",
            "Redis is unavailable, or the subscription was refused".into(),
        ));
    }
    let _permit = history.read_permit(node).await?;
    let epoch = read::fresh_epoch();
    let ttl = read::hash_ttl_ms(&history.settings).to_string();
    let value = history
        .scripts
        .warm
        .run(
            node,
            [
                &node.names.stream_state(stream),
                &node.names.history(stream),
            ],
            &[epoch.as_bytes(), ttl.as_bytes()],
        )
        .await?;
    read::warmed(value)
}

/// Reads `first..=last` of `stream`'s history, for the sequencer.
pub(super) async fn fill(
    weak: Weak<Node>,
    stream: String,
    ticket: u64,
    epoch: String,
    first: u64,
    last: u64,
) {
    let Some(node) = weak.upgrade() else { return };
    let Some(history) = node.history.get() else {
        return;
    };
    let count = last + 1 - first;
    let (entries, gone) = match read_range(&node, history, &stream, (first, last), count).await {
        Ok(read) if read.stream.as_ref().is_some_and(|(e, _)| *e == epoch) => {
            let gone = read.gone(&history.settings, first);
            let entries = read
                .entries
                .into_iter()
                .filter_map(|entry| {
                    let admitted = admit(&node, entry.message, None, Some(&stream))?;
                    Some((entry.offset, admitted.item(&node)))
                })
                .collect();
            (entries, gone)
        }
        Ok(_) => (Vec::new(), LostReason::EpochChanged),
        Err(err) => {
            node.reports.history_failed(&format_args!(
                "stream {stream}: cannot read offsets {first} to {last} back: {err}"
            ));
            (Vec::new(), LostReason::Unavailable)
        }
    };
    history.with_sequencer(&node, &stream, |seq, fx| {
        seq.filled(ticket, entries, gone, fx);
    });
}

/// Reads at most `count` of offsets `first..=last` of `stream`'s history, with where the
/// stream stands.
pub(super) async fn read_range(
    node: &Node,
    history: &NodeHistory,
    stream: &str,
    (first, last): (u64, u64),
    count: u64,
) -> redis::RedisResult<read::Read> {
    let _permit = history.read_permit(node).await?;
    let (first, last, count) = (first.to_string(), last.to_string(), count.to_string());
    let max = (node.max_payload + crate::cluster::redis::wire::MAX_HEADER).to_string();
    let value = history
        .scripts
        .read
        .run(
            node,
            [
                &node.names.stream_state(stream),
                &node.names.history(stream),
            ],
            &[
                first.as_bytes(),
                last.as_bytes(),
                count.as_bytes(),
                max.as_bytes(),
            ],
        )
        .await?;
    let read = read::read(value)?;
    for _ in 0..read.foreign {
        node.reports.malformed(&format_args!(
            "an entry of {stream}'s history that is not Crimson's"
        ));
    }
    Ok(read)
}

/// Redis is back after an outage: checks every stream this node follows and reads back
/// what it missed meanwhile (or tells its sessions the history was lost).
pub(in crate::cluster::redis) fn catch_up(node: &Node) {
    if of(node).is_some() {
        check(node, node.local.warm_streams());
    }
}

/// The channels of `rooms` were subscribed (members joined): a room's stream this node
/// already followed may have gone on while its channel was left and taken again (its last
/// member left and one joined, at once), so it is checked like after an outage.
pub(in crate::cluster::redis) fn subscribed(node: &Node, rooms: &[&str]) {
    if of(node).is_none() {
        return;
    }
    let warm = rooms
        .iter()
        .map(|room| format!("room:{room}"))
        .filter(|stream| node.local.stream_view(stream).is_some())
        .collect();
    check(node, warm);
}

/// Reads where each of `streams` stands in Redis (subscribed to by now), and reads back
/// what this node missed of them (or tells their sessions the history was lost).
fn check(node: &Node, streams: Vec<String>) {
    let Some(history) = node.history.get() else {
        return;
    };
    if streams.is_empty() {
        return;
    }
    let weak = history.node.clone();
    spawn(async move {
        use futures_util::stream::{self, StreamExt};
        stream::iter(streams)
            .for_each_concurrent(MAX_READS, |stream| {
                let weak = weak.clone();
                async move {
                    let Some(node) = weak.upgrade() else { return };
                    let Some(history) = node.history.get() else {
                        return;
                    };
                    if !node.local.has_recipients(&stream) {
                        return;
                    }
                    let Some((asked_in, _)) = node.local.stream_view(&stream) else {
                        return;
                    };
                    match warm(&node, history, &stream, false).await {
                        Ok((epoch, last)) => {
                            history.with_sequencer(&node, &stream, |seq, fx| {
                                seq.catch_up(&asked_in, &epoch, last, fx);
                            });
                        }
                        Err(err) => node.reports.history_failed(&format_args!(
                            "stream {stream}: cannot check what this node missed: {err}"
                        )),
                    }
                }
            })
            .await;
    });
}
