//! [`SessionSet`]: the live sessions of a layer or of a server, to count them and to shut
//! them down together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crimson_core::CloseCode;
use tokio::sync::Notify;

use crate::engine::outbox::{EndRequest, OutboxSender};

/// Live sessions, each known by its outgoing queue (through which it is asked to end).
#[derive(Default)]
pub(crate) struct SessionSet {
    sessions: Mutex<HashMap<u64, OutboxSender>>,
    next: AtomicU64,
    shutting_down: AtomicBool,
    all_ended: Notify,
}

/// Counts a session in a set until dropped.
pub(crate) struct Counted {
    set: Arc<SessionSet>,
    key: u64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut sessions = self.set.sessions();
        sessions.remove(&self.key);
        if sessions.is_empty() {
            drop(sessions);
            self.set.all_ended.notify_waiters();
        }
    }
}

fn going_away() -> EndRequest {
    EndRequest::Close(CloseCode::GOING_AWAY, "server shutting down".into())
}

impl SessionSet {
    fn sessions(&self) -> MutexGuard<'_, HashMap<u64, OutboxSender>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a live session; one that starts during a shutdown is asked to close at once.
    pub(crate) fn enter(self: &Arc<Self>, outbox: &OutboxSender) -> Counted {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.sessions().insert(key, outbox.clone());
        if self.shutting_down.load(Ordering::Acquire) {
            outbox.request_end(going_away());
        }
        Counted {
            set: self.clone(),
            key,
        }
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether a shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn ask_all(&self, request: &EndRequest) -> usize {
        let all: Vec<OutboxSender> = self.sessions().values().cloned().collect();
        for outbox in &all {
            outbox.request_end(request.clone());
        }
        all.len()
    }

    /// Closes every session with 1001 (after what each has queued) and waits until all have
    /// ended or `grace` has passed; then drops the connections of those still live. Returns
    /// how many were still live when the grace period ended.
    pub(crate) async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Ordering::Release);
        self.ask_all(&going_away());
        let wait = async {
            loop {
                let ended = self.all_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.sessions().is_empty() {
                    return;
                }
                ended.await;
            }
        };
        if tokio::time::timeout(grace, wait).await.is_ok() {
            return 0;
        }
        self.ask_all(&EndRequest::Terminate)
    }
}
