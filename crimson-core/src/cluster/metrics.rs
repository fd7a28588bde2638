//! A cluster's broadcast metrics (feature `metrics`), resolved on its first broadcast: how
//! many sessions of this node each broadcast reached, how many it could not reach, and how
//! long queueing it for all of them took.

use std::time::Instant;

use super::{Delivery, Target};
use crate::metrics::{Counter, Histogram, ENABLED};

/// The metrics of one kind of target.
#[derive(Debug)]
struct Kind {
    recipients: Histogram,
    duration: Histogram,
    failed: Counter,
}

impl Kind {
    fn new(target: &'static str) -> Self {
        let labels = [("target", target)];
        Self {
            recipients: Histogram::new("crimson_broadcast_recipients", &labels),
            duration: Histogram::new("crimson_broadcast_duration_seconds", &labels),
            failed: Counter::new("crimson_broadcast_failed_total", &labels),
        }
    }
}

/// Broadcast metrics by target: `all` (every session, or all but one), `room`, `filter`
/// (`broadcast_local` with a closure).
#[derive(Debug)]
pub(crate) struct BroadcastMetrics {
    all: Kind,
    room: Kind,
    filter: Kind,
    /// `crimson_recoveries_total{outcome}`: resumes answered, by outcome (`recovered` or a
    /// `lost` reason).
    recoveries: Vec<(&'static str, Counter)>,
    /// `crimson_recovered_messages_total`: publications sent by recoveries.
    recovered: Counter,
}

/// Every outcome of a resume, as `crimson_recoveries_total` labels it.
const OUTCOMES: [&str; 7] = [
    "recovered",
    "history_too_short",
    "expired",
    "epoch_changed",
    "over_limit",
    "unknown_position",
    "unavailable",
];

impl BroadcastMetrics {
    pub(crate) fn new() -> Self {
        Self {
            all: Kind::new("all"),
            room: Kind::new("room"),
            filter: Kind::new("filter"),
            recoveries: OUTCOMES
                .iter()
                .map(|&outcome| {
                    (
                        outcome,
                        Counter::new("crimson_recoveries_total", &[("outcome", outcome)]),
                    )
                })
                .collect(),
            recovered: Counter::new("crimson_recovered_messages_total", &[]),
        }
    }

    /// Records a resume's answer: `recovered` with `messages`, or a `lost` reason.
    pub(crate) fn recovery(&self, outcome: &str, messages: usize) {
        if let Some((_, counter)) = self.recoveries.iter().find(|(o, _)| *o == outcome) {
            counter.add(1);
        }
        self.recovered.add(messages as u64);
    }

    fn kind(&self, target: Option<&Target>) -> &Kind {
        match target {
            Some(Target::All | Target::Except(_)) => &self.all,
            Some(Target::Room(_) | Target::RoomExcept(..)) => &self.room,
            None => &self.filter,
        }
    }

    /// Records one broadcast to `target` (`None`: a filter) that began at `started`.
    pub(crate) fn record(
        &self,
        target: Option<&Target>,
        started: Option<Instant>,
        delivery: &Delivery,
    ) {
        let kind = self.kind(target);
        kind.recipients.record(delivery.delivered as f64);
        kind.failed.add(delivery.failed as u64);
        if let Some(started) = started {
            kind.duration.record(started.elapsed().as_secs_f64());
        }
    }
}

/// The clock, read only when metrics can be recorded.
pub(crate) fn start() -> Option<Instant> {
    ENABLED.then(Instant::now)
}
