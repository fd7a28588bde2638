//! Typed WebSocket messages for [Crimson]: the [`CrimsonMessage`] trait, the [`Codec`]s that
//! put a value on the wire, and the close codes both ends use.
//!
//! Most users reach these through `crimson-axum` (server) or `crimson-client` (client), which
//! re-export everything here; depend on `crimson-core` directly to share message types between
//! a server crate and a client crate.
//!
//! # Example
//!
//! ```
//! use crimson_core::{CrimsonMessage, FrameKind};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, CrimsonMessage)]
//! #[crimson(codec = "json")]
//! struct ChatMessage {
//!     text: String,
//! }
//!
//! assert_eq!(ChatMessage::FRAME, FrameKind::Text);
//! let err = ChatMessage::decode(crimson_core::PayloadRef::Text("{}")).err().unwrap();
//! assert_eq!(err.short_type_name(), "ChatMessage");
//! assert_eq!(err.codec(), "JSON");
//! assert!(err.to_string().ends_with("ChatMessage` from JSON: missing field `text` at line 1 column 2"));
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | yes | `#[derive(CrimsonMessage)]` |
//! | `json` | yes | [`Json`] |
//! | `protobuf` | no | [`Protobuf`] |
//! | `cbor` | no | [`Cbor`] |
//! | `msgpack` | no | [`MsgPack`] |
//! | `transport` | no | `transport`: the WebSocket protocol and permessage-deflate (crimson-axum and crimson-client turn it on) |
//! | `server` | no | sessions and session clusters (crimson-axum turns it on) |
//! | `redis` | no | `cluster::redis::RedisCluster`: many nodes as one through Redis or a Redis Cluster |
//! | `metrics` | no | broadcast fan-out and Redis relay metrics through the [`metrics`](https://docs.rs/metrics) facade: nothing is recorded until the application installs a recorder (names and labels: the README's "Metrics" section) |
//!
//! [Crimson]: https://github.com/crimson-rs/crimson
//!
// A codec's type exists only with its feature; without it, its name links to the table above.
#![cfg_attr(feature = "json", doc = "[`Json`]: codec::Json")]
#![cfg_attr(not(feature = "json"), doc = "[`Json`]: crate#cargo-features")]
#![cfg_attr(feature = "protobuf", doc = "[`Protobuf`]: codec::Protobuf")]
#![cfg_attr(not(feature = "protobuf"), doc = "[`Protobuf`]: crate#cargo-features")]
#![cfg_attr(feature = "cbor", doc = "[`Cbor`]: codec::Cbor")]
#![cfg_attr(not(feature = "cbor"), doc = "[`Cbor`]: crate#cargo-features")]
#![cfg_attr(feature = "msgpack", doc = "[`MsgPack`]: codec::MsgPack")]
#![cfg_attr(not(feature = "msgpack"), doc = "[`MsgPack`]: crate#cargo-features")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

// Lets the derive's `::crimson_core::` paths resolve inside this crate too.
#[allow(unused_extern_crates)]
extern crate self as crimson_core;

pub mod close;
#[cfg(feature = "server")]
pub mod cluster;
pub mod codec;
mod error;
mod message;
pub mod protocol;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "transport")]
pub mod transport;

pub use bytes::Bytes;
pub use close::{CloseCode, CloseRecord, ClosedBy};
pub use codec::Codec;
pub use error::{DecodeError, EncodeError};
pub use message::{
    codec_index, transcode, CodecInfo, CrimsonMessage, CrimsonRequest, FrameKind, Payload,
    PayloadRef, Text,
};

/// Derives [`CrimsonMessage`] for a type, binding it to a codec.
///
/// ```
/// # use crimson_core::CrimsonMessage;
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, CrimsonMessage)]
/// #[crimson(codec = "json")] // "json" | "protobuf" | "cbor" | "msgpack"
/// struct Ping {
///     seq: u64,
/// }
/// ```
///
/// Attributes, all inside one or more `#[crimson(...)]`:
///
/// | attribute | meaning |
/// |---|---|
/// | `codec = "json"` | the codec; without it the type uses JSON |
/// | `codecs("json", "cbor")` | several codecs, the default first: each connection of a route chooses among the codecs its `Up` and `Down` both list (`docs/protocol.md`) |
/// | `frame = "binary"` | send a text codec's payload in Binary frames (`"text"` is refused for binary codecs) |
/// | `crate = "path"` | where the Crimson crate is, when it is re-exported under another name |
///
/// The codec's cargo feature must be on (`json` is by default): a codec whose feature is off is
/// a compile error that names the feature.
#[cfg(feature = "derive")]
pub use crimson_macros::CrimsonMessage;

#[doc(hidden)]
pub mod __private;
#[doc(hidden)]
pub mod metrics;
