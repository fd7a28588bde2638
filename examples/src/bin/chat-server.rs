//! The chat server: every message any client sends is broadcast to every client.
//!
//! `cargo run -p crimson-examples --bin chat-server [-- --addr HOST:PORT] [--redis URL]`
//! (or `CRIMSON_ADDR=HOST:PORT`, `CRIMSON_REDIS=URL`); it serves `ws://127.0.0.1:54321/chat`
//! by default, with an in-memory cluster. With `--redis redis://HOST:PORT`, every chat server
//! on that Redis is one chat room.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::Cluster;
use crimson_axum::{CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
use crimson_examples::{arg, ChatMessage, ChatResponse, DEFAULT_ADDR};

async fn chat(mut session: CrimsonSession<ChatMessage, ChatResponse>) {
    let from = session.id().to_string();
    while let Some(message) = session.recv().await {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let response = ChatResponse {
            text: message.text,
            from: from.clone(),
            at,
        };
        match session.cluster().broadcast(&response).await {
            Ok(delivery) => tracing::debug!(?delivery, "broadcast"),
            Err(err) => tracing::error!(error = %err, "broadcast failed"),
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,crimson_axum=debug".into()),
        )
        .init();

    let addr = arg("addr", "CRIMSON_ADDR", DEFAULT_ADDR);
    let redis = arg("redis", "CRIMSON_REDIS", "");
    let cluster = if redis.is_empty() {
        Cluster::local()
    } else {
        let backend = RedisCluster::builder(&redis)
            .prefix("crimson-chat")
            .build()
            .await
            .map_err(std::io::Error::other)?;
        tracing::info!(%redis, "sharing the chat through Redis");
        Cluster::new(backend)
    };
    let config = CrimsonConfig::<ChatMessage, ChatResponse>::new()
        .cluster(cluster)
        .on_connect(
            |session| tracing::info!(id = %session.id, addr = ?session.remote_addr, "joined"),
        )
        .on_close(|session, code, reason| tracing::info!(id = %session.id, %code, reason, "left"));
    let crimson = CrimsonLayer::new().config("chat", config);
    let shutdown = crimson.shutdown_handle();
    let app = Router::new()
        .crimson::<ChatMessage, ChatResponse, _, _>("/chat", "chat", chat)
        .layer(crimson);

    let listener = crimson_axum::bind(&addr).await.map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
    })?;
    let local = axum::serve::Listener::local_addr(&listener)?;
    println!("chat server on ws://{local}/chat");
    tracing::info!("serving ws://{local}/chat (Ctrl-C stops)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.on(async {
        let _ = tokio::signal::ctrl_c().await;
    }))
    .await
}
