//! A config's metrics (feature `metrics`), resolved on its first request and shared by its
//! sessions: a session adds to these handles once per read or write batch, never resolving a
//! name or hashing a label on the way of a message.
//!
//! The names, types and labels are a stable interface, listed in the README's "Metrics"
//! section. Labels are bounded: the config's name, its codecs and frame kinds, a close code,
//! who closed, a reason from a fixed list; never a session id, an address or a room.

use crimson_core::metrics::{count, Counter, Gauge};
use crimson_core::{CloseRecord, ClosedBy, CrimsonMessage, FrameKind};

use crate::codecs::Spoken;

/// The handles of one config.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    config: String,
    pub(crate) accepted: Counter,
    pub(crate) open: Gauge,
    /// By codec: each type's default first, then each codec clients may choose
    /// ([`Chosen::index`](crate::codecs::Chosen::index)).
    pub(crate) traffic: Vec<Traffic>,
    pub(crate) dropped: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) queued: Gauge,
}

/// What one codec's sessions of a config send and receive.
#[derive(Debug)]
pub(crate) struct Traffic {
    pub(crate) messages_in: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) messages_out: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) decode_failures: Counter,
}

impl Traffic {
    fn new(config: &str, up: (&str, FrameKind), down: (&str, FrameKind)) -> Self {
        let up_labels = [
            ("config", config),
            ("codec", up.0),
            ("frame", up.1.as_str()),
        ];
        let down_labels = [
            ("config", config),
            ("codec", down.0),
            ("frame", down.1.as_str()),
        ];
        Self {
            messages_in: Counter::new("crimson_messages_received_total", &up_labels),
            bytes_in: Counter::new("crimson_bytes_received_total", &up_labels),
            messages_out: Counter::new("crimson_messages_sent_total", &down_labels),
            bytes_out: Counter::new("crimson_bytes_sent_total", &down_labels),
            decode_failures: Counter::new(
                "crimson_decode_failures_total",
                &[("config", config), ("codec", up.0)],
            ),
        }
    }
}

impl RouteMetrics {
    /// Resolves the handles of config `config`, whose clients send `Up` and receive `Down`,
    /// choosing among `spoken`.
    pub(crate) fn new<Up: CrimsonMessage, Down: CrimsonMessage>(
        config: &str,
        spoken: &Spoken,
    ) -> Self {
        let only = [("config", config)];
        let mut traffic = vec![Traffic::new(
            config,
            (Up::CODEC, Up::FRAME),
            (Down::CODEC, Down::FRAME),
        )];
        // One per codec a client may name, even on a route of one: `crimson.json` asked of a
        // JSON-only route is chosen by name too.
        for choice in spoken.choices() {
            let (up, down) = (&Up::CODECS[choice.up], &Down::CODECS[choice.down]);
            traffic.push(Traffic::new(
                config,
                (up.name, up.frame),
                (down.name, down.frame),
            ));
        }
        Self {
            config: config.to_owned(),
            accepted: Counter::new("crimson_connections_accepted_total", &only),
            open: Gauge::new("crimson_connections_open", &only),
            traffic,
            dropped: Counter::new("crimson_outgoing_dropped_total", &only),
            slow_consumers: Counter::new("crimson_slow_consumers_total", &only),
            queued: Gauge::new("crimson_outgoing_queued", &only),
        }
    }

    /// Counts a handshake refused for `reason` (one of [`Rejected`]).
    pub(crate) fn rejected(&self, reason: Rejected) {
        count(
            "crimson_handshakes_rejected_total",
            &[("config", &self.config), ("reason", reason.as_str())],
            1,
        );
    }

    /// Counts a session's close.
    pub(crate) fn closed(&self, record: &CloseRecord) {
        let code = record.code.as_u16().to_string();
        let side = match record.by {
            ClosedBy::Client => "client",
            ClosedBy::Server => "server",
            ClosedBy::Failure => "failure",
        };
        count(
            "crimson_sessions_closed_total",
            &[("config", &self.config), ("code", &code), ("side", side)],
            1,
        );
    }
}

/// Why a handshake was refused: the `reason` label of `crimson_handshakes_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not a valid WebSocket upgrade request (plain HTTP, wrong method or version, no key).
    Handshake,
    /// The `Origin` is not allowed.
    Origin,
    /// The address has as many sessions of the config as it may.
    PerAddress,
    /// The config (or its cluster) is full: upgraded, then closed with 1013.
    ConnectionLimit,
    /// The handler's extractors refused the request.
    Extractor,
    /// The client asked only for codecs (subprotocols) the route does not speak.
    Subprotocol,
}

impl Rejected {
    fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Origin => "origin",
            Self::PerAddress => "per_address_limit",
            Self::ConnectionLimit => "connection_limit",
            Self::Extractor => "extractor",
            Self::Subprotocol => "subprotocol",
        }
    }
}
