//! The receiving end: a message another node published reaches this node's sessions, after
//! checks that keep a bad publisher (any client that can write to Redis) from reaching them:
//! the size, the wire format and, when set, the route's message type.

use bytes::Bytes;

use super::wire::{self, Route};
use super::Node;
use crate::message::PayloadRef;
use crate::DecodeError;

/// How relayed payloads are checked against the route's `Down` type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PayloadCheck {
    /// `Down`'s name, for logs.
    pub(crate) type_name: &'static str,
    /// Decodes a payload as `Down` and drops the value.
    pub(crate) check: fn(PayloadRef<'_>) -> Result<(), DecodeError>,
}

/// Delivers one relayed message to this node's sessions, or drops and counts it.
pub(crate) fn relay(node: &Node, message: Bytes) {
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
        // Our own broadcast: delivered locally when it was sent.
        return;
    }
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
    match relay.route {
        Route::Broadcast(target) => {
            let delivery = node.local.deliver(&relay.payload, &target);
            tracing::trace!(?delivery, "relayed a broadcast");
        }
        Route::Session(id) => {
            if let Err(err) = node.local.deliver_to(id, relay.payload) {
                node.reports.relay_failed(&err);
            }
        }
    }
}
