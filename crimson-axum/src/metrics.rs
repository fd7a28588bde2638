//! A config's metrics (feature `metrics`), resolved on its first request and shared by its
//! sessions: a session adds to these handles once per read or write batch, never resolving a
//! name or hashing a label on the way of a message.
//!
//! The names, types and labels are a stable interface, listed in the README's "Metrics"
//! section. Labels are bounded: the config's name, its codecs and frame kinds, a close code,
//! who closed, a reason from a fixed list; never a session id, an address or a room.

use crimson_core::metrics::{count, Counter, Gauge};
use crimson_core::{CloseRecord, ClosedBy, CrimsonMessage};

/// The handles of one config.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    config: String,
    pub(crate) accepted: Counter,
    pub(crate) open: Gauge,
    pub(crate) messages_in: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) messages_out: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) decode_failures: Counter,
    pub(crate) dropped: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) queued: Gauge,
}

impl RouteMetrics {
    /// Resolves the handles of config `config`, whose clients send `Up` and receive `Down`.
    pub(crate) fn new<Up: CrimsonMessage, Down: CrimsonMessage>(config: &str) -> Self {
        let only = [("config", config)];
        let up = [
            ("config", config),
            ("codec", Up::CODEC),
            ("frame", Up::FRAME.as_str()),
        ];
        let down = [
            ("config", config),
            ("codec", Down::CODEC),
            ("frame", Down::FRAME.as_str()),
        ];
        Self {
            config: config.to_owned(),
            accepted: Counter::new("crimson_connections_accepted_total", &only),
            open: Gauge::new("crimson_connections_open", &only),
            messages_in: Counter::new("crimson_messages_received_total", &up),
            bytes_in: Counter::new("crimson_bytes_received_total", &up),
            messages_out: Counter::new("crimson_messages_sent_total", &down),
            bytes_out: Counter::new("crimson_bytes_sent_total", &down),
            decode_failures: Counter::new(
                "crimson_decode_failures_total",
                &[("config", config), ("codec", Up::CODEC)],
            ),
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
}

impl Rejected {
    fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Origin => "origin",
            Self::PerAddress => "per_address_limit",
            Self::ConnectionLimit => "connection_limit",
            Self::Extractor => "extractor",
        }
    }
}
