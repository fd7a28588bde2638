//! [`ClientState`]: what the client's handles and its connection task share, and how a run of
//! the task is asked to stop and reports its end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crimson_core::metrics;
use crimson_core::CloseCode;
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::outbox::Outbox;
use crate::request::Requests;
use crate::state::ConnectionState;

/// How many events a subscriber may fall behind.
const EVENT_CAPACITY: usize = 256;
/// Requests a client may have waiting for answers at once.
pub(crate) const MAX_OPEN_REQUESTS: usize = 1024;

/// A request to stop: close with this code and reason.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    pub(crate) code: CloseCode,
    pub(crate) reason: String,
}

/// How a run of the connection task ended.
#[derive(Debug, Clone)]
pub(crate) struct RunEnd {
    /// Whether it connected at least once.
    pub(crate) connected: bool,
    /// The last error it reported, when it gave up (none when it was stopped or the server
    /// closed normally).
    pub(crate) error: Option<Arc<ClientError>>,
}

/// The connection task's run, from `connect()` to `Closed`.
pub(crate) struct Run {
    pub(crate) stop: watch::Sender<Option<Stop>>,
    pub(crate) done: watch::Receiver<Option<RunEnd>>,
}

/// What the handles and the connection task share.
pub(crate) struct ClientState<Down> {
    pub(crate) config: Config,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) incoming: broadcast::Sender<Down>,
    pub(crate) receiver: tokio::sync::Mutex<broadcast::Receiver<Down>>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) outbox: Outbox,
    run: Mutex<Option<Run>>,
    pub(crate) skipped: AtomicU64,
    pub(crate) discarded: AtomicU64,
    /// The client's requests that wait for answers.
    pub(crate) requests: Requests,
    /// The current connection speaks the Crimson protocol (`crimson.v1`).
    pub(crate) framed: AtomicBool,
    /// Where the client stands in the streams it gets publications of.
    pub(crate) recovery: crate::recovery::Recovery,
    /// The application was told a stream went unfollowed.
    told_unfollowed: AtomicBool,
    /// Streams whose last recovery failed, and why (until one recovers).
    pub(crate) not_recovered: Mutex<std::collections::BTreeMap<String, String>>,
}

impl<Down> ClientState<Down> {
    pub(crate) fn run_slot(&self) -> MutexGuard<'_, Option<Run>> {
        self.run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A stream past the most the client follows: its publications are delivered but not
    /// recovered after a reconnect. Reported once per client.
    pub(crate) fn unfollowed(&self, stream: &str) {
        if !self.told_unfollowed.swap(true, Ordering::Relaxed) {
            self.report(ClientError::Connection(format!(
                "following {} streams already: publications of `{stream}` (and of any other new stream) are delivered, but not recovered after a reconnect",
                crate::recovery::MAX_STREAMS
            )));
        }
    }

    /// Announces how a stream's recovery went.
    pub(crate) fn recovery_outcome(&self, outcome: crate::recovery::Outcome) {
        use crate::recovery::Outcome;
        let mut not_recovered = self
            .not_recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let event = match outcome {
            Outcome::Recovered { stream, count } => {
                tracing::debug!(%stream, count, "recovered");
                not_recovered.remove(&stream);
                ClientEvent::Recovered { stream, count }
            }
            Outcome::NotRecovered { stream, reason } => {
                tracing::info!(%stream, %reason, "missed publications could not be recovered");
                not_recovered.insert(stream.clone(), reason.clone());
                ClientEvent::NotRecovered { stream, reason }
            }
        };
        drop(not_recovered);
        let _ = self.events.send(event);
    }

    /// Sets the state and announces it.
    pub(crate) fn set_state(&self, state: ConnectionState) {
        // Watchers are woken only by a change: setting the state it already has is not one.
        let changed = self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if changed {
            tracing::debug!(%state, "connection state");
            let name = match state {
                ConnectionState::Closed => "closed",
                ConnectionState::Connecting => "connecting",
                ConnectionState::Connected => "connected",
                ConnectionState::Retrying { .. } => "retrying",
            };
            metrics::count("crimson_client_state_changes_total", &[("state", name)], 1);
            let _ = self.events.send(ClientEvent::State(state));
        }
    }

    /// Reports an error to tracing, the error hook and the event stream.
    pub(crate) fn report(&self, error: ClientError) -> Arc<ClientError> {
        match &error {
            ClientError::Decode(_) | ClientError::Discarded(_) => {
                tracing::warn!(error = %error, "crimson client");
            }
            ClientError::InvalidEndpoint { .. } | ClientError::RetriesExhausted(_) => {
                tracing::error!(error = %error, "crimson client closed");
            }
            ClientError::Rejected { status, .. }
                if crate::error::is_permanent_rejection(*status) =>
            {
                tracing::error!(error = %error, "crimson client closed");
            }
            _ => tracing::warn!(error = %error, "crimson client connection"),
        }
        if let Some(hook) = &self.config.hooks.on_error {
            hook(&error);
        }
        let error = Arc::new(error);
        let _ = self.events.send(ClientEvent::Error(error.clone()));
        error
    }

    /// Asks the running connection task, if any, to close with `code` and `reason`; returns a
    /// watch that says when it has ended. The first request wins.
    pub(crate) fn request_stop(
        &self,
        code: CloseCode,
        reason: &str,
    ) -> Option<watch::Receiver<Option<RunEnd>>> {
        let slot = self.run_slot();
        let run = slot.as_ref()?;
        run.stop.send_if_modified(|stop| {
            if stop.is_some() {
                return false;
            }
            *stop = Some(Stop {
                code,
                reason: reason.to_owned(),
            });
            true
        });
        Some(run.done.clone())
    }

    /// Ends a run: closes the outbox, goes `Closed`, tells waiters. Called by the connection
    /// task as its last act.
    pub(crate) fn finish(&self, done: &watch::Sender<Option<RunEnd>>, end: RunEnd) {
        let discarded = {
            let mut slot = self.run_slot();
            let discarded = self.outbox.close();
            self.framed.store(false, Ordering::Release);
            // Closed for good: no request will be answered.
            self.requests.close();
            self.set_state(ConnectionState::Closed);
            done.send_replace(Some(end));
            *slot = None;
            discarded
        };
        if discarded > 0 {
            self.discarded
                .fetch_add(discarded as u64, Ordering::Relaxed);
            metrics::count(
                "crimson_client_outbox_discarded_total",
                &[],
                discarded as u64,
            );
            self.report(ClientError::Discarded(discarded));
        }
    }
}

impl<Down: Clone> ClientState<Down> {
    /// The state of a client built with `config`, not running.
    pub(crate) fn new(config: Config) -> Self {
        let (incoming, receiver) = broadcast::channel(config.incoming_queue);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            outbox: Outbox::new(config.outgoing_queue),
            config,
            state: watch::Sender::new(ConnectionState::Closed),
            incoming,
            receiver: tokio::sync::Mutex::new(receiver),
            events,
            run: Mutex::new(None),
            skipped: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            requests: Requests::new(MAX_OPEN_REQUESTS),
            framed: AtomicBool::new(false),
            recovery: crate::recovery::Recovery::default(),
            told_unfollowed: AtomicBool::new(false),
            not_recovered: Mutex::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConnectionState, CrimsonClient};

    /// Setting the state it already has wakes no watcher and sends no event: a watcher once
    /// saw `Connecting` twice in a row, because the watch was set twice.
    #[test]
    fn the_same_state_twice_is_one_change() {
        let client = CrimsonClient::<String, String>::builder()
            .url("ws://127.0.0.1:1/unused")
            .build()
            .unwrap();
        let shared = client.shared();
        let mut state = shared.state.subscribe();
        let mut events = shared.events.subscribe();
        shared.set_state(ConnectionState::Connecting);
        assert!(state.has_changed().unwrap());
        assert_eq!(*state.borrow_and_update(), ConnectionState::Connecting);
        shared.set_state(ConnectionState::Connecting);
        assert!(!state.has_changed().unwrap(), "woken without a change");
        assert!(events.try_recv().is_ok());
        assert!(events.try_recv().is_err(), "the same state announced twice");
    }
}
