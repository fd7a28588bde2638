//! Key and channel names. Every name starts with the app's prefix; what belongs together
//! carries the same hash tag (`{…}`), so that on a Redis Cluster it lives in one slot: a
//! node's channel and session hash share `{node:ID}`, a room's channel, presence and (later)
//! history share `{room:NAME}`.

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

    /// Channel: the broadcasts to all sessions (every node subscribes).
    pub(crate) fn broadcast(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }
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
    fn node_fields_round_trip() {
        assert_eq!(parse_node(&node_field(0xdead_beef)), Some(0xdead_beef));
        assert_eq!(parse_node("xyz"), None);
    }
}
