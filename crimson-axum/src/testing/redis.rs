//! [`RedisServer`]: a real `redis-server` for a test, started on a free loopback port and
//! stopped on drop; [`RedisClusterServer`]: a real Redis Cluster of six (features `test-util`
//! and `redis`).
//!
//! A missing `redis-server` is a test failure with a message saying how to install it, never
//! a skip: `./scripts/test.sh` installs it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get `redis-server` and `redis-cli`, for the failure message.
const INSTALL: &str = "these tests need a real Redis (redis-server and redis-cli, 7.0 or later). \
     Run ./scripts/test.sh, which installs it, or `apt-get install redis-server`";

/// A free loopback port (free when asked; the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts `redis-server` on loopback `port` with `args`, and waits until it listens.
fn spawn(port: u16, args: &[&str]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start redis-server ({err}): {INSTALL}"));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server on {addr} exited at start ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {addr} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

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
        let mut server = Self {
            port: free_port(),
            child: None,
        };
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

    /// The server's process id, while it runs (to measure its CPU, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        self.child = Some(spawn(self.port, &[]));
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

/// Runs `redis-cli -p port args…`; its output.
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run redis-cli ({err}): {INSTALL}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Redis Cluster for a test: three masters with one replica each, six `redis-server`s on
/// free loopback ports (`--cluster-enabled yes`, a node timeout of 1 s and replicas that
/// sync at once and may always take over, so that a killed master's replica takes over
/// within a few seconds), their files in a temporary directory. Every server is killed and
/// the directory removed on drop.
#[derive(Debug)]
pub struct RedisClusterServer {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
}

impl RedisClusterServer {
    /// Starts six servers, makes them a cluster (`redis-cli --cluster create
    /// --cluster-replicas 1`) and waits until every one says `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing, or the cluster is not ok within 30 s.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "crimson-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory for the cluster's files");
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..6 {
            let (port, bus) = (free_port(), free_port());
            let config = format!("nodes-{port}.conf");
            let dir = cluster.dir.to_string_lossy().into_owned();
            let child = spawn(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &config,
                    "--cluster-node-timeout",
                    "1000",
                    // Replicas sync at once and may always take over, however stale.
                    "--repl-diskless-sync-delay",
                    "0",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--dir",
                    &dir,
                ],
            );
            cluster.nodes.push((port, Some(child)));
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli ({err}): {INSTALL}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// The seed URLs, `redis://127.0.0.1:PORT`, of the servers still running.
    pub fn urls(&self) -> Vec<String> {
        self.live()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// The process ids of the servers still running.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|(_, child)| child.as_ref().map(Child::id))
            .collect()
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
    }

    /// The port of the master that serves `key`'s slot now.
    ///
    /// # Panics
    ///
    /// If no running server answers, or none serves the slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.live().next().expect("a running server");
        let slot: u16 = cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        self.masters()
            .into_iter()
            .find(|(_, slots)| slots.iter().any(|r| r.contains(&slot)))
            .map(|(port, _)| port)
            .unwrap_or_else(|| panic!("no master serves slot {slot} ({key})"))
    }

    /// The masters that are up, with their slot ranges, as the first running server sees
    /// them (`CLUSTER NODES`).
    fn masters(&self) -> Vec<(u16, Vec<std::ops::RangeInclusive<u16>>)> {
        let port = self.live().next().expect("a running server");
        let nodes = cli(port, &["cluster", "nodes"]);
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                let addr = fields.get(1)?.split('@').next()?;
                let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
                let slots = fields
                    .get(8..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                        None => s.parse().ok().map(|n| n..=n),
                    })
                    .collect();
                Some((port, slots))
            })
            .collect()
    }

    /// Kills the server on `port` (SIGKILL: a crash). When it was a master, its replica
    /// takes over after the node timeout (1 s) and an election.
    ///
    /// # Panics
    ///
    /// If no server of this cluster runs on `port`.
    pub fn kill(&mut self, port: u16) {
        let (_, child) = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("a server of this cluster");
        let mut child = child.take().expect("the server is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits until every running server says `cluster_state:ok`, the up masters serve all
    /// 16384 slots and every replica is in sync with its master (after a start or a
    /// failover).
    ///
    /// # Panics
    ///
    /// If that does not happen within `bound`.
    pub fn wait_until_ok(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let ok = self.live().all(|port| {
                let replication = cli(port, &["info", "replication"]);
                cli(port, &["cluster", "info"]).contains("cluster_state:ok")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            });
            let covered: usize = self
                .masters()
                .iter()
                .flat_map(|(_, slots)| slots.iter().map(|r| r.clone().count()))
                .sum();
            if ok && covered == 16384 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster was not ok within {bound:?} (covered slots: {covered})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisClusterServer {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
