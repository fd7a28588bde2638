//! Sessions as the server and its clusters see them: identity, facts about the connection,
//! and the bounded outgoing queue every message to the session goes through.

mod id;
mod outbox;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

pub(crate) use id::random_u64;
pub use id::{ParseSessionIdError, SessionId};
pub use outbox::{Ending, Outbox, OverflowPolicy, Queued, SendError};

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

/// A live session as a cluster holds it: its facts and its outgoing queue.
///
/// Cloning is cheap and shares the queue.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    info: Arc<SessionInfo>,
    outbox: Outbox,
    started: std::time::Instant,
}

impl SessionHandle {
    /// A handle on a session's facts and queue.
    pub fn new(info: SessionInfo, outbox: Outbox) -> Self {
        Self {
            info: Arc::new(info),
            outbox,
            started: std::time::Instant::now(),
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

    /// The session's outgoing queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}
