//! The Crimson protocol `crimson.v1` (`docs/protocol.md`, section 3): a connection that asks
//! for it with `Sec-WebSocket-Protocol: crimson.v1.<codec>` puts one header line before every
//! message, both ways, so that requests and their answers, and streams' positions, can
//! travel beside plain messages.
//!
//! ```text
//! HEADER \n BODY          HEADER: a kind, then ` key=value` fields
//! \n{"text":"hi"}         a plain message (empty header)
//! req id=7\n{"q":1}       a request; answered by `res id=7\n…` or `err id=7 code=…\n<text>`
//! pub s=all e=9c1f o=41\n{"text":"hi"}    a publication of a stream, at offset 41
//! resume s=all e=9c1f o=41\n              after a reconnect: answered `recovered` or `lost`
//! ```
//!
//! The frame kind stays the codec's (JSON in Text frames, the header being ASCII). This module
//! reads and writes the header; the server and the client decide what each kind means.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Payload, PayloadRef, Text};

/// The subprotocol tokens' prefix: `crimson.v1.json`, `crimson.v1.cbor`, ...
pub const V1: &str = "crimson.v1.";

/// The longest header line read, in bytes: past it, a frame is a protocol error. A room's
/// name (up to 1024 bytes) takes up to three times that percent-encoded.
pub const MAX_HEADER: usize = 4096;

/// What a frame of the protocol carries, by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A plain message (an empty header).
    Message,
    /// A request: answer it with [`Kind::Response`] or [`Kind::Error`] of the same id.
    Request {
        /// Chosen by the sender, unique among its open requests.
        id: u64,
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
    },
    /// Request `id` failed; the body is a UTF-8 message saying why.
    Error {
        /// The request's id.
        id: u64,
        /// Why, as a number (`docs/protocol.md`: 400, 500, 503, or the application's
        /// 4000–4999).
        code: u16,
    },
    /// A message published in a stream (server to client): the body is the message.
    Publication(Position),
    /// The session follows a stream from `position` on (server to client: for `all` when
    /// it connects, for a room when it joins), so that a client that gets nothing before a
    /// reconnect still knows where to resume from. The body is empty.
    Subscribed(Position),
    /// The session no longer follows `stream` (server to client: it left the room), so the
    /// client forgets the stream and does not resume it after a reconnect. The publications
    /// before it were the session's; none come after it until a `sub` of the stream. The
    /// body is empty.
    Unsubscribed {
        /// `room:<name>`.
        stream: String,
    },
    /// The last position a client got in a stream, after a reconnect (client to server); the
    /// body is empty.
    Resume(Position),
    /// The `count` publications a client missed in `position.stream` follow, in order, as
    /// [`Kind::Publication`] frames; `position` is the last of them (or the client's own when
    /// none was missed). The body is empty.
    Recovered {
        /// Where the stream stands once they are delivered.
        position: Position,
        /// How many publications follow.
        count: u64,
    },
    /// What a client missed in `position.stream` cannot be recovered (`reason`); it goes on
    /// from `position`, the stream's last publication. The body is empty.
    Lost {
        /// Where the stream stands now.
        position: Position,
        /// Why: one of [`LostReason`]'s words, or a later version's.
        reason: String,
    },
}

/// A position in a stream: its name, its epoch and a publication's offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// `all`, or `room:<name>`.
    pub stream: String,
    /// Changes whenever the stream's history was lost: a short string.
    pub epoch: String,
    /// 1, 2, 3… within the epoch; 0 before the first publication.
    pub offset: u64,
}

/// Why a client's missed publications cannot be recovered (the `reason` of a `lost` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The history keeps fewer publications than were missed.
    HistoryTooShort,
    /// Some missed publications are older than the history's time to live.
    Expired,
    /// The stream's history was lost (a node restarted, Redis lost its keys): a new epoch.
    EpochChanged,
    /// More were missed than a recovery may send at once.
    OverLimit,
    /// The history could not be read in time (the server's store, Redis, is unavailable
    /// or too slow); it may still be there.
    Unavailable,
    /// The stream has no history (history is off), or the position is not one the stream
    /// has had.
    Unknown,
    /// The server dropped publications on their way to this client, while it was connected:
    /// its queue was full under the `DropOldest` overflow policy, or a publication could not
    /// be encoded in the client's codec. The `lost` frame stands where the last dropped one
    /// would have been, at its position; the stream goes on after it.
    Dropped,
}

impl LostReason {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HistoryTooShort => "history_too_short",
            Self::Expired => "expired",
            Self::EpochChanged => "epoch_changed",
            Self::OverLimit => "over_limit",
            Self::Unavailable => "unavailable",
            Self::Unknown => "unknown_position",
            Self::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame that does not follow the protocol: the connection closes with 1002 and this as
/// its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(String);

impl ProtocolError {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Splits a frame into its kind and its body.
pub fn read(frame: PayloadRef<'_>) -> Result<(Kind, PayloadRef<'_>), ProtocolError> {
    let bytes = frame.as_bytes();
    let Some(end) = bytes.iter().take(MAX_HEADER + 1).position(|&b| b == b'\n') else {
        return Err(ProtocolError::new(if bytes.len() > MAX_HEADER {
            format!("crimson.v1: no end of header line within {MAX_HEADER} bytes")
        } else {
            "crimson.v1: a frame needs a header line ending in \\n (empty for a message)".to_owned()
        }));
    };
    let header = std::str::from_utf8(&bytes[..end])
        .map_err(|_| ProtocolError::new("crimson.v1: the header line is not ASCII"))?;
    let body = match frame {
        // Split at an ASCII byte: both sides stay UTF-8.
        PayloadRef::Text(text) => PayloadRef::Text(&text[end + 1..]),
        PayloadRef::Binary(bytes) => PayloadRef::Binary(&bytes[end + 1..]),
    };
    Ok((parse(header)?, body))
}

fn parse(header: &str) -> Result<Kind, ProtocolError> {
    if header.is_empty() {
        return Ok(Kind::Message);
    }
    let mut words = header.split(' ');
    let kind = words.next().unwrap_or_default();
    let (mut id, mut code) = (None, None);
    let (mut stream, mut epoch, mut offset, mut count, mut reason) = (None, None, None, None, None);
    for field in words {
        let Some((key, value)) = field.split_once('=') else {
            return Err(ProtocolError::new(format!(
                "crimson.v1: `{}` is not a key=value field",
                shown(field)
            )));
        };
        match key {
            "id" => id = Some(number::<u64>(key, value)?),
            "code" => code = Some(number::<u16>(key, value)?),
            "s" => stream = Some(decoded(key, value)?),
            "e" => epoch = Some(decoded(key, value)?),
            "o" => offset = Some(number::<u64>(key, value)?),
            "n" => count = Some(number::<u64>(key, value)?),
            "reason" => reason = Some(decoded(key, value)?),
            // Unknown keys are ignored: later versions may add some.
            _ => {}
        }
    }
    let id = |what: &str| {
        id.ok_or_else(|| ProtocolError::new(format!("crimson.v1: a `{what}` needs an id")))
    };
    let mut position = |what: &str| -> Result<Position, ProtocolError> {
        let missing =
            |key: &str| ProtocolError::new(format!("crimson.v1: a `{what}` needs `{key}`"));
        Ok(Position {
            stream: stream.take().ok_or_else(|| missing("s"))?,
            epoch: epoch.take().ok_or_else(|| missing("e"))?,
            offset: offset.ok_or_else(|| missing("o"))?,
        })
    };
    Ok(match kind {
        "pub" => Kind::Publication(position("pub")?),
        "sub" => Kind::Subscribed(position("sub")?),
        "unsub" => Kind::Unsubscribed {
            stream: stream
                .take()
                .ok_or_else(|| ProtocolError::new("crimson.v1: an `unsub` needs `s`"))?,
        },
        "resume" => Kind::Resume(position("resume")?),
        "recovered" => Kind::Recovered {
            position: position("recovered")?,
            count: count
                .ok_or_else(|| ProtocolError::new("crimson.v1: a `recovered` needs `n`"))?,
        },
        "lost" => Kind::Lost {
            position: position("lost")?,
            reason: reason
                .ok_or_else(|| ProtocolError::new("crimson.v1: a `lost` needs a `reason`"))?,
        },
        "req" => Kind::Request { id: id("req")? },
        "res" => Kind::Response { id: id("res")? },
        "err" => Kind::Error {
            id: id("err")?,
            code: code.ok_or_else(|| ProtocolError::new("crimson.v1: an `err` needs a code"))?,
        },
        other => {
            return Err(ProtocolError::new(format!(
                "crimson.v1: unknown frame kind `{}`",
                shown(other)
            )))
        }
    })
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ProtocolError> {
    value.parse().map_err(|_| {
        ProtocolError::new(format!(
            "crimson.v1: `{key}={}` is not a number in range",
            shown(value)
        ))
    })
}

/// A percent-encoded value (RFC 3986), decoded; it must be UTF-8.
fn decoded(key: &str, value: &str) -> Result<String, ProtocolError> {
    let bad = || {
        ProtocolError::new(format!(
            "crimson.v1: `{key}={}` is not percent-encoded UTF-8",
            shown(value)
        ))
    };
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                // Exactly two hex digits (`u8::from_str_radix` alone would take `+F`).
                let digit = |at: usize| {
                    bytes
                        .get(at)
                        .and_then(|&b| char::from(b).to_digit(16))
                        .ok_or_else(bad)
                };
                let (high, low) = (digit(at + 1)?, digit(at + 2)?);
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Writes `value` percent-encoded: every byte but `A–Z a–z 0–9 - . _ ~` as `%XX`.
fn encode_value(out: &mut BytesMut, value: &str) {
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.put_u8(byte);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.put_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

fn write_position(out: &mut BytesMut, word: &str, position: &Position) {
    use std::fmt::Write as _;
    out.put_slice(word.as_bytes());
    out.put_slice(b" s=");
    encode_value(out, &position.stream);
    out.put_slice(b" e=");
    encode_value(out, &position.epoch);
    // Writing to a BytesMut cannot fail.
    let _ = write!(out, " o={}", position.offset);
}

fn put_header(out: &mut BytesMut, kind: &Kind) {
    use std::fmt::Write as _;
    // Writing to a BytesMut cannot fail.
    let _ = match kind {
        Kind::Message => Ok(()),
        Kind::Request { id } => write!(out, "req id={id}"),
        Kind::Response { id } => write!(out, "res id={id}"),
        Kind::Error { id, code } => write!(out, "err id={id} code={code}"),
        Kind::Publication(position) => {
            write_position(out, "pub", position);
            Ok(())
        }
        Kind::Subscribed(position) => {
            write_position(out, "sub", position);
            Ok(())
        }
        Kind::Unsubscribed { stream } => {
            out.put_slice(b"unsub s=");
            encode_value(out, stream);
            Ok(())
        }
        Kind::Resume(position) => {
            write_position(out, "resume", position);
            Ok(())
        }
        Kind::Recovered { position, count } => {
            write_position(out, "recovered", position);
            write!(out, " n={count}")
        }
        Kind::Lost { position, reason } => {
            write_position(out, "lost", position);
            out.put_slice(b" reason=");
            encode_value(out, reason);
            Ok(())
        }
    };
    out.put_u8(b'\n');
}

/// At most 32 characters of what a peer sent, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(32).collect()
}

/// `body` behind the header of `kind`, in a frame of the body's kind: one allocation.
pub fn write(kind: Kind, body: &Payload) -> Payload {
    // "err id=18446744073709551615 code=65535" is the longest header of a request's frames
    // (39 bytes); a stream's frames are longer only by their names.
    let mut out = BytesMut::with_capacity(40 + body.len());
    put_header(&mut out, &kind);
    out.put_slice(body.as_bytes());
    let bytes: Bytes = out.freeze();
    match body {
        // ASCII, a line feed, then UTF-8: still UTF-8.
        Payload::Text(_) => Payload::Text(
            Text::try_from(bytes)
                .unwrap_or_else(|_| unreachable!("ASCII header and a UTF-8 body are UTF-8")),
        ),
        Payload::Binary(_) => Payload::Binary(bytes),
    }
}

/// The longest error message an `err` frame carries, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// An `err` frame for request `id`: `code` and `message` (cut to [`MAX_ERROR_MESSAGE`] bytes,
/// at a character boundary), in a frame of `kind`.
pub fn error(id: u64, code: u16, message: &str, kind: crate::FrameKind) -> Payload {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    let body = match kind {
        crate::FrameKind::Text => Payload::Text(message.into()),
        crate::FrameKind::Binary => Payload::Binary(Bytes::copy_from_slice(message.as_bytes())),
    };
    write(Kind::Error { id, code }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_keeps_the_frame_kind() {
        let text = Payload::Text(r#"{"a":1}"#.into());
        let binary = Payload::Binary(Bytes::from_static(&[0, 10, 255]));
        for kind in [
            Kind::Message,
            Kind::Request { id: 7 },
            Kind::Response { id: u64::MAX },
            Kind::Error { id: 1, code: 4001 },
            Kind::Publication(Position {
                stream: "room:ünï %&=\n".into(),
                epoch: "e".into(),
                offset: u64::MAX,
            }),
            Kind::Resume(Position {
                stream: "all".into(),
                epoch: "a b".into(),
                offset: 0,
            }),
            Kind::Subscribed(Position {
                stream: "room:x".into(),
                epoch: "e".into(),
                offset: 3,
            }),
            Kind::Unsubscribed {
                stream: "room:a b".into(),
            },
        ] {
            for body in [&text, &binary] {
                let frame = write(kind.clone(), body);
                assert_eq!(frame.kind(), body.kind());
                let (read_kind, read_body) = read(frame.as_ref()).unwrap();
                assert_eq!(read_kind, kind);
                assert_eq!(read_body, body.as_ref());
            }
        }
        assert_eq!(write(Kind::Message, &text).as_bytes(), b"\n{\"a\":1}");
        let at = |stream: &str| Position {
            stream: stream.into(),
            epoch: "3f2a".into(),
            offset: 17,
        };
        assert_eq!(
            write(
                Kind::Unsubscribed {
                    stream: "room:a".into()
                },
                &Payload::Text("".into())
            )
            .as_bytes(),
            b"unsub s=room%3Aa\n"
        );
        assert_eq!(
            write(Kind::Publication(at("room:café lobby")), &text).as_bytes(),
            "pub s=room%3Acaf%C3%A9%20lobby e=3f2a o=17\n{\"a\":1}".as_bytes()
        );
        let empty = Payload::Text("".into());
        assert_eq!(
            write(
                Kind::Lost {
                    position: at("all"),
                    reason: LostReason::EpochChanged.to_string()
                },
                &empty
            )
            .as_bytes(),
            b"lost s=all e=3f2a o=17 reason=epoch_changed\n"
        );
        assert_eq!(
            write(
                Kind::Recovered {
                    position: at("all"),
                    count: 3
                },
                &empty
            )
            .as_bytes(),
            b"recovered s=all e=3f2a o=17 n=3\n"
        );
        assert_eq!(
            write(Kind::Request { id: 3 }, &text).as_bytes(),
            b"req id=3\n{\"a\":1}"
        );
        assert_eq!(
            error(9, 500, "not answered", crate::FrameKind::Text).as_bytes(),
            b"err id=9 code=500\nnot answered"
        );
        // Cut to 1 KiB, at a character boundary.
        let long = "é".repeat(600);
        let cut = error(1, 4000, &long, crate::FrameKind::Text);
        assert_eq!(cut.len(), "err id=1 code=4000\n".len() + 1024);
    }

    #[test]
    fn unknown_keys_are_ignored_and_bad_frames_say_why() {
        let ok = |s: &'static str| read(PayloadRef::Text(s)).map(|(kind, _)| kind);
        assert_eq!(ok("req id=4 x=y\nbody"), Ok(Kind::Request { id: 4 }));
        let err = |s: &str| read(PayloadRef::Text(s)).unwrap_err().to_string();
        assert_eq!(
            err("{\"no\":\"header\"}"),
            "crimson.v1: a frame needs a header line ending in \\n (empty for a message)"
        );
        assert_eq!(err("pub s=x\n"), "crimson.v1: a `pub` needs `e`");
        assert_eq!(err("sub s=x\n"), "crimson.v1: a `sub` needs `e`");
        assert_eq!(err("unsub e=x\n"), "crimson.v1: an `unsub` needs `s`");
        assert_eq!(err("nope s=x\n"), "crimson.v1: unknown frame kind `nope`");
        // Two hex digits after each `%`, nothing else.
        assert_eq!(
            err("resume s=%+1 e=1 o=1\n"),
            "crimson.v1: `s=%+1` is not percent-encoded UTF-8"
        );
        assert_eq!(
            err("resume s=a%4 e=1 o=1\n"),
            "crimson.v1: `s=a%4` is not percent-encoded UTF-8"
        );
        assert_eq!(
            ok("resume s=room%3a%C3%A9 e=1 o=1\n"),
            Ok(Kind::Resume(Position {
                stream: "room:é".into(),
                epoch: "1".into(),
                offset: 1
            }))
        );
        assert_eq!(
            err("resume s=%zz e=1 o=1\n"),
            "crimson.v1: `s=%zz` is not percent-encoded UTF-8"
        );
        assert_eq!(
            err("lost s=all e=1 o=1\n"),
            "crimson.v1: a `lost` needs a `reason`"
        );
        assert_eq!(
            err("recovered s=all e=1 o=1\n"),
            "crimson.v1: a `recovered` needs `n`"
        );
        assert_eq!(err("req\n"), "crimson.v1: a `req` needs an id");
        assert_eq!(err("err id=1\n"), "crimson.v1: an `err` needs a code");
        assert_eq!(
            err("res id=-1\n"),
            "crimson.v1: `id=-1` is not a number in range"
        );
        assert_eq!(
            err("err id=1 code=70000\n"),
            "crimson.v1: `code=70000` is not a number in range"
        );
        assert_eq!(err("req id\n"), "crimson.v1: `id` is not a key=value field");
        let long = "x".repeat(MAX_HEADER + 10);
        assert_eq!(
            err(&long),
            format!("crimson.v1: no end of header line within {MAX_HEADER} bytes")
        );
        assert!(
            read(PayloadRef::Binary(&[0xff, b'\n'])).is_err(),
            "not ASCII"
        );
    }
}
