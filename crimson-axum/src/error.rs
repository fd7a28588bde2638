//! Errors a session meets, and errors sending to one.

use std::fmt;

use crimson_core::session::SendError;
use crimson_core::{DecodeError, EncodeError};

/// Something that went wrong in a session, as the error hook and tracing see it.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// A client message did not decode.
    Decode(DecodeError),
    /// A client message was larger than the config allows.
    TooBig(String),
    /// The client broke the WebSocket protocol.
    Protocol(String),
    /// Unfinished messages across the config's sessions hold all the bytes allowed for them.
    Busy(String),
    /// The connection failed.
    Io(std::io::Error),
    /// No answer to a ping within the pong timeout.
    PingTimeout,
    /// A write made no progress within the write timeout (the client stopped reading).
    WriteStalled(std::time::Duration),
    /// The handler panicked; the text is the panic message.
    HandlerPanic(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(err) => err.fmt(f),
            Self::TooBig(msg) => write!(f, "message too big: {msg}"),
            Self::Protocol(msg) => write!(f, "WebSocket protocol error: {msg}"),
            Self::Busy(msg) => f.write_str(msg),
            Self::Io(err) => write!(f, "connection failed: {err}"),
            Self::PingTimeout => f.write_str("no answer to a ping within the pong timeout"),
            Self::WriteStalled(timeout) => {
                write!(
                    f,
                    "a write made no progress within {timeout:?}: the client stopped reading"
                )
            }
            Self::HandlerPanic(msg) => write!(f, "the session handler panicked: {msg}"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(err) => Some(err),
            Self::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// A message a handler could not send to its session.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionSendError {
    /// The message did not encode.
    Encode(EncodeError),
    /// The session is closed, or its queue overflowed (see [`SendError`]).
    Send(SendError),
}

impl fmt::Display for SessionSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(err) => err.fmt(f),
            Self::Send(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for SessionSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(err) => Some(err),
            Self::Send(err) => Some(err),
        }
    }
}

impl From<SendError> for SessionSendError {
    fn from(err: SendError) -> Self {
        Self::Send(err)
    }
}

impl From<EncodeError> for SessionSendError {
    fn from(err: EncodeError) -> Self {
        Self::Encode(err)
    }
}

/// A setting or a piece of setup that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
