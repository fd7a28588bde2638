//! An echo server for the Autobahn|Testsuite conformance run (`scripts/autobahn.sh`): a
//! Crimson route at `ws://ADDR/` that sends every message straight back, in the frame kind it
//! came in (Text stays Text, Binary stays Binary).
//!
//! `cargo run --release -p crimson-bench --bin autobahn-echo -- 127.0.0.1:9001`
//!
//! It prints `ws://ADDR/` once it listens (so a script can wait for that line, and learn the
//! port when ADDR ends in `:0`), then serves until Ctrl-C. The route is `Payload` in, `Payload`
//! out: no codec, so the suite sees the WebSocket layer alone. The config keeps Crimson's
//! defaults except the size limits, raised to 32 MiB because the suite sends messages and
//! frames of up to 16 MiB (section 9).

use axum::Router;
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, Deflate, Payload, RouterExt,
};

const ECHO: ConfigName<Payload, Payload> = ConfigName::new("echo");

/// The largest message and frame accepted: the suite's largest are 16 MiB.
const MAX_SIZE: usize = 32 << 20;

async fn echo(mut session: CrimsonSession<Payload, Payload>) {
    while let Some(message) = session.recv().await {
        if session.send(message).await.is_err() {
            break; // the session is closing
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    crimson_examples::init_tracing("error");

    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let config = CrimsonConfig::new()
        .max_message_size(MAX_SIZE)
        .max_unfinished_bytes(MAX_SIZE * 4)
        // The suite floods: its cases are about the protocol, not about rate limits.
        .inbound_rate(None)
        .inbound_bandwidth(None)
        .compression(Deflate::new());
    let crimson = CrimsonLayer::new().config(ECHO, config);
    let app = Router::new().crimson("/", ECHO, echo).layer(crimson);

    let listener = crimson_examples::bind(&addr).await?;
    let local = axum::serve::Listener::local_addr(&listener)?;
    println!("ws://{local}/");
    crimson_axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
