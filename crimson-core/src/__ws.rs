//! Conversions between Crimson payloads and the WebSocket protocol crate's messages, shared
//! by crimson-axum and crimson-client. Not public API.

pub use tungstenite;

use tungstenite::Message;

use crate::message::{Payload, PayloadRef, Text};

/// A payload as a message, copying no bytes.
pub fn into_message(payload: Payload) -> Message {
    match payload {
        Payload::Text(text) => Message::Text(text.into_inner()),
        Payload::Binary(bytes) => Message::Binary(bytes),
    }
}

/// A data message's payload; `None` for control frames.
pub fn as_payload(message: &Message) -> Option<PayloadRef<'_>> {
    match message {
        Message::Text(text) => Some(PayloadRef::Text(text.as_str())),
        Message::Binary(bytes) => Some(PayloadRef::Binary(bytes)),
        _ => None,
    }
}

/// A data message as an owned payload, copying no bytes; `None` for control frames.
pub fn into_payload(message: Message) -> Option<Payload> {
    match message {
        Message::Text(text) => Some(Payload::Text(Text::from_inner(text))),
        Message::Binary(bytes) => Some(Payload::Binary(bytes)),
        _ => None,
    }
}
