//! The history's scripts, and what they answer, read as hostile input (anything that can
//! write to Redis can write these keys).

use std::time::Duration;

use redis::{Cmd, RedisResult, Value};
use sha1::{Digest, Sha1};

use super::envelope::{is_epoch, parse_offset};
use crate::cluster::redis::{io_error, Node};
use crate::cluster::History;
use crate::protocol::LostReason;

/// A Lua script run with `EVALSHA`, or `EVAL` (which loads it again) when Redis does not
/// have it (`NOSCRIPT`: restarted, flushed, or another shard).
#[derive(Debug)]
pub(super) struct Script {
    body: &'static str,
    sha: String,
}

impl Script {
    pub(super) fn new(body: &'static str) -> Self {
        let digest = Sha1::digest(body.as_bytes());
        let sha = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self { body, sha }
    }

    /// Runs the script on `keys` (of one hash tag, so one shard) with `args`, within the
    /// node's command timeout.
    pub(super) async fn run(
        &self,
        node: &Node,
        keys: [&str; 2],
        args: &[&[u8]],
    ) -> RedisResult<Value> {
        self.run_within(node, keys, args, node.timeout).await
    }

    /// [`run`](Self::run) within `wait`.
    pub(super) async fn run_within(
        &self,
        node: &Node,
        keys: [&str; 2],
        args: &[&[u8]],
        wait: Duration,
    ) -> RedisResult<Value> {
        let command = |name: &str, script: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(name).arg(script).arg(keys.len()).arg(&keys[..]);
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        let run = async {
            let sent = node
                .shards
                .query::<Value>(keys[0], &command("EVALSHA", &self.sha))
                .await;
            match sent {
                Err(err) if err.code() == Some("NOSCRIPT") => {
                    node.shards
                        .query::<Value>(keys[0], &command("EVAL", self.body))
                        .await
                }
                other => other,
            }
        };
        tokio::time::timeout(wait, run).await.unwrap_or_else(|_| {
            Err(io_error(
                "Redis did not answer in time",
                format!("no answer within {wait:?}"),
            ))
        })
    }
}

/// The history's scripts.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) warm: Script,
    pub(super) read: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: Script::new(include_str!("publish.lua")),
            warm: Script::new(include_str!("warm.lua")),
            read: Script::new(include_str!("read.lua")),
        }
    }
}

/// A fresh epoch: 16 hex digits.
pub(super) fn fresh_epoch() -> String {
    format!("{:016x}", crate::session::random_u64())
}

/// A duration for a script, in ms: 0 for none (`Duration::MAX`, or anything over a
/// century), at least 1 otherwise.
pub(super) fn ms(duration: Duration) -> u64 {
    if duration >= Duration::from_secs(100 * 365 * 24 * 3600) {
        return 0;
    }
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The shortest time a stream's hash (its epoch and last offset) outlives its last use.
const MIN_HASH_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a stream's hash outlives its last publication or warm-up, in ms (0: forever):
/// twice the history's, and at least a day, so that an idle stream keeps its epoch.
pub(super) fn hash_ttl_ms(history: &History) -> u64 {
    ms(history.ttl().saturating_mul(2).max(MIN_HASH_TTL))
}

/// Whether entries older than the history's time to live are refused.
pub(super) fn ages(history: &History) -> bool {
    ms(history.ttl()) > 0
}

fn bad(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "the stream's keys in Redis are not Crimson's",
        what.to_owned(),
    ))
}

fn items(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

fn epoch(value: &Value) -> RedisResult<String> {
    let epoch = bytes(value)
        .filter(|e| is_epoch(e))
        .ok_or_else(|| bad("epoch"))?;
    Ok(String::from_utf8_lossy(epoch).into_owned())
}

/// The publish script's answer: epoch, offset, subscribers reached.
pub(super) fn published(value: Value) -> RedisResult<(String, u64, usize)> {
    let answer = items(value).ok_or_else(|| bad("publish answer"))?;
    let [e, o, n] = &answer[..] else {
        return Err(bad("publish answer"));
    };
    let offset = number(o).filter(|o| *o > 0).ok_or_else(|| bad("offset"))?;
    let reached = number(n).ok_or_else(|| bad("subscribers"))?;
    Ok((
        epoch(e)?,
        offset,
        usize::try_from(reached).unwrap_or(usize::MAX),
    ))
}

/// The warm script's answer: epoch, last offset.
pub(super) fn warmed(value: Value) -> RedisResult<(String, u64)> {
    let answer = items(value).ok_or_else(|| bad("warm-up answer"))?;
    let [e, o] = &answer[..] else {
        return Err(bad("warm-up answer"));
    };
    let last = number(o).ok_or_else(|| bad("offset"))?;
    Ok((epoch(e)?, last))
}

/// One entry of a stream's history: its offset, its cluster message, when it was added
/// (Redis's clock, ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) offset: u64,
    pub(super) message: bytes::Bytes,
    pub(super) at: u64,
}

/// What the read script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Read {
    /// Redis's time, ms.
    pub(super) now: u64,
    /// The stream's epoch and last offset, if it has them.
    pub(super) stream: Option<(String, u64)>,
    /// The entries read, in offset order; those that are not Crimson's are skipped.
    pub(super) entries: Vec<Entry>,
    /// Entries that were not Crimson's (each counted as malformed).
    pub(super) foreign: usize,
}

impl Read {
    /// Why `offset`, missing from what was read, is gone: trimmed to the history's size
    /// (`size` publications came after it), else expired (the whole history did, nothing
    /// having been published for its time to live); `unavailable` if entries that are not
    /// Crimson's were among what was read.
    pub(super) fn gone(&self, history: &History, offset: u64) -> LostReason {
        if self.foreign > 0 {
            return LostReason::Unavailable;
        }
        let last = self.stream.as_ref().map_or(0, |(_, last)| *last);
        let trimmed = last.saturating_sub(offset) >= history.size() as u64;
        if !trimmed && ages(history) {
            LostReason::Expired
        } else {
            LostReason::HistoryTooShort
        }
    }
}

/// The read script's answer.
pub(super) fn read(value: Value) -> RedisResult<Read> {
    let answer = items(value).ok_or_else(|| bad("read answer"))?;
    let [now, e, o, entries] = <[Value; 4]>::try_from(answer).map_err(|_| bad("read answer"))?;
    let now = number(&now).ok_or_else(|| bad("time"))?;
    let stream = match (&e, &o) {
        (Value::Nil, _) | (_, Value::Nil) => None,
        (e, o) => Some((epoch(e)?, number(o).ok_or_else(|| bad("offset"))?)),
    };
    let mut read = Read {
        now,
        stream,
        entries: Vec::new(),
        foreign: 0,
    };
    for entry in items(entries).ok_or_else(|| bad("entries"))? {
        match parse_entry(entry) {
            Some(entry)
                if read
                    .entries
                    .last()
                    .is_none_or(|last| last.offset < entry.offset) =>
            {
                read.entries.push(entry);
            }
            _ => read.foreign += 1,
        }
    }
    Ok(read)
}

/// `[ "0-OFFSET", [ "m", message, "t", ms ] ]`, fields in any order.
fn parse_entry(entry: Value) -> Option<Entry> {
    let [id, fields] = <[Value; 2]>::try_from(items(entry)?).ok()?;
    let offset = parse_offset(bytes(&id)?.strip_prefix(b"0-")?)?;
    let fields = items(fields)?;
    let (mut message, mut at) = (None, None);
    for pair in fields.chunks(2) {
        match pair {
            [name, value] if bytes(name) == Some(b"m") => {
                message = bytes(value).map(<[u8]>::to_vec);
            }
            [name, value] if bytes(name) == Some(b"t") => at = number(value),
            _ => {}
        }
    }
    Some(Entry {
        offset,
        message: bytes::Bytes::from(message?),
        at: at?,
    })
}

/// The command that publishes on a channel here: `SPUBLISH` on a Redis Cluster.
pub(super) fn publish_command(node: &Node) -> &'static str {
    if node.shards.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let mut flat = Vec::new();
        for (name, value) in fields {
            flat.push(bulk(name));
            flat.push(bulk(value));
        }
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    #[test]
    fn answers_are_read_as_hostile_input() {
        assert_eq!(
            published(Value::Array(vec![
                bulk("ab12"),
                Value::Int(7),
                Value::Int(2)
            ]))
            .unwrap(),
            ("ab12".into(), 7, 2)
        );
        for bad in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![bulk("ab12"), Value::Int(0), Value::Int(2)]),
            Value::Array(vec![bulk("a b"), Value::Int(1), Value::Int(2)]),
            Value::Array(vec![bulk(&"a".repeat(33)), Value::Int(1), Value::Int(2)]),
            Value::Array(vec![bulk("ab"), Value::Int(-1), Value::Int(2)]),
            Value::Array(vec![bulk("ab"), Value::Int(1)]),
        ] {
            assert!(published(bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!(
            warmed(Value::Array(vec![bulk("e1"), bulk("0")])).unwrap(),
            ("e1".into(), 0)
        );
        assert!(warmed(Value::Array(vec![bulk("e1"), bulk("x")])).is_err());

        let answer = Value::Array(vec![
            Value::Int(1_700_000_000_000),
            bulk("e1"),
            bulk("9"),
            Value::Array(vec![
                entry("0-7", &[("t", "5"), ("m", "\x03msg")]),
                entry("0-8", &[("m", "no time")]),
                entry("1-9", &[("m", "x"), ("t", "1")]),
                entry("0-08", &[("m", "x"), ("t", "1")]),
                Value::Int(3),
                entry("0-9", &[("m", "\x03m9"), ("t", "6"), ("extra", "ignored")]),
                entry("0-9", &[("m", "twice"), ("t", "6")]),
            ]),
        ]);
        let read = read(answer).unwrap();
        assert_eq!(read.now, 1_700_000_000_000);
        assert_eq!(read.stream, Some(("e1".into(), 9)));
        let offsets: Vec<u64> = read.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [7, 9]);
        assert_eq!(read.entries[0].message.as_ref(), b"\x03msg");
        assert_eq!(read.entries[0].at, 5);
        assert_eq!(read.foreign, 5);
        let empty = Value::Array(vec![
            Value::Int(1),
            Value::Nil,
            Value::Nil,
            Value::Array(vec![]),
        ]);
        let empty = super::read(empty).unwrap();
        assert_eq!(empty.stream, None);
        let history = History::new(10, Duration::from_secs(60));
        assert_eq!(empty.gone(&history, 1), LostReason::Expired);
        assert_eq!(
            empty.gone(&History::new(10, Duration::MAX), 1),
            LostReason::HistoryTooShort
        );
        // Ten came after 9 (up to 19): trimmed; after 10, not: expired.
        let mut at_19 = empty.clone();
        at_19.stream = Some(("e".into(), 19));
        assert_eq!(at_19.gone(&history, 9), LostReason::HistoryTooShort);
        assert_eq!(at_19.gone(&history, 10), LostReason::Expired);
        assert_eq!(
            at_19.gone(&History::new(0, Duration::from_secs(1)), 19),
            LostReason::HistoryTooShort
        );
        assert!(super::read(Value::Array(vec![Value::Int(1)])).is_err());
    }

    #[test]
    fn scripts_are_named_by_their_sha1() {
        // SHA-1 of "return 1", as Redis's SCRIPT LOAD gives it.
        assert_eq!(
            Script::new("return 1").sha,
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(ms(Duration::MAX), 0);
        assert_eq!(ms(Duration::from_micros(10)), 1);
        assert_eq!(ms(Duration::from_secs(3)), 3000);
        assert_eq!(
            hash_ttl_ms(&History::new(1, Duration::from_secs(60))),
            24 * 3600 * 1000
        );
        assert_eq!(hash_ttl_ms(&History::new(1, Duration::MAX)), 0);
    }
}
