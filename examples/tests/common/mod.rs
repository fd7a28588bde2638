//! Running the example programs as a user does: real processes, real sockets.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A running example program whose stdout lines arrive on a channel.
pub(crate) struct Program {
    /// The process.
    pub(crate) child: Child,
    lines: Receiver<String>,
    /// Lines read but not yet asked for: lines from two streams (state changes, messages) may
    /// come in either order, and a line skipped while waiting for another is kept.
    backlog: std::cell::RefCell<Vec<String>>,
    stdin: Option<ChildStdin>,
}

impl Program {
    pub(crate) fn start(bin: &str, args: &[&str]) -> Self {
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
            backlog: Default::default(),
            stdin,
        }
    }

    /// Waits for a stdout line containing `needle` (one already read counts); returns it.
    pub(crate) fn expect_line(&self, needle: &str) -> String {
        let mut backlog = self.backlog.borrow_mut();
        if let Some(at) = backlog.iter().position(|line| line.contains(needle)) {
            return backlog.remove(at);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let seen = &mut *backlog;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the program ended (stdout closed) before a line containing {needle:?}; saw {seen:?}");
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        panic!("no line containing {needle:?} within 15 s; saw {seen:?}");
    }

    pub(crate) fn type_line(&mut self, line: &str) {
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

/// Starts `chat-server` on `addr` with extra `args`; returns it and its `ws://…/chat` URL.
pub(crate) fn server_on(addr: &str, args: &[&str]) -> (Program, String) {
    let mut all = vec!["--addr", addr];
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

/// Starts `chat-server` on a free port.
pub(crate) fn server(args: &[&str]) -> (Program, String) {
    server_on("127.0.0.1:0", args)
}

/// Starts `chat-client` on `url` with extra `args`, once it is connected.
pub(crate) fn client_with(url: &str, args: &[&str]) -> Program {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    let client = Program::start(env!("CARGO_BIN_EXE_chat-client"), &all);
    client.expect_line("state: connected");
    client
}

/// The Python with the `websockets` package: `$CRIMSON_PYTHON`, else the virtual environment
/// `./scripts/test.sh` makes in `target/python-venv` (a system Python may refuse `pip install`,
/// PEP 668), else `python3`.
pub(crate) fn python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("CRIMSON_PYTHON") {
        return python.into();
    }
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}
