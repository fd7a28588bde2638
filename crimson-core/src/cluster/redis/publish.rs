//! The publisher: one task per node numbers every message it publishes on each channel and
//! sends them in order, in one pipeline per shard for everything waiting (so the numbers a
//! receiver sees on a channel only ever go up by one, unless a message was lost).

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::wire::{self, Position, Route};
use super::Node;
use crate::message::Payload;
use crate::metrics::{Counter, Histogram};
use crate::session::random_u64;

/// How many publishes may wait for the publisher; past that a publish fails at once.
pub(crate) const QUEUE: usize = 4096;
/// The most publishes sent in one round.
const BATCH: usize = 512;
/// How many channels the publisher numbers before it starts all over (new streams).
const MAX_CHANNELS: usize = 65_536;

/// One message to publish, and where to say how it went.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) channel: String,
    pub(crate) route: Route,
    pub(crate) payload: Payload,
    /// When the broadcast was asked for (the receivers' relay lag counts from here).
    pub(crate) at: SystemTime,
    /// Where to say how many subscribers got it; none for a message nobody waits on (an
    /// acknowledged broadcast's `Asked`, sent from the receiving side, which must not wait).
    pub(crate) reply: Option<oneshot::Sender<RedisResult<usize>>>,
}

/// The next position on each channel.
#[derive(Default)]
struct Counters(HashMap<String, Position>);

impl Counters {
    fn next(&mut self, channel: &str) -> Position {
        if self.0.len() >= MAX_CHANNELS && !self.0.contains_key(channel) {
            self.0.clear();
        }
        let position = self
            .0
            .entry(channel.to_owned())
            .or_insert_with(|| Position {
                stream: random_u64() as u32,
                seq: 0,
            });
        position.seq += 1;
        *position
    }
}

/// Publishes what comes in on `requests` until the node is dropped. Each round is bounded
/// by `deadline`.
pub(crate) async fn run(
    shared: Weak<Node>,
    mut requests: mpsc::Receiver<Request>,
    deadline: Duration,
) {
    let mut counters = Counters::default();
    let mut round = Vec::with_capacity(BATCH);
    let published = Counter::new("crimson_redis_publishes_total", &[]);
    let timed_out = Counter::new("crimson_redis_publish_timeouts_total", &[]);
    let duration = Histogram::new("crimson_redis_publish_duration_seconds", &[]);
    while requests.recv_many(&mut round, BATCH).await > 0 {
        let Some(node) = shared.upgrade() else { return };
        // A sender that gave up was told its publish failed: do not publish it late.
        round.retain(|request: &Request| request.reply.as_ref().is_none_or(|r| !r.is_closed()));
        let origin = node.local.node_id();
        let mut batch = Batch::new();
        for request in &round {
            let position = counters.next(&request.channel);
            let message = wire::encode(
                origin,
                position,
                wire::micros(request.at),
                &request.route,
                &request.payload,
            );
            batch.add(
                &request.channel,
                node.shards.publish_cmd(&request.channel, &message),
            );
        }
        let started = Instant::now();
        let results = tokio::time::timeout(deadline, batch.run_each(&node.shards)).await;
        duration.record(started.elapsed().as_secs_f64());
        match results {
            Ok(results) => {
                published.add(round.len() as u64);
                for (request, result) in round.drain(..).zip(results) {
                    let receivers = result.and_then(|v| Ok(redis::from_redis_value(v)?));
                    match (request.reply, receivers) {
                        (Some(reply), receivers) => {
                            let _ = reply.send(receivers);
                        }
                        (None, Ok(_)) => {}
                        (None, Err(err)) => unanswered(&node, &request.route, &err),
                    }
                }
            }
            Err(_) => {
                timed_out.add(round.len() as u64);
                // Each sender has its own deadline and says so; nobody waits on the others.
                let err = format_args!("Redis did not confirm the publish within {deadline:?}");
                for request in round.drain(..).filter(|r| r.reply.is_none()) {
                    unanswered(&node, &request.route, &err);
                }
            }
        }
        drop(node);
    }
}

/// Counts a message nobody waited on that did not reach Redis: an `Asked` or `Answers` of
/// an acknowledged broadcast, whose sessions the asking node then does not hear of.
pub(crate) fn unanswered(node: &Node, route: &Route, err: &dyn std::fmt::Display) {
    let sessions = match route {
        Route::Asked { sessions, .. } => sessions.len(),
        Route::Answers { answers, .. } => answers.len(),
        _ => return,
    };
    let why = format_args!("relaying an acknowledged broadcast's answers failed: {err}");
    node.reports.acks_unserved(sessions as u64, &why);
}
