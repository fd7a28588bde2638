//! Cross-node broadcast through Redis: how many deliveries per second, how long the pub/sub
//! hop takes (p50/p99), and how much server CPU each delivery costs, with 1, 2 and 4 server
//! nodes on one Redis and on a three-master Redis Cluster; where the knee is.
//!
//! `cargo run --release -p crimson-bench --bin redis-fanout [-- --quick] [--secs S]
//! [--nodes 1,2,4] [--sessions N] [--rates R,R,…] [--backends single,cluster] [--history N]
//! [--json PATH]`
//!
//! `--history N` keeps the last N publications of each stream in Redis (history on, every
//! node and publisher): each broadcast is then one Lua script (numbered, kept, published) and
//! every node delivers in offset order. Run it beside a run without to see what history in
//! Redis costs; it also times the recovery of 1,000 missed publications from Redis.
//!
//! It starts its own Redis (`redis-server` on a free loopback port) and Redis Cluster (six
//! servers), then for each backend and node count: N node processes (this program with
//! `--node`), each a `RedisCluster` with N in-memory sessions that count deliveries, and in
//! this process a driver of four publishing nodes (no sessions) that broadcast 256-byte
//! messages to all at each offered rate in turn, stamped with the time they were sent. Every
//! broadcast crosses Redis to every node: a delivery is one message queued for one session
//! of a node. The sweep stops after the first rate the nodes cannot keep up with (they
//! relay under 90 % of it) or whose p99 passes 1 s. Sessions are in-memory queues, not
//! WebSockets: this measures the pub/sub hop and the fan-out into session queues (the
//! WebSocket writes are `bench`'s broadcast scenario).

mod node;
mod recover;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, ClusterError};
use crimson_axum::testing::{RedisClusterServer, RedisServer};
use crimson_axum::Bytes;
use crimson_bench::measure;
use futures_util::stream::{FuturesUnordered, StreamExt};

/// The key prefix of the benchmark's nodes.
const PREFIX: &str = "fanout";
/// Bytes per message.
const PAYLOAD: usize = 256;
/// Publishing nodes in the driver.
const SENDERS: usize = 4;
/// Broadcasts in flight per publishing node, at most.
const IN_FLIGHT: usize = 2048;

/// Microseconds since the Unix epoch (every process of the run is on this machine).
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != &format!("--{name}"));
    args.next()?;
    args.next()
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == format!("--{name}"))
}

fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    arg(name)
        .unwrap_or_else(|| default.to_owned())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("--{name}: `{v}` is not a number"))
        })
        .collect()
}

/// A node process.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl NodeProcess {
    fn start(spec: &str, sessions: usize, history: Option<usize>) -> Self {
        let history = history.map_or(String::new(), |n| n.to_string());
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .args(["--node", spec, "--sessions", &sessions.to_string()])
            .args(["--history", &history])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a node process");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the node starts");
        assert_eq!(line.trim(), "ready", "the node did not start");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn stats(&mut self) -> serde_json::Value {
        let stdin = self.stdin.as_mut().expect("running");
        writeln!(stdin, "stats").expect("the node listens");
        stdin.flush().expect("the node listens");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the node answers");
        serde_json::from_str(&line).expect("one JSON line")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        measure::stop(&mut self.child, &mut self.stdin);
    }
}

/// User + system CPU of every process in `pids`.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| measure::cpu_time(&pid.to_string()).ok())
        .map(|d| d.as_secs_f64())
        .sum()
}

/// The machine's busy and total jiffies so far (`/proc/stat`).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Broadcasts from every sender at `rate` messages per second in all, for `secs`; how many
/// were published and how many failed.
async fn drive(senders: &[Cluster<Bytes>], rate: u64, secs: f64) -> (u64, u64) {
    let per_sender = rate as f64 / senders.len() as f64;
    let tasks: Vec<_> = senders
        .iter()
        .cloned()
        .map(|sender| {
            tokio::spawn(async move {
                let start = Instant::now();
                let (mut sent, mut failed, mut due) = (0u64, 0u64, 0u64);
                let mut in_flight = FuturesUnordered::new();
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {
                            let elapsed = start.elapsed().as_secs_f64();
                            if elapsed >= secs {
                                break;
                            }
                            let target = (per_sender * elapsed) as u64;
                            while due < target && in_flight.len() < IN_FLIGHT {
                                due += 1;
                                let sender = sender.clone();
                                in_flight.push(async move {
                                    let mut message = vec![0u8; PAYLOAD];
                                    message[..8].copy_from_slice(&now_us().to_be_bytes());
                                    sender.broadcast(&Bytes::from(message)).await
                                });
                            }
                        }
                        Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                            count(result, &mut sent, &mut failed);
                        }
                    }
                }
                while let Some(result) = in_flight.next().await {
                    count(result, &mut sent, &mut failed);
                }
                (sent, failed)
            })
        })
        .collect();
    let mut totals = (0, 0);
    for task in tasks {
        let (sent, failed) = task.await.expect("a sender");
        totals.0 += sent;
        totals.1 += failed;
    }
    totals
}

fn count(
    result: Result<crimson_axum::cluster::Delivery, ClusterError>,
    sent: &mut u64,
    failed: &mut u64,
) {
    match result {
        Ok(_) => *sent += 1,
        Err(_) => *failed += 1,
    }
}

/// One measured step.
#[derive(Debug, serde::Serialize)]
struct Step {
    backend: &'static str,
    nodes: usize,
    offered: u64,
    published: f64,
    failed: u64,
    relayed_per_node: f64,
    deliveries: f64,
    p50_us: u64,
    p99_us: u64,
    node_cpu_us_per_delivery: f64,
    node_cpu_us_per_message: f64,
    node_cpu: f64,
    redis_cpu: f64,
    driver_cpu: f64,
    machine_cpu: f64,
    lost: u64,
}

/// A Redis to measure on.
struct Backend {
    name: &'static str,
    /// What `RedisCluster::builder` takes.
    spec: String,
    /// Its `redis-server` processes.
    pids: Vec<u32>,
}

/// What every sweep does.
struct Setup {
    sessions: usize,
    rates: Vec<u64>,
    secs: f64,
    /// Publications kept per stream in Redis, when history is on.
    history: Option<usize>,
}

/// History on, keeping `size` publications of each stream for 5 minutes.
pub(crate) fn history(size: usize) -> crimson_axum::cluster::History {
    crimson_axum::cluster::History::new(size, Duration::from_secs(300))
}

/// Offers each rate in turn to `nodes` nodes on `redis`, until they cannot keep up.
async fn sweep(redis: &Backend, nodes: usize, setup: &Setup, steps: &mut Vec<Step>) {
    let (backend, spec, redis_pids) = (redis.name, redis.spec.as_str(), redis.pids.as_slice());
    let (sessions, secs) = (setup.sessions, setup.secs);
    let mut processes: Vec<NodeProcess> = (0..nodes)
        .map(|_| NodeProcess::start(spec, sessions, setup.history))
        .collect();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let mut builder = RedisCluster::builder(spec).prefix(PREFIX);
        if let Some(size) = setup.history {
            builder = builder.history(history(size));
        }
        let backend = builder
            .build()
            .await
            .unwrap_or_else(|err| panic!("driver: {err}"));
        senders.push(Cluster::<Bytes>::new(backend));
    }
    // Warm up: connections, subscriptions, allocations.
    drive(&senders, 1000, 0.5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for &rate in &setup.rates {
        let before: Vec<serde_json::Value> = processes.iter_mut().map(NodeProcess::stats).collect();
        let node_pids: Vec<u32> = processes.iter().map(|p| p.child.id()).collect();
        let (node_cpu0, redis_cpu0) = (cpu_of(&node_pids), cpu_of(redis_pids));
        let driver_cpu0 = measure::cpu_time("self").map_or(0.0, |d| d.as_secs_f64());
        let machine0 = machine_jiffies();
        let start = Instant::now();
        let (published, failed) = drive(&senders, rate, secs).await;
        // What is in flight lands.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let elapsed = start.elapsed().as_secs_f64() - 0.3;
        let after: Vec<serde_json::Value> = processes.iter_mut().map(NodeProcess::stats).collect();
        let machine1 = machine_jiffies();
        let delta = |key: &str| -> f64 {
            before
                .iter()
                .zip(&after)
                .map(|(b, a)| a[key].as_f64().unwrap_or(0.0) - b[key].as_f64().unwrap_or(0.0))
                .sum()
        };
        let deliveries = delta("delivered");
        let node_cpu = cpu_of(&node_pids) - node_cpu0;
        let mut p50s: Vec<u64> = after
            .iter()
            .map(|a| a["p50_us"].as_u64().unwrap_or(0))
            .collect();
        p50s.sort_unstable();
        let step = Step {
            backend,
            nodes,
            offered: rate,
            published: published as f64 / elapsed,
            failed,
            relayed_per_node: delta("relayed") / nodes as f64 / elapsed,
            deliveries: deliveries / elapsed,
            p50_us: p50s[p50s.len() / 2],
            p99_us: after
                .iter()
                .map(|a| a["p99_us"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0),
            node_cpu_us_per_delivery: node_cpu / deliveries.max(1.0) * 1e6,
            node_cpu_us_per_message: node_cpu / delta("relayed").max(1.0) * 1e6,
            node_cpu: node_cpu / elapsed,
            redis_cpu: (cpu_of(redis_pids) - redis_cpu0) / elapsed,
            driver_cpu: (measure::cpu_time("self").map_or(0.0, |d| d.as_secs_f64()) - driver_cpu0)
                / elapsed,
            machine_cpu: (machine1.0 - machine0.0) as f64 / (machine1.1 - machine0.1).max(1) as f64
                * 2.0,
            lost: delta("lost") as u64,
        };
        println!(
            "{backend:7} {nodes} node(s) offered {rate:>6}/s: published {:>7.0}/s, relayed {:>7.0}/s per node, {:>9.0} deliveries/s, hop p50 {} µs p99 {} µs, node CPU {:.2} µs/delivery, {:.1} µs/message ({:.0} %), Redis CPU {:.0} %, driver {:.0} %, machine {:.0} % of 2 cores, failed {}, lost {}",
            step.published,
            step.relayed_per_node,
            step.deliveries,
            step.p50_us,
            step.p99_us,
            step.node_cpu_us_per_delivery,
            step.node_cpu_us_per_message,
            step.node_cpu * 100.0,
            step.redis_cpu * 100.0,
            step.driver_cpu * 100.0,
            step.machine_cpu * 100.0,
            step.failed,
            step.lost,
        );
        let behind = step.relayed_per_node < 0.9 * rate as f64 || step.p99_us > 1_000_000;
        steps.push(step);
        if behind {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    if let Some(spec) = arg("node") {
        let sessions = arg("sessions").and_then(|s| s.parse().ok()).unwrap_or(100);
        let history = arg("history").and_then(|s| s.parse().ok());
        node::run(&spec, sessions, history).await;
        return;
    }
    let quick = flag("quick");
    let secs: f64 = arg("secs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1.5 } else { 3.0 });
    let sessions: usize = arg("sessions").and_then(|s| s.parse().ok()).unwrap_or(100);
    let nodes: Vec<usize> = list("nodes", if quick { "1,2" } else { "1,2,4" });
    let rates: Vec<u64> = list(
        "rates",
        if quick {
            "2000,8000"
        } else {
            "1000,2000,5000,10000,20000,40000,80000"
        },
    );
    let backends = arg("backends").unwrap_or_else(|| "single,cluster".into());
    println!(
        "redis-fanout: {sessions} sessions per node, {PAYLOAD}-byte messages to all from {SENDERS} publishing nodes, {secs} s per step; source {}",
        measure::source_state()
    );
    let history: Option<usize> = arg("history").map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("--history: `{s}` is not a number of publications"))
    });
    if let Some(size) = history {
        println!("history on: the last {size} publications of each stream kept in Redis");
    }
    let setup = Setup {
        sessions,
        rates,
        secs,
        history,
    };
    let mut steps = Vec::new();
    for backend in backends.split(',') {
        let (spec, pids, _single, _cluster) = match backend {
            "single" => {
                let redis = RedisServer::start();
                let pids = redis.pid().into_iter().collect::<Vec<_>>();
                (redis.url(), pids, Some(redis), None)
            }
            "cluster" => {
                let redis = RedisClusterServer::start();
                let seeds: Vec<String> = redis
                    .urls()
                    .iter()
                    .map(|u| u.trim_start_matches("redis://").to_owned())
                    .collect();
                let spec = format!("redis+cluster://{}", seeds.join(","));
                (spec, redis.pids(), None, Some(redis))
            }
            other => panic!("--backends: `{other}` is not single or cluster"),
        };
        let redis = Backend {
            name: if backend == "single" {
                "single"
            } else {
                "cluster"
            },
            spec,
            pids,
        };
        for &n in &nodes {
            sweep(&redis, n, &setup, &mut steps).await;
        }
    }
    if let Some(size) = history {
        // Recovery from the history in Redis, on one Redis.
        let redis = RedisServer::start();
        let mut times = recover::recover(&redis.url(), size, 1000, 5).await;
        times.sort_by(f64::total_cmp);
        println!(
            "recovery of 1,000 missed from Redis (resume to the last queued, server side), 5 rounds: median {:.1} ms, min {:.1}, max {:.1}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    if let Some(path) = arg("json") {
        let json = serde_json::json!({ "source": measure::source_state(), "steps": steps });
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("JSON"))
            .unwrap_or_else(|err| panic!("cannot write {path}: {err}"));
        println!("wrote {path}");
    }
}
