//! A typed WebSocket client for [Crimson] routes — and for any WebSocket server whose messages
//! match your types' codecs — that reconnects by itself.
//!
//! A [`CrimsonClient<Up, Down>`] sends `Up` and receives `Down`, the same types as the
//! server route's `CrimsonSession<Up, Down>`. It keeps the promises of Kotlin Crimson's
//! client and Tinder's Scarlet, and the ones their users keep asking for:
//!
//! - an [`EndpointProvider`] asked for the URL and headers before **every** attempt, so a
//!   token is fresh on each reconnect;
//! - a [`RetryPolicy`]: never, fixed, or exponential with a cap, **jitter** and an optional
//!   limit on attempts;
//! - a **heartbeat** that notices a dead connection (no answer to a ping) and reconnects;
//! - an **outbox**: messages sent while reconnecting wait and go out in order afterwards;
//! - [`state`](CrimsonClient::state) as a watch of [`ConnectionState`], any number of
//!   [`incoming`](CrimsonClient::incoming) subscribers, an [`events`](CrimsonClient::events)
//!   stream and hooks for connects, closes and errors;
//! - `wss://` through rustls (the `rustls` feature, on by default), TCP_NODELAY,
//!   permessage-deflate offered (used when the server agrees; see
//!   [`compression`](CrimsonClientBuilder::compression)), and
//!   one task per connection that writes what is queued and flushes once.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use crimson_client::{CloseCode, CrimsonClient, CrimsonMessage, Endpoint, RetryPolicy};
//! use futures_util::StreamExt;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, CrimsonMessage)]
//! # #[derive(Deserialize)]
//! #[crimson(codec = "json")]
//! struct ChatMessage {
//!     text: String,
//! }
//!
//! #[derive(Clone, Deserialize, CrimsonMessage)]
//! # #[derive(Serialize)]
//! #[crimson(codec = "json")]
//! struct ChatResponse {
//!     text: String,
//! }
//!
//! # async fn token() -> Result<String, std::io::Error> { Ok(String::new()) }
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = CrimsonClient::<ChatMessage, ChatResponse>::builder()
//!     // Asked again before every attempt: the token is always fresh.
//!     .endpoint(|| async {
//!         let token = token().await?;
//!         Ok::<_, std::io::Error>(Endpoint::new("ws://127.0.0.1:54321/chat").bearer(token))
//!     })
//!     .retry(RetryPolicy::exponential(Duration::from_millis(500), Duration::from_secs(30))?)
//!     .heartbeat(Duration::from_secs(20), Duration::from_secs(10))
//!     .on_close(|close| eprintln!("closed {} {:?}, reconnecting: {}", close.code, close.reason, close.reconnect))
//!     .build()?;
//!
//! // Watch the state and read messages from any number of tasks.
//! let mut state = client.state();
//! tokio::spawn(async move {
//!     while state.changed().await.is_ok() {
//!         println!("state: {}", *state.borrow_and_update());
//!     }
//! });
//! let mut incoming = client.incoming();
//! tokio::spawn(async move {
//!     while let Some(message) = incoming.next().await {
//!         match message {
//!             Ok(response) => println!("{}", response.text),
//!             Err(lagged) => eprintln!("{lagged}"),
//!         }
//!     }
//! });
//!
//! client.connect().await?; // or `client.connect();` to start without waiting
//! client.send(ChatMessage { text: "hello".into() })?;
//! let reply = client.receive(Duration::from_secs(5)).await?;
//! println!("first reply: {}", reply.text);
//! client.disconnect(CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! # Lifecycle
//!
//! A client starts [`Closed`](ConnectionState::Closed). [`connect`](CrimsonClient::connect)
//! starts its connection task, which asks the endpoint provider, connects
//! ([`Connecting`](ConnectionState::Connecting) → [`Connected`](ConnectionState::Connected))
//! and, when an attempt fails or the connection closes abnormally, waits as the retry policy
//! says ([`Retrying`](ConnectionState::Retrying)) and tries again. By default every close code
//! but 1000 is abnormal ([`abnormal_close`](CrimsonClientBuilder::abnormal_close) changes
//! that); a connection that drops, or answers no ping within the heartbeat timeout, closes as
//! 1006 and is abnormal too.
//!
//! The policy's backoff starts over only after a connection that stayed up for
//! [`stable_after`](CrimsonClientBuilder::stable_after) (5 s by default). A connection that
//! closes sooner counts as a failed attempt, so a server that accepts and closes at once (a
//! connection limit, a token it refuses) is backed off from exponentially, and
//! [`with_max_attempts`](RetryPolicy::with_max_attempts) applies to it.
//!
//! A normal close, the policy giving up, an invalid endpoint, an upgrade refused with a 4xx
//! status other than 408 and 429 ([`ClientError::Rejected`]), and
//! [`disconnect`](CrimsonClient::disconnect) (which sends a close frame with your code and
//! reason) end in `Closed`, with no reconnect. Dropping every handle disconnects with 1001.
//!
//! # Delivery
//!
//! [`send`](CrimsonClient::send) puts the encoded message in a bounded outbox and returns at
//! once; it fails, and nothing is queued, when the client is closed ([`SendError::Closed`]),
//! the outbox is full ([`SendError::Full`], see
//! [`outgoing_queue`](CrimsonClientBuilder::outgoing_queue)) or the message does not encode.
//! Each connection has one writer task that takes everything queued, writes it in order and
//! flushes once. A message stays in the outbox (and in [`queued`](CrimsonClient::queued))
//! until its first byte has been written to the socket; from that moment bytes of it may
//! reach the server, so it is never sent again.
//!
//! Every message `send` accepted ends in exactly one of three ways:
//!
//! - **Written** to a connection, in order, as just described. That is delivery to the
//!   socket, not to the server: if the connection fails before the frame has left the
//!   kernel's buffers, the message may or may not have reached the
//!   server, and it is not sent again. Delivery is at most once; there are no acks in the
//!   protocol, so add your own if you need more.
//! - **Requeued**: the connection ended (the server closed it or dropped it, the heartbeat
//!   found it dead, a write failed or stalled past the close timeout) before the message was
//!   written, whether it still waited in the outbox or the writer had already taken it. It
//!   keeps its place at the front of the outbox, ahead of messages sent since, and is written,
//!   in order, on the next connection.
//! - **Discarded**: the client closed (a [`disconnect`](CrimsonClient::disconnect), every
//!   handle dropped, a normal close, the retry policy giving up, an invalid endpoint or a 4xx
//!   refusal) before the message was written. It is counted by
//!   [`discarded`](CrimsonClient::discarded) and reported, once per close with the number of
//!   messages, as [`ClientError::Discarded`] (to the error hook, the event stream and a
//!   tracing `warn`).
//!
//! [`disconnect`](CrimsonClient::disconnect) first writes what is queued (finishing a write
//! that had stalled), then the close frame, all within the
//! [`close_timeout`](CrimsonClientBuilder::close_timeout); what it could not write by then is
//! discarded.
//!
//! # Receiving
//!
//! Each [`incoming`](CrimsonClient::incoming) subscriber gets every message decoded once and
//! cloned to it, so `Down` must be `Clone`. A subscriber that falls more than
//! [`incoming_queue`](CrimsonClientBuilder::incoming_queue) messages behind is told how
//! many it missed (`Err(Lagged(n))`) and goes on; it never slows the connection or the others.
//! [`receive`](CrimsonClient::receive) reads the client's own subscription with a timeout.
//!
//! A message that does not decode is **skipped and reported**: the connection stays open, the
//! error reaches the [`on_error`](CrimsonClientBuilder::on_error) hook, the event stream
//! ([`ClientError::Decode`]) and a tracing `warn` event, and [`skipped`](CrimsonClient::skipped)
//! counts it. (A server closes with 1007 instead; a client that did so would reconnect and
//! meet the same message again.)
//!
//! # Any WebSocket server
//!
//! There is no envelope: one message is one WebSocket message, JSON in Text frames, binary
//! codecs in Binary frames. The client works with any server that speaks the same messages —
//! a Crimson route, a bare tokio-tungstenite or axum server, or another language's.
//!
//! # Tracing
//!
//! Reconnects and failed attempts are `warn` events; connects, closes and state changes are
//! `debug`; every frame in and out is `trace`. URLs are logged without their query.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `rustls` | yes | `wss://` through rustls (ring) with the webpki roots; [`add_root_certificate`] |
//! | `derive` | yes | `#[derive(CrimsonMessage)]` |
//! | `json` | yes | the JSON codec |
//! | `protobuf` | no | the Protobuf codec |
//! | `cbor` | no | the CBOR codec |
//! | `msgpack` | no | the MessagePack codec |
//! | `metrics` | no | metrics through the [`metrics`](https://docs.rs/metrics) facade: `crimson_client_state_changes_total{state}`, `crimson_client_reconnect_attempts_total`, `crimson_client_outbox_depth`, `crimson_client_outbox_discarded_total` (a no-op until the application installs a recorder; the README's "Metrics" section) |
//!
//! [Crimson]: https://github.com/crimson-rs/crimson
// Without `rustls`, the builder has no `add_root_certificate`: the name links to the table.
#![cfg_attr(
    feature = "rustls",
    doc = "[`add_root_certificate`]: CrimsonClientBuilder::add_root_certificate"
)]
#![cfg_attr(
    not(feature = "rustls"),
    doc = "[`add_root_certificate`]: crate#cargo-features"
)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod builder;
mod client;
mod config;
mod connection;
mod dial;
mod endpoint;
mod error;
mod event;
mod outbox;
mod recovery;
mod request;
mod retry;
mod shared;
mod state;
mod stream;
mod supervisor;
#[cfg(feature = "rustls")]
mod tls;

pub use builder::{Connected, CrimsonClientBuilder};
pub use client::{Connecting, CrimsonClient};
pub use crimson_core::transport::Deflate;
pub use endpoint::{BoxError, Endpoint, EndpointProvider};
pub use error::{BuildError, ClientError, ConnectError, DisconnectError, ReceiveError, SendError};
pub use event::{ClientEvent, CloseEvent, Lagged, Subscription};
pub use request::{Refusal, RequestError};
pub use retry::{RetryPolicy, RetryPolicyError};
pub use state::ConnectionState;

#[doc(inline)]
pub use crimson_core::{
    close, codec, Bytes, CloseCode, ClosedBy, Codec, CrimsonMessage, CrimsonRequest, DecodeError,
    EncodeError, FrameKind, Payload, PayloadRef, Text,
};

#[doc(hidden)]
pub use crimson_core::__private;
