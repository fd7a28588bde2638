//! The [`CrimsonMessage`] trait and the payload types it encodes to and decodes from.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};

/// The kind of WebSocket frame a message travels in.
///
/// Text codecs (JSON) use [`FrameKind::Text`]; binary codecs (Protobuf, CBOR, MessagePack)
/// use [`FrameKind::Binary`]. `#[crimson(frame = "binary")]` on a JSON type overrides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A Text frame: the payload is UTF-8.
    Text,
    /// A Binary frame: the payload is any bytes.
    Binary,
}

impl FrameKind {
    /// `"text"` or `"binary"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Binary => "binary",
        }
    }
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// UTF-8 text with shared, reference-counted storage: cloning it copies no bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(bytestring::ByteString);

impl Text {
    /// Text from a static string, without allocating.
    pub const fn from_static(text: &'static str) -> Self {
        Self(bytestring::ByteString::from_static(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text's bytes, sharing the storage.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// The text's bytes as shared storage.
    pub fn as_shared(&self) -> &Bytes {
        self.0.as_bytes()
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;

    /// Checks that `bytes` are UTF-8, then shares them.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        bytestring::ByteString::try_from(bytes).map(Self)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One encoded WebSocket message, owned, ready to be sent.
///
/// Cloning copies no bytes (both variants are reference-counted), so a broadcast is encoded
/// once and the same payload is queued for every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The payload of a Text frame.
    Text(Text),
    /// The payload of a Binary frame.
    Binary(Bytes),
}

impl Payload {
    /// The frame kind this payload travels in.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Text(_) => FrameKind::Text,
            Self::Binary(_) => FrameKind::Binary,
        }
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Borrows the payload.
    pub fn as_ref(&self) -> PayloadRef<'_> {
        match self {
            Self::Text(text) => PayloadRef::Text(text.as_str()),
            Self::Binary(bytes) => PayloadRef::Binary(bytes),
        }
    }

    /// Re-labels the payload for a frame of `kind`.
    ///
    /// Text to Binary never fails and copies nothing. Binary to Text checks that the bytes
    /// are UTF-8, as a Text frame requires, and fails with the position of the first bad byte.
    pub fn into_kind(self, kind: FrameKind) -> Result<Self, std::str::Utf8Error> {
        match (self, kind) {
            (Self::Text(text), FrameKind::Binary) => Ok(Self::Binary(text.into_bytes())),
            (Self::Binary(bytes), FrameKind::Text) => Text::try_from(bytes).map(Self::Text),
            (payload, _) => Ok(payload),
        }
    }
}

/// A borrowed WebSocket message payload, as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadRef<'a> {
    /// The payload of a Text frame.
    Text(&'a str),
    /// The payload of a Binary frame.
    Binary(&'a [u8]),
}

impl<'a> PayloadRef<'a> {
    /// An owned copy of the payload.
    pub fn to_payload(&self) -> Payload {
        match *self {
            Self::Text(text) => Payload::Text(text.into()),
            Self::Binary(bytes) => Payload::Binary(Bytes::copy_from_slice(bytes)),
        }
    }

    /// The payload's bytes, whatever the frame kind.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The frame kind the payload arrived in.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Text(_) => FrameKind::Text,
            Self::Binary(_) => FrameKind::Binary,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

/// A type that travels as one WebSocket message.
///
/// Both ends of a Crimson socket speak types that implement this trait: a server route's
/// handler takes a `CrimsonSession<Up, Down>`, where `Up` is what clients send and `Down` what
/// the server sends.
/// One message is one WebSocket message; there is no envelope, so a browser or any other
/// WebSocket client can speak to a Crimson route with plain frames.
///
/// Implement it with `#[derive(CrimsonMessage)]`, which binds the type to a [`Codec`]:
///
/// ```
/// use crimson_core::CrimsonMessage;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
/// #[crimson(codec = "json")]
/// struct ChatMessage {
///     text: String,
/// }
///
/// let payload = ChatMessage { text: "hi".into() }.encode().unwrap();
/// assert_eq!(payload.as_bytes(), br#"{"text":"hi"}"#);
/// let back = ChatMessage::decode(payload.as_ref()).unwrap();
/// assert_eq!(back.text, "hi");
/// ```
///
/// or by hand, for a format of your own:
///
/// ```
/// use crimson_core::{CrimsonMessage, DecodeError, EncodeError, FrameKind, Payload, PayloadRef};
///
/// /// A counter sent as its decimal digits.
/// struct Count(u64);
///
/// impl CrimsonMessage for Count {
///     const FRAME: FrameKind = FrameKind::Text;
///     const CODEC: &'static str = "decimal";
///
///     fn encode(&self) -> Result<Payload, EncodeError> {
///         Ok(Payload::Text(self.0.to_string().into()))
///     }
///
///     fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
///         std::str::from_utf8(payload.as_bytes())
///             .ok()
///             .and_then(|text| text.parse().ok())
///             .map(Count)
///             .ok_or_else(|| DecodeError::new::<Self>(Self::CODEC, "not a decimal number"))
///     }
/// }
///
/// assert_eq!(Count::decode(crimson_core::PayloadRef::Text("42")).unwrap().0, 42);
/// assert!(Count::decode(crimson_core::PayloadRef::Text("x")).is_err());
/// ```
///
/// Decoding is safe against hostile input: a decoder returns an error, never panics, on any
/// bytes whatever, and allocates in proportion to the input (whose size the server and client
/// bound before decoding).
///
/// Decoders accept a payload from either frame kind: the codec checks the content itself.
///
/// [`Codec`]: crate::Codec
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Crimson message",
    label = "not a `CrimsonMessage`",
    note = "derive it: `#[derive(Serialize, Deserialize, CrimsonMessage)]` (JSON by default; `#[crimson(codec = \"cbor\")]` for another codec), or implement `CrimsonMessage` by hand"
)]
pub trait CrimsonMessage: Sized + Send + 'static {
    /// The kind of frame this message is sent in (by its default codec).
    const FRAME: FrameKind;
    /// The (default) codec's name, as error messages show it (`"JSON"`, `"Protobuf"`, ...).
    const CODEC: &'static str;
    /// Every codec the type speaks, its default (the one of [`encode`](Self::encode)) first:
    /// those a client may choose among with `Sec-WebSocket-Protocol` (`docs/protocol.md`).
    /// The derive lists them (`#[crimson(codecs("json", "cbor"))]`); empty, the default for a
    /// hand-written impl, means the default codec alone, which is not negotiated.
    const CODECS: &'static [CodecInfo] = &[];

    /// Encodes the value into one message payload of kind [`Self::FRAME`].
    fn encode(&self) -> Result<Payload, EncodeError>;

    /// Decodes one message payload.
    fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError>;

    /// Encodes the value with codec `CODECS[codec]`. Index 0, and any index of a type that
    /// lists no further codecs, is [`encode`](Self::encode). A hand-written impl that lists
    /// several `CODECS` must implement this (and [`decode_in`](Self::decode_in)): by default
    /// another index is an error, never the default codec under another codec's name.
    fn encode_in(&self, codec: usize) -> Result<Payload, EncodeError> {
        if codec == 0 || Self::CODECS.len() < 2 {
            return self.encode();
        }
        Err(EncodeError::new::<Self>(
            Self::CODECS.get(codec).map_or("?", |c| c.name),
            "CODECS lists this codec but encode_in does not implement it",
        ))
    }

    /// Decodes a payload of codec `CODECS[codec]`. Index 0, and any index of a type that
    /// lists no further codecs, is [`decode`](Self::decode); see
    /// [`encode_in`](Self::encode_in).
    fn decode_in(payload: PayloadRef<'_>, codec: usize) -> Result<Self, DecodeError> {
        if codec == 0 || Self::CODECS.len() < 2 {
            return Self::decode(payload);
        }
        Err(DecodeError::new::<Self>(
            Self::CODECS.get(codec).map_or("?", |c| c.name),
            "CODECS lists this codec but decode_in does not implement it",
        ))
    }
}

/// A message that asks for an answer: sent as a request (`client.request(..)` or
/// `session.request(..)`), it is answered with one `Response`, or an error. The two types are
/// tied here, so both ends agree at compile time on what answers what.
///
/// ```
/// use crimson_core::{CrimsonMessage, CrimsonRequest};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, CrimsonMessage)]
/// struct WhoIsHere;
///
/// #[derive(Serialize, Deserialize, CrimsonMessage)]
/// struct Here {
///     names: Vec<String>,
/// }
///
/// impl CrimsonRequest for WhoIsHere {
///     type Response = Here;
/// }
/// ```
///
/// Requests travel in the Crimson protocol, `crimson.v1` (`docs/protocol.md`), which a
/// client asks for and a config turns on.
pub trait CrimsonRequest: CrimsonMessage {
    /// What answers this request.
    type Response: CrimsonMessage;
}

/// One codec a [`CrimsonMessage`] type speaks, as a client chooses it. Made by the derive,
/// or with [`CodecInfo::new`] in a hand-written impl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CodecInfo {
    /// What a client asks for it by: `"json"`, `"cbor"`, `"msgpack"`, `"protobuf"`; the
    /// subprotocol is this with `crimson.` before it (`crimson.cbor`).
    pub token: &'static str,
    /// The codec's name in error messages (`"CBOR"`).
    pub name: &'static str,
    /// The frame kind its payloads travel in.
    pub frame: FrameKind,
}

impl CodecInfo {
    /// A codec asked for by `token`, named `name` in errors, whose payloads travel in `frame`
    /// frames.
    pub const fn new(token: &'static str, name: &'static str, frame: FrameKind) -> Self {
        Self { token, name, frame }
    }
}

/// The index in `M::CODECS` of the codec `token` names (`"cbor"`, ...); 0, the default, when
/// no token is given or `M` does not list it.
pub fn codec_index<M: CrimsonMessage>(token: Option<&str>) -> usize {
    token
        .and_then(|token| M::CODECS.iter().position(|codec| codec.token == token))
        .unwrap_or(0)
}

/// Re-encodes a payload of `M`'s default codec in its codec `CODECS[codec]`: what a cluster
/// does, once per codec in use among a broadcast's recipients, for a broadcast relayed from
/// another node (which arrives in the default codec only). A type whose values do not
/// survive a round trip through its default codec (a `NaN` in JSON, a field serde skips on
/// the way in) is not relayed faithfully to sessions of its other codecs; broadcasts from
/// the node itself are made from the value and are not affected.
pub fn transcode<M: CrimsonMessage>(
    payload: &Payload,
    codec: usize,
) -> Result<Payload, EncodeError> {
    if codec == 0 || M::CODECS.len() < 2 {
        return Ok(payload.clone());
    }
    let target = M::CODECS.get(codec).map_or("?", |c| c.name);
    let value = M::decode(payload.as_ref()).map_err(|err| {
        EncodeError::new::<M>(
            target,
            format!(
                "a message relayed in {} did not decode back to re-encode it: {}",
                M::CODEC,
                err.reason()
            ),
        )
    })?;
    value.encode_in(codec)
}

/// A raw endpoint's text messages: no codec, Text frames.
///
/// Decoding a Binary frame checks that it is UTF-8.
impl CrimsonMessage for String {
    const FRAME: FrameKind = FrameKind::Text;
    const CODEC: &'static str = "text";

    fn encode(&self) -> Result<Payload, EncodeError> {
        Ok(Payload::Text(self.as_str().into()))
    }

    fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
        match payload {
            PayloadRef::Text(text) => Ok(text.to_owned()),
            PayloadRef::Binary(bytes) => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|err| DecodeError::new::<Self>(Self::CODEC, err)),
        }
    }
}

/// A raw endpoint's binary messages: no codec, Binary frames.
///
/// Decoding a Text frame takes its UTF-8 bytes.
impl CrimsonMessage for Bytes {
    const FRAME: FrameKind = FrameKind::Binary;
    const CODEC: &'static str = "bytes";

    fn encode(&self) -> Result<Payload, EncodeError> {
        Ok(Payload::Binary(self.clone()))
    }

    fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
        Ok(Bytes::copy_from_slice(payload.as_bytes()))
    }
}

/// A raw endpoint that takes either frame kind and keeps it: no codec.
///
/// Useful for echo and proxy routes. Encoding sends the frame kind the payload holds, so
/// [`Self::FRAME`] is only the default for code that asks.
impl CrimsonMessage for Payload {
    const FRAME: FrameKind = FrameKind::Binary;
    const CODEC: &'static str = "raw";

    fn encode(&self) -> Result<Payload, EncodeError> {
        Ok(self.clone())
    }

    fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
        Ok(match payload {
            PayloadRef::Text(text) => Payload::Text(text.into()),
            PayloadRef::Binary(bytes) => Payload::Binary(Bytes::copy_from_slice(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_passthrough_round_trips_and_rejects_bad_utf8() {
        let payload = "héllo".to_string().encode().unwrap();
        assert_eq!(payload, Payload::Text("héllo".into()));
        assert_eq!(payload.as_bytes(), "héllo".as_bytes());
        assert_eq!(String::decode(payload.as_ref()).unwrap(), "héllo");
        assert_eq!(String::decode(PayloadRef::Binary(b"ok")).unwrap(), "ok");
        let err = String::decode(PayloadRef::Binary(&[0xff, 0xfe])).unwrap_err();
        assert_eq!(err.codec(), "text");
        assert!(err.to_string().contains("invalid utf-8"), "{err}");
    }

    #[test]
    fn bytes_passthrough_takes_either_frame() {
        let payload = Bytes::from_static(&[0, 1, 255]).encode().unwrap();
        assert_eq!(payload.kind(), FrameKind::Binary);
        assert_eq!(
            Bytes::decode(payload.as_ref()).unwrap().as_ref(),
            &[0, 1, 255]
        );
        assert_eq!(
            Bytes::decode(PayloadRef::Text("ab")).unwrap().as_ref(),
            b"ab"
        );
    }

    #[test]
    fn raw_payload_keeps_frame_kind() {
        let text = Payload::decode(PayloadRef::Text("t")).unwrap();
        assert_eq!(text.encode().unwrap().kind(), FrameKind::Text);
        let bin = Payload::decode(PayloadRef::Binary(b"b")).unwrap();
        assert_eq!(bin.encode().unwrap().kind(), FrameKind::Binary);
    }

    #[test]
    fn into_kind_checks_utf8_only_when_needed() {
        let text = Payload::Text(Text::from_static("a"));
        assert_eq!(
            text.clone().into_kind(FrameKind::Binary).unwrap(),
            Payload::Binary(Bytes::from_static(b"a"))
        );
        assert_eq!(text.clone().into_kind(FrameKind::Text).unwrap(), text);
        let bad = Payload::Binary(Bytes::from_static(&[b'a', 0xc3]));
        assert_eq!(bad.into_kind(FrameKind::Text).unwrap_err().valid_up_to(), 1);
    }
}
