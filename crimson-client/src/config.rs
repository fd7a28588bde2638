//! [`Config`]: a built client's settings, as the connection task reads them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crimson_core::transport::Deflate;
use crimson_core::{CloseCode, EncodeError, Payload};

use crate::endpoint::DynProvider;
use crate::error::ClientError;
use crate::event::CloseEvent;
use crate::retry::RetryPolicy;

pub(crate) type AbnormalClose = Arc<dyn Fn(CloseCode, &str) -> bool + Send + Sync>;
pub(crate) type ConnectHook =
    Arc<dyn Fn(&str, usize, &mut Vec<Payload>) -> Result<(), EncodeError> + Send + Sync>;
pub(crate) type CloseHook = Arc<dyn Fn(&CloseEvent) + Send + Sync>;
/// Answers a request from the server: its body and the codec's token in, the response's body
/// or a refusal out.
pub(crate) type RequestHook = Arc<
    dyn Fn(crimson_core::PayloadRef<'_>, Option<&str>) -> Result<Payload, crate::Refusal>
        + Send
        + Sync,
>;
pub(crate) type ErrorHook = Arc<dyn Fn(&ClientError) + Send + Sync>;

/// Ping the server every `interval`; no answer within `timeout` means the connection is dead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// The hooks, each called on the client's connection task.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) on_request: Option<RequestHook>,
}

/// A built client's settings.
pub(crate) struct Config {
    pub(crate) endpoint: DynProvider,
    pub(crate) retry: RetryPolicy,
    pub(crate) stable_after: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) close_timeout: Duration,
    pub(crate) abnormal_close: AbnormalClose,
    pub(crate) outgoing_queue: usize,
    pub(crate) incoming_queue: usize,
    pub(crate) max_message_size: usize,
    pub(crate) compression: Deflate,
    pub(crate) retry_unauthorized: u32,
    pub(crate) hooks: Hooks,
    /// The codec asked for, if one was.
    pub(crate) codec: Codec,
    #[cfg(feature = "rustls")]
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// The codec a client speaks: the token it asks for, and the codec's index in `Up::CODECS` and
/// in `Down::CODECS`. Asking for none: each type's default, and no `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Codec {
    pub(crate) token: Option<&'static str>,
    pub(crate) up: usize,
    pub(crate) down: usize,
    /// Ask for the Crimson protocol, `crimson.v1.<token>`, before the plain token.
    pub(crate) protocol: bool,
    /// The token was asked for by the application (`codec(..)`), not taken by default.
    pub(crate) chosen: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("retry", &self.retry)
            .field("stable_after", &self.stable_after)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("close_timeout", &self.close_timeout)
            .field("outgoing_queue", &self.outgoing_queue)
            .field("incoming_queue", &self.incoming_queue)
            .field("max_message_size", &self.max_message_size)
            .field("compression", &self.compression)
            .field("codec", &self.codec.token)
            .finish_non_exhaustive()
    }
}
