//! The server under test: a `bench-server` child process, its address, CPU time and memory.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crimson_bench::measure;

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
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts `bench-server` (next to this executable) and waits for its address line.
    pub(crate) fn start(which: Impl, scenario: &str) -> io::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("bench-server");
        let mut child = Command::new(&exe)
            .args(["--impl", which.name(), "--scenario", scenario])
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", exe.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        // bench-server prints its address once it listens, or exits with an error.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(read) => read,
            Err(_) => Err(io::Error::other(
                "bench-server printed no address within 10 s",
            )),
        };
        let addr = line.and_then(|line| {
            line.trim().parse().map_err(|_| {
                io::Error::other(format!("bench-server printed {line:?}, not an address"))
            })
        });
        let addr = match addr {
            Ok(addr) => addr,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        };
        Ok(Self { child, stdin, addr })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the server has used so far, all threads.
    pub(crate) fn cpu(&self) -> io::Result<Duration> {
        measure::cpu_time(&self.pid().to_string())
    }

    /// The server's resident memory (VmRSS), in KiB.
    pub(crate) fn rss_kib(&self) -> io::Result<u64> {
        measure::rss_kib(self.pid())
    }

    /// Stops the server: closes its stdin, waits up to 2 s for it to exit, then kills it.
    /// Call it before dropping the client connections, so the server side closes first.
    pub(crate) fn stop(mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
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
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("the workspace's Cargo.lock");
        let (name, version) = PEER_CRATE;
        let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
        assert!(lock.contains(&entry), "Cargo.lock has no {name} {version}");
        assert_eq!(Impl::Ezsockets.name(), name);
    }
}
