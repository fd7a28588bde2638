//! Close codes and reasons, used the same way by the server and the client.
//!
//! | code | constant | meaning in Crimson |
//! |---|---|---|
//! | 1000 | [`CloseCode::NORMAL`] | the conversation is over |
//! | 1001 | [`CloseCode::GOING_AWAY`] | the server is shutting down, or the peer is leaving |
//! | 1002 | [`CloseCode::PROTOCOL_ERROR`] | the peer broke the WebSocket protocol |
//! | 1007 | [`CloseCode::INVALID_PAYLOAD`] | a message did not decode |
//! | 1008 | [`CloseCode::POLICY`] | policy: slow consumer, session lifetime over, origin |
//! | 1009 | [`CloseCode::TOO_BIG`] | a message over the configured maximum |
//! | 1011 | [`CloseCode::INTERNAL_ERROR`] | the server failed (a handler panicked) |
//! | 1013 | [`CloseCode::TRY_AGAIN_LATER`] | connection limit reached |
//! | 4000–4999 | [`CloseCode::application`] | yours to choose |
//!
//! Every close Crimson sends carries a short human-readable reason of at most
//! [`MAX_REASON_LEN`] bytes.

use std::fmt;

/// The most bytes a close reason may have (a control frame carries 125, two are the code).
pub const MAX_REASON_LEN: usize = 123;

/// A WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the conversation is over.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the server is shutting down, or the peer is going away.
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a frame kind the endpoint does not accept.
    pub const UNSUPPORTED: Self = Self(1003);
    /// 1005: no code was given (never sent; reported when a close had no code).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection dropped without a close frame (never sent; reported).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message that does not decode.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a policy was broken (slow consumer, lifetime over, origin).
    pub const POLICY: Self = Self(1008);
    /// 1009: a message over the configured maximum size.
    pub const TOO_BIG: Self = Self(1009);
    /// 1011: the server failed while handling the session.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const RESTART: Self = Self(1012);
    /// 1013: try again later (connection limit reached).
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// An application close code: 4000 to 4999.
    pub fn application(code: u16) -> Result<Self, InvalidCloseCode> {
        if (4000..=4999).contains(&code) {
            Ok(Self(code))
        } else {
            Err(InvalidCloseCode(code))
        }
    }

    /// Any code as received from a peer, valid or not.
    pub const fn from_u16(code: u16) -> Self {
        Self(code)
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether an endpoint may send this code in a close frame (RFC 6455 §7.4).
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Who ended a connection: the same words on the server and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedBy {
    /// The client: its close frame (seen from the server), `disconnect()` or its handle dropped
    /// (seen from the client).
    Client,
    /// The server: its close frame, or a server that dropped the connection on purpose
    /// (`terminate()`).
    Server,
    /// Nobody: the connection failed or went silent (no answer to pings, a write that made no
    /// progress) without a close handshake. The code is 1006.
    Failure,
}

impl fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "the client",
            Self::Server => "the server",
            Self::Failure => "a failure",
        })
    }
}

/// How a connection ended: its close code and reason, and who ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRecord {
    /// The close code (1006 when the connection dropped without a close frame).
    pub code: CloseCode,
    /// The close reason (empty when none was given).
    pub reason: String,
    /// Who ended it.
    pub by: ClosedBy,
}

impl fmt::Display for CloseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.code, self.by)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// A close code outside the application range 4000–4999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("close code {0} is not an application code: use 4000 to 4999")]
pub struct InvalidCloseCode(pub u16);

/// Cuts `reason` to at most [`MAX_REASON_LEN`] bytes on a character boundary, ending it with
/// `…` when something was cut.
pub fn truncate_reason(reason: &str) -> std::borrow::Cow<'_, str> {
    if reason.len() <= MAX_REASON_LEN {
        return reason.into();
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_REASON_LEN - ELLIPSIS.len();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &reason[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_codes_are_checked() {
        assert_eq!(CloseCode::application(4000).unwrap().as_u16(), 4000);
        assert_eq!(CloseCode::application(4999).unwrap().as_u16(), 4999);
        let err = CloseCode::application(1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "close code 1000 is not an application code: use 4000 to 4999"
        );
        assert!(CloseCode::application(5000).is_err());
    }

    #[test]
    fn sendable_codes() {
        assert!(CloseCode::NORMAL.is_sendable());
        assert!(CloseCode::TRY_AGAIN_LATER.is_sendable());
        assert!(!CloseCode::NO_STATUS.is_sendable());
        assert!(!CloseCode::ABNORMAL.is_sendable());
        assert!(!CloseCode::from_u16(999).is_sendable());
    }

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_REASON_LEN, "{}", cut.len());
        assert!(cut.ends_with('…'));
        let exact = "a".repeat(MAX_REASON_LEN);
        assert_eq!(truncate_reason(&exact), exact);
    }
}
