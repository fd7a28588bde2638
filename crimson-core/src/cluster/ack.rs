//! Acknowledged broadcasts: a request to every session a target names, and a stream of
//! their answers ([`Cluster::broadcast_with_ack`](super::Cluster::broadcast_with_ack)).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;

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
}

/// The answers to an acknowledged broadcast, one per session asked, as they come; it ends
/// when every session answered, failed, or ran out of time.
#[must_use = "a stream does nothing unless polled"]
pub struct AckStream<R> {
    pending: FuturesUnordered<BoxFuture<'static, (SessionId, Result<R, AckError>)>>,
    asked: usize,
}

impl<R> AckStream<R> {
    pub(crate) fn new() -> Self {
        Self {
            pending: FuturesUnordered::new(),
            asked: 0,
        }
    }

    pub(crate) fn push(&mut self, answer: BoxFuture<'static, (SessionId, Result<R, AckError>)>) {
        self.asked += 1;
        self.pending.push(answer);
    }

    /// How many sessions were asked (or failed to be): how many items the stream yields.
    pub fn asked(&self) -> usize {
        self.asked
    }
}

impl<R> std::fmt::Debug for AckStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckStream")
            .field("asked", &self.asked)
            .field("waiting", &self.pending.len())
            .finish()
    }
}

impl<R> Stream for AckStream<R> {
    type Item = (SessionId, Result<R, AckError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.pending).poll_next(cx)
    }
}
