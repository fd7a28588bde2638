//! Message types shared by the example programs.

use crimson_axum::CrimsonMessage;
use serde::{Deserialize, Serialize};

/// What a chat client sends: `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub struct ChatMessage {
    /// The message text.
    pub text: String,
}

/// What the chat server broadcasts: `{"text": "...", "from": "<session id>", "at": <unix ms>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub struct ChatResponse {
    /// The message text.
    pub text: String,
    /// The id of the session that sent it.
    pub from: String,
    /// When the server received it, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// The chat's Protocol Buffers messages, generated from `proto/chat.proto` by prost-build (see
/// `build.rs`); served at `/chat.proto` in Binary frames.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/crimson.chat.rs"));
}

/// The address the chat programs use unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:54321";

/// Prints `usage` and returns true when `--help` (or `-h`) is on the command line: the
/// program then exits without doing anything else.
pub fn help(usage: &str) -> bool {
    let asked = std::env::args()
        .skip(1)
        .any(|arg| arg == "--help" || arg == "-h");
    if asked {
        print!("{usage}");
    }
    asked
}

/// Whether `--name` is on the command line (a flag without a value).
pub fn flag(name: &str) -> bool {
    let flag = format!("--{name}");
    std::env::args().skip(1).any(|arg| arg == flag)
}

/// Reads `--name VALUE` (or `--name=VALUE`) from the command line, then the environment
/// variable `env`, then `default`.
pub fn arg(name: &str, env: &str, default: &str) -> String {
    let flag = format!("--{name}");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == flag {
            if let Some(value) = args.next() {
                return value;
            }
        } else if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            return value.to_owned();
        }
    }
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// Logs with `tracing` to stderr: `RUST_LOG` if set, else `default` (an env-filter string).
pub fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

/// Binds `addr` with [`crimson_axum::bind`], saying which address failed.
pub async fn bind(addr: &str) -> std::io::Result<crimson_axum::CrimsonListener> {
    crimson_axum::bind(addr)
        .await
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))
}

/// Runs `server` (from [`crimson_axum::serve`]) until Ctrl-C (or SIGTERM), then shuts down
/// gracefully: every session sends what it has queued and closes with 1001, and the server is
/// done within its grace period whatever the clients do.
pub async fn serve_until_ctrl_c(server: crimson_axum::Serve) -> std::io::Result<()> {
    server
        .with_graceful_shutdown(async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
        })
        .await
}
