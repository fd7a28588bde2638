//! A session's task from the 101 on: it waits for hyper to hand over the connection, then runs
//! the session.
//!
//! Written by hand rather than as an `async` block so that the two stages share their memory:
//! an `async` block keeps the waiting stage's values beside the running [`Task`] for the
//! session's whole life, which doubled the size of every idle connection's task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crimson_core::transport::{Budget, Connection, Negotiated, Role};
use crimson_core::{CloseCode, CloseRecord, ClosedBy, CrimsonMessage};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use super::outbox::OutboxReceiver;
use super::{incoming, Guards, HandlerFuture, Task};
use crate::config::Settings;
use crate::metrics::RouteMetrics;
use crate::session::SessionState;

/// The connection a session runs on.
type Conn = Connection<TokioIo<Upgraded>>;

/// Everything a session needs but its connection, made before the 101 is sent.
pub(crate) struct Pending<Up> {
    pub(crate) shared: Arc<SessionState>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) outbox: OutboxReceiver,
    pub(crate) input: incoming::Sender<crate::request::Incoming<Up>>,
    /// `None` when the session is refused (a connection limit): it is closed at once.
    pub(crate) handler: Option<HandlerFuture>,
    pub(crate) guards: Guards,
    /// Why the session is refused, if it is.
    pub(crate) refused: Option<String>,
    pub(crate) budget: Budget,
    pub(crate) negotiated: Option<Negotiated>,
    pub(crate) metrics: Arc<RouteMetrics>,
    /// The session's cluster, for the protocol's `resume` frames.
    pub(crate) cluster: Option<Arc<dyn crimson_core::cluster::SessionCluster>>,
}

impl<Up: CrimsonMessage> Pending<Up> {
    fn start(self, upgraded: Upgraded) -> Task<Conn, Up> {
        let conn = Connection::new(
            TokioIo::new(upgraded),
            Role::Server,
            self.settings.max_message_size,
            self.negotiated,
            Some(self.budget),
            &[],
        );
        let mut task = Task::new(
            conn,
            self.shared,
            self.settings,
            self.outbox,
            self.input,
            self.handler,
            self.guards,
            self.metrics,
        );
        task.cluster = self.cluster;
        if let Some(reason) = self.refused {
            task.refuse(CloseCode::TRY_AGAIN_LATER, &reason);
        }
        task
    }

    /// The upgrade did not complete (the client went away after the 101): the session ends
    /// before it began, and an accepted one is reported to `on_close`.
    fn abandon(self, err: &hyper::Error) {
        tracing::debug!(error = %err, "the WebSocket upgrade did not complete");
        drop(self.guards);
        if self.handler.is_some() {
            let record = CloseRecord {
                code: CloseCode::ABNORMAL,
                reason: "the WebSocket upgrade did not complete".into(),
                by: ClosedBy::Failure,
            };
            self.metrics.closed(&record);
            if let Some(hook) = &self.settings.on_close {
                hook(&self.shared.info, &record);
            }
        }
    }
}

/// The future spawned for a session.
// Boxing the running stage would cost an allocation per session to save bytes in a stage
// that lasts one round trip.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SessionTask<Up> {
    /// Waiting for hyper to hand over the upgraded connection.
    Upgrading(OnUpgrade, Option<Pending<Up>>),
    /// The session runs.
    Running(Task<Conn, Up>),
    Done,
}

impl<Up> SessionTask<Up> {
    pub(crate) fn new(on_upgrade: OnUpgrade, pending: Pending<Up>) -> Self {
        Self::Upgrading(on_upgrade, Some(pending))
    }
}

impl<Up: CrimsonMessage> Future for SessionTask<Up> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Self::Upgrading(on_upgrade, pending) => {
                    let upgraded = ready!(Pin::new(on_upgrade).poll(cx));
                    let pending = pending.take().expect("taken once, then the stage changes");
                    match upgraded {
                        Ok(upgraded) => *this = Self::Running(pending.start(upgraded)),
                        Err(err) => {
                            pending.abandon(&err);
                            *this = Self::Done;
                        }
                    }
                }
                Self::Running(task) => {
                    ready!(Pin::new(task).poll(cx));
                    *this = Self::Done;
                }
                Self::Done => return Poll::Ready(()),
            }
        }
    }
}

impl<Up> Unpin for SessionTask<Up> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waiting stage costs nothing beside the running one (an `async` block doubled it).
    #[test]
    fn the_stages_share_their_memory() {
        let task = std::mem::size_of::<Task<Conn, String>>();
        let session = std::mem::size_of::<SessionTask<String>>();
        assert!(std::mem::size_of::<Pending<String>>() + 8 < task);
        assert!(
            session <= task + 16,
            "{session} bytes for a {task}-byte task"
        );
    }
}
