//! Acknowledged broadcasts: a request to every session a target names, and a stream of
//! their answers ([`Cluster::broadcast_with_ack`](super::Cluster::broadcast_with_ack)).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::stream::FuturesUnordered;

use crate::message::Payload;
use crate::session::{AskError, SessionId};
use crate::DecodeError;

/// Why a session's answer to an acknowledged broadcast did not come.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The session could not be asked (its client does not speak the Crimson protocol, too
    /// many requests wait, or its queue is closed or full).
    #[error(transparent)]
    Ask(#[from] AskError),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The session ended before it answered.
    #[error("the session ended before it answered")]
    Disconnected,
    /// The client answered with an error.
    #[error("the client refused ({code}): {message}")]
    Rejected {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// The answer did not decode as the request's response type.
    #[error("the answer did not decode: {0}")]
    Decode(#[source] DecodeError),
    /// The session's node (another node of the cluster) could not ask it or relay its
    /// answer, and says why: busy with other nodes' acknowledged broadcasts, an answer over
    /// the cluster's payload limit, a request that did not re-encode in the session's codec.
    #[error("the session's node: {0}")]
    Remote(String),
}

/// What other nodes say about an acknowledged broadcast, item by item
/// ([`SessionCluster::ask_remote`](super::SessionCluster::ask_remote)): what a multi-node
/// backend hands [`AckStream`].
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteAck {
    /// A node said which of its sessions it asked: `asked` of them, each answering in a later
    /// [`Answer`](Self::Answer), and `unasked` more the target names that it did not ask
    /// (over its limits).
    Asked {
        /// The node's id.
        node: u64,
        /// Sessions it asked.
        asked: usize,
        /// Sessions it did not ask.
        unasked: usize,
    },
    /// One session's answer, or why it has none: the answer's body in codec `codec` (an
    /// index in the request type's `CODECS`) of the session.
    Answer {
        /// The session.
        session: SessionId,
        /// The codec the session speaks, as an index in the request type's `CODECS`.
        codec: usize,
        /// Its answer's body, or why there is none.
        answer: Result<Payload, AckError>,
    },
    /// `nodes` nodes got the request but never said which sessions they asked before the
    /// deadline.
    Silent {
        /// How many.
        nodes: usize,
    },
}

/// The part of an acknowledged broadcast that other nodes answer: how many nodes got the
/// request, and what they say ([`RemoteAck`]), ending when every node has answered for every
/// session it asked, or at the backend's deadline.
pub struct RemoteAcks {
    nodes: usize,
    events: BoxStream<'static, RemoteAck>,
}

impl RemoteAcks {
    /// `nodes` other nodes got the request; `events` is what they say.
    pub fn new(nodes: usize, events: impl Stream<Item = RemoteAck> + Send + 'static) -> Self {
        Self {
            nodes,
            events: Box::pin(events),
        }
    }

    /// How many other nodes got the request.
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

impl std::fmt::Debug for RemoteAcks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAcks")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Decodes an answer's body in the request type's codec `codec` (an index in its `CODECS`).
type DecodeAnswer<R> = fn(&Payload, usize) -> Result<R, DecodeError>;

/// The answers to an acknowledged broadcast, one per session asked, as they come, on this
/// node and on the others; it ends when every session answered, failed, or ran out of time.
///
/// A session whose node said it asked it always yields an item (a timeout at the latest);
/// what cannot be reported per session is counted: nodes that never said which sessions they
/// asked ([`silent_nodes`](Self::silent_nodes)), and sessions a node did not ask, over its
/// limits ([`unasked`](Self::unasked)).
#[must_use = "a stream does nothing unless polled"]
pub struct AckStream<R> {
    pending: FuturesUnordered<BoxFuture<'static, (SessionId, Result<R, AckError>)>>,
    /// What other nodes say, and how to decode their answers.
    remote: Option<(BoxStream<'static, RemoteAck>, DecodeAnswer<R>)>,
    asked: usize,
    remote_nodes: usize,
    silent_nodes: usize,
    unasked: usize,
}

impl<R> AckStream<R> {
    pub(crate) fn new() -> Self {
        Self {
            pending: FuturesUnordered::new(),
            remote: None,
            asked: 0,
            remote_nodes: 0,
            silent_nodes: 0,
            unasked: 0,
        }
    }

    pub(crate) fn push(&mut self, answer: BoxFuture<'static, (SessionId, Result<R, AckError>)>) {
        self.asked += 1;
        self.pending.push(answer);
    }

    /// Adds what other nodes say, their answers decoded with `decode`.
    pub(crate) fn remote(&mut self, remote: RemoteAcks, decode: DecodeAnswer<R>) {
        self.remote_nodes = remote.nodes;
        self.remote = Some((remote.events, decode));
    }

    /// How many sessions were asked (or failed to be) so far: on this node, and on the
    /// others that said so. The stream yields one item for each.
    pub fn asked(&self) -> usize {
        self.asked
    }

    /// How many other nodes got the request.
    pub fn remote_nodes(&self) -> usize {
        self.remote_nodes
    }

    /// How many of those never said which sessions they asked, before the deadline (the
    /// request's timeout and a grace second): their sessions yield nothing. Final once the
    /// stream has ended.
    pub fn silent_nodes(&self) -> usize {
        self.silent_nodes
    }

    /// How many sessions the target names on other nodes that were not asked, over their
    /// node's limits. Final once the stream has ended.
    pub fn unasked(&self) -> usize {
        self.unasked
    }
}

impl<R> std::fmt::Debug for AckStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckStream")
            .field("asked", &self.asked)
            .field("waiting_here", &self.pending.len())
            .field("remote_nodes", &self.remote_nodes)
            .field("silent_nodes", &self.silent_nodes)
            .field("unasked", &self.unasked)
            .finish()
    }
}

impl<R> Stream for AckStream<R> {
    type Item = (SessionId, Result<R, AckError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(Some(item)) = Pin::new(&mut this.pending).poll_next(cx) {
            return Poll::Ready(Some(item));
        }
        while let Some((remote, decode)) = &mut this.remote {
            match remote.as_mut().poll_next(cx) {
                Poll::Ready(Some(RemoteAck::Answer {
                    session,
                    codec,
                    answer,
                })) => {
                    let result =
                        answer.and_then(|body| decode(&body, codec).map_err(AckError::Decode));
                    return Poll::Ready(Some((session, result)));
                }
                Poll::Ready(Some(RemoteAck::Asked { asked, unasked, .. })) => {
                    this.asked += asked;
                    this.unasked += unasked;
                }
                Poll::Ready(Some(RemoteAck::Silent { nodes })) => this.silent_nodes += nodes,
                Poll::Ready(None) => this.remote = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        if this.pending.is_empty() {
            Poll::Ready(None)
        } else {
            // The local part is pending (and woken when it is ready).
            Poll::Pending
        }
    }
}
