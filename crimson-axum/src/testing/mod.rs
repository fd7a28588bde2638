//! Test a Crimson route in a few lines: Ktor's `handleWebSocketConversation`, for axum.
//!
//! [`TestServer`] serves a router on `127.0.0.1:0`; [`TestServer::connect`] opens a typed
//! connection that sends `Up` and receives `Down`, exactly as a client on the wire would.
//! Enable the `test-util` feature (in `[dev-dependencies]`).
//!
//! ```
//! use axum::Router;
//! use crimson_axum::testing::TestServer;
//! use crimson_axum::{CloseCode, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
//!
//! async fn shout(mut session: CrimsonSession<String, String>) {
//!     while let Some(text) = session.recv().await {
//!         let _ = session.send(text.to_uppercase()).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .crimson::<String, String, _, _>("/shout", "shout", shout)
//!     .layer(CrimsonLayer::new().config("shout", CrimsonConfig::<String, String>::new()));
//! let server = TestServer::new(app).await;
//!
//! let mut conn = server.connect::<String, String>("/shout").await.unwrap();
//! conn.send(&"hi".to_string()).await.unwrap();
//! assert_eq!(conn.recv().await.unwrap(), "HI");
//! conn.close(CloseCode::NORMAL, "done").await.unwrap();
//! # }
//! ```

#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use crimson_core::{CloseCode, CrimsonMessage, DecodeError, EncodeError, Payload, PayloadRef};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[cfg(feature = "redis")]
pub use redis::{RedisClusterServer, RedisServer};

/// A router served on `127.0.0.1:0` for the length of a test, by [`serve`](crate::serve).
///
/// Dropping it stops the server: it stops accepting, its Crimson sessions are closed with 1001
/// and, after a short grace period (1 s), dropped.
///
/// [`connect`](Self::connect) returns once the upgrade is complete, and by then the session is
/// in its cluster: a broadcast made right after `connect` reaches it.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// Serves `app` (with `ConnectInfo<SocketAddr>`) on a free loopback port.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn new(app: Router) -> Self {
        let listener = crate::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = crate::serve(listener, app)
                .max_connections_per_ip(None)
                .grace(Duration::from_secs(1))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "test server failed");
            }
        });
        Self { addr, _stop: stop }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Opens a typed connection to `path`.
    pub async fn connect<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        path: &str,
    ) -> Result<TestConnection<Up, Down>, TestError> {
        self.connect_with(path, &[]).await
    }

    /// Opens a typed connection to `path` with extra request headers (auth, origin).
    pub async fn connect_with<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestConnection<Up, Down>, TestError> {
        use tungstenite::client::IntoClientRequest;
        let mut request = self
            .url(path)
            .into_client_request()
            .map_err(TestError::from_ws)?;
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|err| TestError::Connect(err.to_string()))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|err| TestError::Connect(err.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(TestError::from_ws)?;
        // The codec the server chose, if it chose one (`docs/protocol.md`).
        let token = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("crimson."));
        let codecs = (
            crimson_core::codec_index::<Up>(token),
            crimson_core::codec_index::<Down>(token),
        );
        Ok(TestConnection {
            ws,
            timeout: Duration::from_secs(5),
            codecs,
            _types: PhantomData,
        })
    }

    /// Opens a typed connection to `path` that asks for codec `token` (`"cbor"`, ...) with
    /// `Sec-WebSocket-Protocol: crimson.<token>` and speaks it, as a client of a route of
    /// several codecs would (`docs/protocol.md`).
    pub async fn connect_speaking<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<TestConnection<Up, Down>, TestError> {
        let protocol = format!("crimson.{token}");
        self.connect_with(path, &[("sec-websocket-protocol", &protocol)])
            .await
    }
}

/// One client connection to a [`TestServer`]: sends `Up`, receives `Down`.
pub struct TestConnection<Up, Down> {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    timeout: Duration,
    /// The codec the server chose: its index in `Up::CODECS` and `Down::CODECS`.
    codecs: (usize, usize),
    _types: PhantomData<fn(Up) -> Down>,
}

impl<Up, Down> fmt::Debug for TestConnection<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestConnection")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What went wrong in a test conversation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The connection could not be opened; an HTTP answer is given as status and body.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The server answered the upgrade with an HTTP error.
    #[error("the server answered HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The server closed the connection (code and reason) where a message was expected.
    #[error("the server closed the connection: {0} {1}")]
    Closed(CloseCode, String),
    /// Nothing arrived within the timeout.
    #[error("nothing arrived in time")]
    Timeout,
    /// A message from the server did not decode.
    #[error("{0}")]
    Decode(DecodeError),
    /// A message to the server did not encode.
    #[error("{0}")]
    Encode(EncodeError),
    /// The WebSocket failed.
    #[error("WebSocket error: {0}")]
    Protocol(String),
}

impl TestError {
    fn from_ws(err: tungstenite::Error) -> Self {
        match err {
            tungstenite::Error::Http(response) => Self::Http {
                status: response.status().as_u16(),
                body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            },
            other => Self::Connect(other.to_string()),
        }
    }
}

impl<Up: CrimsonMessage, Down: CrimsonMessage> TestConnection<Up, Down> {
    /// How long [`recv`](Self::recv) and [`recv_close`](Self::recv_close) wait (default 5 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends a message.
    pub async fn send(&mut self, message: &Up) -> Result<(), TestError> {
        let payload = message
            .encode_in(self.codecs.0)
            .map_err(TestError::Encode)?;
        self.send_raw(payload).await
    }

    /// Sends any payload, typed or not (to test bad input).
    pub async fn send_raw(&mut self, payload: Payload) -> Result<(), TestError> {
        let message = match payload {
            Payload::Text(text) => Message::Text(text.as_str().into()),
            Payload::Binary(bytes) => Message::Binary(bytes),
        };
        self.ws
            .send(message)
            .await
            .map_err(|err| TestError::Protocol(err.to_string()))
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<Down, TestError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match self.next(deadline).await? {
                Message::Close(frame) => {
                    let (code, reason) = close_parts(frame);
                    return Err(TestError::Closed(code, reason));
                }
                Message::Text(text) => {
                    return Down::decode_in(PayloadRef::Text(text.as_str()), self.codecs.1)
                        .map_err(TestError::Decode)
                }
                Message::Binary(bytes) => {
                    return Down::decode_in(PayloadRef::Binary(&bytes), self.codecs.1)
                        .map_err(TestError::Decode)
                }
                _ => {}
            }
        }
    }

    /// Reads until the server's close frame, skipping messages, and answers it; returns its
    /// code and reason.
    pub async fn recv_close(&mut self) -> Result<(CloseCode, String), TestError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Message::Close(frame) = self.next(deadline).await? {
                // Reading on lets the client send its close reply.
                while let Ok(Some(_)) = tokio::time::timeout(self.timeout, self.ws.next()).await {}
                return Ok(close_parts(frame));
            }
        }
    }

    /// Closes the connection with `code` and `reason`, and waits for the server's reply.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> Result<(), TestError> {
        let frame = CloseFrame {
            code: code.as_u16().into(),
            reason: reason.into(),
        };
        self.ws
            .close(Some(frame))
            .await
            .map_err(|err| TestError::Protocol(err.to_string()))?;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(self.timeout, self.ws.next()).await {}
        Ok(())
    }

    /// The next frame of any kind (pings included), by `deadline`.
    async fn next(&mut self, deadline: tokio::time::Instant) -> Result<Message, TestError> {
        match tokio::time::timeout_at(deadline, self.ws.next()).await {
            Err(_) => Err(TestError::Timeout),
            Ok(None) => Err(TestError::Closed(
                CloseCode::ABNORMAL,
                "connection ended".into(),
            )),
            Ok(Some(Err(err))) => Err(TestError::Protocol(err.to_string())),
            Ok(Some(Ok(message))) => Ok(message),
        }
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (CloseCode, String) {
    match frame {
        Some(frame) => (
            CloseCode::from_u16(frame.code.into()),
            frame.reason.to_string(),
        ),
        None => (CloseCode::NO_STATUS, String::new()),
    }
}
