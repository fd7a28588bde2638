//! The chat programs end to end, as a user runs them: real processes, real sockets.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crimson_tests::redis_server::RedisServer;

/// A running example program whose stdout lines arrive on a channel.
struct Program {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Program {
    fn start(bin: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {bin}: {err}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            lines,
            stdin,
        }
    }

    /// Waits for a stdout line containing `needle`; returns it.
    fn expect_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?}; saw {seen:?}");
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(args: &[&str]) -> (Program, String) {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = Program::start(env!("CARGO_BIN_EXE_chat-server"), &all);
    let line = server.expect_line("chat server on ");
    let url = line.rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/chat"),
        "{line}"
    );
    (server, url)
}

fn client(url: &str) -> Program {
    let client = Program::start(env!("CARGO_BIN_EXE_chat-client"), &["--url", url]);
    client.expect_line("state: connected");
    client
}

#[test]
fn the_chat_client_talks_to_the_chat_server() {
    let (_server, url) = server(&[]);
    let mut alice = client(&url);
    alice.expect_line(": hello from chat-client");
    let bob = client(&url);
    alice.type_line("hi bob");
    bob.expect_line(": hi bob");
    alice.expect_line(": hi bob");
}

#[test]
fn two_chat_servers_on_one_redis_are_one_room() {
    let redis = RedisServer::start();
    let (_one, url_one) = server(&["--redis", &redis.url()]);
    let (_two, url_two) = server(&["--redis", &redis.url()]);
    let mut alice = client(&url_one);
    let bob = client(&url_two);
    alice.type_line("across the cluster");
    bob.expect_line(": across the cluster");
}
