//! Typed WebSocket routes for [axum]: both ends speak Rust types, never raw frames.
//!
//! Register named [`CrimsonConfig`]s on a [`CrimsonLayer`] (the role of Ktor's
//! `install(Crimson)`), mount routes with [`RouterExt::crimson`], and write handlers that take
//! axum extractors and a [`CrimsonSession<Up, Down>`]. A [`ConfigName`] ties a route to its
//! config at compile time; [`serve`] is axum's `serve` with the limits a public server needs:
//!
//! ```no_run
//! use axum::Router;
//! use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonSession, RouterExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, CrimsonMessage)]
//! #[crimson(codec = "json")]
//! struct ChatMessage {
//!     text: String,
//! }
//!
//! #[derive(Serialize, Deserialize, CrimsonMessage)]
//! #[crimson(codec = "json")]
//! struct ChatResponse {
//!     text: String,
//! }
//!
//! /// Clients send `ChatMessage`, the server sends `ChatResponse`.
//! const CHAT: ConfigName<ChatMessage, ChatResponse> = ConfigName::new("chat");
//!
//! async fn chat(mut session: CrimsonSession<ChatMessage, ChatResponse>) {
//!     while let Some(message) = session.recv().await {
//!         // Encoded once, queued for every session of the route.
//!         let _ = session.cluster().broadcast(&ChatResponse { text: message.text }).await;
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .crimson("/chat", CHAT, chat)
//!     .layer(CrimsonLayer::new().config(CHAT, CrimsonConfig::new()));
//! // On Ctrl-C: stop accepting, close every session with 1001, exit within 10 s.
//! crimson_axum::serve(crimson_axum::bind("127.0.0.1:54321").await?, app)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```
//!
//! A route whose handler takes `CrimsonSession<A, B>` mounted with a `ConfigName<C, D>` does
//! not compile. Every limit (message size, inbound rate, queues, timeouts, connections) has a
//! default safe for the internet: see [`CrimsonConfig`] and [`serve`].
//!
//! # Wire conventions
//!
//! One message is one WebSocket message, with no envelope: JSON travels in Text frames,
//! Protobuf, CBOR and MessagePack in Binary frames. Close codes follow one table, in
//! [`close`]. A message that does not decode closes the session with 1007 (or is skipped and
//! reported, per [`DecodeErrorPolicy`]); one over the size limit closes with 1009; a handler
//! panic closes its session with 1011.
//!
//! # Observability
//!
//! Each session runs in a `crimson_session` tracing span (debug) with the fields `config`,
//! `path`, `session_id` and `remote`: `RUST_LOG='info,crimson_axum[crimson_session{config=chat}]=debug'`
//! shows one config's sessions in detail. Lifecycle events are debug, frames trace; nothing is
//! logged per message at info.
//!
//! With the `metrics` feature, connections, handshakes rejected, messages and bytes, decode
//! failures, closes, slow consumers and broadcasts are recorded through the
//! [`metrics`](https://docs.rs/metrics) facade: nothing until the application installs a
//! recorder (before serving: a config resolves its handles on its first request), then a few
//! atomic adds per read or write batch. The names, types and labels are listed in the
//! README's "Metrics" section.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `json`, `derive` | yes | the JSON codec, `#[derive(CrimsonMessage)]` |
//! | `protobuf`, `cbor`, `msgpack` | no | the other codecs |
//! | `redis` | no | `RedisCluster`: many server nodes as one |
//! | `test-util` | no | `testing`: serve a router on 127.0.0.1:0 and talk to it |
//! | `metrics` | no | metrics through the `metrics` facade (see above) |
//!
//! [axum]: https://docs.rs/axum

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod codecs;
mod config;
mod engine;
mod error;
mod handler;
mod layer;
mod listener;
mod live;
mod metrics;
mod request;
mod router;
mod serve;
mod session;
#[cfg(feature = "test-util")]
pub mod testing;
mod upgrade;

pub use config::{CrimsonConfig, DecodeErrorPolicy, Rate};
pub use crimson_core::transport::Deflate;
pub use error::{ConfigError, SessionError, SessionSendError};
pub use handler::CrimsonHandler;
pub use layer::{ConfigName, CrimsonLayer, CrimsonService, IntoConfigName, ShutdownHandle};
pub use listener::{bind, CrimsonListener, BACKLOG};
pub use request::{Incoming, Request, RequestError, Responder, NOT_ANSWERED};
pub use router::RouterExt;
pub use serve::{serve, Serve};
pub use session::{CrimsonSession, RecvTimeout, SessionReceiver, SessionSender};
pub use upgrade::UpgradeRejection;

#[doc(inline)]
pub use crimson_core::{
    close, cluster, codec, protocol, session as sessions, transport, Bytes, CloseCode, CloseRecord,
    ClosedBy, Codec, CrimsonMessage, CrimsonRequest, DecodeError, EncodeError, FrameKind, Payload,
    PayloadRef, Text,
};

#[doc(hidden)]
pub use crimson_core::__private;
