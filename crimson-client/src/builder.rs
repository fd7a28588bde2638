//! [`CrimsonClientBuilder`]: every client setting, checked when the client is built.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crimson_core::transport::Deflate;
use crimson_core::{CloseCode, CrimsonMessage, EncodeError, Payload};

use crate::client::CrimsonClient;
use crate::config::{AbnormalClose, Codec, Config, Heartbeat, Hooks};
use crate::endpoint::{erase, DynProvider, Endpoint, EndpointProvider};
use crate::error::{BuildError, ClientError};
use crate::event::CloseEvent;
use crate::retry::RetryPolicy;

/// How long a connection must stay up before the backoff starts over, by default.
const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(5);

/// Builds a [`CrimsonClient`]; start with [`CrimsonClient::builder`].
///
/// Only the endpoint is required. The defaults:
///
/// | setting | default |
/// |---|---|
/// | [`retry`](Self::retry) | [`RetryPolicy::default()`]: exponential 1 s → 30 s, 20% jitter, no limit |
/// | [`stable_after`](Self::stable_after) | 5 s up before the backoff starts over |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s (provider + TCP + TLS + handshake) |
/// | [`heartbeat`](Self::heartbeat) | ping every 30 s, dead after 15 s without an answer |
/// | [`abnormal_close`](Self::abnormal_close) | every code but 1000 is abnormal (reconnects) |
/// | [`close_timeout`](Self::close_timeout) | 5 s to write the queue and close, 5 s more for the answer |
/// | [`outgoing_queue`](Self::outgoing_queue) | 256 messages |
/// | [`incoming_queue`](Self::incoming_queue) | 256 messages per subscriber |
/// | [`max_message_size`](Self::max_message_size) | 16 MiB |
/// | [`compression`](Self::compression) | permessage-deflate offered, without context takeover (used when the server agrees) |
///
/// ```
/// use std::time::Duration;
/// use crimson_client::{CloseCode, CrimsonClient, RetryPolicy};
///
/// let client = CrimsonClient::<String, String>::builder()
///     .url("ws://127.0.0.1:54321/chat")
///     .retry(RetryPolicy::exponential(Duration::from_millis(200), Duration::from_secs(10))?)
///     // Start the backoff over only after a connection lasted 10 s.
///     .stable_after(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(5))
///     .heartbeat(Duration::from_secs(20), Duration::from_secs(5))
///     // 1001 (server going away) is expected during deploys: reconnect, but quietly.
///     .abnormal_close(|code, _reason| code != CloseCode::NORMAL)
///     .on_close(|close| eprintln!("closed: {} {}", close.code, close.reason))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct CrimsonClientBuilder<Up, Down> {
    endpoint: Option<DynProvider>,
    retry: RetryPolicy,
    stable_after: Duration,
    connect_timeout: Duration,
    heartbeat: Option<Heartbeat>,
    close_timeout: Duration,
    abnormal_close: AbnormalClose,
    outgoing_queue: usize,
    incoming_queue: usize,
    max_message_size: usize,
    compression: Deflate,
    codec: Option<String>,
    protocol: bool,
    retry_unauthorized: u32,
    hooks: Hooks,
    root_certificates: Vec<Vec<u8>>,
    _messages: PhantomData<fn(Up) -> Down>,
}

impl<Up, Down> fmt::Debug for CrimsonClientBuilder<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrimsonClientBuilder")
            .field("up", &std::any::type_name::<Up>())
            .field("down", &std::any::type_name::<Down>())
            .field("endpoint", &self.endpoint.is_some())
            .field("retry", &self.retry)
            .field("stable_after", &self.stable_after)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("close_timeout", &self.close_timeout)
            .field("outgoing_queue", &self.outgoing_queue)
            .field("incoming_queue", &self.incoming_queue)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl<Up, Down> CrimsonClient<Up, Down>
where
    Up: CrimsonMessage,
    Down: CrimsonMessage + Clone,
{
    /// A builder; give it at least an endpoint.
    pub fn builder() -> CrimsonClientBuilder<Up, Down> {
        CrimsonClientBuilder::new()
    }
}

impl<Up, Down> CrimsonClientBuilder<Up, Down>
where
    Up: CrimsonMessage,
    Down: CrimsonMessage + Clone,
{
    pub(crate) fn new() -> Self {
        Self {
            endpoint: None,
            retry: RetryPolicy::default(),
            stable_after: DEFAULT_STABLE_AFTER,
            connect_timeout: Duration::from_secs(10),
            heartbeat: Some(Heartbeat {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(15),
            }),
            close_timeout: Duration::from_secs(5),
            abnormal_close: Arc::new(|code, _| code != CloseCode::NORMAL),
            outgoing_queue: 256,
            incoming_queue: 256,
            max_message_size: 16 << 20,
            compression: Deflate::new(),
            codec: None,
            protocol: true,
            retry_unauthorized: 0,
            hooks: Hooks::default(),
            root_certificates: Vec::new(),
            _messages: PhantomData,
        }
    }

    /// Connect to this `ws://` or `wss://` URL every time.
    pub fn url(self, url: impl Into<String>) -> Self {
        self.endpoint(Endpoint::new(url))
    }

    /// Ask `provider` for the URL and headers before every connection attempt (see
    /// [`EndpointProvider`]), so a token can be refreshed between attempts.
    pub fn endpoint(mut self, provider: impl EndpointProvider) -> Self {
        self.endpoint = Some(erase(provider));
        self
    }

    /// When to reconnect after a failed attempt or an abnormal close.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long a connection must stay up before the retry policy starts over (5 s unless
    /// set).
    ///
    /// A connection that closes abnormally sooner counts as a failed attempt: the next delay
    /// is the policy's next one, not its first, and the attempt counts toward
    /// [`RetryPolicy::with_max_attempts`]. So a server that completes the handshake and closes
    /// at once, again and again (1013 "try again later" at a connection limit, 1008 or a 4xxx
    /// code for a token it refuses), is backed off from exponentially and the client gives up
    /// where the policy says, instead of reconnecting at the initial delay forever.
    ///
    /// Only time counts, from the end of the handshake to the end of the connection; messages
    /// received meanwhile do not. `Duration::ZERO` counts every connection as stable: the
    /// backoff starts over after every handshake.
    pub fn stable_after(mut self, duration: Duration) -> Self {
        self.stable_after = duration;
        self
    }

    /// How long one attempt may take, from asking the endpoint provider to the end of the
    /// WebSocket handshake. A slower attempt fails with [`ClientError::ConnectTimeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Ping the server every `interval` while connected. When nothing (no pong, no message)
    /// arrives within `timeout` of a ping, the connection is taken to be dead: it is dropped,
    /// reported as [`ClientError::Heartbeat`], and closes as abnormal (1006), so the client
    /// reconnects. Any WebSocket server answers pings; Crimson servers also ping on their own.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat = Some(Heartbeat { interval, timeout });
        self
    }

    /// Send no pings: a connection that dies silently (a pulled cable, a sleeping laptop) is
    /// noticed only when the operating system gives up on it, which can take many minutes.
    pub fn without_heartbeat(mut self) -> Self {
        self.heartbeat = None;
        self
    }

    /// Which closes are abnormal and so reconnect (per the retry policy), given the close code
    /// and reason. The default treats every code but 1000 as abnormal. A connection that drops
    /// or goes silent without a close frame is asked about as 1006. A close this client made
    /// ([`disconnect`](crate::CrimsonClient::disconnect)) never reconnects.
    pub fn abnormal_close(
        mut self,
        predicate: impl Fn(CloseCode, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.abnormal_close = Arc::new(predicate);
        self
    }

    /// How long [`disconnect`](crate::CrimsonClient::disconnect) may take to write what was
    /// queued and its close frame (messages it could not write by then are discarded and
    /// reported), and then how long it waits for the server to answer the close frame before
    /// dropping the connection.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How many messages may wait in the outbox (while the client connects, retries, or the
    /// socket is slow) before [`send`](crate::CrimsonClient::send) fails with
    /// [`SendError::Full`](crate::SendError::Full). Messages the writer has already taken do
    /// not count, so [`queued`](crate::CrimsonClient::queued) may briefly exceed it.
    pub fn outgoing_queue(mut self, messages: usize) -> Self {
        self.outgoing_queue = messages;
        self
    }

    /// How many incoming messages each subscriber (and [`receive`](crate::CrimsonClient::receive))
    /// may fall behind before it is told it lagged (see [`Subscription`](crate::Subscription)).
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.incoming_queue = messages;
        self
    }

    /// permessage-deflate: offered by default without context takeover, and used when the
    /// server agrees (a Crimson server does when its config turns compression on);
    /// [`Deflate::disabled`] offers nothing.
    pub fn compression(mut self, deflate: Deflate) -> Self {
        self.compression = deflate;
        self
    }

    /// The largest message the client accepts, however it is split into frames (and,
    /// compressed, once inflated); a larger one fails the connection: the client closes it
    /// with 1009, reports [`ClientError::Connection`] and reconnects.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Trust this root certificate (DER) for `wss://`, besides the webpki roots: a private CA,
    /// or a test server's self-signed certificate. Checked by [`build`](Self::build).
    #[cfg(feature = "rustls")]
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(der.into());
        self
    }

    /// Called each time a connection is made, before anything else is sent on it: what the
    /// hook [`send`](Connected::send)s goes out first, ahead of the messages waiting in the
    /// outbox (Kotlin Crimson's `onConnect { send(..) }`: a subscription, a hello, a resume).
    ///
    /// ```
    /// # use crimson_client::CrimsonClient;
    /// let client = CrimsonClient::<String, String>::builder()
    ///     .url("ws://127.0.0.1:54321/chat")
    ///     .on_connect(|connected| {
    ///         println!("connected to {}", connected.url());
    ///         connected.send("subscribe: lobby".to_string())
    ///     })
    ///     .build()?;
    /// # Ok::<(), crimson_client::BuildError>(())
    /// ```
    ///
    /// Hooks run on the client's connection task, so keep them quick (hand slow work to a
    /// task of your own), and a hook that holds a clone of the client keeps it alive: prefer
    /// [`events`](crate::CrimsonClient::events) for anything that needs the client. A message
    /// that does not encode fails the hook: the error is reported and the connection goes on.
    pub fn on_connect(
        mut self,
        hook: impl Fn(&mut Connected<'_, Up>) -> Result<(), EncodeError> + Send + Sync + 'static,
    ) -> Self
    where
        Up: CrimsonMessage,
    {
        self.hooks.on_connect = Some(Arc::new(
            move |url: &str, codec: usize, first: &mut Vec<Payload>| {
                let mut connected = Connected {
                    url,
                    codec,
                    first,
                    _up: PhantomData,
                };
                hook(&mut connected)
            },
        ));
        self
    }

    /// How many times in a row an upgrade refused with 401 or 403 is tried again, the
    /// endpoint provider asked each time (so a refreshed token gets its chance), with the
    /// retry policy's delays, before the client gives up and closes (default 0: a refusal is
    /// final). Other 4xx refusals stay final.
    pub fn retry_unauthorized(mut self, attempts: u32) -> Self {
        self.retry_unauthorized = attempts;
        self
    }

    /// Called each time a connection closes, with the code, reason, who closed it and whether
    /// the client will reconnect.
    pub fn on_close(mut self, hook: impl Fn(&CloseEvent) + Send + Sync + 'static) -> Self {
        self.hooks.on_close = Some(Arc::new(hook));
        self
    }

    /// Called with every [`ClientError`]: failed attempts, dead connections, messages that did
    /// not decode, giving up.
    pub fn on_error(mut self, hook: impl Fn(&ClientError) + Send + Sync + 'static) -> Self {
        self.hooks.on_error = Some(Arc::new(hook));
        self
    }

    /// Answers the server's requests (`session.request(..)` on a server whose config turns the
    /// Crimson protocol on): `answer` gets the request and returns its response, of the
    /// request type's `Response` type, or a [`Refusal`](crate::Refusal). It runs on the
    /// client's connection task: keep it quick. Without it, a request from the server is
    /// answered with an error (`500`, "not answered").
    pub fn on_request(
        mut self,
        answer: impl Fn(Down) -> Result<Down::Response, crate::Refusal> + Send + Sync + 'static,
    ) -> Self
    where
        Down: crimson_core::CrimsonRequest,
    {
        use crimson_core::codec_index;
        self.hooks.on_request = Some(Arc::new(move |body, token| {
            let request = Down::decode_in(body, codec_index::<Down>(token)).map_err(|err| {
                crate::Refusal::new(400, format!("the request did not decode: {err}"))
            })?;
            let response = answer(request)?;
            response
                .encode_in(codec_index::<Down::Response>(token))
                .map_err(|err| {
                    crate::Refusal::new(500, format!("the response did not encode: {err}"))
                })
        }));
        self
    }

    /// Asks the server for codec `token` (`"json"`, `"cbor"`, `"msgpack"`, `"protobuf"`) with
    /// `Sec-WebSocket-Protocol: crimson.<token>`, and speaks it both ways. Both `Up` and `Down`
    /// must list it (`#[crimson(codecs(..))]`); the server must agree, or the connection fails
    /// for good with [`ClientError::Codec`](crate::ClientError::Codec). Without it the client
    /// asks for nothing and speaks each type's default codec (`docs/protocol.md`).
    pub fn codec(mut self, token: impl Into<String>) -> Self {
        self.codec = Some(token.into());
        self
    }

    /// Whether to ask for the Crimson protocol, `crimson.v1` (`docs/protocol.md`): on by
    /// default, for message types that name their codec (the derive does). The client asks
    /// for `crimson.v1.<codec>` first and the plain codec after it, so a server that does not
    /// speak the protocol gives plain frames, as before. Requests
    /// ([`request`](crate::CrimsonClient::request),
    /// [`on_request`](Self::on_request)) need it.
    pub fn protocol(mut self, ask: bool) -> Self {
        self.protocol = ask;
        self
    }

    /// Checks the settings and builds the client, closed: call
    /// [`connect`](CrimsonClient::connect) to start it. Needs no runtime.
    pub fn build(self) -> Result<CrimsonClient<Up, Down>, BuildError> {
        let endpoint = self.endpoint.ok_or(BuildError::MissingEndpoint)?;
        for (duration, name) in [
            (self.connect_timeout, "connect timeout"),
            (self.close_timeout, "close timeout"),
        ] {
            if duration.is_zero() {
                return Err(BuildError::ZeroDuration(name));
            }
        }
        if let Some(heartbeat) = self.heartbeat {
            if heartbeat.interval.is_zero() {
                return Err(BuildError::ZeroDuration("heartbeat interval"));
            }
            if heartbeat.timeout.is_zero() {
                return Err(BuildError::ZeroDuration("heartbeat timeout"));
            }
        }
        for (capacity, name) in [
            (self.outgoing_queue, "outgoing queue"),
            (self.incoming_queue, "incoming queue"),
            (self.max_message_size, "maximum message size"),
        ] {
            if capacity == 0 {
                return Err(BuildError::ZeroCapacity(name));
            }
        }
        let mut codec = match self.codec {
            // Each type's default, named when both name it the same (asking for it is then
            // possible, and the protocol too).
            None => match (Up::CODECS.first(), Down::CODECS.first()) {
                (Some(up), Some(down)) if up.token == down.token => Codec {
                    token: Some(down.token),
                    ..Codec::default()
                },
                _ => Codec::default(),
            },
            Some(token) => {
                let up = Up::CODECS.iter().position(|codec| codec.token == token);
                let down = Down::CODECS.iter().position(|codec| codec.token == token);
                match (up, down) {
                    (Some(up), Some(down)) => Codec {
                        token: Some(Down::CODECS[down].token),
                        up,
                        down,
                        protocol: false,
                        chosen: true,
                    },
                    _ => {
                        let spoken = Down::CODECS
                            .iter()
                            .filter(|d| Up::CODECS.iter().any(|u| u.token == d.token))
                            .map(|codec| format!("\"{}\"", codec.token))
                            .collect::<Vec<_>>();
                        return Err(BuildError::UnknownCodec {
                            codec: token,
                            spoken: if spoken.is_empty() {
                                "none: list codecs with #[crimson(codecs(..))] on both types"
                                    .to_owned()
                            } else {
                                spoken.join(", ")
                            },
                        });
                    }
                }
            }
        };
        codec.protocol = self.protocol && codec.token.is_some();
        #[cfg(feature = "rustls")]
        let tls = crate::tls::client_config(&self.root_certificates)?;
        #[cfg(not(feature = "rustls"))]
        let _ = self.root_certificates;
        Ok(CrimsonClient::from_config(Config {
            endpoint,
            retry: self.retry,
            stable_after: self.stable_after,
            connect_timeout: self.connect_timeout,
            heartbeat: self.heartbeat,
            close_timeout: self.close_timeout,
            abnormal_close: self.abnormal_close,
            outgoing_queue: self.outgoing_queue,
            incoming_queue: self.incoming_queue,
            max_message_size: self.max_message_size,
            compression: self.compression,
            retry_unauthorized: self.retry_unauthorized,
            hooks: self.hooks,
            codec,
            #[cfg(feature = "rustls")]
            tls,
        }))
    }
}

/// A connection just made, as [`on_connect`](CrimsonClientBuilder::on_connect) sees it.
pub struct Connected<'a, Up> {
    url: &'a str,
    /// The index of the client's codec in `Up::CODECS`.
    codec: usize,
    first: &'a mut Vec<Payload>,
    _up: PhantomData<fn(Up)>,
}

impl<Up> fmt::Debug for Connected<'_, Up> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("url", &self.url)
            .field("to_send", &self.first.len())
            .finish()
    }
}

impl<Up: CrimsonMessage> Connected<'_, Up> {
    /// The URL connected to, without its query (which may hold secrets).
    pub fn url(&self) -> &str {
        self.url
    }

    /// Sends `message` first on this connection, ahead of the messages waiting in the outbox.
    pub fn send(&mut self, message: Up) -> Result<(), EncodeError> {
        self.first.push(message.encode_in(self.codec)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> CrimsonClientBuilder<String, String> {
        CrimsonClient::builder()
    }

    #[test]
    fn build_checks_every_setting() {
        let err = |b: CrimsonClientBuilder<String, String>| b.build().unwrap_err().to_string();
        assert_eq!(
            err(builder()),
            "no endpoint: call url(..) or endpoint(..) on the builder"
        );
        let with_url = || builder().url("ws://127.0.0.1:1/x");
        assert_eq!(
            err(with_url().connect_timeout(Duration::ZERO)),
            "the connect timeout must be longer than zero"
        );
        assert_eq!(
            err(with_url().heartbeat(Duration::from_secs(1), Duration::ZERO)),
            "the heartbeat timeout must be longer than zero"
        );
        assert_eq!(
            err(with_url().outgoing_queue(0)),
            "the outgoing queue must be at least 1"
        );
        assert_eq!(
            err(with_url().incoming_queue(0)),
            "the incoming queue must be at least 1"
        );
        assert!(with_url().without_heartbeat().build().is_ok());
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn a_bad_root_certificate_is_refused() {
        let err = builder()
            .url("wss://127.0.0.1:1/x")
            .add_root_certificate(b"not a certificate".to_vec())
            .build()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid root certificate"),
            "{err}"
        );
    }
}
