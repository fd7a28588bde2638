//! [`ClientEvent`]s and [`Subscription`]s: the client's streams of messages and events.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crimson_core::{CloseCode, ClosedBy};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::error::ClientError;
use crate::state::ConnectionState;

/// Something that happened to a client, in order, on
/// [`CrimsonClient::events`](crate::CrimsonClient::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection state changed (every transition, unlike the
    /// [`state`](crate::CrimsonClient::state) watch, which keeps only the latest).
    State(ConnectionState),
    /// A connection was made. The URL is without its query, which may hold secrets.
    Connected {
        /// The URL connected to.
        url: String,
    },
    /// A connection closed.
    Closed(CloseEvent),
    /// Something went wrong; see [`ClientError`] for what each case means.
    Error(Arc<ClientError>),
    /// After a reconnect, the `count` publications of `stream` missed while away were
    /// delivered (on [`incoming`](crate::CrimsonClient::incoming), in order, before this
    /// event), each once. `count` may be 0: nothing was missed.
    Recovered {
        /// `all`, or `room:<name>`.
        stream: String,
        /// How many were delivered.
        count: u64,
    },
    /// After a reconnect, what `stream` published while the client was away cannot be
    /// recovered: the application missed messages and is told so. `reason` is the server's
    /// (`history_too_short`, `expired`, `epoch_changed`, `over_limit`, `unknown_position`,
    /// `unavailable`; `dropped` while connected, when the server dropped publications on
    /// their way) or the client's own (the new connection does not speak the Crimson
    /// protocol; the session left the room before the resume was answered). The stream goes
    /// on from its latest publication.
    NotRecovered {
        /// `all`, or `room:<name>`.
        stream: String,
        /// Why.
        reason: String,
    },
}

/// How a connection ended, for [`ClientEvent::Closed`] and the
/// [`on_close`](crate::CrimsonClientBuilder::on_close) hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    /// The close code: the server's or this client's, or 1006 when the connection failed.
    pub code: CloseCode,
    /// The close reason (empty when none was given).
    pub reason: String,
    /// Who ended it.
    pub by: ClosedBy,
    /// Whether the client will reconnect: the close was abnormal and it was not asked to stop.
    pub reconnect: bool,
}

/// A subscriber fell behind and missed this many items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this subscriber fell behind and missed {0} item(s)")]
pub struct Lagged(pub u64);

/// One subscriber's stream of a client's incoming messages
/// ([`incoming`](crate::CrimsonClient::incoming)) or events
/// ([`events`](crate::CrimsonClient::events)).
///
/// Every subscriber gets every item sent after it subscribed, in order. Each holds at most the
/// client's capacity of items it has not read yet (a ring: the newest push out the oldest), so
/// a subscriber that stops reading costs bounded memory and never slows the connection or other
/// subscribers. When it falls that far behind it is told, not silently skipped: its next item
/// is `Err(Lagged(n))` with the number it missed, then it goes on with the oldest item still
/// held.
///
/// The stream ends when the client is gone: every [`CrimsonClient`](crate::CrimsonClient)
/// handle dropped and its connection task finished. It does not end while the client is
/// merely closed, since a later `connect()` brings new items.
pub struct Subscription<T> {
    inner: BroadcastStream<T>,
}

impl<T: Clone + Send + 'static> Subscription<T> {
    pub(crate) fn new(receiver: broadcast::Receiver<T>) -> Self {
        Self {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl<T: Clone + Send + 'static> Stream for Subscription<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(next.map(|item| item.map_err(|BroadcastStreamRecvError::Lagged(n)| Lagged(n))))
    }
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("item", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn lagging_subscriber_is_told_how_many_it_missed() {
        let (tx, rx) = broadcast::channel(2);
        let mut sub = Subscription::new(rx);
        for n in 0..5 {
            tx.send(n).unwrap();
        }
        assert_eq!(sub.next().await, Some(Err(Lagged(3))));
        assert_eq!(sub.next().await, Some(Ok(3)));
        assert_eq!(sub.next().await, Some(Ok(4)));
        drop(tx);
        assert_eq!(sub.next().await, None);
    }
}
