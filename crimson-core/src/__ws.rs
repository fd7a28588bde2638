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

/// When a connection last heard from its peer, for heartbeats: milliseconds since it started,
/// and whether the reader is held back (by a handler that is not reading), when the peer's
/// silence says nothing.
#[derive(Debug)]
pub struct Liveness {
    start: tokio::time::Instant,
    last_seen_ms: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// Starts the clock now.
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_seen_ms: Default::default(),
            held: Default::default(),
        }
    }

    /// A frame arrived now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_seen_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a frame arrived at or after `at`.
    pub fn seen_since(&self, at: tokio::time::Instant) -> bool {
        let at_ms = at.saturating_duration_since(self.start).as_millis() as u64;
        self.last_seen_ms.load(std::sync::atomic::Ordering::Relaxed) >= at_ms
    }

    /// Marks the reader as held back, or free again.
    pub fn set_held(&self, held: bool) {
        self.held.store(held, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the reader is held back.
    pub fn held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}
