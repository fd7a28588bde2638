//! Streams and their history: every broadcast of a cluster with [`History`] is a publication
//! in a stream (`all`, or `room:<name>`) at the next offset, kept for a while so that a
//! client that reconnects gets what it missed, or is told plainly that it cannot
//! (`docs/protocol.md`, "Streams and recovery").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Target;
use crate::message::Payload;
use crate::protocol::{LostReason, Position};
use crate::session::{SessionHandle, SessionId};

/// The stream of broadcasts to every session.
pub const ALL: &str = "all";

/// The stream a broadcast to `target` is published in: `all`, or `room:<name>`.
pub fn stream_of(target: &Target) -> String {
    match target {
        Target::All | Target::Except(_) => ALL.to_owned(),
        Target::Room(room) | Target::RoomExcept(room, _) => format!("room:{room}"),
    }
}

/// How much of each stream a cluster keeps, so that clients that reconnect recover what they
/// missed: the last `size` publications, none older than `ttl`.
///
/// Memory: at most [`max_streams`](Self::max_streams) × `size` payloads (each as large as
/// what the application broadcast: the route's message size limit bounds what clients send,
/// not this), shared with the queues they were sent through. A recovery sends fresh copies
/// (each behind its own header line).
///
/// ```
/// use std::time::Duration;
/// use crimson_core::cluster::History;
///
/// // The last 100 messages of each room, at most 5 minutes old.
/// let history = History::new(100, Duration::from_secs(300));
/// assert_eq!(history.size(), 100);
/// assert_eq!(history.limit(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct History {
    size: usize,
    ttl: Duration,
    limit: usize,
    max_streams: usize,
}

impl History {
    /// Keep the last `size` publications of each stream, none older than `ttl`
    /// (`Duration::MAX`: no age limit).
    pub fn new(size: usize, ttl: Duration) -> Self {
        Self {
            size,
            ttl,
            limit: size,
            max_streams: 10_000,
        }
    }

    /// At most this many missed publications are sent in one recovery (by default `size`);
    /// a client that missed more is told `over_limit`.
    pub fn recover_limit(mut self, publications: usize) -> Self {
        self.limit = publications;
        self
    }

    /// At most this many streams are kept (10,000 by default); past it, the stream published
    /// in least recently is forgotten (its clients are told `epoch_changed`).
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams.max(1);
        self
    }

    /// How many publications each stream keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// How long a publication is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most publications one recovery sends.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most streams kept.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn streams_kept(&self) -> usize {
        self.max_streams
    }
}

/// A publication kept in a stream's history.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    at: Instant,
    /// In the message type's default codec.
    pub(crate) payload: Payload,
}

/// One stream: its epoch, its last offset and what it keeps.
///
/// Backed by a backend ([`Source`]), it keeps nothing: `epoch` and `last` are where this
/// node's sessions stand (the last publication delivered to them), known once the stream is
/// `warm`.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: String,
    pub(crate) last: u64,
    entries: VecDeque<Entry>,
    /// Why the newest publication no longer kept was dropped (`None`: none was).
    trimmed: Option<LostReason>,
    pub(crate) used: Instant,
    /// Whether `epoch` and `last` are known (always, in memory).
    pub(crate) warm: bool,
    /// Sessions of the protocol that follow the stream but were not told from where yet (it
    /// was not warm): told when it is.
    pub(crate) pending: Vec<SessionHandle>,
}

/// The most sessions a stream keeps waiting for their `sub` frame before it drops those
/// that have closed meanwhile.
const MAX_PENDING: usize = 1024;

impl Stream {
    fn new(now: Instant) -> Self {
        Self {
            epoch: format!("{:016x}", crate::session::random_u64()),
            last: 0,
            entries: VecDeque::new(),
            trimmed: None,
            used: now,
            warm: true,
            pending: Vec::new(),
        }
    }

    /// A stream of a backend, where nothing is known yet.
    fn cold(now: Instant) -> Self {
        Self {
            epoch: String::new(),
            last: 0,
            warm: false,
            ..Self::new(now)
        }
    }

    /// `handle` waits to be told where it follows the stream from.
    pub(crate) fn wait_for_position(&mut self, handle: &SessionHandle) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.retain(|waiting| !waiting.is_closed());
        }
        if !self
            .pending
            .iter()
            .any(|waiting| waiting.id() == handle.id())
        {
            self.pending.push(handle.clone());
        }
    }

    /// The position of the stream's last publication.
    pub(crate) fn position(&self, stream: &str) -> Position {
        Position {
            stream: stream.to_owned(),
            epoch: self.epoch.clone(),
            offset: self.last,
        }
    }

    fn expire(&mut self, history: &History, now: Instant) {
        while let Some(oldest) = self.entries.front() {
            if now.saturating_duration_since(oldest.at) < history.ttl {
                break;
            }
            self.entries.pop_front();
            self.trimmed = Some(LostReason::Expired);
        }
    }

    /// Publishes `payload`: its offset.
    pub(crate) fn publish(&mut self, history: &History, payload: &Payload) -> u64 {
        let now = Instant::now();
        self.used = now;
        self.expire(history, now);
        self.last += 1;
        if history.size == 0 {
            self.trimmed = Some(LostReason::HistoryTooShort);
        } else {
            if self.entries.len() == history.size {
                self.entries.pop_front();
                self.trimmed = Some(LostReason::HistoryTooShort);
            }
            self.entries.push_back(Entry {
                offset: self.last,
                at: now,
                payload: payload.clone(),
            });
        }
        self.last
    }

    /// What a client at `from` missed, in order, or why it cannot be recovered.
    pub(crate) fn missed(
        &mut self,
        history: &History,
        from: &Position,
    ) -> Result<Vec<Entry>, LostReason> {
        self.expire(history, Instant::now());
        if from.epoch != self.epoch {
            return Err(LostReason::EpochChanged);
        }
        if from.offset > self.last {
            return Err(LostReason::Unknown);
        }
        let missed = self.last - from.offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        let first_kept = self.entries.front().map_or(self.last + 1, |e| e.offset);
        if from.offset + 1 < first_kept {
            return Err(self.trimmed.unwrap_or(LostReason::HistoryTooShort));
        }
        if missed > history.limit as u64 {
            return Err(LostReason::OverLimit);
        }
        let skip = usize::try_from(from.offset + 1 - first_kept).unwrap_or(usize::MAX);
        Ok(self.entries.iter().skip(skip).cloned().collect())
    }
}

/// Where the positions of a cluster's streams come from when they are not this node's own:
/// a backend (Redis) that numbers publications for every node, keeps their history and
/// delivers them back to this node in order (see `LocalCluster`'s backed streams).
pub(crate) trait Source: Send + Sync + std::fmt::Debug {
    /// The stream `name` has recipients on this node but is not warm: find out where it
    /// stands (then the node's streams are told, with [`Stream::warm`] set).
    fn follow(&self, name: &str);

    /// A reconnected client of session `id` presents `from`; answered later, under the
    /// stream's lock.
    fn resume(&self, id: SessionId, from: Position);
}

/// A cluster node's streams, each behind its own lock: a publication holds its stream's
/// lock while it is queued for every recipient, so every session gets a stream's
/// publications in offset order, and a recovery (under the same lock) fits between two.
#[derive(Debug)]
pub(crate) struct Streams {
    pub(crate) history: History,
    map: Mutex<HashMap<String, Arc<Mutex<Stream>>>>,
    /// The backend that numbers the publications, if this node does not.
    pub(crate) source: Option<Arc<dyn Source>>,
}

impl Streams {
    pub(crate) fn new(history: History) -> Self {
        Self {
            history,
            map: Mutex::default(),
            source: None,
        }
    }

    /// Streams whose positions come from `source`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backed(history: History, source: Arc<dyn Source>) -> Self {
        Self {
            source: Some(source),
            ..Self::new(history)
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<Stream>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream named `name`, made (with a new epoch) if it is not kept.
    pub(crate) fn get_or_make(&self, name: &str) -> Arc<Mutex<Stream>> {
        let mut map = self.map();
        if let Some(stream) = map.get(name) {
            return stream.clone();
        }
        if map.len() >= self.history.max_streams {
            let oldest = map
                .iter()
                .min_by_key(|(_, stream)| lock(stream).used)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        let now = Instant::now();
        let stream = if self.source.is_some() {
            Stream::cold(now)
        } else {
            Stream::new(now)
        };
        let stream = Arc::new(Mutex::new(stream));
        map.insert(name.to_owned(), stream.clone());
        stream
    }

    /// The names of the streams kept.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// The stream named `name`, if it is kept (a resume never makes one).
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Mutex<Stream>>> {
        self.map().get(name).cloned()
    }

    /// How many streams are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

pub(crate) fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u64) -> Payload {
        Payload::Text(n.to_string().into())
    }

    fn offsets(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn a_stream_recovers_what_was_missed_or_says_why_not() {
        let history = History::new(3, Duration::MAX).recover_limit(2);
        let mut stream = Stream::new(Instant::now());
        let start = stream.position("all");
        assert_eq!(start.offset, 0);
        for n in 1..=4 {
            assert_eq!(stream.publish(&history, &payload(n)), n);
        }
        let at = |offset| Position {
            offset,
            ..start.clone()
        };
        assert_eq!(
            offsets(&stream.missed(&history, &at(4)).unwrap()),
            [0u64; 0]
        );
        assert_eq!(offsets(&stream.missed(&history, &at(3)).unwrap()), [4]);
        assert_eq!(offsets(&stream.missed(&history, &at(2)).unwrap()), [3, 4]);
        assert_eq!(
            stream.missed(&history, &at(1)).unwrap_err(),
            LostReason::OverLimit
        );
        let unlimited = history.recover_limit(10);
        assert_eq!(
            offsets(&stream.missed(&unlimited, &at(1)).unwrap()),
            [2, 3, 4]
        );
        assert_eq!(
            stream.missed(&unlimited, &at(0)).unwrap_err(),
            LostReason::HistoryTooShort
        );
        assert_eq!(
            stream.missed(&history, &at(5)).unwrap_err(),
            LostReason::Unknown
        );
        // A client's offset is any u64: no arithmetic on it overflows.
        assert_eq!(
            stream.missed(&unlimited, &at(u64::MAX)).unwrap_err(),
            LostReason::Unknown
        );
        let other = Position {
            epoch: "other".into(),
            ..at(4)
        };
        assert_eq!(
            stream.missed(&history, &other).unwrap_err(),
            LostReason::EpochChanged
        );
    }

    #[test]
    fn old_publications_expire_and_say_so() {
        let history = History::new(10, Duration::from_millis(20));
        let mut stream = Stream::new(Instant::now());
        stream.publish(&history, &payload(1));
        stream.publish(&history, &payload(2));
        let at = stream.position("all");
        let before = Position {
            offset: 1,
            ..at.clone()
        };
        assert_eq!(offsets(&stream.missed(&history, &before).unwrap()), [2]);
        std::thread::sleep(Duration::from_millis(30));
        stream.publish(&history, &payload(3));
        assert_eq!(
            stream.missed(&history, &before).unwrap_err(),
            LostReason::Expired
        );
        assert_eq!(offsets(&stream.missed(&history, &at).unwrap()), [3]);
    }

    #[test]
    fn without_history_nothing_missed_recovers_and_anything_missed_is_lost() {
        let history = History::new(0, Duration::MAX);
        let mut stream = Stream::new(Instant::now());
        stream.publish(&history, &payload(1));
        let at = stream.position("all");
        assert!(stream.missed(&history, &at).unwrap().is_empty());
        stream.publish(&history, &payload(2));
        assert_eq!(
            stream.missed(&history, &at).unwrap_err(),
            LostReason::HistoryTooShort
        );
    }

    #[test]
    fn a_kept_publication_costs_64_bytes_besides_its_payload() {
        // BENCHMARKS.md's memory per stream of history rests on this.
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn streams_are_bounded_and_forget_the_least_recently_used() {
        let streams = Streams::new(History::new(1, Duration::MAX).max_streams(2));
        let history = streams.history;
        lock(&streams.get_or_make("a")).publish(&history, &payload(1));
        std::thread::sleep(Duration::from_millis(2));
        lock(&streams.get_or_make("b")).publish(&history, &payload(1));
        std::thread::sleep(Duration::from_millis(2));
        lock(&streams.get_or_make("a")).publish(&history, &payload(2));
        streams.get_or_make("c");
        assert_eq!(streams.len(), 2);
        assert!(streams.get("b").is_none(), "b was used least recently");
        assert!(streams.get("a").is_some());
        assert!(streams.get("nope").is_none(), "get never makes a stream");
    }
}
