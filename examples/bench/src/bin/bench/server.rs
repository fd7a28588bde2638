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
    /// Crimson with a Prometheus recorder installed (`bench-server --impl crimson --metrics`):
    /// what recording its metrics costs. Only when `--impls` names it.
    CrimsonMetrics,
}

/// The peer framework's crate and the version `examples/Cargo.toml` asks for (a test checks
/// that `Cargo.lock` holds it).
pub(crate) const PEER_CRATE: (&str, &str) = ("ezsockets", "0.7.2");

impl Impl {
    /// Every implementation, in the order the first round runs them.
    pub(crate) const ALL: [Self; 4] = [Self::Crimson, Self::Raw, Self::RawTuned, Self::Ezsockets];

    /// Every implementation `--impls` may name, in the order a round runs them.
    pub(crate) const KNOWN: [Self; 5] = [
        Self::Crimson,
        Self::CrimsonMetrics,
        Self::Raw,
        Self::RawTuned,
        Self::Ezsockets,
    ];

    /// The implementation `--impls` calls `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|which| which.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Crimson => "crimson",
            Self::Raw => "raw",
            Self::RawTuned => "raw-tuned",
            Self::Ezsockets => "ezsockets",
            Self::CrimsonMetrics => "crimson-metrics",
        }
    }

    /// `bench-server`'s arguments for this implementation.
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::CrimsonMetrics => &["--impl", "crimson", "--metrics"],
            Self::Crimson => &["--impl", "crimson"],
            Self::Raw => &["--impl", "raw"],
            Self::RawTuned => &["--impl", "raw-tuned"],
            Self::Ezsockets => &["--impl", "ezsockets"],
        }
    }
}

/// A running `bench-server`; dropping it kills the process.
pub(crate) type Server = crimson_bench::server::BenchServer;

/// Starts `bench-server --impl which --scenario scenario`; for the `chat` scenario, Crimson
/// is the `chat-server` example itself and the others serve their raw chat room (`/chat`).
pub(crate) fn start(which: Impl, scenario: &str) -> io::Result<Server> {
    match (scenario, which) {
        // chat-server always records its metrics (it serves /metrics).
        ("chat", Impl::Crimson | Impl::CrimsonMetrics) => Server::start_chat_server(),
        ("chat", _) => Server::start(&[which.args(), &["--scenario", "broadcast"]].concat()),
        _ => Server::start(&[which.args(), &["--scenario", scenario]].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for which in Impl::KNOWN {
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
