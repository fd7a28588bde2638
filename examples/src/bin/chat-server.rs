//! The chat server: every message any client sends is broadcast to every client, whatever
//! its codec. One room at `/chat`: JSON (Text frames) for a client that asks for nothing, or
//! CBOR, MessagePack or Protocol Buffers (Binary frames, schema in `proto/chat.proto`) for one
//! that asks with `Sec-WebSocket-Protocol: crimson.cbor` (`docs/protocol.md`); one set of
//! types, one cluster, each broadcast encoded once per codec in use. A browser chat page at
//! `/` (its scripts, compiled from TypeScript, at `/js/`), and its metrics at `/metrics`
//! (Prometheus text format).
//!
//! `cargo run -p crimson-examples --bin chat-server [-- --addr HOST:PORT] [--redis URL]`
//! (or `CRIMSON_ADDR=HOST:PORT`, `CRIMSON_REDIS=URL`); it serves `http://127.0.0.1:54321/`
//! by default, with in-memory clusters. With `--redis redis://HOST:PORT`, every chat server
//! on that Redis is one chat room, and shares its history (the last 100 messages or 5
//! minutes), kept in Redis: a client that fails over to another server recovers there what
//! was said meanwhile; `--redis redis+cluster://HOST:PORT,HOST:PORT` (or any one node's
//! `redis://` URL) does the same on a Redis Cluster, over sharded pub/sub. `--help` prints
//! this usage.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, ClusterError, Delivery};
use crimson_axum::CrimsonMessage;
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, Deflate, Incoming, RouterExt,
};
use crimson_examples::{arg, ChatMessage, ChatResponse, DEFAULT_ADDR, PAGE_SCRIPTS};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;

const USAGE: &str = "\
usage: chat-server [--addr HOST:PORT] [--redis URL]

A chat room at /chat: JSON by default; CBOR, MessagePack or Protocol Buffers for a client
that asks with Sec-WebSocket-Protocol (crimson.cbor, crimson.msgpack, crimson.protobuf). A
browser page at /, metrics at /metrics (Prometheus text format). Every message any client
sends reaches every client.

  --addr HOST:PORT   where to listen (default 127.0.0.1:54321; env CRIMSON_ADDR)
  --redis URL        share the room and its history (the last 100 messages or 5
                     minutes) with every chat server on this Redis, e.g.
                     redis://127.0.0.1:6379, or on this Redis Cluster, e.g.
                     redis+cluster://127.0.0.1:7000,127.0.0.1:7001 (seed nodes; one
                     node's redis:// URL works too) (default: in memory; env CRIMSON_REDIS)
  --handshake-timeout SECS   how long a client has to send its request (default 10)
  --grace SECS       how long a shutdown may take before connections are dropped (default 10)
  --max-unfinished-bytes N   bytes unfinished messages may hold (default 64 MiB)
  --max-connections-per-ip N open connections one client address may hold (default 1000;
                     0 for no limit)
  --help             print this and exit

Ctrl-C or SIGTERM shuts it down: every client gets 1001, and the process is gone within the
grace period whatever the clients do.
";

/// The chat's config.
const CHAT: ConfigName<ChatMessage, ChatResponse> = ConfigName::new("chat");

/// The chat room: one cluster, whatever codec each client speaks.
#[derive(Clone)]
struct Chat {
    room: Cluster<ChatResponse>,
}

impl Chat {
    /// Says `text` to everyone; returns when the server took it.
    async fn say(&self, from: String, text: String) -> u64 {
        let at = now_ms();
        report(self.room.broadcast(&ChatResponse { text, from, at }).await);
        at
    }
}

/// Logs a broadcast's outcome. A Redis outage is already reported by the cluster itself
/// (rate-limited, with counts), so here it is only a debug line.
fn report(result: Result<Delivery, ClusterError>) {
    match result {
        Ok(delivery) => tracing::debug!(?delivery, "broadcast"),
        Err(ClusterError::Unavailable { local, source }) => {
            tracing::debug!(reached_locally = local.delivered, error = %source, "broadcast reached this node only");
        }
        Err(err) => tracing::error!(error = %err, "broadcast failed"),
    }
}

/// A member of the room. A message is said to everyone. Sent as a request (clients that
/// speak the Crimson protocol), `/who` is answered with who is in the room, anything else is
/// said to everyone and answered with the server's copy: the sender knows it was taken.
async fn member(State(chat): State<Chat>, mut session: CrimsonSession<ChatMessage, ChatResponse>) {
    let from = session.id().to_string();
    while let Some(incoming) = session.recv_incoming().await {
        match incoming {
            Incoming::Message(message) => {
                chat.say(from.clone(), message.text).await;
            }
            Incoming::Request(request) if request.value().text == "/who" => {
                let here = match chat.room.count().await {
                    Ok(count) => format!("{count} here"),
                    Err(err) => format!("unknown: {err}"),
                };
                let _ = request.respond(ChatResponse {
                    text: here,
                    from: "server".into(),
                    at: now_ms(),
                });
            }
            Incoming::Request(request) => {
                let text = request.value().text.clone();
                let taken = chat.say(from.clone(), text.clone()).await;
                let _ = request.respond(ChatResponse {
                    text,
                    from: from.clone(),
                    at: taken,
                });
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The room's cluster: in memory, or on Redis, where what other nodes relay must decode as
/// the route's message type.
async fn cluster<Down: CrimsonMessage>(
    redis: &str,
    prefix: &str,
) -> std::io::Result<Cluster<Down>> {
    if redis.is_empty() {
        return Ok(Cluster::local());
    }
    let backend = RedisCluster::builder(redis)
        .prefix(prefix)
        .check_payloads::<Down>()
        .build()
        .await
        .map_err(std::io::Error::other)?;
    Ok(Cluster::new(backend))
}

/// Installs a Prometheus recorder, its upkeep (draining histograms) run every 5 s since its
/// HTTP listener, which would run it, is not used: `/metrics` is a route of the app.
#[cfg(feature = "metrics")]
fn prometheus() -> std::io::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(metrics)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    if crimson_examples::help(USAGE) {
        return Ok(());
    }
    crimson_examples::init_tracing("info,crimson_axum=debug");
    // Before the layer and the clusters: Crimson resolves its metrics on their first use.
    #[cfg(feature = "metrics")]
    let metrics = prometheus()?;

    let addr = arg("addr", "CRIMSON_ADDR", DEFAULT_ADDR);
    let redis = arg("redis", "CRIMSON_REDIS", "");
    let handshake_timeout = seconds("handshake-timeout", 10.0)?;
    let grace = seconds("grace", 10.0)?;
    let unfinished: usize = arg("max-unfinished-bytes", "", &(64usize << 20).to_string())
        .parse()
        .map_err(|_| std::io::Error::other("--max-unfinished-bytes: a number of bytes"))?;
    let per_ip: usize = arg("max-connections-per-ip", "", "1000")
        .parse()
        .map_err(|_| std::io::Error::other("--max-connections-per-ip: a number of connections"))?;
    let chat = Chat {
        room: cluster(&redis, "crimson-chat").await?,
    };
    if !redis.is_empty() {
        tracing::info!(%redis, "sharing the chat through Redis");
    }
    // permessage-deflate for the clients that offer it (browsers, Python's websockets,
    // crimson-client): chat JSON compresses several times over.
    let config = CrimsonConfig::new()
        // The Crimson protocol for the clients that ask (crimson-client, the page): requests,
        // and after a reconnect what was said meanwhile: the last 100 messages or 5 minutes
        // (with --redis, kept in Redis for every chat server on it: set on its cluster).
        .protocol(true)
        .history(100, std::time::Duration::from_secs(300))
        .compression(Deflate::new())
        .max_unfinished_bytes(unfinished)
        .cluster(chat.room.clone())
        .on_connect(|s| tracing::info!(id = %s.id, addr = ?s.remote_addr, "joined"))
        .on_close(|s, record| tracing::info!(id = %s.id, %record, "left"));
    let mut app = Router::new().route(
        "/",
        get(|| async { Html(include_str!("../../static/chat.html")) }),
    );
    for &(path, script) in PAGE_SCRIPTS {
        app = app.route(path, get(move || std::future::ready(javascript(script))));
    }
    let app = app
        .crimson("/chat", CHAT, member)
        .layer(CrimsonLayer::new().config(CHAT, config))
        .with_state(chat);
    #[cfg(feature = "metrics")]
    let app = app.route(
        "/metrics",
        get(move || std::future::ready(metrics.render())),
    );

    let listener = crimson_examples::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("chat server on ws://{local}/chat");
    tracing::info!("serving ws://{local}/chat (JSON; CBOR, MessagePack, Protobuf by Sec-WebSocket-Protocol), http://{local}/ (browser page); Ctrl-C stops");
    let server = crimson_axum::serve(listener, app)
        .handshake_timeout(handshake_timeout)
        .max_connections_per_ip((per_ip > 0).then_some(per_ip))
        .grace(grace);
    crimson_examples::serve_until_ctrl_c(server).await
}

/// A compiled script of the page, as an ES module must be served: with a JavaScript type.
/// `no-cache`, so that a page reloaded after `npm run build` and a restart gets the new one.
fn javascript(script: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        script,
    )
}

/// `--name SECS` as a duration.
fn seconds(name: &str, default: f64) -> std::io::Result<std::time::Duration> {
    let text = arg(name, "", &default.to_string());
    text.parse::<f64>()
        .ok()
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            std::io::Error::other(format!("--{name}: a number of seconds, not {text:?}"))
        })
}
