//! Sessions as clusters see them: identity, facts about the connection, and a way to hand
//! each one a message ([`Deliver`]).
//!
//! The server owns each session's bounded outgoing queue; a cluster only offers it messages
//! through the session's [`SessionHandle`] and reads what happened ([`Queued`] or
//! [`SendError`]).

mod id;
mod outgoing;
mod sink;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::close::CloseCode;
use crate::error::EncodeError;
use crate::message::{CrimsonMessage, Payload};

pub(crate) use id::random_u64;
pub use id::{ParseSessionIdError, SessionId};
pub use outgoing::{Outgoing, SharedPayload};
pub use sink::MemorySink;

/// Facts about a session that do not change while it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's identity.
    pub id: SessionId,
    /// When the WebSocket upgrade completed.
    pub connected_at: SystemTime,
    /// The client's address, when the server knows it (axum's `ConnectInfo`).
    pub remote_addr: Option<SocketAddr>,
    /// The request path the session connected to.
    pub path: String,
    /// The name of the config the session's route uses.
    pub config: String,
}

/// What a full outgoing queue does with one more message.
///
/// A session's outgoing queue is bounded so that a client that stops reading can neither
/// delay other sessions nor grow the server's memory. Broadcasts and `try_send` apply this
/// policy at once; a session's own `send().await` waits for room instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Close the session with 1008 "slow consumer", discarding what it had queued (counted
    /// as dropped). The default: a client that cannot keep up reconnects and resynchronises.
    #[default]
    Disconnect,
    /// Drop the oldest queued message to make room, counting each drop. Suits feeds where
    /// only the latest state matters (prices, positions). A publication dropped on its way
    /// to a session of the Crimson protocol is told to it: a `lost … reason=dropped` frame of
    /// its stream takes its place (see [`Outgoing::dropped_notice`]), one per stream at most.
    /// [`Outgoing::Control`] frames are never dropped: a queue with nothing else it may drop
    /// (or with as many notices as its capacity) closes the session as `Disconnect` does.
    DropOldest,
}

/// A message that could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closing or gone.
    #[error("the session is closed")]
    Closed,
    /// The queue was full and the policy is [`OverflowPolicy::Disconnect`]: the session is
    /// now being closed with 1008.
    #[error("the session's outgoing queue is full: it is being closed as a slow consumer")]
    Overflow,
}

/// How a message was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued with room to spare.
    Queued,
    /// Queued after dropping the oldest queued message ([`OverflowPolicy::DropOldest`]).
    DroppedOldest,
}

/// How a cluster reaches one session: the server's side of a session's outgoing queue.
///
/// Servers implement it (crimson-axum's sessions do); clusters call it. A test or a cluster
/// backend of your own can use [`MemorySink`].
///
/// ```
/// use std::sync::Arc;
/// use crimson_core::session::{Deliver, MemorySink, Outgoing, Queued};
/// use crimson_core::Payload;
///
/// let sink = Arc::new(MemorySink::new(8));
/// let result = sink.deliver(Outgoing::Single(Payload::Text("hi".into())));
/// assert_eq!(result, Ok(Queued::Queued));
/// assert_eq!(sink.len(), 1);
/// ```
pub trait Deliver: Send + Sync + fmt::Debug + 'static {
    /// Queues a message now, applying the session's overflow policy if its queue is full.
    fn deliver(&self, message: Outgoing) -> Result<Queued, SendError>;

    /// Asks the session to close with `code` and `reason` once what is queued has been sent.
    fn close(&self, code: CloseCode, reason: &str);

    /// Whether the session has stopped accepting messages.
    fn is_closed(&self) -> bool;

    /// What the session's queue has done so far (all zero for a sink that does not count).
    fn stats(&self) -> QueueStats {
        QueueStats::default()
    }

    /// Sends a request (`body`, in the session's codec, without the protocol's header) to
    /// the session's client and returns where its answer will come. By default a session
    /// cannot be asked; a server's sessions can when their client speaks the Crimson
    /// protocol.
    fn ask(&self, body: Payload) -> Result<tokio::sync::oneshot::Receiver<Answer>, AskError> {
        let _ = body;
        Err(AskError::NoProtocol)
    }

    /// Queues `messages` together, in order, with nothing between them: a recovery (what a
    /// client missed, after a reconnect). They may go past the queue's capacity, since their
    /// number is bounded by the history's recovery limit. By default each is
    /// [`deliver`](Self::deliver)ed in turn.
    fn deliver_all(&self, messages: Vec<Outgoing>) -> Result<(), SendError> {
        for message in messages {
            self.deliver(message)?;
        }
        Ok(())
    }
}

/// A client's answer to a request: the response's body (in the session's codec), or the
/// error's code and message.
pub type Answer = Result<Payload, (u16, String)>;

/// Why a session could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// Its client does not speak the Crimson protocol (`crimson.v1`).
    #[error("the session's client does not speak the Crimson protocol (crimson.v1)")]
    NoProtocol,
    /// As many requests as its config allows already wait for its answers.
    #[error("{0} requests already wait for the session's answers")]
    TooManyOpen(usize),
    /// The request could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// What a session's outgoing queue has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages written to the socket (the notices of dropped publications among them).
    pub sent: u64,
    /// Messages dropped: by [`OverflowPolicy::DropOldest`], or discarded when the session
    /// closed at once or ended with messages still queued.
    pub dropped: u64,
    /// Messages waiting now.
    pub waiting: u64,
}

/// A live session as a cluster holds it: its facts and its outgoing queue.
///
/// Cloning is cheap and shares both.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    info: Arc<SessionInfo>,
    sink: Arc<dyn Deliver>,
    started: std::time::Instant,
    /// The codec the session chose, when it is not its type's default.
    speaks: Option<Speaks>,
    /// The frame kind of the session's codec.
    frame: crate::FrameKind,
}

/// How a session's messages differ from its message type's default: another codec, and/or
/// the Crimson protocol's header line before each one.
#[derive(Clone, Copy)]
struct Speaks {
    codec: usize,
    framed: bool,
    transcode: fn(&Payload, usize) -> Result<Payload, EncodeError>,
}

impl fmt::Debug for Speaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Speaks")
            .field("codec", &self.codec)
            .field("framed", &self.framed)
            .finish()
    }
}

impl SessionHandle {
    /// A handle on a session's facts and queue.
    pub fn new(info: SessionInfo, sink: Arc<dyn Deliver>) -> Self {
        Self {
            info: Arc::new(info),
            sink,
            started: std::time::Instant::now(),
            speaks: None,
            frame: crate::FrameKind::Text,
        }
    }

    /// The session chose codec `M::CODECS[codec]` of its message type `M` (a client asks with
    /// `Sec-WebSocket-Protocol`; `docs/protocol.md`). Clusters hand it payloads made in `M`'s
    /// default codec re-encoded in that one, once per codec per broadcast. Index 0 is the
    /// default: nothing changes.
    pub fn speaking<M: CrimsonMessage>(mut self, codec: usize) -> Self {
        let framed = self.is_framed();
        self.frame = M::CODECS.get(codec).map_or(M::FRAME, |info| info.frame);
        self.speaks = (codec != 0 || framed).then_some(Speaks {
            codec,
            framed,
            transcode: crate::message::transcode::<M>,
        });
        self
    }

    /// The session speaks the Crimson protocol, `crimson.v1` (`docs/protocol.md`): clusters
    /// hand it each message behind the protocol's empty header line, made once per broadcast.
    pub fn framing(mut self, framed: bool) -> Self {
        match &mut self.speaks {
            Some(speaks) => speaks.framed = framed,
            None if framed => {
                self.speaks = Some(Speaks {
                    codec: 0,
                    framed,
                    transcode: |payload, _| Ok(payload.clone()),
                });
            }
            None => {}
        }
        self
    }

    /// The index of the codec the session speaks in its message type's `CODECS` (0: the
    /// default).
    pub fn codec(&self) -> usize {
        self.speaks.map_or(0, |speaks| speaks.codec)
    }

    /// Whether the session speaks the Crimson protocol (see [`framing`](Self::framing)).
    pub fn is_framed(&self) -> bool {
        self.speaks.is_some_and(|speaks| speaks.framed)
    }

    /// `payload`, already in this session's codec, behind the protocol's header line if the
    /// session speaks it.
    pub fn frame(&self, payload: Payload) -> Payload {
        self.frame_as(&crate::protocol::Kind::Message, payload)
    }

    /// `payload`, already in this session's codec, behind the header of `kind` if the session
    /// speaks the protocol.
    pub fn frame_as(&self, kind: &crate::protocol::Kind, payload: Payload) -> Payload {
        if self.is_framed() {
            crate::protocol::write(kind.clone(), &payload)
        } else {
            payload
        }
    }

    /// The frame kind of the session's codec (what a frame with an empty body is sent as).
    pub fn frame_kind(&self) -> crate::FrameKind {
        self.frame
    }

    /// `payload`, made in the message type's default codec, as this session takes it: in its
    /// codec, behind the protocol's header line if it speaks the protocol.
    pub fn transcode(&self, payload: &Payload) -> Result<Payload, EncodeError> {
        self.transcode_as(&crate::protocol::Kind::Message, payload)
    }

    /// [`transcode`](Self::transcode), behind the header of `kind` if the session speaks the
    /// protocol (a stream's publication).
    pub fn transcode_as(
        &self,
        kind: &crate::protocol::Kind,
        payload: &Payload,
    ) -> Result<Payload, EncodeError> {
        let body = self.transcode_body(payload)?;
        Ok(self.frame_as(kind, body))
    }

    /// `payload`, made in the message type's default codec, in this session's codec but
    /// without the protocol's header line: the body of a request to [`ask`](Self::ask) it
    /// (what a cluster does with a request relayed from another node).
    pub fn transcode_body(&self, payload: &Payload) -> Result<Payload, EncodeError> {
        match self.speaks {
            None => Ok(payload.clone()),
            Some(speaks) => (speaks.transcode)(payload, speaks.codec),
        }
    }

    /// How long ago the handle was made, on the monotonic clock (immune to clock changes).
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The session's identity.
    pub fn id(&self) -> SessionId {
        self.info.id
    }

    /// The session's facts.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Queues a message for the session now, as it is (see [`Deliver::deliver`]): a backend
    /// that sends a payload of the message type's default codec passes it through
    /// [`transcode`](Self::transcode) first, for a session that speaks another codec or the
    /// Crimson protocol.
    pub fn deliver(&self, message: Outgoing) -> Result<Queued, SendError> {
        self.sink.deliver(message)
    }

    /// Queues `messages` together, in order (see [`Deliver::deliver_all`]).
    pub fn deliver_all(&self, messages: Vec<Outgoing>) -> Result<(), SendError> {
        self.sink.deliver_all(messages)
    }

    /// Asks the session to close after what is queued.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.sink.close(code, reason);
    }

    /// Sends a request to the session's client (see [`Deliver::ask`]): `body` in the
    /// session's codec, without the protocol's header.
    pub fn ask(&self, body: Payload) -> Result<tokio::sync::oneshot::Receiver<Answer>, AskError> {
        self.sink.ask(body)
    }

    /// Whether the session has stopped accepting messages.
    pub fn is_closed(&self) -> bool {
        self.sink.is_closed()
    }

    /// What the session's outgoing queue has done so far.
    pub fn stats(&self) -> QueueStats {
        self.sink.stats()
    }
}
