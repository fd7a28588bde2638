//! What the load programs (`bench`, `soak`) share: loopback client connections, a child
//! server process's CPU time and memory from `/proc`, stopping it, and the commit measured.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, Command};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A raw client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one connect (TCP and WebSocket handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to `ws://server{path}` from `source`, with `TCP_NODELAY`, a zero linger (closing
/// resets the connection instead of leaving `TIME_WAIT` behind: runs reuse the ports) and a
/// `read_buffer`-byte read buffer (small: many idle clients must fit beside the server).
/// Gives up after [`CONNECT_TIMEOUT`]. Only loopback servers are allowed.
pub async fn connect(
    server: SocketAddr,
    path: &str,
    source: IpAddr,
    read_buffer: usize,
) -> io::Result<Ws> {
    connect_asking(server, path, source, read_buffer, None).await
}

/// [`connect`], asking for subprotocol `protocol` (`Sec-WebSocket-Protocol`) when given.
pub async fn connect_asking(
    server: SocketAddr,
    path: &str,
    source: IpAddr,
    read_buffer: usize,
    protocol: Option<&str>,
) -> io::Result<Ws> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    assert!(server.ip().is_loopback(), "load goes to loopback only");
    let attempt = async {
        let socket = TcpSocket::new_v4()?;
        socket.set_nodelay(true)?;
        // A zero linger never blocks (the deprecation is about non-zero ones).
        #[allow(deprecated)]
        socket.set_linger(Some(Duration::ZERO))?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(server).await?;
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0);
        let mut request = format!("ws://{server}{path}")
            .into_client_request()
            .map_err(io::Error::other)?;
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                protocol.parse().map_err(io::Error::other)?,
            );
        }
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(io::Error::other)?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// User plus system CPU time of every thread of process `pid` (a number, or `self`) so far,
/// from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> io::Result<Duration> {
    static CLOCK_TICKS: OnceLock<f64> = OnceLock::new();
    // Ticks per second of `/proc` times (`getconf CLK_TCK`; 100 on Linux).
    let ticks = *CLOCK_TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8(out.stdout)
                    .ok()?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|&ticks| ticks > 0.0)
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After `(comm)` come the state (field 3) … utime (field 14) and stime (field 15).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(user), Some(system)) => Ok(Duration::from_secs_f64((user + system) as f64 / ticks)),
        _ => Err(io::Error::other(format!("odd /proc/{pid}/stat: {stat:?}"))),
    }
}

/// The resident memory of process `pid` (`VmRSS` in `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// Stops a server started with a piped stdin: closes its stdin (it then exits), gives it 2 s,
/// then kills it; reaps it either way.
pub fn stop(child: &mut Child, stdin: &mut Option<ChildStdin>) {
    drop(stdin.take());
    for _ in 0..200 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The commit under test and any uncommitted change to the Crimson crates (a binary measures
/// the work tree as it was built), from `git` if there is one.
pub fn source_state() -> serde_json::Value {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let changed: Vec<String> = git(&[
        "status",
        "--porcelain",
        "--",
        "crimson-core",
        "crimson-axum",
    ])
    .unwrap_or_default()
    .lines()
    .map(|line| line.trim().to_owned())
    .collect();
    serde_json::json!({
        "head": git(&["rev-parse", "--short", "HEAD"]),
        "uncommitted_crimson_changes": changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_memory() {
        assert!(cpu_time("self").is_ok());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
