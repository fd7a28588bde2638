//! [`CrimsonConfig`]: everything a Crimson route needs besides its handler, and the limits
//! that keep one client from costing the others.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crimson_core::cluster::Cluster;
use crimson_core::session::{OverflowPolicy, SessionInfo};
use crimson_core::transport::Deflate;

use crate::error::{ConfigError, SessionError};

/// What a route does with a message that does not decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecodeErrorPolicy {
    /// Close the session with 1007 and a reason that names the failure (the default).
    #[default]
    Close,
    /// Skip the message and go on. The error still reaches the error hook and a tracing
    /// `warn` event, and the session counts it: skipping is never silent.
    Skip,
}

/// A rate with a burst: at most `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub(crate) per_second: f64,
    pub(crate) burst: f64,
}

impl Rate {
    /// `per_second` on average (more than 0), bursts of up to `burst` (at least 1).
    pub fn new(per_second: f64, burst: f64) -> Result<Self, ConfigError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(ConfigError::new(format!(
                "a rate must be a positive number per second, not {per_second}"
            )));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(ConfigError::new(format!(
                "a burst must be at least 1, not {burst}"
            )));
        }
        Ok(Self { per_second, burst })
    }

    /// The average allowed per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The most allowed at once.
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

type ConnectHook = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
type CloseHook = Arc<dyn Fn(&SessionInfo, &crate::CloseRecord) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&SessionInfo, &SessionError) + Send + Sync>;

/// The settings of a config that do not depend on its message types; shared by every session
/// of the config.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) heartbeat: Option<(Duration, Duration)>,
    pub(crate) max_message_size: usize,
    pub(crate) max_write_buffer: usize,
    pub(crate) outgoing_queue: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) incoming_queue: usize,
    pub(crate) decode_errors: DecodeErrorPolicy,
    pub(crate) allowed_origins: Option<Arc<[String]>>,
    pub(crate) close_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) inbound_messages: Option<Rate>,
    pub(crate) inbound_bytes: Option<Rate>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_address: Option<usize>,
    pub(crate) max_unfinished_bytes: usize,
    pub(crate) compression: Deflate,
    /// Whether clients may ask for the Crimson protocol (`crimson.v1.*`).
    pub(crate) protocol: bool,
    pub(crate) history: Option<crimson_core::cluster::History>,
    /// Requests a session may have sent and not had answered, at once.
    pub(crate) max_open_requests: usize,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_error: Option<ErrorHook>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("heartbeat", &self.heartbeat)
            .field("max_message_size", &self.max_message_size)
            .field("max_write_buffer", &self.max_write_buffer)
            .field("outgoing_queue", &self.outgoing_queue)
            .field("overflow", &self.overflow)
            .field("incoming_queue", &self.incoming_queue)
            .field("decode_errors", &self.decode_errors)
            .field("allowed_origins", &self.allowed_origins)
            .field("close_timeout", &self.close_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("inbound_messages", &self.inbound_messages)
            .field("inbound_bytes", &self.inbound_bytes)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("max_unfinished_bytes", &self.max_unfinished_bytes)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub(crate) fn report(&self, info: &SessionInfo, error: &SessionError) {
        if let Some(hook) = &self.on_error {
            hook(info, error);
        }
    }
}

/// A named config for Crimson routes whose clients send `Up` and receive `Down`.
///
/// Register it on a [`CrimsonLayer`](crate::CrimsonLayer) under a [`ConfigName`](crate::ConfigName);
/// routes mounted with `.crimson(path, name, handler)` use it. Every setting has a default safe
/// for the internet and tuned for many mostly idle connections; every limit says what happens
/// past it (the README has them in one table):
///
/// | setting | default | past it |
/// |---|---|---|
/// | [`heartbeat`](Self::heartbeat) | ping every 30 s, 15 s for an answer | the connection is dropped (1006) |
/// | [`max_message_size`](Self::max_message_size) | 64 KiB | close 1009 |
/// | [`max_unfinished_bytes`](Self::max_unfinished_bytes) | 64 MiB across the config's sessions | close 1013 |
/// | [`inbound_rate`](Self::inbound_rate) | 1000 messages/s, bursts of 100 | the session stops reading until the rate allows (TCP slows the client) |
/// | [`inbound_bandwidth`](Self::inbound_bandwidth) | 4 MiB/s, bursts of 4 MiB | the same |
/// | [`incoming_queue`](Self::incoming_queue) | 32 decoded messages | the session stops reading until the handler catches up |
/// | [`outgoing_queue`](Self::outgoing_queue) | 256 messages, [`OverflowPolicy::Disconnect`] | close 1008 "slow consumer" (or drop the oldest) |
/// | [`max_write_buffer`](Self::max_write_buffer) | 64 KiB of frames waiting for the socket | messages wait in the outgoing queue |
/// | [`write_timeout`](Self::write_timeout) | 30 s without write progress | the connection is dropped (1006) |
/// | [`close_timeout`](Self::close_timeout) | 5 s for the close handshake | the connection is dropped |
/// | [`idle_timeout`](Self::idle_timeout) | none: subscribers may never send | close 1008 |
/// | [`max_connections`](Self::max_connections) | none (the cluster's limit applies) | close 1013 |
/// | [`max_connections_per_address`](Self::max_connections_per_address) | none | HTTP 429 before the upgrade |
/// | [`compression`](Self::compression) | off | — |
/// | [`history`](Self::history) | off | the oldest publication is forgotten; a client that missed it is told `history_too_short` |
/// | [`decode_errors`](Self::decode_errors) | [`DecodeErrorPolicy::Close`] | close 1007 |
/// | [`allowed_origins`](Self::allowed_origins) | any | HTTP 403 before the upgrade |
///
/// ```
/// use std::time::Duration;
/// use crimson_axum::{CrimsonConfig, DecodeErrorPolicy};
///
/// let config = CrimsonConfig::<String, String>::new()
///     .heartbeat(Duration::from_secs(10), Duration::from_secs(5))
///     .max_message_size(16 * 1024)
///     .decode_errors(DecodeErrorPolicy::Skip)
///     .allowed_origins(["https://chat.example"])
///     .on_close(|session, record| println!("{} closed: {} {}", session.id, record.code, record.reason));
/// ```
pub struct CrimsonConfig<Up, Down> {
    pub(crate) settings: Settings,
    pub(crate) cluster: Cluster<Down>,
    _up: std::marker::PhantomData<fn() -> Up>,
}

impl<Up, Down> Clone for CrimsonConfig<Up, Down> {
    fn clone(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            cluster: self.cluster.clone(),
            _up: std::marker::PhantomData,
        }
    }
}

impl<Up, Down> fmt::Debug for CrimsonConfig<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrimsonConfig")
            .field("up", &std::any::type_name::<Up>())
            .field("down", &std::any::type_name::<Down>())
            .field("settings", &self.settings)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl<Up, Down> Default for CrimsonConfig<Up, Down> {
    fn default() -> Self {
        Self::new()
    }
}

// No bounds on the message types here: a type that is not a `CrimsonMessage` is reported where
// the config is registered or mounted, with a message that says what to do.
impl<Up, Down> CrimsonConfig<Up, Down> {
    /// A config with the defaults in the table above and a fresh
    /// [`LocalCluster`](crimson_core::cluster::LocalCluster).
    pub fn new() -> Self {
        Self {
            settings: Settings {
                heartbeat: Some((Duration::from_secs(30), Duration::from_secs(15))),
                max_message_size: 64 << 10,
                max_write_buffer: 64 << 10,
                outgoing_queue: 256,
                overflow: OverflowPolicy::Disconnect,
                incoming_queue: 32,
                decode_errors: DecodeErrorPolicy::Close,
                allowed_origins: None,
                close_timeout: Duration::from_secs(5),
                write_timeout: Duration::from_secs(30),
                idle_timeout: None,
                // A burst well under the outgoing queue's 256: a sender's burst, fanned out
                // at once, must not fill the queues of the sessions that share its room.
                inbound_messages: Some(Rate {
                    per_second: 1000.0,
                    burst: 100.0,
                }),
                inbound_bytes: Some(Rate {
                    per_second: f64::from(4u32 << 20),
                    burst: f64::from(4u32 << 20),
                }),
                max_connections: None,
                max_connections_per_address: None,
                max_unfinished_bytes: 64 << 20,
                compression: Deflate::disabled(),
                protocol: false,
                history: None,
                max_open_requests: 256,
                on_connect: None,
                on_close: None,
                on_error: None,
            },
            cluster: Cluster::local(),
            _up: std::marker::PhantomData,
        }
    }
}

impl<Up, Down> CrimsonConfig<Up, Down> {
    /// Ping each client every `interval`; a client that sends nothing (no pong, no message)
    /// within `timeout` of a ping is dropped as dead (1006). The same words as the client's
    /// `heartbeat`.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.settings.heartbeat = Some((interval, timeout));
        self
    }

    /// Sends no pings (and so notices no dead peers).
    #[must_use]
    pub fn without_heartbeat(mut self) -> Self {
        self.settings.heartbeat = None;
        self
    }

    /// The largest message a client may send, in bytes, however it is split into frames (and,
    /// compressed, once inflated); past it the session closes with 1009 naming this limit.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// The most bytes that unfinished messages (split over frames, or still arriving) may
    /// hold across all sessions of this config; a message that would go past it closes its
    /// session with 1013 "server busy".
    #[must_use]
    pub fn max_unfinished_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_unfinished_bytes = bytes;
        self
    }

    /// How many frame bytes may wait for the socket before the session stops moving
    /// messages from its outgoing queue (which then fills, and its overflow policy applies).
    #[must_use]
    pub fn max_write_buffer(mut self, bytes: usize) -> Self {
        self.settings.max_write_buffer = bytes;
        self
    }

    /// The bound of each session's outgoing queue and what a full queue does. A recovery
    /// after a reconnect ([`history`](Self::history)) is queued whole past it and is not
    /// counted against it, nor dropped by [`OverflowPolicy::DropOldest`]. A publication
    /// that policy drops for a client of the protocol is told to it (`lost … reason=dropped`,
    /// `docs/protocol.md`), so that it is never a silent gap.
    #[must_use]
    pub fn outgoing_queue(mut self, messages: usize, overflow: OverflowPolicy) -> Self {
        self.settings.outgoing_queue = messages;
        self.settings.overflow = overflow;
        self
    }

    /// How many decoded messages may wait for the handler before the session stops reading
    /// from the socket (TCP then slows the client down).
    #[must_use]
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.settings.incoming_queue = messages;
        self
    }

    /// At most this many messages from one client: a sender past it is slowed down (its
    /// session stops reading until the rate allows; TCP then pushes back on it), never cut,
    /// and never delays other sessions. `None` for no limit.
    #[must_use]
    pub fn inbound_rate(mut self, rate: Option<Rate>) -> Self {
        self.settings.inbound_messages = rate;
        self
    }

    /// At most this many bytes from one client, per second with a burst, applied like
    /// [`inbound_rate`](Self::inbound_rate). `None` for no limit.
    #[must_use]
    pub fn inbound_bandwidth(mut self, rate: Option<Rate>) -> Self {
        self.settings.inbound_bytes = rate;
        self
    }

    /// Close a session whose client has sent no message this long after connecting, with
    /// 1008. Off by default: clients that only listen (dashboards, notifications) never send.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// At most this many live sessions of this config on this node; one more is closed with
    /// 1013 "connection limit reached" right after the upgrade.
    #[must_use]
    pub fn max_connections(mut self, limit: Option<usize>) -> Self {
        self.settings.max_connections = limit;
        self
    }

    /// At most this many live sessions of this config from one IP address (known when the
    /// server runs with `ConnectInfo<SocketAddr>`, as [`serve`](crate::serve) does); one more
    /// is refused with HTTP 429 before the upgrade.
    #[must_use]
    pub fn max_connections_per_address(mut self, limit: Option<usize>) -> Self {
        self.settings.max_connections_per_address = limit;
        self
    }

    /// permessage-deflate (RFC 7692): off by default. With [`Deflate::new`] a client that
    /// offers it (every browser does) gets compressed messages over
    /// [`min_size`](Deflate::min_size); without context takeover (the default) each broadcast
    /// is compressed once for all its recipients.
    #[must_use]
    pub fn compression(mut self, deflate: Deflate) -> Self {
        self.settings.compression = deflate;
        self
    }

    /// Lets clients ask for the Crimson protocol, `crimson.v1` (`docs/protocol.md`): typed
    /// requests and their answers both ways ([`CrimsonSession::recv_incoming`],
    /// [`CrimsonSession::request`]). Off by default: clients get plain frames whatever they
    /// ask for, and asking only for `crimson.v1.*` is refused with 400.
    ///
    /// [`CrimsonSession::recv_incoming`]: crate::CrimsonSession::recv_incoming
    /// [`CrimsonSession::request`]: crate::CrimsonSession::request
    #[must_use]
    pub fn protocol(mut self, on: bool) -> Self {
        self.settings.protocol = on;
        self
    }

    /// How many requests a session may have sent to its client and not had answered, at once
    /// (default 256); past it [`request`](crate::CrimsonSession::request) fails at once with
    /// [`RequestError::TooManyOpen`](crate::RequestError::TooManyOpen).
    #[must_use]
    pub fn max_open_requests(mut self, requests: usize) -> Self {
        self.settings.max_open_requests = requests;
        self
    }

    /// What a message that does not decode does.
    #[must_use]
    pub fn decode_errors(mut self, policy: DecodeErrorPolicy) -> Self {
        self.settings.decode_errors = policy;
        self
    }

    /// Only these `Origin`s may connect (compared without case); others get 403 before the
    /// upgrade. Browsers always send `Origin`; other clients may not, and are refused too.
    #[must_use]
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// How long the close handshake may take, and how long a handler may keep running after
    /// its connection is gone, before they are cut short.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.settings.close_timeout = timeout;
        self
    }

    /// How long a write may make no progress on a client that has stopped reading before the
    /// connection is dropped (1006, [`SessionError::WriteStalled`]).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// The cluster this config's sessions join: its connection limit (1013 past it), session
    /// lifetime (1008 past it), rooms, and whether it spans several nodes (Redis). Keep a
    /// clone to reach the sessions from elsewhere (an HTTP route, a timer).
    #[must_use]
    pub fn cluster(mut self, cluster: Cluster<Down>) -> Self {
        self.cluster = cluster;
        if let Some(history) = self.settings.history {
            // A conflict is reported by `validate`.
            let _ = self.cluster.backend().set_history(history);
        }
        self
    }

    /// Keep the last `size` publications of each stream, none older than `ttl`, so that
    /// clients of the Crimson protocol ([`protocol`](Self::protocol), which this needs) that
    /// reconnect get what was broadcast meanwhile, exactly once and in order, or are told
    /// plainly that they cannot (`docs/protocol.md`, "Streams and recovery"). Every broadcast
    /// is a publication: to all in the stream `all`, to a room in `room:<name>`. Off by
    /// default; it turns history on in this config's cluster (see
    /// [`History`](crimson_core::cluster::History) for more settings, and
    /// [`LocalClusterBuilder::history`](crimson_core::cluster::LocalClusterBuilder::history)).
    #[must_use]
    pub fn history(self, size: usize, ttl: Duration) -> Self {
        self.with_history(crimson_core::cluster::History::new(size, ttl))
    }

    /// [`history`](Self::history) with every setting of [`History`](crimson_core::cluster::History).
    #[must_use]
    pub fn with_history(mut self, history: crimson_core::cluster::History) -> Self {
        self.settings.history = Some(history);
        // A conflict is reported by `validate`.
        let _ = self.cluster.backend().set_history(history);
        self
    }

    /// Called when a session has connected, before its handler runs, and before the client
    /// sees the upgrade complete (the session is already in its cluster).
    #[must_use]
    pub fn on_connect(mut self, hook: impl Fn(&SessionInfo) + Send + Sync + 'static) -> Self {
        self.settings.on_connect = Some(Arc::new(hook));
        self
    }

    /// Called once when a session has ended and its handler is done, with how it ended (the
    /// same record as [`CrimsonSession::close_record`](crate::CrimsonSession::close_record)).
    #[must_use]
    pub fn on_close(
        mut self,
        hook: impl Fn(&SessionInfo, &crate::CloseRecord) + Send + Sync + 'static,
    ) -> Self {
        self.settings.on_close = Some(Arc::new(hook));
        self
    }

    /// Called for every error a session meets: undecodable or oversized messages, protocol
    /// and I/O errors, a handler panic.
    #[must_use]
    pub fn on_error(
        mut self,
        hook: impl Fn(&SessionInfo, &SessionError) + Send + Sync + 'static,
    ) -> Self {
        self.settings.on_error = Some(Arc::new(hook));
        self
    }

    /// The cluster this config's sessions join.
    pub fn session_cluster(&self) -> &Cluster<Down> {
        &self.cluster
    }

    /// Checks that the settings can work together; [`CrimsonLayer::config`] calls it and
    /// refuses (panics, at startup) a config that fails, with the same message.
    ///
    /// ```
    /// use std::time::Duration;
    /// use crimson_axum::CrimsonConfig;
    ///
    /// let config = CrimsonConfig::<String, String>::new().outgoing_queue(0, Default::default());
    /// assert_eq!(
    ///     config.validate().unwrap_err().to_string(),
    ///     "the outgoing queue must hold at least 1 message"
    /// );
    /// let config = CrimsonConfig::<String, String>::new().max_message_size(1 << 20).max_unfinished_bytes(1 << 10);
    /// assert!(config.validate().is_err());
    /// ```
    ///
    /// [`CrimsonLayer::config`]: crate::CrimsonLayer::config
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let fail = |message: String| Err(ConfigError::new(message));
        if let Some((interval, timeout)) = s.heartbeat {
            if interval.is_zero() || timeout.is_zero() {
                return fail(format!(
                    "the heartbeat interval and timeout must be longer than zero (got {interval:?} and {timeout:?}); use without_heartbeat() for none"
                ));
            }
        }
        for (count, what) in [
            (
                s.outgoing_queue,
                "the outgoing queue must hold at least 1 message",
            ),
            (
                s.incoming_queue,
                "the incoming queue must hold at least 1 message",
            ),
            (
                s.max_message_size,
                "the maximum message size must be at least 1 byte",
            ),
            (
                s.max_write_buffer,
                "the write buffer must hold at least 1 byte",
            ),
            (s.max_open_requests, "max_open_requests must be at least 1"),
        ] {
            if count == 0 {
                return fail(what.to_owned());
            }
        }
        if s.max_unfinished_bytes < s.max_message_size {
            return fail(format!(
                "max_unfinished_bytes ({}) is less than max_message_size ({}): a message of the allowed size could never arrive",
                s.max_unfinished_bytes, s.max_message_size
            ));
        }
        for (duration, what) in [
            (s.close_timeout, "close timeout"),
            (s.write_timeout, "write timeout"),
            (s.idle_timeout.unwrap_or(Duration::MAX), "idle timeout"),
        ] {
            if duration.is_zero() {
                return fail(format!("the {what} must be longer than zero"));
            }
        }
        for (limit, what) in [
            (s.max_connections, "max_connections"),
            (s.max_connections_per_address, "max_connections_per_address"),
        ] {
            if limit == Some(0) {
                return fail(format!(
                    "{what} is 0: no session could connect (use None for no limit)"
                ));
            }
        }
        if s.allowed_origins.as_ref().is_some_and(|o| o.is_empty()) {
            return fail("allowed_origins is empty: every browser would be refused".to_owned());
        }
        if let Some(history) = s.history {
            if !s.protocol {
                return fail(
                    "history is on but the Crimson protocol is off: only its clients can resume; add .protocol(true)"
                        .to_owned(),
                );
            }
            let has = self.cluster.node().history();
            if has != Some(history) {
                return fail(format!(
                    "the config asks for {history:?} but its cluster already keeps {has:?}: set history in one place"
                ));
            }
        }
        Ok(())
    }
}
