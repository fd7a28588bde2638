//! What reaches a node from Redis with history (publications on its subscription, entries
//! read back), checked like any relayed message before it reaches a sequencer.

use bytes::Bytes;

use super::envelope::{self, is_enveloped};
use super::sequencer::Arrival;
use super::{of, Item};
use crate::cluster::redis::wire::{self, Route};
use crate::cluster::redis::Node;
use crate::cluster::streams::stream_of;
use crate::cluster::Target;
use crate::message::Payload;

/// A publication with history arrived on `channel`: delivered in order, held, or dropped
/// and counted if it is not what it should be.
pub(crate) fn arrived(node: &std::sync::Arc<Node>, channel: &[u8], message: Bytes) {
    if message.len() > node.max_payload + wire::MAX_HEADER + envelope::MAX_ENVELOPE {
        node.reports.oversized(
            message.len().saturating_sub(wire::MIN_HEADER),
            node.max_payload,
        );
        return;
    }
    let opened = match envelope::open(message) {
        Ok(opened) if !is_enveloped(&opened.message) => opened,
        Ok(_) => {
            node.reports
                .malformed(&"a history envelope in a history envelope");
            return;
        }
        Err(err) => {
            node.reports.malformed(&err);
            return;
        }
    };
    let Some(history) = of(node) else {
        // History is on where it was published, not here: delivered as any relayed
        // message, without its position.
        crate::cluster::redis::relay::relay(node, channel, opened.message);
        return;
    };
    let Some(admitted) = admit(node, opened.message, Some(channel), None) else {
        return;
    };
    let stream = admitted.stream.clone();
    let arrival = Arrival {
        epoch: opened.epoch,
        offset: opened.offset,
        bytes: admitted.payload.len(),
        item: admitted.item(node),
    };
    history.arrive(node, &stream, arrival);
}

/// A publication read from Redis, checked.
pub(super) struct Admitted {
    pub(super) stream: String,
    pub(super) target: Target,
    pub(super) payload: Payload,
    pub(super) origin: u64,
}

impl Admitted {
    pub(super) fn item(self, node: &Node) -> Item {
        Item {
            own: self.origin == node.local.node_id(),
            target: self.target,
            payload: self.payload,
        }
    }
}

/// Checks a publication from Redis as any relayed message is (format, size, the route's
/// type) and that it belongs where it was found (`channel`, or the stream `expected`); the
/// publication, or `None` (counted and logged, rate-limited).
pub(super) fn admit(
    node: &Node,
    message: Bytes,
    channel: Option<&[u8]>,
    expected: Option<&str>,
) -> Option<Admitted> {
    let relay = match wire::decode(message) {
        Ok(relay) => relay,
        Err(err) => {
            node.reports.malformed(&err);
            return None;
        }
    };
    if relay.payload.len() > node.max_payload {
        node.reports
            .oversized(relay.payload.len(), node.max_payload);
        return None;
    }
    let Route::Broadcast(target) = relay.route else {
        node.reports
            .malformed(&"a publication with history that is not a broadcast");
        return None;
    };
    if let Target::Room(room) | Target::RoomExcept(room, _) = &target {
        if crate::cluster::check_room(room).is_err() {
            node.reports
                .malformed(&"a publication with history to a room with a bad name");
            return None;
        }
    }
    let stream = stream_of(&target);
    let misplaced = channel.is_some_and(|c| c != node.names.stream_channel(&stream).as_bytes())
        || expected.is_some_and(|e| e != stream);
    if misplaced {
        node.reports
            .malformed(&"a publication with history outside its stream");
        return None;
    }
    if let Some(check) = &node.check {
        if let Err(err) = (check.check)(relay.payload.as_ref()) {
            node.reports
                .undecodable(&format_args!("{}: {err}", check.type_name));
            return None;
        }
    }
    if channel.is_some() {
        if let Some(sent_at) = relay.sent_at {
            let lag = wire::micros(std::time::SystemTime::now()).saturating_sub(sent_at);
            node.lag.record(lag as f64 / 1e6);
        }
    }
    Some(Admitted {
        stream,
        target,
        payload: relay.payload,
        origin: relay.origin,
    })
}
