//! The receiving end: a message another node published reaches this node's sessions, after
//! checks that keep a bad publisher (any client that can write to Redis) from reaching them:
//! the size, the wire format and, when set, the route's message type. Gaps in each origin's
//! sequence numbers are counted as lost messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};

use super::answer;
use super::shards::PushHandler;
use super::wire::{self, Position, Route};
use super::Node;
use crate::message::PayloadRef;
use crate::DecodeError;

/// How many (origin, channel) sequences a node follows before it forgets them all (and
/// starts over without counting gaps for one message each).
const MAX_SEQUENCES: usize = 65_536;

/// How relayed payloads are checked against the route's `Down` type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PayloadCheck {
    /// `Down`'s name, for logs.
    pub(crate) type_name: &'static str,
    /// Decodes a payload as `Down` and drops the value.
    pub(crate) check: fn(PayloadRef<'_>) -> Result<(), DecodeError>,
}

/// The last position seen of every origin on every channel this node listens to.
#[derive(Debug, Default)]
pub(crate) struct Sequences {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_origin: HashMap<u64, HashMap<Vec<u8>, Position>>,
    len: usize,
}

impl Sequences {
    /// Records `position` of `origin` on `channel`; how many messages before it never came.
    pub(crate) fn observe(&self, origin: u64, channel: &[u8], position: Position) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len >= MAX_SEQUENCES {
            *seen = Seen::default();
        }
        let channels = seen.by_origin.entry(origin).or_default();
        let previous = match channels.get_mut(channel) {
            Some(last) => std::mem::replace(last, position),
            None => {
                channels.insert(channel.to_vec(), position);
                seen.len += 1;
                return 0;
            }
        };
        if previous.stream != position.stream {
            // The origin started counting again: nothing to compare with.
            return 0;
        }
        position.seq.saturating_sub(previous.seq + 1)
    }

    /// Forgets `channel` (unsubscribed: what is published there meanwhile is not missed).
    pub(crate) fn forget(&self, channel: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for channels in seen.by_origin.values_mut() {
            removed += usize::from(channels.remove(channel.as_bytes()).is_some());
        }
        seen.by_origin.retain(|_, channels| !channels.is_empty());
        seen.len -= removed;
    }
}

/// What the shards' connections push: messages are relayed, a lost connection is reported.
pub(crate) fn push_handler(node: Weak<Node>) -> PushHandler {
    Arc::new(move |addr: &str, conn: u64, info: PushInfo| {
        let Some(node) = node.upgrade() else { return };
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = info.data.into_iter();
                match (data.next(), data.next()) {
                    (Some(Value::BulkString(channel)), Some(Value::BulkString(message))) => {
                        relay(&node, &channel, Bytes::from(message));
                    }
                    _ => node
                        .reports
                        .malformed(&"a pub/sub message without channel and payload"),
                }
            }
            PushKind::Disconnection => node.shards.lost(addr, conn),
            _ => {}
        }
    })
}

/// Delivers one relayed message to this node's sessions, or drops and counts it.
pub(crate) fn relay(node: &Arc<Node>, channel: &[u8], message: Bytes) {
    if super::history::is_enveloped(&message) {
        // A publication of a stream with history, at its position.
        super::history::arrived(node, channel, message);
        return;
    }
    // Before decoding anything (a text payload would be checked for UTF-8 in full).
    if message.len() > node.max_payload + wire::MAX_HEADER {
        node.reports.oversized(
            message.len().saturating_sub(wire::MIN_HEADER),
            node.max_payload,
        );
        return;
    }
    let relay = match wire::decode(message) {
        Ok(relay) => relay,
        Err(err) => {
            node.reports.malformed(&err);
            return;
        }
    };
    if relay.origin == node.local.node_id() {
        // Our own broadcast: delivered locally when it was sent. Our own ask: this node is
        // one of its receivers (and asks its own sessions itself).
        if let Route::Ask { ask, .. } = relay.route {
            node.acks.heard_self(ask);
        }
        return;
    }
    if let Some(sent_at) = relay.sent_at {
        // Clocks of two machines may disagree: a relay "before" it was sent counts as 0.
        let lag = wire::micros(std::time::SystemTime::now()).saturating_sub(sent_at);
        node.lag.record(lag as f64 / 1e6);
    }
    let missed = node
        .sequences
        .observe(relay.origin, channel, relay.position);
    if missed > 0 {
        node.reports.lost(missed, relay.origin);
    }
    // Answers to this node's asks: of the request's response type, not the route's `Down`
    // (no payload check), and bounded by the message's size, checked above.
    let route = match relay.route {
        Route::Asked {
            ask,
            unasked,
            sessions,
        } => {
            return node
                .acks
                .asked(&node.reports, relay.origin, ask, unasked, sessions)
        }
        Route::Answers { ask, answers } => {
            return node.acks.answers(&node.reports, relay.origin, ask, answers)
        }
        route => route,
    };
    if relay.payload.len() > node.max_payload {
        node.reports
            .oversized(relay.payload.len(), node.max_payload);
        return;
    }
    if let Some(check) = &node.check {
        if let Err(err) = (check.check)(relay.payload.as_ref()) {
            node.reports
                .undecodable(&format_args!("{}: {err}", check.type_name));
            return;
        }
    }
    match route {
        Route::Broadcast(target) => {
            let delivery = node.local.deliver(&relay.payload, &target);
            tracing::trace!(?delivery, "relayed a broadcast");
        }
        Route::Session(id) => {
            if let Err(err) = node.local.deliver_to(id, relay.payload) {
                node.reports.relay_failed(&err);
            }
        }
        Route::Ask {
            ask,
            timeout_ms,
            target,
        } => answer::serve(node, relay.origin, ask, timeout_ms, &target, &relay.payload),
        Route::Asked { .. } | Route::Answers { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_counted_per_origin_and_channel() {
        let seqs = Sequences::default();
        let at = |stream, seq| Position { stream, seq };
        assert_eq!(
            seqs.observe(1, b"a", at(7, 5)),
            0,
            "the first one sets the start"
        );
        assert_eq!(seqs.observe(1, b"a", at(7, 6)), 0);
        assert_eq!(seqs.observe(1, b"a", at(7, 9)), 2);
        assert_eq!(seqs.observe(1, b"b", at(7, 1)), 0, "another channel");
        assert_eq!(seqs.observe(2, b"a", at(7, 100)), 0, "another origin");
        assert_eq!(seqs.observe(1, b"a", at(8, 1)), 0, "a new stream");
        assert_eq!(seqs.observe(1, b"a", at(8, 3)), 1);
        seqs.forget("a");
        assert_eq!(
            seqs.observe(1, b"a", at(8, 10)),
            0,
            "forgotten: starts over"
        );
        assert_eq!(seqs.seen.lock().unwrap().len, 2);
    }
}
