//! [`RedisServer`]: a real `redis-server` for a test, started on a free loopback port and
//! stopped on drop (features `test-util` and `redis`).
//!
//! A missing `redis-server` is a test failure with a message saying how to install it, never
//! a skip: `./scripts/test.sh` installs it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on `127.0.0.1:port`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed or does not start within 10 s.
    pub fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the server with SIGSTOP (a hang: connections stay open, nothing answers)
    /// until [`resume`](Self::resume).
    ///
    /// # Panics
    ///
    /// If the server is not running or `kill` fails.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a server frozen by [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Panics
    ///
    /// If the server is not running or `kill` fails.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} redis-server failed");
    }

    /// Sends one command, binary-safe, on a fresh connection (RESP, as any client would,
    /// e.g. to publish bytes on a channel); the first line of the reply (`:1`, `+OK`, `-ERR
    /// …`).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or does not answer within 5 s.
    pub fn command(&self, args: &[&[u8]]) -> String {
        command(self.port, args)
    }

    /// Kills the server (an outage), keeping its port for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed or does not start within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server ({err}): these tests need a real Redis. \
                     Run ./scripts/test.sh, which installs it, or `apt-get install redis-server`"
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends one RESP command to `127.0.0.1:port`; the first line of the reply.
pub(crate) fn command(port: u16, args: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|err| panic!("cannot connect to redis-server on port {port}: {err}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request).expect("the command is sent");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .unwrap_or_else(|err| panic!("no answer from redis-server on port {port}: {err}"));
    line.trim_end().to_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
