//! [`BenchServer`]: a `bench-server` child process, its address, CPU time and memory.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::measure;

/// A running `bench-server`; dropping it kills the process.
#[derive(Debug)]
pub struct BenchServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BenchServer {
    /// Starts `bench-server` (next to this executable) on a free loopback port with `args`
    /// (`--impl`, `--scenario`, ...), and waits for its address line.
    pub fn start(args: &[&str]) -> io::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("bench-server");
        let mut child = Command::new(&exe)
            .args(args)
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

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the server has used so far, all threads.
    pub fn cpu(&self) -> io::Result<Duration> {
        measure::cpu_time(&self.pid().to_string())
    }

    /// The server's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> io::Result<u64> {
        measure::rss_kib(self.pid())
    }

    /// Stops the server: closes its stdin, waits up to 2 s for it to exit, then kills it.
    /// Call it before dropping the client connections, so the server side closes first.
    pub fn stop(mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}
