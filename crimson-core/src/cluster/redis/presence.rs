//! Presence: which sessions, and which room members, every live node has.
//!
//! Each node writes its own keys and keeps them alive with its heartbeat: its session hash,
//! and one set per room it has members in. Every key expires three heartbeats after the last
//! refresh, so a crashed node's sessions and room members disappear by themselves; readers
//! also count only nodes whose heartbeat (on Redis's clock) is recent.
//!
//! Local changes are queued as *what changed* (a session, a room membership), not as
//! operations: the writer reads the current local state when it writes, so a burst of
//! changes costs one pipeline and an outage costs a bounded set, after which one rewrite puts
//! everything back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, UNIX_EPOCH};

use redis::{Cmd, RedisResult, Value};
use tokio::sync::Notify;

use super::batch::Batch;
use super::names::{node_field, parse_node};
use super::Node;
use crate::session::{SessionId, SessionInfo};

/// Past this many queued changes, the writer rewrites everything instead.
const MAX_PENDING: usize = 100_000;
/// Sessions per HSET / SADD command in a rewrite.
const CHUNK: usize = 512;

/// Stamps this node's heartbeat with Redis's own clock (so clock skew between servers does
/// not matter) and drops nodes whose heartbeat is older than the TTL. Runs on the shard of
/// the nodes key. Returns Redis's time in ms.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[2])))
return now
";

/// The nodes whose heartbeat is younger than the TTL, by Redis's clock.
const LIVE_NODES: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - tonumber(ARGV[1])), '+inf')
";

#[derive(Debug, Default)]
struct Pending {
    sessions: HashSet<SessionId>,
    memberships: HashSet<(String, SessionId)>,
    resync: bool,
}

/// Local changes waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct PresenceQueue {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl PresenceQueue {
    fn with(&self, change: impl FnOnce(&mut Pending)) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut pending);
            if pending.sessions.len() + pending.memberships.len() > MAX_PENDING {
                pending.sessions.clear();
                pending.memberships.clear();
                pending.resync = true;
            }
        }
        self.wake.notify_one();
    }

    /// A session of this node came or went.
    pub(crate) fn session(&self, id: SessionId) {
        self.with(|p| {
            p.sessions.insert(id);
        });
    }

    /// A session of this node joined or left `room`.
    pub(crate) fn membership(&self, room: &str, id: SessionId) {
        self.with(|p| {
            p.memberships.insert((room.to_owned(), id));
        });
    }

    /// Rewrite everything now (Redis came back, perhaps empty).
    pub(crate) fn resync(&self) {
        self.with(|p| p.resync = true);
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The presence hash's value for a session: path, config and connect time, tab-separated.
fn presence_value(info: &SessionInfo) -> String {
    let at = info
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{}\t{}\t{at}", info.path, info.config)
}

fn cmd(name: &str) -> Cmd {
    redis::cmd(name)
}

/// The writer's own state.
struct Writer {
    /// Everything must be rewritten (after a failure, or when Redis lost our keys).
    resync: bool,
    /// Room keys this node may have in Redis: deleted by a rewrite once the room is gone.
    written_rooms: HashSet<String>,
}

/// Keeps this node's presence: writes changes as they come (one pipeline per burst), stamps
/// the heartbeat and refreshes expiries every `every`, and rewrites everything after a
/// failure or when Redis lost the keys (restart, eviction).
pub(super) async fn run(shared: Weak<Node>, queue: Arc<PresenceQueue>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writer = Writer {
        resync: true,
        written_rooms: HashSet::new(),
    };
    loop {
        let beat = tokio::select! {
            _ = ticks.tick() => true,
            () = queue.wake.notified() => false,
        };
        let Some(node) = shared.upgrade() else { return };
        let pending = queue.take();
        let asked = pending.resync;
        writer.resync |= asked;
        let result = if beat {
            writer.beat(&node).await
        } else if asked {
            writer.rewrite(&node).await
        } else if writer.resync {
            // A rewrite is due: the next heartbeat does it, whatever changed meanwhile.
            Ok(())
        } else {
            writer.flush(&node, pending).await
        };
        if let Err(err) = result {
            if !writer.resync {
                tracing::error!(error = %err, "cannot update presence in Redis; will rewrite it when Redis is back");
            }
            writer.resync = true;
        }
    }
}

impl Writer {
    /// Writes the queued changes, reading the current local state.
    async fn flush(&mut self, node: &Node, pending: Pending) -> RedisResult<()> {
        let id = node.local.node_id();
        let ttl = node.heartbeat_ttl_ms();
        let mut batch = Batch::new();
        let sessions = node.names.sessions(id);
        for session in &pending.sessions {
            let c = match node.local.get(*session) {
                Some(handle) => {
                    let mut c = cmd("HSET");
                    c.arg(&sessions)
                        .arg(session.to_string())
                        .arg(presence_value(handle.info()));
                    c
                }
                None => {
                    let mut c = cmd("HDEL");
                    c.arg(&sessions).arg(session.to_string());
                    c
                }
            };
            batch.add(&sessions, c);
        }
        if !pending.sessions.is_empty() {
            batch.add(&sessions, pexpire(&sessions, ttl));
        }
        let mut rooms_of: HashMap<SessionId, Vec<String>> = HashMap::new();
        let mut joined = HashSet::new();
        let mut touched = HashSet::new();
        for (room, session) in &pending.memberships {
            touched.insert(room.as_str());
            let rooms = rooms_of
                .entry(*session)
                .or_insert_with(|| node.local.rooms_of(*session));
            let key = node.names.room_node(room, id);
            let member = rooms.binary_search(room).is_ok();
            let mut c = cmd(if member { "SADD" } else { "SREM" });
            c.arg(&key).arg(session.to_string());
            batch.add(&key, c);
            if member {
                joined.insert(room.clone());
            }
        }
        for room in &joined {
            let key = node.names.room_node(room, id);
            batch.add(&key, pexpire(&key, ttl));
        }
        if batch.len() == 0 {
            return Ok(());
        }
        // Subscribe before the members count anywhere: a member another node counts gets
        // what that node broadcasts to the room. Unsubscribe once none is left.
        let (with_members, empty): (Vec<&str>, Vec<&str>) = touched
            .into_iter()
            .partition(|room| !node.local.room_members(room).is_empty());
        let subscribe: Vec<String> = with_members
            .iter()
            .map(|room| node.names.room_channel(room))
            .collect();
        if !subscribe.is_empty() {
            node.shards.subscribe(subscribe).await;
            super::history::subscribed(node, &with_members);
        }
        self.written_rooms.extend(joined);
        node.with_deadline(batch.run(&node.shards)).await?;
        let unsubscribe: HashMap<String, &str> = empty
            .iter()
            .map(|room| (node.names.room_channel(room), *room))
            .collect();
        if !unsubscribe.is_empty() {
            for room in &empty {
                super::history::forget(node, room);
            }
            for channel in unsubscribe.keys() {
                node.sequences.forget(channel);
            }
            // A room joined again since (its next write subscribes anyway) stays: its
            // stream's history goes on without a gap.
            let joined_again = |channel: &str| {
                unsubscribe
                    .get(channel)
                    .is_some_and(|room| !node.local.room_members(room).is_empty())
            };
            let channels = unsubscribe.keys().cloned().collect();
            node.shards.unsubscribe_unless(channels, joined_again).await;
        }
        Ok(())
    }

    /// Stamps the heartbeat, then rewrites everything if due, else refreshes the expiries.
    async fn beat(&mut self, node: &Node) -> RedisResult<()> {
        let mut stamp = cmd("EVAL");
        stamp
            .arg(HEARTBEAT)
            .arg(1)
            .arg(node.names.nodes())
            .arg(node_field(node.local.node_id()))
            .arg(node.heartbeat_ttl_ms());
        node.with_deadline(node.shards.query::<u64>(&node.names.nodes(), &stamp))
            .await?;
        if self.resync {
            return self.rewrite(node).await;
        }

        let id = node.local.node_id();
        let ttl = node.heartbeat_ttl_ms();
        let mut batch = Batch::new();
        let sessions = node.names.sessions(id);
        let has_sessions = !node.local.is_empty();
        batch.add(&sessions, pexpire(&sessions, ttl));
        let rooms = node.local.rooms();
        for room in &rooms {
            let key = node.names.room_node(room, id);
            batch.add(&key, pexpire(&key, ttl));
        }
        let refreshed = node.with_deadline(batch.run(&node.shards)).await?;
        // A key that should exist but does not: Redis lost it (restart, flush, eviction).
        let sessions_lost = has_sessions && !is_true(&refreshed[0]);
        let rooms_lost = refreshed[1..].iter().any(|v| !is_true(v));
        if sessions_lost || rooms_lost {
            tracing::warn!(
                "this node's presence was missing in Redis (restart or eviction): rewriting it"
            );
            return self.rewrite(node).await;
        }
        let current: HashSet<String> = rooms.into_iter().collect();
        self.written_rooms.retain(|room| current.contains(room));
        Ok(())
    }

    /// Rewrites this node's keys from the local state, each key in one transaction, and
    /// deletes the keys of rooms it no longer has members in.
    async fn rewrite(&mut self, node: &Node) -> RedisResult<()> {
        let id = node.local.node_id();
        let ttl = node.heartbeat_ttl_ms();
        let mut batch = Batch::new().atomic();
        let sessions = node.names.sessions(id);
        batch.add(&sessions, del(&sessions));
        for chunk in node.local.sessions().chunks(CHUNK) {
            let mut c = cmd("HSET");
            c.arg(&sessions);
            for info in chunk {
                c.arg(info.id.to_string()).arg(presence_value(info));
            }
            batch.add(&sessions, c);
        }
        batch.add(&sessions, pexpire(&sessions, ttl));

        let rooms: HashSet<String> = node.local.rooms().into_iter().collect();
        let channels = rooms
            .iter()
            .map(|room| node.names.room_channel(room))
            .collect();
        node.shards
            .replace(|channel| node.names.is_room_channel(channel), channels)
            .await;
        for room in &rooms {
            let key = node.names.room_node(room, id);
            batch.add(&key, del(&key));
            for chunk in node.local.room_members(room).chunks(CHUNK) {
                let mut c = cmd("SADD");
                c.arg(&key);
                for member in chunk {
                    c.arg(member.to_string());
                }
                batch.add(&key, c);
            }
            batch.add(&key, pexpire(&key, ttl));
        }
        for gone in self.written_rooms.difference(&rooms) {
            let key = node.names.room_node(gone, id);
            batch.add(&key, del(&key));
            super::history::forget(node, gone);
        }
        node.with_deadline(batch.run(&node.shards)).await?;
        self.written_rooms = rooms;
        if self.resync {
            tracing::debug!("rewrote this node's presence in Redis");
        }
        self.resync = false;
        Ok(())
    }
}

fn pexpire(key: &str, ttl_ms: u64) -> Cmd {
    let mut c = cmd("PEXPIRE");
    c.arg(key).arg(ttl_ms);
    c
}

fn del(key: &str) -> Cmd {
    let mut c = cmd("DEL");
    c.arg(key);
    c
}

fn is_true(value: &Value) -> bool {
    matches!(value, Value::Int(1) | Value::Boolean(true))
}

/// The nodes whose heartbeat is recent, by Redis's clock.
async fn live_nodes(node: &Node) -> RedisResult<Vec<u64>> {
    let nodes = node.names.nodes();
    let mut c = cmd("EVAL");
    c.arg(LIVE_NODES)
        .arg(1)
        .arg(&nodes)
        .arg(node.heartbeat_ttl_ms());
    let fields: Vec<String> = node.with_deadline(node.shards.query(&nodes, &c)).await?;
    Ok(fields.iter().filter_map(|f| parse_node(f)).collect())
}

/// Asks every live node's key named by `key_of` with `command`; the answers, one per live
/// node. `None` when no node is live yet (this node's first heartbeat has not landed).
async fn ask_live_nodes(
    node: &Node,
    command: &str,
    key_of: impl Fn(u64) -> String,
) -> RedisResult<Option<Vec<Value>>> {
    let live = live_nodes(node).await?;
    if live.is_empty() {
        return Ok(None);
    }
    let mut batch = Batch::new();
    for id in live {
        let key = key_of(id);
        let mut c = cmd(command);
        c.arg(&key);
        batch.add(&key, c);
    }
    Ok(Some(node.with_deadline(batch.run(&node.shards)).await?))
}

fn to_usize(value: Value) -> RedisResult<usize> {
    Ok(redis::from_redis_value(value)?)
}

/// Sessions across every live node.
pub(super) async fn count(node: &Node) -> RedisResult<usize> {
    match ask_live_nodes(node, "HLEN", |id| node.names.sessions(id)).await? {
        Some(counts) => counts.into_iter().map(to_usize).sum(),
        None => Ok(node.local.len()),
    }
}

/// Members of `room` across every live node.
pub(super) async fn room_len(node: &Node, room: &str) -> RedisResult<usize> {
    match ask_live_nodes(node, "SCARD", |id| node.names.room_node(room, id)).await? {
        Some(counts) => counts.into_iter().map(to_usize).sum(),
        None => Ok(node.local.room_members(room).len()),
    }
}

/// The members of `room` across every live node.
pub(super) async fn room_members(node: &Node, room: &str) -> RedisResult<Vec<SessionId>> {
    let Some(sets) = ask_live_nodes(node, "SMEMBERS", |id| node.names.room_node(room, id)).await?
    else {
        return Ok(node.local.room_members(room));
    };
    let mut members = Vec::new();
    for set in sets {
        let ids: Vec<String> = redis::from_redis_value(set)?;
        // Only Crimson writes these sets; anything else in them is skipped.
        members.extend(ids.iter().filter_map(|id| id.parse::<SessionId>().ok()));
    }
    Ok(members)
}
