//! Servers and helpers the client tests share: a Crimson chat route, bare tokio-tungstenite
//! servers that do exactly what a test needs, and waits with timeouts.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
use crimson_client::{ClientEvent, ConnectionState, CrimsonMessage, Subscription};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What the chat client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub struct Say {
    pub text: String,
}

/// What the chat server broadcasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub struct Heard {
    pub text: String,
}

pub fn say(text: impl Into<String>) -> Say {
    Say { text: text.into() }
}

/// Time enough for anything on loopback, even on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` after [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the state satisfies `pred`.
pub async fn wait_state(
    state: &mut watch::Receiver<ConnectionState>,
    what: &str,
    pred: impl FnMut(&ConnectionState) -> bool,
) {
    within(what, state.wait_for(pred))
        .await
        .expect("client dropped");
}

/// The next event that `pick` maps to `Some`, skipping the others.
pub async fn next_event<T>(
    events: &mut Subscription<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let event = events.next().await.expect("events ended").expect("lagged");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
}

/// A Crimson chat route on `addr` (port 0 for any) that broadcasts every `Say` as `Heard`.
pub struct ChatServer {
    pub addr: SocketAddr,
    layer: CrimsonLayer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn chat(mut session: CrimsonSession<Say, Heard>) {
    while let Some(message) = session.recv().await {
        let _ = session
            .cluster()
            .broadcast(&Heard { text: message.text })
            .await;
    }
}

impl ChatServer {
    pub async fn start(addr: &str) -> Self {
        const CHAT: ConfigName<Say, Heard> = ConfigName::new("chat");
        let layer = CrimsonLayer::new().config(CHAT, CrimsonConfig::new());
        let app = Router::new()
            .crimson("/chat", CHAT, chat)
            .layer(layer.clone());
        let listener = crimson_axum::bind(addr).await.expect("bind");
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = layer.shutdown_handle();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.on(async move {
                    let _ = stopped.await;
                }))
                .await
                .unwrap();
        });
        Self {
            addr,
            layer,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/chat", self.addr)
    }

    /// Closes every session with 1001 and stops listening; returns once the port is free.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = within("the chat server to stop", &mut self.task).await;
        let _ = self.layer.live_sessions();
    }
}

/// A bare tokio-tungstenite server: each accepted connection is handed to `session` with its
/// request headers and its number (from 1). Dropping it (or `stop`) closes the listener and
/// drops every connection without a close frame.
pub struct RawServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

pub type Ws = WebSocketStream<tokio::net::TcpStream>;

impl RawServer {
    pub async fn start<F, Fut>(addr: &str, session: F) -> Self
    where
        F: Fn(Ws, HeaderMap, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await.expect("bind");
        Self::serve(listener, session)
    }

    pub fn serve<F, Fut>(listener: TcpListener, session: F) -> Self
    where
        F: Fn(Ws, HeaderMap, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let session = Arc::new(session);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let mut count = 0;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                count += 1;
                let number = count;
                let session = session.clone();
                connections.spawn(async move {
                    let headers = Arc::new(Mutex::new(HeaderMap::new()));
                    let callback = HeaderRecorder(headers.clone());
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                        return;
                    };
                    let headers = headers.lock().unwrap().clone();
                    session(ws, headers, number).await;
                });
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops listening and drops every connection (no close frames).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the upgrade request's headers.
struct HeaderRecorder(Arc<Mutex<HeaderMap>>);

impl Callback for HeaderRecorder {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        *self.0.lock().unwrap() = request.headers().clone();
        Ok(response)
    }
}

/// Reads text messages until the connection ends, pushing each into `into`.
pub async fn record_texts(ws: &mut Ws, into: &Mutex<Vec<String>>) {
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            into.lock().unwrap().push(text.to_string());
        }
    }
}

/// A port nothing listens on (bound, then released).
pub async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Turns on tracing output for a test run with `RUST_LOG` set.
pub fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Larger than everything the kernel buffers between a client and a server that stopped
/// reading (the client's send buffer grows to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default;
/// the server's receive buffer is kept small by [`small_window_listener`]), yet within a
/// tungstenite server's default frame limit (16 MiB): writing it stalls until the server reads.
pub const STALLING_LEN: usize = 12 << 20;

/// A message of [`STALLING_LEN`] characters.
pub fn stalling_message() -> Say {
    say("x".repeat(STALLING_LEN))
}

/// A listener on 127.0.0.1 whose connections have a small receive buffer, so that a client
/// writing to one that stopped reading is stalled by at most its own send buffer.
pub fn small_window_listener() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 << 10).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(16).unwrap()
}

/// Waits, without reading, until at least `bytes` have arrived on `ws` and wait unread: the
/// client is writing a message the server has not read.
pub async fn wait_unread(ws: &Ws, bytes: usize) {
    let mut buf = vec![0; bytes];
    within("unread bytes to pile up", async {
        loop {
            let got = ws.get_ref().peek(&mut buf).await.unwrap();
            if got >= bytes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The panics [`record_panics`] saw, as messages.
pub type Panics = Arc<Mutex<Vec<String>>>;

/// Records every panic on the calling thread (a `#[tokio::test]` runs its tasks there): a
/// panic in a task the client spawned is otherwise swallowed by its runtime. Read the record
/// with `.lock().unwrap().clone()` before asserting on it.
pub fn record_panics() -> Panics {
    static RECORDED: std::sync::OnceLock<Mutex<Vec<(std::thread::ThreadId, Panics)>>> =
        std::sync::OnceLock::new();
    let recorded = RECORDED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_lock`: a hook that waited for a lock the panicking thread holds would hang.
            if let Some(Ok(recorded)) = RECORDED.get().map(Mutex::try_lock) {
                let current = std::thread::current().id();
                for (thread, panics) in recorded.iter() {
                    if let (true, Ok(mut panics)) = (*thread == current, panics.try_lock()) {
                        panics.push(info.to_string());
                    }
                }
            }
            previous(info);
        }));
        Mutex::new(Vec::new())
    });
    let panics = Arc::new(Mutex::new(Vec::new()));
    recorded
        .lock()
        .unwrap()
        .push((std::thread::current().id(), panics.clone()));
    panics
}
