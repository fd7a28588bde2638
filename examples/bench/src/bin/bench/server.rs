//! The server under test: a `bench-server` child process, its address, CPU time and memory.

use std::io;

/// One implementation under test, as `bench-server --impl` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Impl {
    Crimson,
    Raw,
    RawTuned,
    /// The peer framework, ezsockets (see `bench-server`'s `peer.rs`).
    Ezsockets,
}

/// The peer framework's crate and the version `examples/Cargo.toml` asks for (a test checks
/// that `Cargo.lock` holds it).
pub(crate) const PEER_CRATE: (&str, &str) = ("ezsockets", "0.7.2");

impl Impl {
    /// Every implementation, in the order the first round runs them.
    pub(crate) const ALL: [Self; 4] = [Self::Crimson, Self::Raw, Self::RawTuned, Self::Ezsockets];

    /// The implementation `bench-server --impl` calls `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|which| which.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Crimson => "crimson",
            Self::Raw => "raw",
            Self::RawTuned => "raw-tuned",
            Self::Ezsockets => "ezsockets",
        }
    }
}

/// A running `bench-server`; dropping it kills the process.
pub(crate) type Server = crimson_bench::server::BenchServer;

/// Starts `bench-server --impl which --scenario scenario`; for the `chat` scenario, Crimson
/// is the `chat-server` example itself and the others serve their raw chat room (`/chat`).
pub(crate) fn start(which: Impl, scenario: &str) -> io::Result<Server> {
    match (scenario, which) {
        ("chat", Impl::Crimson) => Server::start_chat_server(),
        ("chat", _) => Server::start(&["--impl", which.name(), "--scenario", "broadcast"]),
        _ => Server::start(&["--impl", which.name(), "--scenario", scenario]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for which in Impl::ALL {
            assert_eq!(Impl::parse(which.name()), Some(which));
        }
        assert_eq!(Impl::parse("axum"), None);
    }

    #[test]
    fn the_peer_version_is_the_locked_one() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .expect("the workspace's Cargo.lock");
        let (name, version) = PEER_CRATE;
        let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
        assert!(lock.contains(&entry), "Cargo.lock has no {name} {version}");
        assert_eq!(Impl::Ezsockets.name(), name);
    }
}
