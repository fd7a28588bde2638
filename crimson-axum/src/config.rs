//! [`CrimsonConfig`]: everything a Crimson route needs besides its handler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crimson_core::cluster::Cluster;
use crimson_core::session::{OverflowPolicy, SessionInfo};
use crimson_core::{CloseCode, CrimsonMessage};

use crate::error::SessionError;

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

type ConnectHook = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
type CloseHook = Arc<dyn Fn(&SessionInfo, CloseCode, &str) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&SessionInfo, &SessionError) + Send + Sync>;

/// A named config for Crimson routes whose clients send `Up` and receive `Down`.
///
/// Register it on a [`CrimsonLayer`](crate::CrimsonLayer) under a name; routes mounted with
/// `.crimson::<Up, Down>(path, name, handler)` use it. Every setting has a default tuned for
/// many mostly idle connections:
///
/// | setting | default |
/// |---|---|
/// | [`ping_period`](Self::ping_period) / [`pong_timeout`](Self::pong_timeout) | 30 s / 15 s |
/// | [`max_message_size`](Self::max_message_size) | 64 KiB (1009 past it) |
/// | [`max_frame_size`](Self::max_frame_size) | 64 KiB |
/// | [`read_buffer_size`](Self::read_buffer_size) | 2 KiB (axum's 128 KiB costs ~133 KiB per idle connection) |
/// | [`write_buffer_size`](Self::write_buffer_size) | 8 KiB |
/// | [`outgoing_queue`](Self::outgoing_queue) | 256 messages, [`OverflowPolicy::Disconnect`] |
/// | [`incoming_queue`](Self::incoming_queue) | 32 decoded messages |
/// | [`decode_errors`](Self::decode_errors) | [`DecodeErrorPolicy::Close`] (1007) |
/// | [`allowed_origins`](Self::allowed_origins) | any |
/// | [`cluster`](Self::cluster) | a fresh local cluster: no connection limit, no lifetime |
/// | [`close_timeout`](Self::close_timeout) | 5 s |
/// | [`write_timeout`](Self::write_timeout) | 30 s (the connection is dropped past it) |
///
/// ```
/// use std::time::Duration;
/// use crimson_axum::{CrimsonConfig, DecodeErrorPolicy};
///
/// let config = CrimsonConfig::<String, String>::new()
///     .ping_period(Some(Duration::from_secs(10)))
///     .max_message_size(16 * 1024)
///     .decode_errors(DecodeErrorPolicy::Skip)
///     .allowed_origins(["https://chat.example"])
///     .on_close(|session, code, reason| println!("{} closed: {code} {reason}", session.id));
/// ```
pub struct CrimsonConfig<Up, Down> {
    pub(crate) ping_period: Option<Duration>,
    pub(crate) pong_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) outgoing_queue: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) incoming_queue: usize,
    pub(crate) decode_errors: DecodeErrorPolicy,
    pub(crate) allowed_origins: Option<Arc<[String]>>,
    pub(crate) close_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) cluster: Cluster<Down>,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_error: Option<ErrorHook>,
    _up: std::marker::PhantomData<fn() -> Up>,
}

impl<Up, Down> Clone for CrimsonConfig<Up, Down> {
    fn clone(&self) -> Self {
        Self {
            ping_period: self.ping_period,
            pong_timeout: self.pong_timeout,
            max_message_size: self.max_message_size,
            max_frame_size: self.max_frame_size,
            read_buffer_size: self.read_buffer_size,
            write_buffer_size: self.write_buffer_size,
            outgoing_queue: self.outgoing_queue,
            overflow: self.overflow,
            incoming_queue: self.incoming_queue,
            decode_errors: self.decode_errors,
            allowed_origins: self.allowed_origins.clone(),
            close_timeout: self.close_timeout,
            write_timeout: self.write_timeout,
            cluster: self.cluster.clone(),
            on_connect: self.on_connect.clone(),
            on_close: self.on_close.clone(),
            on_error: self.on_error.clone(),
            _up: std::marker::PhantomData,
        }
    }
}

impl<Up, Down> fmt::Debug for CrimsonConfig<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrimsonConfig")
            .field("up", &std::any::type_name::<Up>())
            .field("down", &std::any::type_name::<Down>())
            .field("ping_period", &self.ping_period)
            .field("pong_timeout", &self.pong_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("max_frame_size", &self.max_frame_size)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("outgoing_queue", &self.outgoing_queue)
            .field("overflow", &self.overflow)
            .field("incoming_queue", &self.incoming_queue)
            .field("decode_errors", &self.decode_errors)
            .field("allowed_origins", &self.allowed_origins)
            .field("close_timeout", &self.close_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl<Up: CrimsonMessage, Down: CrimsonMessage> Default for CrimsonConfig<Up, Down> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Up: CrimsonMessage, Down: CrimsonMessage> CrimsonConfig<Up, Down> {
    /// A config with the defaults in the table above and a fresh
    /// [`LocalCluster`](crimson_core::cluster::LocalCluster).
    pub fn new() -> Self {
        Self {
            ping_period: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(15),
            max_message_size: 64 << 10,
            max_frame_size: 64 << 10,
            read_buffer_size: 2 << 10,
            write_buffer_size: 8 << 10,
            outgoing_queue: 256,
            overflow: OverflowPolicy::Disconnect,
            incoming_queue: 32,
            decode_errors: DecodeErrorPolicy::Close,
            allowed_origins: None,
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            cluster: Cluster::local(),
            on_connect: None,
            on_close: None,
            on_error: None,
            _up: std::marker::PhantomData,
        }
    }

    /// How often to ping each client; `None` sends no pings (and so detects no dead peers).
    #[must_use]
    pub fn ping_period(mut self, period: Option<Duration>) -> Self {
        self.ping_period = period.filter(|p| !p.is_zero());
        self
    }

    /// How long after a ping the client has to answer (with a pong or any frame) before the
    /// connection is dropped as dead.
    #[must_use]
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// The largest message a client may send, in bytes; a larger one closes with 1009.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The largest frame a client may send, in bytes.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// The read buffer each connection allocates on its first read and keeps while it lives,
    /// and the most one read from the socket takes.
    ///
    /// The default, 2 KiB, is most of an idle connection's memory. A message larger than the
    /// buffer still arrives whole (the buffer grows to the frame's length while it is read)
    /// but takes one read per 2 KiB: raise it for a few connections that carry large
    /// messages, keep it small for many mostly idle ones.
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes.max(1);
        self
    }

    /// How many bytes of outgoing frames are gathered before they are written.
    #[must_use]
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// The bound of each session's outgoing queue and what a full queue does.
    #[must_use]
    pub fn outgoing_queue(mut self, messages: usize, overflow: OverflowPolicy) -> Self {
        self.outgoing_queue = messages.max(1);
        self.overflow = overflow;
        self
    }

    /// How many decoded messages may wait for the handler before the server stops reading
    /// from the socket (TCP then slows the client down).
    #[must_use]
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.incoming_queue = messages.max(1);
        self
    }

    /// What a message that does not decode does.
    #[must_use]
    pub fn decode_errors(mut self, policy: DecodeErrorPolicy) -> Self {
        self.decode_errors = policy;
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
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// How long a closing session waits for the client's close reply, and for its handler
    /// to return once the connection is gone, before dropping them.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long one write (a batch of messages, or a ping) may wait on a client that has
    /// stopped reading before the connection is dropped (reported as 1006 and
    /// [`SessionError::WriteStalled`]). Bounds how long a stalled session can hold its place.
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The cluster this config's sessions join: its connection limit (1013 past it), session
    /// lifetime (1008 past it), rooms, and whether it spans several nodes (Redis). Keep a
    /// clone to reach the sessions from elsewhere (an HTTP route, a timer); the default is a
    /// fresh [`LocalCluster`](crimson_core::cluster::LocalCluster) with no limits.
    #[must_use]
    pub fn cluster(mut self, cluster: Cluster<Down>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Called when a session has connected, before its handler runs.
    #[must_use]
    pub fn on_connect(mut self, hook: impl Fn(&SessionInfo) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Called once when a session has ended, with the close code and reason (the peer's, or
    /// the server's, whichever closed first; 1006 when the connection dropped).
    #[must_use]
    pub fn on_close(
        mut self,
        hook: impl Fn(&SessionInfo, CloseCode, &str) + Send + Sync + 'static,
    ) -> Self {
        self.on_close = Some(Arc::new(hook));
        self
    }

    /// Called for every error a session meets: undecodable or oversized messages, protocol
    /// and I/O errors, a handler panic.
    #[must_use]
    pub fn on_error(
        mut self,
        hook: impl Fn(&SessionInfo, &SessionError) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }

    /// The cluster this config's sessions join.
    pub fn session_cluster(&self) -> &Cluster<Down> {
        &self.cluster
    }
}
