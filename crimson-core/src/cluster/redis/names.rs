//! Key and channel names. Every name starts with the app's prefix; what belongs together
//! carries the same hash tag (`{…}`), so that on a Redis Cluster it lives in one slot: a
//! node's channel and session hash share `{node:ID}`, a room's channel, presence and (later)
//! history share `{room:NAME}`; the broadcast channels `{all:K}` spread over the slots.

/// Names of one app (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sorted set: node → its last heartbeat (Redis time, ms).
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Hash: session id → path, config, connect time, for one node's sessions; expires.
    pub(crate) fn sessions(&self, node: u64) -> String {
        format!("{}:{{node:{node:016x}}}:sessions", self.prefix)
    }

    /// Channel: messages for one session of `node`.
    pub(crate) fn node_channel(&self, node: u64) -> String {
        format!("{}:{{node:{node:016x}}}:ch", self.prefix)
    }

    /// Set: the sessions of `node` in `room`; expires.
    pub(crate) fn room_node(&self, room: &str, node: u64) -> String {
        format!("{}:{{room:{room}}}:node:{node:016x}", self.prefix)
    }

    /// Channel: broadcasts to the sessions in `room` (the nodes with members subscribe).
    pub(crate) fn room_channel(&self, room: &str) -> String {
        format!("{}:{{room:{room}}}:ch", self.prefix)
    }

    /// Whether `channel` is a room's channel.
    pub(crate) fn is_room_channel(&self, channel: &str) -> bool {
        channel
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with(":{room:") && rest.ends_with(":ch"))
    }

    /// Channel: the publications of `stream` (`all` or `room:NAME`) with history: the
    /// room's channel, or broadcast channel 0 for `all` (every node listens to it).
    pub(crate) fn stream_channel(&self, stream: &str) -> String {
        match stream.strip_prefix("room:") {
            Some(room) => self.room_channel(room),
            None => self.broadcast(0),
        }
    }

    /// Stream (a Redis Stream): the history of `stream`, one entry per publication with
    /// its offset as the id's sequence (`0-OFFSET`); capped at the history's size; expires.
    pub(crate) fn history(&self, stream: &str) -> String {
        format!("{}:{{{}}}:history", self.prefix, stream_tag(stream))
    }

    /// Hash: the epoch (`e`) and last offset (`o`) of `stream`; expires long after its
    /// history.
    pub(crate) fn stream_state(&self, stream: &str) -> String {
        format!("{}:{{{}}}:stream", self.prefix, stream_tag(stream))
    }

    /// Channel `k` of the broadcasts to all sessions (every node subscribes to all of them;
    /// each node publishes on one, see [`broadcast_channel_of`]).
    pub(crate) fn broadcast(&self, k: u16) -> String {
        format!("{}:{{all:{k}}}:ch", self.prefix)
    }
}

/// The hash tag of a stream's keys: `room:NAME` (the room's), or `all:0` (broadcast channel
/// 0's) for `all`.
fn stream_tag(stream: &str) -> &str {
    if stream.starts_with("room:") {
        stream
    } else {
        "all:0"
    }
}

/// The broadcast channel `node` publishes on, of `channels`: always the same one, so that
/// its broadcasts stay in order, and spread over the channels (so over a cluster's shards)
/// as nodes are.
pub(crate) fn broadcast_channel_of(node: u64, channels: u16) -> u16 {
    // Node ids are random; mix anyway so that any id spreads.
    let mixed = node.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (mixed % u64::from(channels.max(1))) as u16
}

/// The Redis Cluster slot of `key` (CRC16-XMODEM of its hash tag, modulo 16384).
pub(crate) fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in hash_tag(key).bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// A node id as the nodes set stores it: 16 hex digits.
pub(crate) fn node_field(node: u64) -> String {
    format!("{node:016x}")
}

/// Parses a node id of the nodes set.
pub(crate) fn parse_node(field: &str) -> Option<u64> {
    (field.len() == 16)
        .then(|| u64::from_str_radix(field, 16).ok())
        .flatten()
}

/// The part of `key` Redis Cluster hashes to pick its slot: the text between the first `{`
/// and the next `}` when that is not empty, else the whole key. Keys with the same tag share
/// a slot.
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_keys_share_a_tag_whatever_its_name() {
        let names = Names::new("app");
        for room in ["lobby", "a}b", "}", "{x}", "ü"] {
            let a = names.room_node(room, 1);
            let b = names.room_node(room, 2);
            assert_eq!(hash_tag(&a), hash_tag(&b), "{room}");
            assert!(hash_tag(&a).starts_with("room:"), "{room}: {a}");
        }
        assert_eq!(
            hash_tag(&names.sessions(7)),
            hash_tag(&names.node_channel(7))
        );
        assert_ne!(hash_tag(&names.sessions(7)), hash_tag(&names.sessions(8)));
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
    }

    #[test]
    fn a_streams_keys_share_its_channels_tag() {
        let names = Names::new("app");
        for stream in ["all", "room:lobby", "room:a}b", "room:ü"] {
            let channel = names.stream_channel(stream);
            assert_eq!(
                hash_tag(&names.history(stream)),
                hash_tag(&channel),
                "{stream}"
            );
            assert_eq!(
                hash_tag(&names.stream_state(stream)),
                hash_tag(&channel),
                "{stream}"
            );
        }
        assert_eq!(names.stream_channel("all"), "app:{all:0}:ch");
        assert_eq!(names.history("all"), "app:{all:0}:history");
        assert_eq!(names.stream_state("room:x"), "app:{room:x}:stream");
        assert_eq!(names.stream_channel("room:x"), names.room_channel("x"));
    }

    #[test]
    fn slots_are_redis_clusters() {
        // Values from Redis's own CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        // CRC16-XMODEM's check value.
        assert_eq!(slot("123456789"), 0x31c3);
        assert_eq!(slot("{room:x}:ch"), 13118);
    }

    #[test]
    fn broadcast_channels_spread() {
        let used: std::collections::HashSet<u16> = (0..1000u64)
            .map(|n| broadcast_channel_of(crate::session::random_u64() ^ n, 16))
            .collect();
        assert_eq!(used.len(), 16);
        assert_eq!(broadcast_channel_of(42, 1), 0);
    }

    #[test]
    fn node_fields_round_trip() {
        assert_eq!(parse_node(&node_field(0xdead_beef)), Some(0xdead_beef));
        assert_eq!(parse_node("xyz"), None);
    }
}
