//! yawc 0.5 echo through axum 0.8.9, permessage-deflate on (balanced: level 6, context takeover).
use axum::{response::IntoResponse, routing::any, Router};
use futures::{SinkExt, StreamExt};
use yawc::frame::OpCode;
use yawc::{IncomingUpgrade, Options};

static POOL: std::sync::LazyLock<yawc::DeflatePool> = std::sync::LazyLock::new(|| yawc::DeflatePool::new(8));

async fn ws(up: IncomingUpgrade) -> impl IntoResponse {
    let mut options = Options::default();
    // YAWC_MODE=pool: no context takeover both ways + shared DeflatePool + 1 KiB socket buffers
    if std::env::var("YAWC_MODE").as_deref() == Ok("pool") {
        options = options
            .with_balanced_compression()
            .server_no_context_takeover()
            .client_no_context_takeover()
            .with_deflate_pool(POOL.clone())
            .with_read_buffer_capacity(1024)
            .with_write_buffer_capacity(1024);
    } else {
        options = options.with_balanced_compression();
    }
    let options = options
        .with_utf8()
        .with_limits((16 << 20) + 1, 32 << 20);
    let (response, fut) = up.upgrade(options).expect("upgrade");
    tokio::spawn(async move {
        let Ok(mut ws) = fut.await else { return };
        while let Some(frame) = ws.next().await {
            match frame.opcode() {
                OpCode::Text | OpCode::Binary => {
                    if ws.send(frame).await.is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    response
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9103".into());
    let l = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("ws://{}", l.local_addr().unwrap());
    axum::serve(l, Router::new().route("/", any(ws)).fallback(any(ws))).await.unwrap();
}
