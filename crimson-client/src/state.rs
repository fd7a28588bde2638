//! [`ConnectionState`]: where a client is in its connect / retry cycle.

use std::fmt;
use std::time::Duration;

/// Where a [`CrimsonClient`](crate::CrimsonClient) is in its connect / retry cycle.
///
/// Watch it with [`CrimsonClient::state`](crate::CrimsonClient::state), a
/// [`tokio::sync::watch`] receiver that always holds the latest state. A watcher that is slow to
/// look may skip a state that lasted only a moment; every transition, in order, is also an
/// [`ClientEvent::State`](crate::ClientEvent::State) on
/// [`CrimsonClient::events`](crate::CrimsonClient::events).
///
/// ```text
///            connect()                 handshake done
/// Closed ───────────────▶ Connecting ─────────────────▶ Connected
///   ▲                       ▲     │ attempt failed          │ abnormal close, heartbeat
///   │ gave up, disconnect() │     ▼                         │ timeout, connection lost
///   └──────────────────── Retrying { attempt, next_delay } ◀┘
/// ```
///
/// A normal close (1000 by default, see
/// [`abnormal_close`](crate::CrimsonClientBuilder::abnormal_close)),
/// [`disconnect`](crate::CrimsonClient::disconnect), an invalid endpoint and an upgrade refused
/// with a 4xx status other than 408 and 429 go straight to `Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectionState {
    /// Not connected and not trying to: before [`connect`](crate::CrimsonClient::connect),
    /// after [`disconnect`](crate::CrimsonClient::disconnect), after a normal close, or after
    /// the retry policy gave up. [`send`](crate::CrimsonClient::send) fails in this state.
    #[default]
    Closed,
    /// Asking the endpoint provider for the endpoint and opening a connection to it.
    Connecting,
    /// Connected: messages flow both ways.
    Connected,
    /// Waiting `next_delay` before reconnect attempt number `attempt` (1 for the first retry
    /// after a failure; it starts again at 1 only after a connection that stayed up for
    /// [`stable_after`](crate::CrimsonClientBuilder::stable_after), so a connection that
    /// closes sooner counts as one more failed attempt). Messages sent now wait in the outbox.
    Retrying {
        /// Which reconnect attempt this is, counting from 1.
        attempt: u32,
        /// How long the client waits before making it.
        next_delay: Duration,
    },
}

impl ConnectionState {
    /// Whether the state is [`Connected`](Self::Connected).
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }

    /// Whether the state is [`Closed`](Self::Closed).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// Whether the state is [`Retrying`](Self::Retrying).
    pub fn is_retrying(&self) -> bool {
        matches!(self, Self::Retrying { .. })
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed"),
            Self::Connecting => f.write_str("connecting"),
            Self::Connected => f.write_str("connected"),
            Self::Retrying {
                attempt,
                next_delay,
            } => {
                // Whole milliseconds: "in 475ms", not "in 475.231654ms".
                let delay = Duration::from_millis(next_delay.as_millis() as u64);
                write!(f, "retrying (attempt {attempt} in {delay:?})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_well() {
        assert_eq!(ConnectionState::Closed.to_string(), "closed");
        let retrying = ConnectionState::Retrying {
            attempt: 2,
            next_delay: Duration::from_millis(1500),
        };
        assert_eq!(retrying.to_string(), "retrying (attempt 2 in 1.5s)");
        let jittered = ConnectionState::Retrying {
            attempt: 1,
            next_delay: Duration::from_nanos(475_231_654),
        };
        assert_eq!(jittered.to_string(), "retrying (attempt 1 in 475ms)");
        assert!(retrying.is_retrying());
        assert!(!retrying.is_connected());
        assert!(ConnectionState::default().is_closed());
    }
}
