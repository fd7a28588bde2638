//! How a cluster message travels through Redis pub/sub: binary, payload bytes as they are.
//!
//! ```text
//! version u8 = 3 | kind u8 (0 text, 1 binary) | origin node u64 | stream u32 | seq u64
//!   | sent_at u64 | target | payload bytes…
//! target: 0 All | 1 Except id | 2 Room room | 3 RoomExcept room id | 4 Session id
//! id: node u64, seq u64 · room: length u32, UTF-8 bytes · integers big-endian
//! ```
//!
//! `stream` and `seq` number what one origin publishes on one channel: `seq` counts up by
//! one from 1 within a `stream` (a random value the origin picks when it starts counting on
//! that channel), so a receiver that sees a seq jump knows how many messages it missed.
//! `sent_at` is when the broadcast was asked for, in microseconds since the Unix epoch on the
//! origin's clock: the receiver's `crimson_redis_relay_lag_seconds`. Version 2 (the same
//! without `sent_at`) is still read, so nodes can be upgraded one at a time from 2 to 3 in
//! this direction; a version-2 node counts version-3 messages as malformed.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cluster::Target;
use crate::message::{Payload, Text};
use crate::session::SessionId;

const VERSION: u8 = 3;
/// The version before `sent_at`, still read.
const VERSION_2: u8 = 2;

/// The fewest bytes before the payload: version, kind, origin, stream, seq, target (version 2).
pub(crate) const MIN_HEADER: usize = 1 + 1 + 8 + 4 + 8 + 1;
/// The most bytes before the payload: a room target with the longest room name and an id.
pub(crate) const MAX_HEADER: usize = MIN_HEADER + 8 + 4 + crate::cluster::MAX_ROOM_LEN + 16;

/// Where a relayed message goes on the receiving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A broadcast.
    Broadcast(Target),
    /// One session.
    Session(SessionId),
}

/// Where a message stands in what its origin published on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Changes when the origin starts counting again.
    pub(crate) stream: u32,
    /// 1, 2, 3… within the stream.
    pub(crate) seq: u64,
}

/// A relayed message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    pub(crate) origin: u64,
    pub(crate) position: Position,
    /// When the broadcast was asked for (µs since the Unix epoch, origin's clock); none from
    /// a version-2 origin.
    pub(crate) sent_at: Option<u64>,
    pub(crate) route: Route,
    pub(crate) payload: Payload,
}

/// Microseconds since the Unix epoch of `at` (0 before it).
pub(crate) fn micros(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    })
}

fn put_id(out: &mut BytesMut, id: SessionId) {
    out.put_u64(id.node());
    out.put_u64(id.seq());
}

fn put_room(out: &mut BytesMut, room: &str) {
    // Room names are at most `MAX_ROOM_LEN` bytes (checked on join); a length that does not
    // fit u32 cannot occur in a message Redis would accept anyway.
    out.put_u32(u32::try_from(room.len()).unwrap_or(u32::MAX));
    out.put_slice(room.as_bytes());
}

/// Encodes a relayed message.
pub(crate) fn encode(
    origin: u64,
    position: Position,
    sent_at: u64,
    route: &Route,
    payload: &Payload,
) -> Bytes {
    let mut out = BytesMut::with_capacity(56 + payload.len());
    out.put_u8(VERSION);
    out.put_u8(match payload {
        Payload::Text(_) => 0,
        Payload::Binary(_) => 1,
    });
    out.put_u64(origin);
    out.put_u32(position.stream);
    out.put_u64(position.seq);
    out.put_u64(sent_at);
    match route {
        Route::Broadcast(Target::All) => out.put_u8(0),
        Route::Broadcast(Target::Except(id)) => {
            out.put_u8(1);
            put_id(&mut out, *id);
        }
        Route::Broadcast(Target::Room(room)) => {
            out.put_u8(2);
            put_room(&mut out, room);
        }
        Route::Broadcast(Target::RoomExcept(room, id)) => {
            out.put_u8(3);
            put_room(&mut out, room);
            put_id(&mut out, *id);
        }
        Route::Session(id) => {
            out.put_u8(4);
            put_id(&mut out, *id);
        }
    }
    out.put_slice(payload.as_bytes());
    out.freeze()
}

/// A relayed message that is not in this format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed(what));
        }
        Ok(self.bytes.split_to(n))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(
            b[..].try_into().map_err(|_| Malformed(what))?,
        ))
    }

    fn id(&mut self) -> Result<SessionId, Malformed> {
        Ok(SessionId::from_parts(
            self.u64("session id")?,
            self.u64("session id")?,
        ))
    }

    fn room(&mut self) -> Result<String, Malformed> {
        let len = self.take(4, "room length")?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let room = self.take(len, "room")?;
        String::from_utf8(room.to_vec()).map_err(|_| Malformed("room is not UTF-8"))
    }
}

/// Decodes a relayed message. Never panics.
pub(crate) fn decode(bytes: Bytes) -> Result<Relay, Malformed> {
    let mut r = Reader { bytes };
    let version = r.u8("version")?;
    if version != VERSION && version != VERSION_2 {
        return Err(Malformed("unknown version"));
    }
    let kind = r.u8("kind")?;
    let origin = r.u64("origin")?;
    let position = Position {
        stream: r.u32("stream")?,
        seq: r.u64("seq")?,
    };
    let sent_at = if version == VERSION {
        Some(r.u64("sent_at")?)
    } else {
        None
    };
    let route = match r.u8("target")? {
        0 => Route::Broadcast(Target::All),
        1 => Route::Broadcast(Target::Except(r.id()?)),
        2 => Route::Broadcast(Target::Room(r.room()?)),
        3 => {
            let room = r.room()?;
            Route::Broadcast(Target::RoomExcept(room, r.id()?))
        }
        4 => Route::Session(r.id()?),
        _ => return Err(Malformed("unknown target")),
    };
    let payload = match kind {
        0 => Payload::Text(
            Text::try_from(r.bytes).map_err(|_| Malformed("text payload is not UTF-8"))?,
        ),
        1 => Payload::Binary(r.bytes),
        _ => return Err(Malformed("unknown payload kind")),
    };
    Ok(Relay {
        origin,
        position,
        sent_at,
        route,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_round_trips_with_payload_bytes_as_they_are() {
        let id = SessionId::from_parts(0xdead_beef, 42);
        let routes = [
            Route::Broadcast(Target::All),
            Route::Broadcast(Target::Except(id)),
            Route::Broadcast(Target::Room("lobby".into())),
            Route::Broadcast(Target::RoomExcept("ü".into(), id)),
            Route::Session(id),
        ];
        let payloads = [
            Payload::Text("héllo".into()),
            Payload::Binary(Bytes::from_static(&[0, 0xff, 0x80, 1])),
        ];
        for route in &routes {
            for payload in &payloads {
                let position = Position {
                    stream: 0xfeed,
                    seq: 9,
                };
                let bytes = encode(7, position, 1_700_000_000_000_000, route, payload);
                // Binary payloads travel raw: the last bytes are the payload itself.
                assert!(bytes.ends_with(payload.as_bytes()));
                let relay = decode(bytes.clone()).unwrap();
                assert_eq!(
                    (
                        relay.origin,
                        relay.position,
                        relay.sent_at,
                        &relay.route,
                        &relay.payload
                    ),
                    (7, position, Some(1_700_000_000_000_000), route, payload)
                );
                // The same as version 2 (no `sent_at`) still reads.
                let mut v2 = bytes[..22].to_vec();
                v2[0] = VERSION_2;
                v2.extend_from_slice(&bytes[30..]);
                let relay = decode(Bytes::from(v2)).unwrap();
                assert_eq!(
                    (relay.sent_at, &relay.route, &relay.payload),
                    (None, route, payload)
                );
            }
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(decode(Bytes::new()).is_err());
        assert!(decode(Bytes::from_static(&[3, 0])).is_err());
        assert_eq!(
            decode(Bytes::from_static(&[4, 0])),
            Err(Malformed("unknown version"))
        );
        let position = Position { stream: 1, seq: 1 };
        let good = encode(
            1,
            position,
            0,
            &Route::Broadcast(Target::Room("r".into())),
            &Payload::Text("t".into()),
        );
        for cut in 0..good.len() - 1 {
            let _ = decode(good.slice(..cut));
        }
        let mut bad_text = encode(
            1,
            position,
            0,
            &Route::Broadcast(Target::All),
            &Payload::Binary(Bytes::from_static(&[0xff])),
        )
        .to_vec();
        bad_text[1] = 0;
        assert_eq!(
            decode(Bytes::from(bad_text)),
            Err(Malformed("text payload is not UTF-8"))
        );
    }
}
