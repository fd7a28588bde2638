//! How a cluster message travels through Redis pub/sub: binary, payload bytes as they are.
//!
//! ```text
//! version u8 = 3 | kind u8 (0 text, 1 binary) | origin node u64 | stream u32 | seq u64
//!   | sent_at u64 | route | payload bytes…
//! route: 0 All | 1 Except id | 2 Room room | 3 RoomExcept room id | 4 Session id
//!   | 5 Ask: ask u64, timeout_ms u32, target (one of 0–3 with its fields)
//!   | 6 Asked: ask u64, unasked u32, count u32, count × id
//!   | 7 Answers: ask u64, count u32, count × answer
//! id: node u64, seq u64 · room: length u32, UTF-8 bytes · text: length u32, UTF-8 bytes
//! answer: id | codec u8 | outcome u8 | 0 Answered: kind u8, length u32, bytes
//!   | 1 Rejected: code u16, text | 2 Timeout | 3 Disconnected
//!   | 4 NotAsked: reason u8 (0 no protocol, 1 too many open, 2 closed, 3 queue full),
//!     open u32, text | 5 Failed: text
//! integers big-endian
//! ```
//!
//! `stream` and `seq` number what one origin publishes on one channel: `seq` counts up by
//! one from 1 within a `stream` (a random value the origin picks when it starts counting on
//! that channel), so a receiver that sees a seq jump knows how many messages it missed.
//! `sent_at` is when the broadcast was asked for, in microseconds since the Unix epoch on the
//! origin's clock: the receiver's `crimson_redis_relay_lag_seconds`. Version 2 (the same
//! without `sent_at`) is still read, so nodes can be upgraded one at a time from 2 to 3 in
//! this direction; a version-2 node counts version-3 messages as malformed.
//!
//! Routes 5–7 carry acknowledged broadcasts across nodes. An `Ask` goes where a broadcast to
//! its target goes, its payload the request in the default codec; every node that gets it
//! publishes on the origin's node channel an `Asked` at once (which of its sessions it asked,
//! and how many it did not, over its limits), then `Answers` as they come, each answer's body
//! in the session's codec (`codec`: its index in the request type's codecs). `Asked` and
//! `Answers` have an empty payload. Routes 5–7 are new in version 3: a node that does not
//! know them counts them as malformed (its sessions are then not asked, and the origin counts
//! that node as silent).

use bytes::{BufMut, Bytes, BytesMut};

use crate::cluster::Target;
use crate::message::{Payload, Text};
use crate::session::{AskError, SendError, SessionId};

const VERSION: u8 = 3;
/// The version before `sent_at`, still read.
const VERSION_2: u8 = 2;

/// The fewest bytes before the payload: version, kind, origin, stream, seq, target (version 2).
pub(crate) const MIN_HEADER: usize = 1 + 1 + 8 + 4 + 8 + 1;
/// The most bytes before the payload: an ask to a room target with the longest room name and
/// an id.
pub(crate) const MAX_HEADER: usize =
    MIN_HEADER + 8 + (8 + 4 + 1) + 4 + crate::cluster::MAX_ROOM_LEN + 16;
/// The longest text an answer carries (a refusal's or an error's message), in bytes.
pub(crate) const MAX_TEXT: usize = crate::protocol::MAX_ERROR_MESSAGE;
/// The fewest bytes of one answer: id, codec, outcome.
const MIN_ANSWER: usize = 16 + 1 + 1;

/// Where a relayed message goes on the receiving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A broadcast.
    Broadcast(Target),
    /// One session.
    Session(SessionId),
    /// An acknowledged broadcast: ask the sessions `target` names (the payload is the
    /// request, in the default codec) and answer on the origin's node channel.
    Ask {
        /// The origin's id for it.
        ask: u64,
        /// How long the origin waits, in milliseconds.
        timeout_ms: u32,
        /// Which sessions.
        target: Target,
    },
    /// A node's reply to an ask: the sessions it asked (each answers in a later `Answers`),
    /// and how many it did not ask, over its limits.
    Asked {
        ask: u64,
        unasked: u32,
        sessions: Vec<SessionId>,
    },
    /// Answers of sessions a node asked.
    Answers { ask: u64, answers: Vec<Answer> },
}

/// One session's answer to an ask, as its node relays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) session: SessionId,
    /// The session's codec: its index in the request type's codecs.
    pub(crate) codec: u8,
    pub(crate) outcome: Outcome,
}

/// What came of asking one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its answer's body, in the session's codec.
    Answered(Payload),
    /// Its client refused: code and message.
    Rejected(u16, String),
    /// No answer within the timeout.
    Timeout,
    /// The session ended before it answered.
    Disconnected,
    /// The session could not be asked.
    NotAsked(AskError),
    /// Something else went wrong on its node (said in words): an answer too large to relay,
    /// a request that did not re-encode in the session's codec, a reason this version does
    /// not know.
    Failed(String),
}

impl Answer {
    /// How many bytes it takes on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        MIN_ANSWER
            + match &self.outcome {
                Outcome::Answered(body) => 1 + 4 + body.len(),
                Outcome::Rejected(_, message) => 2 + 4 + message.len().min(MAX_TEXT),
                Outcome::Timeout | Outcome::Disconnected => 0,
                Outcome::NotAsked(err) => 1 + 4 + 4 + err.to_string().len().min(MAX_TEXT),
                Outcome::Failed(message) => 4 + message.len().min(MAX_TEXT),
            }
    }
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

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary, with its length first.
fn put_text(out: &mut BytesMut, text: &str) {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    put_room(out, &text[..end]);
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_target(out: &mut BytesMut, target: &Target) {
    match target {
        Target::All => out.put_u8(0),
        Target::Except(id) => {
            out.put_u8(1);
            put_id(out, *id);
        }
        Target::Room(room) => {
            out.put_u8(2);
            put_room(out, room);
        }
        Target::RoomExcept(room, id) => {
            out.put_u8(3);
            put_room(out, room);
            put_id(out, *id);
        }
    }
}

fn put_answer(out: &mut BytesMut, answer: &Answer) {
    put_id(out, answer.session);
    out.put_u8(answer.codec);
    match &answer.outcome {
        Outcome::Answered(body) => {
            out.put_u8(0);
            out.put_u8(match body {
                Payload::Text(_) => 0,
                Payload::Binary(_) => 1,
            });
            out.put_u32(len_u32(body.len()));
            out.put_slice(body.as_bytes());
        }
        Outcome::Rejected(code, message) => {
            out.put_u8(1);
            out.put_u16(*code);
            put_text(out, message);
        }
        Outcome::Timeout => out.put_u8(2),
        Outcome::Disconnected => out.put_u8(3),
        Outcome::NotAsked(err) => {
            out.put_u8(4);
            let (reason, open) = match err {
                AskError::NoProtocol => (0, 0),
                AskError::TooManyOpen(open) => (1, len_u32(*open)),
                AskError::Send(SendError::Closed) => (2, 0),
                AskError::Send(SendError::Overflow) => (3, 0),
            };
            out.put_u8(reason);
            out.put_u32(open);
            put_text(out, &err.to_string());
        }
        Outcome::Failed(message) => {
            out.put_u8(5);
            put_text(out, message);
        }
    }
}

/// Encodes a relayed message.
pub(crate) fn encode(
    origin: u64,
    position: Position,
    sent_at: u64,
    route: &Route,
    payload: &Payload,
) -> Bytes {
    let extra = match route {
        Route::Asked { sessions, .. } => 16 * sessions.len(),
        Route::Answers { answers, .. } => answers.iter().map(Answer::wire_len).sum(),
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(56 + extra + payload.len());
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
        Route::Broadcast(target) => put_target(&mut out, target),
        Route::Session(id) => {
            out.put_u8(4);
            put_id(&mut out, *id);
        }
        Route::Ask {
            ask,
            timeout_ms,
            target,
        } => {
            out.put_u8(5);
            out.put_u64(*ask);
            out.put_u32(*timeout_ms);
            put_target(&mut out, target);
        }
        Route::Asked {
            ask,
            unasked,
            sessions,
        } => {
            out.put_u8(6);
            out.put_u64(*ask);
            out.put_u32(*unasked);
            out.put_u32(len_u32(sessions.len()));
            for id in sessions {
                put_id(&mut out, *id);
            }
        }
        Route::Answers { ask, answers } => {
            out.put_u8(7);
            out.put_u64(*ask);
            out.put_u32(len_u32(answers.len()));
            for answer in answers {
                put_answer(&mut out, answer);
            }
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

    fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
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
        self.text("room", "room is not UTF-8")
    }

    fn text(&mut self, what: &'static str, not_utf8: &'static str) -> Result<String, Malformed> {
        let len = self.u32(what)? as usize;
        let text = self.take(len, what)?;
        String::from_utf8(text.to_vec()).map_err(|_| Malformed(not_utf8))
    }

    /// A count of items of at least `min` bytes each, checked against what is left (so a
    /// forged count cannot make the reader allocate more than the message holds).
    fn count(&mut self, min: usize, what: &'static str) -> Result<usize, Malformed> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(min) > self.bytes.len() {
            return Err(Malformed(what));
        }
        Ok(count)
    }

    fn target(&mut self, tag: u8) -> Result<Target, Malformed> {
        Ok(match tag {
            0 => Target::All,
            1 => Target::Except(self.id()?),
            2 => Target::Room(self.room()?),
            3 => {
                let room = self.room()?;
                Target::RoomExcept(room, self.id()?)
            }
            _ => return Err(Malformed("unknown target")),
        })
    }

    fn answer(&mut self) -> Result<Answer, Malformed> {
        let session = self.id()?;
        let codec = self.u8("answer codec")?;
        let outcome = match self.u8("answer outcome")? {
            0 => {
                let kind = self.u8("answer body kind")?;
                let len = self.u32("answer body length")? as usize;
                let body = self.take(len, "answer body")?;
                match kind {
                    0 => Outcome::Answered(Payload::Text(
                        Text::try_from(body).map_err(|_| Malformed("text answer is not UTF-8"))?,
                    )),
                    1 => Outcome::Answered(Payload::Binary(body)),
                    _ => return Err(Malformed("unknown answer body kind")),
                }
            }
            1 => {
                let code = self.u16("refusal code")?;
                Outcome::Rejected(code, self.text("refusal", "refusal is not UTF-8")?)
            }
            2 => Outcome::Timeout,
            3 => Outcome::Disconnected,
            4 => {
                let reason = self.u8("ask error")?;
                let open = self.u32("ask error")?;
                let message = self.text("ask error", "ask error is not UTF-8")?;
                Outcome::NotAsked(match reason {
                    0 => AskError::NoProtocol,
                    1 => AskError::TooManyOpen(open as usize),
                    2 => AskError::Send(SendError::Closed),
                    3 => AskError::Send(SendError::Overflow),
                    // A reason of a later version: said in words.
                    _ => {
                        return Ok(Answer {
                            session,
                            codec,
                            outcome: Outcome::Failed(message),
                        })
                    }
                })
            }
            5 => Outcome::Failed(self.text("failure", "failure is not UTF-8")?),
            _ => return Err(Malformed("unknown answer outcome")),
        };
        Ok(Answer {
            session,
            codec,
            outcome,
        })
    }
}

/// Decodes a relayed message. Never panics, and allocates no more than the message holds.
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
        tag @ 0..=3 => Route::Broadcast(r.target(tag)?),
        4 => Route::Session(r.id()?),
        5 => {
            let ask = r.u64("ask id")?;
            let timeout_ms = r.u32("ask timeout")?;
            let tag = r.u8("ask target")?;
            Route::Ask {
                ask,
                timeout_ms,
                target: r.target(tag)?,
            }
        }
        6 => {
            let ask = r.u64("ask id")?;
            let unasked = r.u32("unasked sessions")?;
            let count = r.count(16, "asked sessions")?;
            let sessions = (0..count).map(|_| r.id()).collect::<Result<_, _>>()?;
            Route::Asked {
                ask,
                unasked,
                sessions,
            }
        }
        7 => {
            let ask = r.u64("ask id")?;
            let count = r.count(MIN_ANSWER, "answers")?;
            let answers = (0..count).map(|_| r.answer()).collect::<Result<_, _>>()?;
            Route::Answers { ask, answers }
        }
        _ => return Err(Malformed("unknown target")),
    };
    if matches!(route, Route::Asked { .. } | Route::Answers { .. }) && !r.bytes.is_empty() {
        return Err(Malformed("bytes after the answers"));
    }
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

    fn acks_routes() -> Vec<Route> {
        let id = SessionId::from_parts(0xdead_beef, 42);
        let answer = |outcome| Answer {
            session: id,
            codec: 2,
            outcome,
        };
        vec![
            Route::Ask {
                ask: u64::MAX,
                timeout_ms: 1500,
                target: Target::RoomExcept("lobby".into(), id),
            },
            Route::Ask {
                ask: 1,
                timeout_ms: 0,
                target: Target::All,
            },
            Route::Asked {
                ask: 9,
                unasked: 3,
                sessions: vec![id, SessionId::from_parts(1, 2)],
            },
            Route::Asked {
                ask: 9,
                unasked: 0,
                sessions: vec![],
            },
            Route::Answers {
                ask: 7,
                answers: vec![
                    answer(Outcome::Answered(Payload::Text("{\"a\":\"ü\"}".into()))),
                    answer(Outcome::Answered(Payload::Binary(Bytes::from_static(&[
                        0, 255,
                    ])))),
                    answer(Outcome::Rejected(4009, "no".into())),
                    answer(Outcome::Timeout),
                    answer(Outcome::Disconnected),
                    answer(Outcome::NotAsked(AskError::NoProtocol)),
                    answer(Outcome::NotAsked(AskError::TooManyOpen(256))),
                    answer(Outcome::NotAsked(AskError::Send(SendError::Closed))),
                    answer(Outcome::NotAsked(AskError::Send(SendError::Overflow))),
                    answer(Outcome::Failed("busy".into())),
                ],
            },
        ]
    }

    #[test]
    fn ack_routes_round_trip() {
        let position = Position { stream: 1, seq: 2 };
        for route in acks_routes() {
            let payload = match route {
                Route::Ask { .. } => Payload::Text("{\"q\":1}".into()),
                _ => Payload::Binary(Bytes::new()),
            };
            let bytes = encode(5, position, 6, &route, &payload);
            if let Route::Answers { answers, .. } = &route {
                let listed: usize = answers.iter().map(Answer::wire_len).sum();
                assert_eq!(bytes.len(), 30 + 1 + 8 + 4 + listed, "wire_len is exact");
            }
            let relay = decode(bytes).unwrap();
            assert_eq!(
                (relay.origin, &relay.route, &relay.payload),
                (5, &route, &payload)
            );
        }
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let route = Route::Answers {
            ask: 1,
            answers: vec![Answer {
                session: SessionId::from_parts(1, 1),
                codec: 0,
                outcome: Outcome::Rejected(4000, long.clone()),
            }],
        };
        let bytes = encode(
            1,
            Position { stream: 1, seq: 1 },
            0,
            &route,
            &Payload::Binary(Bytes::new()),
        );
        match decode(bytes).unwrap().route {
            Route::Answers { answers, .. } => match &answers[0].outcome {
                Outcome::Rejected(4000, cut) => {
                    assert_eq!(cut.len(), MAX_TEXT);
                    assert!(long.starts_with(cut.as_str()));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    /// A message of route `tag` with `rest` after the route byte, as a hostile publisher
    /// could make it.
    fn forged(tag: u8, rest: &[u8]) -> Bytes {
        let mut out = vec![VERSION, 1];
        out.extend_from_slice(&[0; 8 + 4 + 8 + 8]);
        out.push(tag);
        out.extend_from_slice(rest);
        Bytes::from(out)
    }

    #[test]
    fn hostile_ack_messages_are_malformed_without_allocating() {
        // Truncated anywhere: an error, never a panic, never a shorter list.
        let position = Position { stream: 1, seq: 1 };
        for route in acks_routes() {
            let good = encode(1, position, 0, &route, &Payload::Binary(Bytes::new()));
            let cuts = if matches!(route, Route::Ask { .. }) {
                // An ask's payload is what follows its target: cut inside the header only.
                0..(30 + 1 + 8 + 4 + 1)
            } else {
                0..good.len()
            };
            for cut in cuts {
                assert!(decode(good.slice(..cut)).is_err(), "{route:?} cut at {cut}");
            }
        }
        // A list that claims 4 billion sessions in a few bytes: refused before allocating.
        let mut huge = 7u64.to_be_bytes().to_vec();
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 32]);
        assert_eq!(decode(forged(6, &huge)), Err(Malformed("asked sessions")));
        let mut many = 7u64.to_be_bytes().to_vec();
        many.extend_from_slice(&u32::MAX.to_be_bytes());
        many.extend_from_slice(&[0; 64]);
        assert_eq!(decode(forged(7, &many)), Err(Malformed("answers")));
        // An answer body longer than the message.
        let mut long_body = 7u64.to_be_bytes().to_vec();
        long_body.extend_from_slice(&1u32.to_be_bytes());
        long_body.extend_from_slice(&[0; 16]);
        long_body.extend_from_slice(&[0, 0, 1]);
        long_body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(forged(7, &long_body)), Err(Malformed("answer body")));
        // Unknown outcome, unknown body kind, text that is not UTF-8.
        let one = |outcome: &[u8]| {
            let mut rest = 7u64.to_be_bytes().to_vec();
            rest.extend_from_slice(&1u32.to_be_bytes());
            rest.extend_from_slice(&[0; 16]);
            rest.push(0);
            rest.extend_from_slice(outcome);
            decode(forged(7, &rest))
        };
        assert_eq!(one(&[6]), Err(Malformed("unknown answer outcome")));
        assert_eq!(
            one(&[0, 2, 0, 0, 0, 0]),
            Err(Malformed("unknown answer body kind"))
        );
        assert_eq!(
            one(&[0, 0, 0, 0, 0, 1, 0xff]),
            Err(Malformed("text answer is not UTF-8"))
        );
        assert_eq!(
            one(&[5, 0, 0, 0, 1, 0xff]),
            Err(Malformed("failure is not UTF-8"))
        );
        // Bytes after a complete list.
        assert_eq!(one(&[2, 9]), Err(Malformed("bytes after the answers")));
        // An ask error of a later version is said in words, not dropped.
        let mut later = vec![4, 200, 0, 0, 0, 0, 0, 0, 0, 3];
        later.extend_from_slice(b"new");
        match one(&later).unwrap().route {
            Route::Answers { answers, .. } => {
                assert_eq!(answers[0].outcome, Outcome::Failed("new".into()));
            }
            other => panic!("{other:?}"),
        }
        // An ask with an unknown target.
        let mut ask = 7u64.to_be_bytes().to_vec();
        ask.extend_from_slice(&100u32.to_be_bytes());
        ask.push(4);
        assert_eq!(decode(forged(5, &ask)), Err(Malformed("unknown target")));
        assert_eq!(decode(forged(8, &[])), Err(Malformed("unknown target")));
    }
}
