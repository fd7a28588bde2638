//! Errors a session meets, errors sending to one, and setup that cannot work.

use crimson_core::session::SendError;
use crimson_core::{DecodeError, EncodeError};

/// Something that went wrong in a session, as the error hook and tracing see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A client message did not decode.
    #[error(transparent)]
    Decode(DecodeError),
    /// A client message was larger than the config allows.
    #[error("message too big: {0}")]
    TooBig(String),
    /// The client broke the WebSocket protocol.
    #[error("WebSocket protocol error: {0}")]
    Protocol(String),
    /// Unfinished messages across the config's sessions hold all the bytes allowed for them.
    #[error("{0}")]
    Busy(String),
    /// The connection failed.
    #[error("connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// No answer to a ping within the pong timeout.
    #[error("no answer to a ping within the pong timeout")]
    PingTimeout,
    /// A write made no progress within the write timeout (the client stopped reading).
    #[error("a write made no progress within {0:?}: the client stopped reading")]
    WriteStalled(std::time::Duration),
    /// The handler panicked; the text is the panic message.
    #[error("the session handler panicked: {0}")]
    HandlerPanic(String),
}

/// A message a handler could not send to its session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionSendError {
    /// The message did not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The session is closed, or its queue overflowed (see [`SendError`]).
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A setting or a piece of setup that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
