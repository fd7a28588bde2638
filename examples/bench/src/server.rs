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
    chat: bool,
}

impl BenchServer {
    /// Starts `bench-server` (next to this executable) on a free loopback port with `args`
    /// (`--impl`, `--scenario`, ...), and waits for its address line.
    pub fn start(args: &[&str]) -> io::Result<Self> {
        Self::start_program("bench-server", args, |line| line.trim().parse().ok())
    }

    /// Starts the `chat-server` example (built next to this executable) on a free loopback
    /// port, and waits for its `chat server on ws://ADDR/chat` line.
    /// Its per-address limit is off: the bench's clients come from five loopback addresses.
    pub fn start_chat_server() -> io::Result<Self> {
        Self::start_program("chat-server", &["--max-connections-per-ip", "0"], |line| {
            line.trim()
                .strip_prefix("chat server on ws://")?
                .strip_suffix("/chat")?
                .parse()
                .ok()
        })
    }

    /// Starts program `name` (next to this executable) with `args` and `--addr 127.0.0.1:0`,
    /// and reads its address from its first line of output with `parse`.
    pub fn start_program(
        name: &str,
        args: &[&str],
        parse: fn(&str) -> Option<SocketAddr>,
    ) -> io::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name(name);
        let mut command = Command::new(&exe);
        if name == "chat-server" {
            // One line per connection would be thousands of lines and CPU the bench counts.
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
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
            Err(_) => Err(io::Error::other(format!(
                "{name} printed no address within 10 s"
            ))),
        };
        let addr = line.and_then(|line| {
            parse(&line).ok_or_else(|| {
                io::Error::other(format!("{name} printed {line:?}, not its address"))
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
        Ok(Self {
            child,
            stdin,
            addr,
            chat: name == "chat-server",
        })
    }

    /// Whether it is the `chat-server` example (its routes are `/` and `/chat`).
    pub fn is_chat(&self) -> bool {
        self.chat
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

    /// Stops the server: closes its stdin, waits up to 2 s for it to exit, then kills it (the
    /// chat server, which does not watch its stdin, at once). Call it before dropping the
    /// client connections, so the server side closes first.
    pub fn stop(mut self) {
        if self.chat {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        measure::stop(&mut self.child, &mut self.stdin);
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}
