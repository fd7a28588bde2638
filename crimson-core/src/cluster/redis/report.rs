//! What a node counts, and how it logs trouble without a line per message: each kind of
//! event is counted always and logged at most once per [`LOG_EVERY`], with the number of
//! events since the previous line.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics;

/// The shortest time between two log lines about the same kind of event.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(5);

/// What a [`RedisCluster`](super::RedisCluster) node counted since it started.
///
/// Every event counted here is also logged, at most once per 5 s per kind, with the number
/// of events since the previous line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Cross-node publishes that failed, timed out or were refused (Redis unavailable, payload
    /// over `max_payload`). Each was also returned to its sender as an error.
    pub publish_failures: u64,
    /// Messages relayed to this node that did not reach their session: it had left, or its
    /// queue refused them.
    pub relay_failures: u64,
    /// Relayed messages dropped because their payload was over `max_payload`.
    pub oversized: u64,
    /// Relayed messages dropped because their payload did not decode as the route's type
    /// (see [`RedisClusterBuilder::check_payloads`](super::RedisClusterBuilder::check_payloads)).
    pub undecodable: u64,
    /// Messages on this node's channels that were not Crimson cluster messages.
    pub malformed: u64,
    /// Messages other nodes published for this node that never arrived: a gap in an
    /// origin's sequence numbers (Redis dropped them, this node's subscription was down, or
    /// the publish failed and its sender was told). Counted when the next message from that
    /// origin on that channel arrives.
    pub lost: u64,
    /// Sessions of this node that another node's acknowledged broadcast named but that were
    /// not asked, or whose answer did not reach that node: this node already served
    /// [`MAX_SERVING`](super::MAX_SERVING) of them, more sessions than one list carries
    /// (`max_payload / 16`), or a publish failed. The asking node hears why for each session
    /// not asked for being busy, and counts the others as unasked or timed out.
    pub acks_unserved: u64,
    /// Answers to this node's acknowledged broadcasts that were ignored: late (their stream
    /// had ended or was dropped), for a session its node did not list, or a second one for
    /// the same session; also lists of sessions asked that were ignored (a node's second
    /// list, or one from more nodes than got the request) and each session listed by a node
    /// that is not its own.
    pub acks_ignored: u64,
    /// Nodes that got one of this node's acknowledged broadcasts but never said which
    /// sessions they asked before its deadline (each also counted in that stream's
    /// [`AckStream::silent_nodes`](crate::cluster::AckStream::silent_nodes)).
    pub acks_silent_nodes: u64,
    /// Reads of a stream's history in Redis that failed (with history in Redis): where a
    /// stream stands, missed publications. Retried, or told to the sessions concerned.
    pub history_failures: u64,
    /// Gaps in a stream this node's sessions were told about with a `lost` frame (with
    /// history in Redis): publications they will not get (the history no longer had them,
    /// Redis lost it, or could not be read in time).
    pub stream_gaps: u64,
}

/// Counts one kind of event and says when to log it.
#[derive(Debug)]
pub(crate) struct Throttle {
    total: AtomicU64,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_line: Option<Instant>,
    since_line: u64,
    example: String,
}

/// A log line due: how many events since the previous line, and one of them.
pub(crate) struct Due {
    pub(crate) count: u64,
    pub(crate) detail: String,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Self {
            total: AtomicU64::new(0),
            state: Mutex::new(ThrottleState {
                last_line: None,
                since_line: 0,
                example: String::new(),
            }),
        }
    }

    /// Every event counted so far.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts one event; returns a line to log when the last one is old enough.
    pub(crate) fn hit(&self, detail: &dyn fmt::Display) -> Option<Due> {
        self.hit_n(1, detail)
    }

    /// Counts `n` events at once.
    pub(crate) fn hit_n(&self, n: u64, detail: &dyn fmt::Display) -> Option<Due> {
        self.total.fetch_add(n, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.since_line += n;
        let due = state.last_line.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            state.last_line = Some(Instant::now());
            let count = std::mem::take(&mut state.since_line);
            state.example.clear();
            return Some(Due {
                count,
                detail: detail.to_string(),
            });
        }
        // Keep one example for the line that will report these, without formatting a
        // message per event.
        if state.example.is_empty() {
            state.example = detail.to_string();
        }
        None
    }

    /// The events not yet logged, once the last line is old enough (called periodically so
    /// that the tail of a burst is reported too).
    pub(crate) fn flush(&self) -> Option<Due> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due =
            state.since_line > 0 && state.last_line.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if !due {
            return None;
        }
        state.last_line = Some(Instant::now());
        Some(Due {
            count: std::mem::take(&mut state.since_line),
            detail: std::mem::take(&mut state.example),
        })
    }
}

/// The node's counters, one throttle per kind of event.
#[derive(Debug)]
pub(crate) struct Reports {
    pub(crate) publish: Throttle,
    pub(crate) relay: Throttle,
    pub(crate) oversized: Throttle,
    pub(crate) undecodable: Throttle,
    pub(crate) malformed: Throttle,
    pub(crate) lost: Throttle,
    pub(crate) acks_unserved: Throttle,
    pub(crate) acks_ignored: Throttle,
    pub(crate) acks_silent: Throttle,
    pub(crate) history: Throttle,
    pub(crate) gaps: Throttle,
}

impl Reports {
    pub(crate) const fn new() -> Self {
        Self {
            publish: Throttle::new(),
            relay: Throttle::new(),
            oversized: Throttle::new(),
            undecodable: Throttle::new(),
            malformed: Throttle::new(),
            lost: Throttle::new(),
            acks_unserved: Throttle::new(),
            acks_ignored: Throttle::new(),
            acks_silent: Throttle::new(),
            history: Throttle::new(),
            gaps: Throttle::new(),
        }
    }

    pub(crate) fn stats(&self) -> RedisStats {
        RedisStats {
            publish_failures: self.publish.total(),
            relay_failures: self.relay.total(),
            oversized: self.oversized.total(),
            undecodable: self.undecodable.total(),
            malformed: self.malformed.total(),
            lost: self.lost.total(),
            acks_unserved: self.acks_unserved.total(),
            acks_ignored: self.acks_ignored.total(),
            acks_silent_nodes: self.acks_silent.total(),
            history_failures: self.history.total(),
            stream_gaps: self.gaps.total(),
        }
    }

    /// A cross-node publish failed (the sender got the error).
    pub(crate) fn publish_failed(&self, err: &dyn fmt::Display) {
        metrics::count("crimson_redis_publish_failures_total", &[], 1);
        if let Some(due) = self.publish.hit(err) {
            log_publish(&due);
        }
    }

    /// A relayed message did not reach its session.
    pub(crate) fn relay_failed(&self, err: &dyn fmt::Display) {
        dropped("not_delivered", 1);
        if let Some(due) = self.relay.hit(err) {
            log_relay(&due);
        }
    }

    /// A relayed payload was over `max_payload`.
    pub(crate) fn oversized(&self, len: usize, max: usize) {
        dropped("oversized", 1);
        let detail = format_args!("{len} bytes, max_payload {max}");
        if let Some(due) = self.oversized.hit(&detail) {
            log_oversized(&due);
        }
    }

    /// A relayed payload did not decode as the route's type.
    pub(crate) fn undecodable(&self, err: &dyn fmt::Display) {
        dropped("undecodable", 1);
        if let Some(due) = self.undecodable.hit(err) {
            log_undecodable(&due);
        }
    }

    /// A message on our channels was not a Crimson cluster message.
    pub(crate) fn malformed(&self, err: &dyn fmt::Display) {
        dropped("malformed", 1);
        if let Some(due) = self.malformed.hit(err) {
            log_malformed(&due);
        }
    }

    /// `count` messages from `origin` never arrived.
    pub(crate) fn lost(&self, count: u64, origin: u64) {
        dropped("lost", count);
        let detail = format_args!("{count} from node {origin:016x}");
        if let Some(due) = self.lost.hit_n(count, &detail) {
            log_lost(&due);
        }
    }

    /// `count` sessions of this node were not asked for another node's acknowledged
    /// broadcast, or their answers did not reach it.
    pub(crate) fn acks_unserved(&self, count: u64, why: &dyn fmt::Display) {
        metrics::count("crimson_redis_acks_unserved_total", &[], count);
        if let Some(due) = self.acks_unserved.hit_n(count, why) {
            log_acks_unserved(&due);
        }
    }

    /// `count` answers to this node's acknowledged broadcasts (or lists of sessions asked)
    /// were ignored.
    pub(crate) fn acks_ignored(&self, count: u64, why: &dyn fmt::Display) {
        metrics::count("crimson_redis_acks_ignored_total", &[], count);
        if let Some(due) = self.acks_ignored.hit_n(count, why) {
            log_acks_ignored(&due);
        }
    }

    /// `nodes` nodes never said which sessions they asked before an ask's deadline.
    pub(crate) fn acks_silent(&self, nodes: u64, detail: &dyn fmt::Display) {
        metrics::count("crimson_redis_acks_silent_nodes_total", &[], nodes);
        if let Some(due) = self.acks_silent.hit_n(nodes, detail) {
            log_acks_silent(&due);
        }
    }

    /// A read of a stream's history failed.
    pub(crate) fn history_failed(&self, err: &dyn fmt::Display) {
        metrics::count("crimson_redis_history_failures_total", &[], 1);
        if let Some(due) = self.history.hit(err) {
            log_history(&due);
        }
    }

    /// A stream's sessions were told of a gap (`lost`).
    pub(crate) fn gap(&self, detail: &dyn fmt::Display) {
        metrics::count("crimson_redis_stream_gaps_total", &[], 1);
        if let Some(due) = self.gaps.hit(detail) {
            log_gaps(&due);
        }
    }

    /// Logs the tails of bursts.
    pub(crate) fn flush(&self) {
        let logs: [(&Throttle, LogFn); 11] = [
            (&self.publish, log_publish),
            (&self.relay, log_relay),
            (&self.oversized, log_oversized),
            (&self.undecodable, log_undecodable),
            (&self.malformed, log_malformed),
            (&self.lost, log_lost),
            (&self.acks_unserved, log_acks_unserved),
            (&self.acks_ignored, log_acks_ignored),
            (&self.acks_silent, log_acks_silent),
            (&self.history, log_history),
            (&self.gaps, log_gaps),
        ];
        for (throttle, log) in logs {
            if let Some(due) = throttle.flush() {
                log(&due);
            }
        }
    }
}

/// Counts relayed messages this node did not deliver, by reason.
fn dropped(reason: &'static str, n: u64) {
    metrics::count(
        "crimson_redis_relay_dropped_total",
        &[("reason", reason)],
        n,
    );
}

/// Writes one report line.
type LogFn = fn(&Due);

fn log_publish(due: &Due) {
    tracing::error!(
        failures = due.count,
        example = %due.detail,
        "cross-node delivery failed {} time(s) since the last report (senders got ClusterError::Unavailable)",
        due.count
    );
}

fn log_relay(due: &Due) {
    tracing::warn!(
        failures = due.count,
        example = %due.detail,
        "{} message(s) relayed from other nodes did not reach their session since the last report",
        due.count
    );
}

fn log_oversized(due: &Due) {
    tracing::warn!(
        dropped = due.count,
        example = %due.detail,
        "dropped {} relayed message(s) over max_payload since the last report",
        due.count
    );
}

fn log_undecodable(due: &Due) {
    tracing::warn!(
        dropped = due.count,
        example = %due.detail,
        "dropped {} relayed message(s) that do not decode as this cluster's message type since the last report",
        due.count
    );
}

fn log_malformed(due: &Due) {
    tracing::warn!(
        dropped = due.count,
        example = %due.detail,
        "dropped {} message(s) on this app's Redis channels that are not Crimson cluster messages since the last report (another program publishing there?)",
        due.count
    );
}

fn log_lost(due: &Due) {
    tracing::error!(
        lost = due.count,
        example = %due.detail,
        "{} message(s) from other nodes never arrived since the last report (a gap in their \
         sequence numbers: Redis dropped them, this node's subscription was down, or their \
         publish failed)",
        due.count
    );
}

fn log_acks_unserved(due: &Due) {
    tracing::warn!(
        sessions = due.count,
        example = %due.detail,
        "{} session(s) of this node were not asked for other nodes' acknowledged broadcasts, \
         or their answers did not reach the asking node, since the last report",
        due.count
    );
}

fn log_acks_ignored(due: &Due) {
    tracing::debug!(
        ignored = due.count,
        example = %due.detail,
        "ignored {} answer(s) to this node's acknowledged broadcasts since the last report \
         (late: the stream had ended or was dropped; or not listed, or twice)",
        due.count
    );
}

fn log_acks_silent(due: &Due) {
    tracing::warn!(
        nodes = due.count,
        example = %due.detail,
        "{} node(s) got an acknowledged broadcast of this node but never said which sessions \
         they asked before its deadline, since the last report (an older version, overloaded, \
         or its messages were lost)",
        due.count
    );
}

fn log_history(due: &Due) {
    tracing::error!(
        failures = due.count,
        example = %due.detail,
        "{} read(s) of stream history in Redis failed since the last report",
        due.count
    );
}

fn log_gaps(due: &Due) {
    tracing::warn!(
        gaps = due.count,
        example = %due.detail,
        "{} gap(s) in streams were told to this node's sessions (lost) since the last report",
        due.count
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_line_then_one_line_with_the_count() {
        let throttle = Throttle::new();
        let first = throttle.hit(&"e1").expect("the first event is logged");
        assert_eq!((first.count, first.detail.as_str()), (1, "e1"));
        for n in 2..=100 {
            assert!(throttle.hit(&format_args!("e{n}")).is_none());
        }
        assert!(throttle.flush().is_none(), "not before LOG_EVERY");
        throttle.state.lock().unwrap().last_line = Some(Instant::now() - LOG_EVERY);
        let tail = throttle.flush().expect("the tail is logged");
        assert_eq!((tail.count, tail.detail.as_str()), (99, "e2"));
        assert_eq!(throttle.total(), 100);
        assert!(throttle.flush().is_none());
    }
}
