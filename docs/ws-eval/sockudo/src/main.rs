//! sockudo-ws 3.1 echo through axum 0.8.9, permessage-deflate on (32 KiB windows, context takeover).
use axum::{response::IntoResponse, routing::any, Router};
use sockudo_ws::axum_integration::{WebSocket, WebSocketUpgrade};
use sockudo_ws::{Config, DeflateConfig, Message};

async fn ws(up: WebSocketUpgrade) -> impl IntoResponse {
    // SOCKUDO_MODE=lowmem: DeflateConfig::low_memory() (1 KiB windows, no context takeover)
    let mut deflate = match std::env::var("SOCKUDO_MODE").as_deref() {
        Ok("lowmem") => DeflateConfig::low_memory(),
        Ok("nocontext") => DeflateConfig { server_no_context_takeover: true, client_no_context_takeover: true, ..DeflateConfig::default() },
        _ => DeflateConfig::default(),
    };
    // Echo back whatever size; threshold 0 would compress everything, keep default (32 bytes).
    if std::env::var("SOCKUDO_THRESHOLD0").is_ok() {
        deflate.compression_threshold = 0;
    }
    let config = Config::builder()
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .idle_timeout(0)
        .auto_ping(false)
        .deflate_config(deflate)
        .build();
    up.config(config).on_upgrade(echo)
}

async fn echo(mut s: WebSocket) {
    let mut errors = 0;
    while let Some(m) = s.recv().await {
        if m.is_err() { errors += 1; if errors > 8 { break; } }
        let r = match m {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => s.send(m).await,
            Ok(Message::Close(_)) => continue, // library answers; keep polling until None
            Ok(_) => Ok(()),
            Err(e) => {
                if std::env::var("VERBOSE").is_ok() { eprintln!("recv error: {e}"); }
                continue
            }
        };
        if let Err(e) = r {
            if std::env::var("VERBOSE").is_ok() { eprintln!("send error: {e}"); }
        }
        if s.is_closed() { break; }
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9102".into());
    let l = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("ws://{}", l.local_addr().unwrap());
    axum::serve(l, Router::new().route("/", any(ws)).fallback(any(ws))).await.unwrap();
}
