//! Message types shared by the example programs.

use crimson_axum::CrimsonMessage;
use serde::{Deserialize, Serialize};

/// What a chat client sends: `{"text": "..."}` in JSON, the default; CBOR, MessagePack or
/// Protocol Buffers (`proto/chat.proto`) for a client that asks (`docs/protocol.md`).
#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message, CrimsonMessage)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[crimson(codecs("json", "cbor", "msgpack", "protobuf"))]
pub struct ChatMessage {
    /// The message text.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// What the chat server broadcasts: `{"text": "...", "from": "<session id>", "at": <unix ms>}`
/// in JSON, or the same in the codec the client asked for.
#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message, CrimsonMessage)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[crimson(codecs("json", "cbor", "msgpack", "protobuf"))]
pub struct ChatResponse {
    /// The message text.
    #[prost(string, tag = "1")]
    pub text: String,
    /// The id of the session that sent it.
    #[prost(string, tag = "2")]
    pub from: String,
    /// When the server received it, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "3")]
    // ts-rs writes `bigint` for a u64, but JSON.parse makes every number a `number`; a time
    // in milliseconds stays exact in one (below 2^53) for the next 285,000 years.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: u64,
}

#[cfg(feature = "ts")]
pub mod typescript;

/// A chat message sent as a request (Crimson protocol) is answered with a [`ChatResponse`]:
/// the server's copy of what was said, or, for `/who`, who is in the room.
impl crimson_axum::CrimsonRequest for ChatMessage {
    type Response = ChatResponse;
}

/// The chat's messages as `protoc` compiles `proto/chat.proto` (prost-build, in `build.rs`):
/// the schema a client in another language uses. The tests check that [`ChatMessage`] and
/// [`ChatResponse`] encode to the same bytes.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/crimson.chat.rs"));
}

/// One compiled file of the client library, served under `/js/crimson-socket/` (where the
/// page's import map puts the name `crimson-socket`).
macro_rules! script {
    ($file:literal) => {
        (
            concat!("/js/crimson-socket/", $file),
            include_str!(concat!("../../clients/ts/dist/", $file)),
        )
    };
}

/// The chat page's scripts, by the URL path chat-server serves each at: the page's own
/// (`browser/ts/chat.ts`) and the client library's (`clients/ts/src/`), as `tsc` compiled them
/// (`npm run build` in `examples/browser`). The compiled files are committed, so a fresh clone
/// serves a working page without npm; the tests check that they are what `tsc` makes today.
pub const PAGE_SCRIPTS: &[(&str, &str)] = &[
    ("/js/chat.js", include_str!("../static/js/chat.js")),
    script!("index.js"),
    script!("socket.js"),
    script!("codec.js"),
    script!("check.js"),
    script!("retry.js"),
    script!("recovery.js"),
    script!("errors.js"),
];

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

/// Every value of `--NAME VALUE` (or `--NAME=VALUE`) on the command line, in order; else the
/// environment variable `env` split at commas, else `default`.
pub fn args(name: &str, env: &str, default: &str) -> Vec<String> {
    let flag = format!("--{name}");
    let mut values = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == flag {
            values.extend(args.next());
        } else if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            values.push(value.to_owned());
        }
    }
    if values.is_empty() {
        let from_env = std::env::var(env).unwrap_or_else(|_| default.to_owned());
        values = from_env.split(',').map(str::to_owned).collect();
    }
    values
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust types and `proto/chat.proto` are one schema: the same bytes both ways.
    #[test]
    fn the_chat_types_encode_as_the_proto_schema_says() {
        use prost::Message as _;

        let protobuf = ChatResponse::CODECS
            .iter()
            .position(|codec| codec.token == "protobuf")
            .unwrap();
        let response = ChatResponse {
            text: "hi".into(),
            from: "0000000000000001-2".into(),
            at: 1_764_547_200_000,
        };
        let schema = proto::ChatResponse {
            text: response.text.clone(),
            from: response.from.clone(),
            at: response.at,
        };
        let ours = response.encode_in(protobuf).unwrap();
        assert_eq!(ours.as_bytes(), schema.encode_to_vec());
        let message = ChatMessage { text: "yo".into() };
        assert_eq!(
            message.encode_in(protobuf).unwrap().as_bytes(),
            proto::ChatMessage { text: "yo".into() }.encode_to_vec()
        );
    }
}
