//! The soak server as the client process sees it: a child process (this executable with
//! `--serve`), its command lines, its memory and CPU time from `/proc`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use crimson_bench::measure;

use crate::server::ServerStats;

/// The running server; dropping it closes its stdin (it then exits) and reaps it.
pub(crate) struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `this-executable --serve --period-ms P` and waits for its address.
    pub(crate) async fn start(period: Duration) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(&exe)
            .args(["--serve", "--period-ms", &period.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", exe.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Self {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = server.next_line(Duration::from_secs(15)).await?;
        server.addr = line.trim().parse().map_err(|_| {
            io::Error::other(format!("the server printed {line:?}, not an address"))
        })?;
        if !server.addr.ip().is_loopback() {
            return Err(io::Error::other("the server must listen on loopback"));
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn next_line(&mut self, timeout: Duration) -> io::Result<String> {
        match tokio::time::timeout(timeout, self.lines.recv()).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(io::Error::other("the server exited")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server said nothing for {timeout:?}"),
            )),
        }
    }

    /// The next line if one comes within `timeout`.
    pub(crate) async fn line_within(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        match self.next_line(timeout).await {
            Ok(line) => Ok(Some(line)),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Waits for a line `WORD rest` and returns `rest`; a line `error …` is an error.
    pub(crate) async fn expect(&mut self, word: &str, timeout: Duration) -> io::Result<String> {
        let line = self.next_line(timeout).await?;
        parse_line(&line, word)
    }

    /// Sends one command line.
    pub(crate) fn command(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("the server's stdin is closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// The server's counters now.
    pub(crate) async fn stats(&mut self) -> io::Result<ServerStats> {
        self.command("stats")?;
        let json = self.expect("stats", Duration::from_secs(15)).await?;
        serde_json::from_str(&json).map_err(io::Error::other)
    }

    /// User plus system CPU time of every thread of the server so far.
    pub(crate) fn cpu(&self) -> io::Result<Duration> {
        measure::cpu_time(&self.pid().to_string())
    }

    /// The server's resident memory (`VmRSS` in `/proc/PID/status`), in KiB.
    pub(crate) fn rss_kib(&self) -> io::Result<u64> {
        measure::rss_kib(self.pid())
    }

    /// Closes the server's stdin, gives it 2 s to exit, then kills it.
    pub(crate) fn stop(&mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `rest` of a server line `WORD rest`; a line `error …` is an error.
pub(crate) fn parse_line(line: &str, word: &str) -> io::Result<String> {
    if let Some(error) = line.strip_prefix("error ") {
        return Err(io::Error::other(format!("the server: {error}")));
    }
    match line.split_once(' ') {
        Some((first, rest)) if first == word => Ok(rest.to_owned()),
        None if line == word => Ok(String::new()),
        _ => Err(io::Error::other(format!(
            "expected `{word}` from the server, got {line:?}"
        ))),
    }
}
