//! The servers under test for the load benchmark (`bench`): one Crimson server, two raw axum
//! WebSocket servers and one server on a peer framework (ezsockets), all doing the same work,
//! so `bench` can compare them in one run.
//!
//! `bench-server --impl crimson|raw|raw-tuned|ezsockets --addr 127.0.0.1:0 --scenario echo|broadcast|idle [--compression off|on|takeover] [--metrics]`
//!
//! `--metrics` (Crimson only): a Prometheus recorder records Crimson's metrics, served at
//! `/metrics`; without it no recorder is installed and recording them costs next to nothing.
//!
//! It prints its bound address (`127.0.0.1:PORT`) as one line on stdout, then serves until its
//! standard input closes (the `bench` process that spawned it exits or lets go of it).
//!
//! Scenarios (the routes served):
//! - `echo` and `idle`: `/echo` decodes every JSON message `{"seq":N,"pad":"..."}` into a
//!   typed value, encodes it again and sends it back; Crimson also serves `/doc`, the same
//!   for a JSON document `{"seq":N,"items":[...]}` (the `compression` program's).
//! - `broadcast`: `/sub` subscribes; every JSON message `{"seq":N,"sent":T,"pad":"..."}` sent to
//!   `/pub` is decoded once, encoded once and queued for every subscriber. The raw servers
//!   also serve `/chat`, a chat room as the `chat-server` example has it (every connection
//!   subscribes; `{"text"}` in, `{"text","from","at"}` out to all), the `chat` scenario's
//!   baseline.
//!
//! Implementations:
//! - `crimson`: Crimson routes with `CrimsonConfig::new()` (its defaults).
//! - `raw`: axum's `WebSocketUpgrade` with its default buffers (128 KiB read buffer); echo
//!   uses `socket.send` (one flush per message), as a plain axum handler does. Broadcast is the
//!   strong baseline: a writer task per subscriber fed by a bounded channel (256, like
//!   Crimson's queue), the payload encoded once and shared as `Utf8Bytes`, `feed` for what is
//!   ready and one `flush`.
//! - `raw-tuned`: `raw` with Crimson's buffer sizes (2 KiB read, 8 KiB write, 64 KiB message
//!   and frame limits).
//! - `ezsockets`: the [ezsockets](https://crates.io/crates/ezsockets) actor framework (its
//!   crates.io release) through its axum runner, with its defaults: a session actor per
//!   connection whose `on_text` decodes and answers; broadcast the way its chat example does
//!   it, a server actor that holds the subscribers' handles and queues each message on all of
//!   them (see `peer.rs`).
//!
//! Every listener is the same: `SO_REUSEADDR`, a 4096-deep accept backlog, `TCP_NODELAY`.

mod peer;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use crimson_axum::cluster::Cluster;
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonSession, Deflate, RouterExt,
};
use crimson_examples::{arg, ChatMessage, ChatResponse};
use futures_util::{SinkExt, StreamExt};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// The accept backlog of every listener (the same as `crimson_axum::BACKLOG`).
const BACKLOG: u32 = 4096;
/// The bound of each raw subscriber's queue: Crimson's default outgoing queue.
const RAW_QUEUE: usize = 256;

/// What echo clients send and get back.
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Echo {
    seq: u64,
    pad: String,
}

/// What the publisher sends and every subscriber gets: JSON, or CBOR for a subscriber that
/// asks (`bench --only mixed`).
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs("json", "cbor"))]
struct Tick {
    seq: u64,
    sent: u64,
    pad: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Crimson,
    Raw,
    RawTuned,
    Ezsockets,
}

// ---------------------------------------------------------------------------------------
// Crimson

async fn crimson_echo(mut session: CrimsonSession<Echo, Echo>) {
    while let Some(message) = session.recv().await {
        if session.send(message).await.is_err() {
            break;
        }
    }
}

/// Echo as requests (`bench --only requests`): every request is answered with itself.
impl crimson_axum::CrimsonRequest for Echo {
    type Response = Echo;
}

async fn crimson_answer(mut session: CrimsonSession<Echo, Echo>) {
    while let Some(incoming) = session.recv_incoming().await {
        let answered = match incoming {
            // `seq` u64::MAX: never answered in time (the bench measures how late a client's
            // timeout fires under load); answered a second later.
            crimson_axum::Incoming::Request(request) if request.value().seq == u64::MAX => {
                let (echo, responder) = request.into_parts();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let _ = responder.respond(echo);
                });
                true
            }
            crimson_axum::Incoming::Request(request) => {
                let (echo, responder) = request.into_parts();
                responder.respond(echo).is_ok()
            }
            crimson_axum::Incoming::Message(echo) => session.send(echo).await.is_ok(),
        };
        if !answered {
            break;
        }
    }
}

async fn crimson_subscriber(mut session: CrimsonSession<Tick, Tick>) {
    while session.recv().await.is_some() {}
}

async fn crimson_publisher(
    State(subscribers): State<Cluster<Tick>>,
    mut session: CrimsonSession<Tick, Tick>,
) {
    while let Some(tick) = session.recv().await {
        if let Err(err) = subscribers.broadcast(&tick).await {
            eprintln!("bench-server: broadcast failed: {err}");
        }
    }
}

const SUB: ConfigName<Tick, Tick> = ConfigName::new("sub");
const HSUB: ConfigName<Tick, Tick> = ConfigName::new("hsub");
const HPUB: ConfigName<Tick, Tick> = ConfigName::new("hpub");
/// Publications each stream keeps on `/hsub` (enough for `bench --only history`'s recovery of
/// 1,000).
const HISTORY: usize = 1000;
const PUB: ConfigName<Tick, Tick> = ConfigName::new("pub");
const ECHO: ConfigName<Echo, Echo> = ConfigName::new("echo");
const REQUEST: ConfigName<Echo, Echo> = ConfigName::new("request");
const DOC: ConfigName<Doc, Doc> = ConfigName::new("doc");

/// A document of a few KiB, as dashboards send: `{"seq":N,"items":[{...}, ...]}`.
#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Doc {
    seq: u64,
    items: Vec<Item>,
}

/// One row of a [`Doc`].
#[derive(Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
    price: f64,
    tags: Vec<String>,
    active: bool,
}

async fn crimson_doc_echo(mut session: CrimsonSession<Doc, Doc>) {
    while let Some(message) = session.recv().await {
        if session.send(message).await.is_err() {
            break;
        }
    }
}

/// `--compression off | on | takeover`: Crimson without permessage-deflate (its default),
/// with it (no context takeover, Crimson's default when on), or with context takeover both ways.
fn compression() -> Deflate {
    match arg("compression", "BENCH_COMPRESSION", "off").as_str() {
        "on" => Deflate::new(),
        "takeover" => Deflate::new()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false),
        _ => Deflate::disabled(),
    }
}

/// Crimson's defaults, but for the inbound rate limits: the scenarios flood on purpose (raw
/// axum has no limits to compare with).
fn crimson_config<Up: CrimsonMessage, Down: CrimsonMessage>() -> CrimsonConfig<Up, Down> {
    CrimsonConfig::new()
        .inbound_rate(None)
        .inbound_bandwidth(None)
        .compression(compression())
}

/// Installs a Prometheus recorder (before the app's first request, when Crimson resolves its
/// metrics) and serves what it recorded at `/metrics`.
#[cfg(feature = "metrics")]
fn with_metrics(app: Router) -> std::io::Result<Router> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(app.route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    ))
}

fn crimson_app(scenario: &str) -> Router {
    match scenario {
        "broadcast" => {
            let subscribers = Cluster::<Tick>::local();
            // The same fan-out with history (`bench --only history`): subscribers of the
            // Crimson protocol on both, so that only the history differs.
            let kept_cluster = Cluster::<Tick>::local();
            let layer = CrimsonLayer::new()
                .config(
                    SUB,
                    crimson_config().protocol(true).cluster(subscribers.clone()),
                )
                .config(PUB, crimson_config())
                .config(
                    HSUB,
                    crimson_config()
                        .protocol(true)
                        .history(HISTORY, std::time::Duration::from_secs(300))
                        .cluster(kept_cluster.clone()),
                )
                .config(HPUB, crimson_config());
            let kept_cluster_for_pub = kept_cluster.clone();
            Router::new()
                .crimson("/sub", SUB, crimson_subscriber)
                .crimson("/pub", PUB, crimson_publisher)
                .crimson("/hsub", HSUB, crimson_subscriber)
                .crimson("/hpub", HPUB, move |session| {
                    crimson_publisher(State(kept_cluster_for_pub.clone()), session)
                })
                .layer(layer)
                .with_state(subscribers)
        }
        _ => Router::new()
            .crimson("/echo", ECHO, crimson_echo)
            .crimson("/request", REQUEST, crimson_answer)
            .crimson("/doc", DOC, crimson_doc_echo)
            .layer(
                CrimsonLayer::new()
                    .config(ECHO, crimson_config())
                    .config(REQUEST, crimson_config().protocol(true))
                    .config(DOC, crimson_config()),
            ),
    }
}

// ---------------------------------------------------------------------------------------
// Raw axum

/// The raw servers' state: buffer tuning and the broadcast hub.
#[derive(Clone)]
struct Raw {
    tuned: bool,
    hub: Arc<Hub>,
}

/// The raw broadcast baseline's subscribers: one bounded queue each.
#[derive(Default)]
struct Hub {
    next_id: AtomicU64,
    subscribers: RwLock<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
    dropped: AtomicU64,
}

impl Raw {
    fn upgrade(&self, ws: WebSocketUpgrade) -> WebSocketUpgrade {
        if self.tuned {
            ws.read_buffer_size(2 << 10)
                .write_buffer_size(8 << 10)
                .max_message_size(64 << 10)
                .max_frame_size(64 << 10)
        } else {
            ws
        }
    }
}

async fn raw_echo_route(State(raw): State<Raw>, ws: WebSocketUpgrade) -> Response {
    raw.upgrade(ws).on_upgrade(raw_echo)
}

async fn raw_echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(echo) = serde_json::from_str::<Echo>(&text) else {
            break;
        };
        let Ok(out) = serde_json::to_string(&echo) else {
            break;
        };
        if socket.send(Message::Text(out.into())).await.is_err() {
            break;
        }
    }
}

async fn raw_subscriber_route(State(raw): State<Raw>, ws: WebSocketUpgrade) -> Response {
    let hub = raw.hub.clone();
    raw.upgrade(ws)
        .on_upgrade(move |socket| raw_subscriber(hub, socket))
}

async fn raw_subscriber(hub: Arc<Hub>, socket: WebSocket) {
    raw_member(hub, socket, false).await;
}

/// The raw chat room (the `chat` scenario's stand-in for the chat-server example): every
/// connection subscribes, and what any of them sends, `{"text": ...}`, is decoded and
/// broadcast as `{"text", "from", "at"}`, encoded once, as the chat server does.
async fn raw_chat_route(State(raw): State<Raw>, ws: WebSocketUpgrade) -> Response {
    let hub = raw.hub.clone();
    raw.upgrade(ws)
        .on_upgrade(move |socket| raw_member(hub, socket, true))
}

/// A subscriber; with `chat`, also a publisher of what it sends.
async fn raw_member(hub: Arc<Hub>, socket: WebSocket, chat: bool) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(RAW_QUEUE);
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    hub.subscribers
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            while let Ok(next) = rx.try_recv() {
                if sink.feed(Message::Text(next)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Close(_) => break,
            Message::Text(text) if chat => {
                let Ok(said) = serde_json::from_str::<ChatMessage>(&text) else {
                    break;
                };
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let heard = ChatResponse {
                    text: said.text,
                    from: id.to_string(),
                    at,
                };
                let Ok(out) = serde_json::to_string(&heard) else {
                    break;
                };
                hub.publish(Utf8Bytes::from(out));
            }
            _ => {}
        }
    }
    hub.subscribers
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    writer.abort();
}

async fn raw_publisher_route(State(raw): State<Raw>, ws: WebSocketUpgrade) -> Response {
    let hub = raw.hub.clone();
    raw.upgrade(ws)
        .on_upgrade(move |socket| raw_publisher(hub, socket))
}

async fn raw_publisher(hub: Arc<Hub>, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(tick) = serde_json::from_str::<Tick>(&text) else {
            break;
        };
        let Ok(out) = serde_json::to_string(&tick) else {
            break;
        };
        hub.publish(Utf8Bytes::from(out));
    }
}

impl Hub {
    /// Queues `out` for every subscriber: encoded once, every clone a reference-count bump.
    fn publish(&self, out: Utf8Bytes) {
        let subscribers = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        for tx in subscribers.values() {
            if tx.try_send(out.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn raw_app(scenario: &str, tuned: bool) -> Router {
    let state = Raw {
        tuned,
        hub: Arc::default(),
    };
    let router = match scenario {
        "broadcast" => Router::new()
            .route("/sub", get(raw_subscriber_route))
            .route("/pub", get(raw_publisher_route))
            .route("/chat", get(raw_chat_route)),
        _ => Router::new().route("/echo", get(raw_echo_route)),
    };
    router.with_state(state)
}

// ---------------------------------------------------------------------------------------

fn nodelay(stream: &mut TcpStream) {
    let _ = stream.set_nodelay(true);
}

fn parse_impl(name: &str) -> Option<Impl> {
    match name {
        "crimson" => Some(Impl::Crimson),
        "raw" => Some(Impl::Raw),
        "raw-tuned" => Some(Impl::RawTuned),
        "ezsockets" => Some(Impl::Ezsockets),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let which = arg("impl", "BENCH_IMPL", "crimson");
    let scenario = arg("scenario", "BENCH_SCENARIO", "echo");
    let addr: SocketAddr = arg("addr", "BENCH_ADDR", "127.0.0.1:0")
        .parse()
        .map_err(|err| std::io::Error::other(format!("bad --addr: {err}")))?;
    let Some(which) = parse_impl(&which) else {
        return Err(std::io::Error::other(format!(
            "unknown --impl {which:?} (crimson | raw | raw-tuned | ezsockets)"
        )));
    };
    if !matches!(scenario.as_str(), "echo" | "idle" | "broadcast") {
        return Err(std::io::Error::other(format!(
            "unknown --scenario {scenario:?} (echo | broadcast | idle)"
        )));
    }
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other("bench-server binds loopback only"));
    }

    // `--metrics`: Crimson's metrics recorded by a Prometheus recorder, served at /metrics.
    let metrics = std::env::args().any(|arg| arg == "--metrics");
    let app = match which {
        #[cfg(feature = "metrics")]
        Impl::Crimson if metrics => with_metrics(crimson_app(&scenario))?,
        #[cfg(not(feature = "metrics"))]
        Impl::Crimson if metrics => {
            return Err(std::io::Error::other(
                "--metrics: this bench-server was built without its `metrics` feature",
            ))
        }
        Impl::Crimson => crimson_app(&scenario),
        Impl::Raw => raw_app(&scenario, false),
        Impl::RawTuned => raw_app(&scenario, true),
        Impl::Ezsockets => peer::app(&scenario),
    };
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let tap: fn(&mut TcpStream) = nodelay;
    let listener = socket.listen(BACKLOG)?.tap_io(tap);
    let local = axum::serve::Listener::local_addr(&listener)?;
    println!("{local}");

    // Serve until stdin closes: the bench process that owns this one is done with it.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
