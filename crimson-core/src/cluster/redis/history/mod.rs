//! History in Redis: the streams of a [`RedisCluster`](super::RedisCluster) with history
//! are kept in Redis, so that every node on one Redis (and prefix) serves the same streams,
//! and a client that fails over to another node recovers there what it missed.
//!
//! # Publishing
//!
//! A broadcast of a node with history is one script on the stream's shard (`publish.lua`,
//! run with `EVALSHA`): it takes the next offset of the stream's hash (`P:{…}:stream`, made
//! with a fresh epoch when it has none), appends the message to the stream's history (a
//! Redis Stream, `P:{…}:history`, entry id `0-OFFSET`, capped at the history's size, with
//! Redis's time), refreshes both keys' expiry and publishes the message on the stream's
//! channel behind its position (`envelope.rs`): one atomic step, so that the offsets every
//! node sees are the order Redis published in. The stream `all` uses broadcast channel 0
//! (every node listens to it), a room its own channel.
//!
//! The publishing node delivers to its own sessions like every other node, when its
//! publication comes back on its subscription (before Redis confirms the publish: same
//! connection), so that its sessions get every publication at its offset, in order. During
//! an outage a broadcast with history fails at once, for this node's sessions too: a
//! publication is in the stream, or nowhere.
//!
//! # Delivering
//!
//! Each node delivers each stream in offset order ([`sequencer`]): a gap (its subscription
//! was down) is read back from the history (`read.lua`, `XRANGE`) while what arrives is
//! held, a new epoch (Redis lost the keys) is told to the stream's sessions as `lost`
//! `epoch_changed`, and what the history no longer has is told (`history_too_short`,
//! `expired`, `unavailable`) before what follows it. A node that starts following a stream
//! (a session connects, or joins a room) reads where it stands (`warm.lua`) before telling
//! its sessions where they follow it from (`sub`). When Redis is back after an outage, each
//! stream followed is checked and what was missed meanwhile read back.
//!
//! # Resuming
//!
//! A `resume` reads the missed publications from the history (`read.lua`) and answers
//! under the stream's lock: `recovered` with those up to where this node stands (later
//! ones reach the session live), or `lost` (`epoch_changed`, `history_too_short`, `expired`
//! when one is older than the history's time to live, `over_limit`, `unknown_position`, or
//! `unavailable` when Redis did not answer).
//!
//! # Bounds
//!
//! Per stream at most 4096 publications (16 MiB) are held while a read is under way, and
//! 64 MiB on the node; past either, the node stops waiting and tells the gap. At most 16
//! reads run at once, each at most the recovery limit (or the history's size) ×
//! `max_payload` (the read script leaves out larger entries and cuts other values that are
//! not Crimson's short), waiting at most 5 s for their turn; 4096 publishes wait for Redis. What the history gives back is checked like any relayed message (size,
//! format, `check_payloads`, and that it belongs to its stream).

mod arrive;
mod envelope;
mod publish;
mod read;
mod resume;
mod sequencer;
mod tasks;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use self::read::Scripts;
use self::sequencer::{Arrival, Effects, Limits, Sequencer};
use super::Node;
use crate::cluster::streams::Source;
use crate::cluster::{Delivery, History, Target};
use crate::message::Payload;
use crate::protocol::{LostReason, Position};
use crate::session::SessionId;

pub(crate) use self::arrive::arrived;
pub(crate) use self::envelope::is_enveloped;
pub(super) use self::tasks::{catch_up, subscribed};
use self::tasks::{fill, warm_up};

/// The most publications a stream holds while a read is under way.
const MAX_HELD: usize = 4096;
/// The most bytes a stream holds while a read is under way.
const MAX_HELD_BYTES: usize = 16 << 20;
/// The most bytes a node holds, all streams together.
const MAX_NODE_HELD_BYTES: usize = 64 << 20;
/// The most reads of Redis (warm-ups, fills, resumes) under way at once.
const MAX_READS: usize = 16;
/// The longest a read waits for its turn.
const READ_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// The most publishes waiting for Redis.
const MAX_PUBLISHES: usize = 4096;
/// How many of its own publications a node remembers the local delivery of.
const RECENT: usize = 256;
/// The longest wait between two warm-up attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A publication as delivered.
#[derive(Debug, Clone)]
struct Item {
    target: Target,
    payload: Payload,
    /// Published by this node: its sender waits to know how it was delivered here.
    own: bool,
}

/// A node's side of the history: the streams being put in order, and the reads under way.
pub(crate) struct NodeHistory {
    settings: History,
    node: Weak<Node>,
    scripts: Scripts,
    /// Streams with something held or a read under way (the others need no state here).
    sequencers: Mutex<HashMap<String, Arc<Mutex<Sequencer<Item>>>>>,
    held_bytes: AtomicUsize,
    tickets: AtomicU64,
    reads: Semaphore,
    publishes: Semaphore,
    /// A stream became warm.
    warmed: Notify,
    /// The local delivery of this node's own recent publications, for their senders.
    recent: Mutex<VecDeque<(String, String, u64, Delivery)>>,
    delivered: Notify,
    /// `crimson_redis_publishes_total`, as the publisher task counts its own.
    published: crate::metrics::Counter,
    /// `crimson_redis_publish_duration_seconds`.
    publish_duration: crate::metrics::Histogram,
}

impl std::fmt::Debug for NodeHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHistory")
            .field("settings", &self.settings)
            .field("held_bytes", &self.held_bytes)
            .finish_non_exhaustive()
    }
}

/// What the node's sessions (its `LocalCluster`) ask of the history: warm a stream up
/// (it has recipients now), answer a resume.
#[derive(Debug)]
struct Hook(Weak<Node>);

impl Source for Hook {
    fn follow(&self, name: &str) {
        let Some(node) = self.0.upgrade() else { return };
        if let Some(history) = node.history.get() {
            history.with_sequencer(&node, name, |seq, fx| seq.follow(fx));
        }
    }

    fn resume(&self, id: SessionId, from: Position) {
        spawn(resume::run(self.0.clone(), id, from));
    }
}

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(task)),
        Err(_) => tracing::error!("Redis history needs a tokio runtime: a read was not started"),
    }
}

/// Turns history on for `node`: in Redis, with `settings`. An error, with the settings kept,
/// if the node's sessions keep history already (in memory, or with other settings).
pub(super) fn enable(node: &Arc<Node>, settings: History) -> Result<(), History> {
    let history = node.history.get_or_init(|| NodeHistory {
        settings,
        node: Arc::downgrade(node),
        scripts: Scripts::new(),
        sequencers: Mutex::default(),
        held_bytes: AtomicUsize::new(0),
        tickets: AtomicU64::new(1),
        reads: Semaphore::new(MAX_READS),
        publishes: Semaphore::new(MAX_PUBLISHES),
        warmed: Notify::new(),
        recent: Mutex::default(),
        delivered: Notify::new(),
        published: crate::metrics::Counter::new("crimson_redis_publishes_total", &[]),
        publish_duration: crate::metrics::Histogram::new(
            "crimson_redis_publish_duration_seconds",
            &[],
        ),
    });
    if history.settings != settings {
        return Err(history.settings);
    }
    node.local
        .set_backed_history(settings, Arc::new(Hook(Arc::downgrade(node))))
}

/// The node's history, if it keeps it in Redis.
pub(super) fn of(node: &Node) -> Option<&NodeHistory> {
    node.history.get().filter(|_| node.local.is_backed())
}

/// What the node does to a stream's sessions, for one stream's sequencer.
struct Fx<'a> {
    node: &'a Node,
    history: &'a NodeHistory,
    stream: &'a str,
}

impl Fx<'_> {
    fn position(&self, epoch: &str, offset: u64) -> Position {
        Position {
            stream: self.stream.to_owned(),
            epoch: epoch.to_owned(),
            offset,
        }
    }
}

impl Effects<Item> for Fx<'_> {
    fn view(&self) -> Option<(String, u64)> {
        self.node.local.stream_view(self.stream)
    }

    fn deliver(&mut self, epoch: &str, offset: u64, item: &Item) -> bool {
        let position = self.position(epoch, offset);
        let Some(delivery) = self
            .node
            .local
            .deliver_next(&item.payload, &item.target, position)
        else {
            return false;
        };
        if item.own {
            self.history.record(self.stream, epoch, offset, delivery);
        }
        true
    }

    fn lost(&mut self, epoch: &str, offset: u64, reason: LostReason) {
        self.node.reports.gap(&format_args!(
            "stream {}: {reason} up to offset {offset}",
            self.stream
        ));
        self.node
            .local
            .stream_lost(&self.position(epoch, offset), reason);
    }

    fn warm(&mut self, epoch: &str, last: u64) {
        self.node.local.warm_stream(self.stream, epoch, last);
        self.history.warmed.notify_waiters();
    }

    fn warm_up(&mut self, ticket: u64) {
        spawn(warm_up(
            self.history.node.clone(),
            self.stream.to_owned(),
            ticket,
        ));
    }

    fn fetch(&mut self, ticket: u64, epoch: &str, first: u64, last: u64) {
        spawn(fill(
            self.history.node.clone(),
            self.stream.to_owned(),
            ticket,
            epoch.to_owned(),
            first,
            last,
        ));
    }

    fn ticket(&mut self) -> u64 {
        self.history.tickets.fetch_add(1, Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl NodeHistory {
    fn limits(&self) -> Limits {
        Limits {
            held: MAX_HELD,
            bytes: MAX_HELD_BYTES,
            fetch: self.settings.size() as u64,
        }
    }

    /// Runs `f` on the sequencer of `stream` (made if there is none), and drops it once it
    /// holds nothing and reads nothing. Never called from inside a sequencer's effects.
    fn with_sequencer<R>(
        &self,
        node: &Node,
        stream: &str,
        f: impl FnOnce(&mut Sequencer<Item>, &mut Fx<'_>) -> R,
    ) -> Option<R> {
        let sequencer = {
            let mut map = lock(&self.sequencers);
            match map.get(stream) {
                Some(sequencer) => sequencer.clone(),
                None => {
                    if map.len() >= self.settings.streams_kept() {
                        return None;
                    }
                    let sequencer = Arc::new(Mutex::new(Sequencer::new(self.limits())));
                    map.insert(stream.to_owned(), sequencer.clone());
                    sequencer
                }
            }
        };
        let (result, idle) = {
            let mut seq = lock(&sequencer);
            let before = seq.bytes();
            let mut fx = Fx {
                node,
                history: self,
                stream,
            };
            let result = f(&mut seq, &mut fx);
            let after = seq.bytes();
            if after >= before {
                self.held_bytes.fetch_add(after - before, Ordering::Relaxed);
            } else {
                self.held_bytes.fetch_sub(before - after, Ordering::Relaxed);
            }
            (result, seq.is_idle())
        };
        drop(sequencer);
        if idle {
            let mut map = lock(&self.sequencers);
            // Only the map holds it (clones are made under the map's lock): nobody can be
            // about to use it.
            let unused = map.get(stream).is_some_and(|s| {
                Arc::strong_count(s) == 1 && s.try_lock().is_ok_and(|s| s.is_idle())
            });
            if unused {
                map.remove(stream);
            }
        }
        Some(result)
    }

    /// A publication of `stream` reached this node at its position.
    fn arrive(&self, node: &Node, stream: &str, arrival: Arrival<Item>) {
        let position = Position {
            stream: stream.to_owned(),
            epoch: arrival.epoch.clone(),
            offset: arrival.offset,
        };
        // The usual case, the next one: delivered at once.
        let item = &arrival.item;
        if let Some(delivery) = node
            .local
            .deliver_next(&item.payload, &item.target, position)
        {
            if item.own {
                self.record(stream, &arrival.epoch, arrival.offset, delivery);
            }
            return;
        }
        match node.local.stream_view(stream) {
            // Delivered already (read back after a gap, say).
            Some((epoch, last)) if epoch == arrival.epoch && arrival.offset <= last => return,
            // Nobody here gets it, and the node does not follow the stream.
            None if !node.local.has_recipients(stream) => return,
            _ => {}
        }
        let over = self.held_bytes.load(Ordering::Relaxed) + arrival.bytes > MAX_NODE_HELD_BYTES;
        let held = self.with_sequencer(node, stream, |seq, fx| {
            seq.arrive(arrival.clone(), over, fx);
        });
        if held.is_some() {
            return;
        }
        // As many streams as the node keeps are waiting for Redis: this one does not wait,
        // and says what it did not wait for.
        let mut fx = Fx {
            node,
            history: self,
            stream,
        };
        let (epoch, offset) = (arrival.epoch.as_str(), arrival.offset);
        match fx.view() {
            None => fx.warm(epoch, offset - 1),
            Some((now, _)) if now != epoch => fx.lost(epoch, offset - 1, LostReason::EpochChanged),
            Some((_, last)) if offset > last + 1 => {
                fx.lost(epoch, offset - 1, LostReason::Unavailable);
            }
            Some(_) => {}
        }
        fx.deliver(epoch, offset, &arrival.item);
    }

    /// Remembers how this node's own publication at `offset` was delivered here.
    fn record(&self, stream: &str, epoch: &str, offset: u64, delivery: Delivery) {
        {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back((stream.to_owned(), epoch.to_owned(), offset, delivery));
        }
        self.delivered.notify_waiters();
    }

    /// How this node's own publication at `epoch`, `offset` of `stream` was delivered here,
    /// waiting for it at most until `deadline`.
    async fn delivery_of(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
        deadline: Instant,
    ) -> Option<Delivery> {
        loop {
            let notified = self.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = lock(&self.recent)
                .iter()
                .rev()
                .find(|(s, e, o, _)| *o == offset && s == stream && e == epoch)
                .map(|(_, _, _, delivery)| *delivery);
            if found.is_some() {
                return found;
            }
            tokio::time::timeout_at(deadline.into(), notified)
                .await
                .ok()?;
        }
    }

    /// A turn to read Redis, waited for at most [`READ_QUEUE_WAIT`].
    async fn read_permit(
        &self,
        node: &Node,
    ) -> redis::RedisResult<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(READ_QUEUE_WAIT, self.reads.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(super::io_error(
                "too many reads of the history waiting for Redis",
                format!(
                    "{MAX_READS} under way for {READ_QUEUE_WAIT:?} (command timeout {:?})",
                    node.timeout
                ),
            )),
        }
    }

    /// Makes `stream` warm on this node (it has recipients here); false if it is not within
    /// `wait`.
    async fn ensure_warm(&self, node: &Node, stream: &str, wait: Duration) -> bool {
        self.with_sequencer(node, stream, |seq, fx| seq.follow(fx));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.warmed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if node.local.stream_view(stream).is_some() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

/// This node no longer gets `room`'s publications (it left the room's channel): forgets
/// where it stands there, unless a session joined meanwhile.
pub(super) fn forget(node: &Node, room: &str) {
    if of(node).is_some() {
        node.local.cool_stream(&format!("room:{room}"));
    }
}
