use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A session's identity, unique across every node of a cluster.
///
/// It joins a random 64-bit node part, drawn once per process, and a per-process counter.
/// Its text form, `0123456789abcdef-2a`, parses back with [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    node: u64,
    seq: u64,
}

impl SessionId {
    /// A fresh id for a session on this process.
    pub fn next() -> Self {
        Self::on_node(process_node())
    }

    /// A fresh id for a session on `node` (a cluster's node id: see
    /// [`SessionCluster::node_id`](crate::cluster::SessionCluster::node_id)).
    pub fn on_node(node: u64) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(1);
        Self {
            node,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// An id from its two parts, as [`node`](Self::node) and [`seq`](Self::seq) return them.
    pub const fn from_parts(node: u64, seq: u64) -> Self {
        Self { node, seq }
    }

    /// The per-process sequence part.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The node part: which node the session lives on.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Whether the session was made by [`SessionId::next`] in this process.
    pub fn is_local(&self) -> bool {
        self.node == process_node()
    }
}

/// A random 64-bit number, different in every process and on every call.
pub(crate) fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// This process's random node part.
fn process_node() -> u64 {
    static NODE: OnceLock<u64> = OnceLock::new();
    *NODE.get_or_init(random_u64)
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:x}", self.node, self.seq)
    }
}

/// Text that is not a [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a session id (expected 16 hex digits, `-`, hex digits)")]
pub struct ParseSessionIdError(String);

impl FromStr for SessionId {
    type Err = ParseSessionIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseSessionIdError(text.chars().take(64).collect());
        let (node, seq) = text.split_once('-').ok_or_else(err)?;
        if node.len() != 16 || seq.is_empty() || seq.len() > 16 {
            return Err(err());
        }
        Ok(Self {
            node: u64::from_str_radix(node, 16).map_err(|_| err())?,
            seq: u64::from_str_radix(seq, 16).map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_local_and_round_trip() {
        let a = SessionId::next();
        let b = SessionId::next();
        assert_ne!(a, b);
        assert_eq!(a.node(), b.node());
        assert!(a.is_local());
        assert_eq!(a.to_string().parse::<SessionId>().unwrap(), a);
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "abc",
            "0123456789abcdef",
            "0123456789abcdeg-1",
            "0123456789abcdef-",
            "01-2",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
        let err = "nope".parse::<SessionId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`nope` is not a session id (expected 16 hex digits, `-`, hex digits)"
        );
    }
}
