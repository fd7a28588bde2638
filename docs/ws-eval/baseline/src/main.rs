//! Baseline: plain axum 0.8.9 WebSocketUpgrade echo (tungstenite, no deflate).
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::{response::IntoResponse, routing::any, Router};

async fn ws(up: WebSocketUpgrade) -> impl IntoResponse {
    up.max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .on_upgrade(echo)
}

async fn echo(mut s: WebSocket) {
    // Keep reading after a Close: tungstenite answers it and ends the stream (None).
    while let Some(Ok(m)) = s.recv().await {
        if let Message::Text(_) | Message::Binary(_) = m {
            if s.send(m).await.is_err() {
                break;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9101".into());
    let l = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("ws://{}", l.local_addr().unwrap());
    axum::serve(l, Router::new().route("/", any(ws)).fallback(any(ws))).await.unwrap();
}
