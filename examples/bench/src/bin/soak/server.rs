//! The server side of the soak (`soak --serve`): a Crimson route whose sessions only listen,
//! and a broadcaster that sends a sequence-numbered [`Tick`] to all of them through the
//! route's `LocalCluster`, counting what every broadcast reached.
//!
//! It talks to the `soak` process that started it in lines:
//!
//! | direction | line | meaning |
//! |---|---|---|
//! | out | `ADDR` | the first line: where it listens (`127.0.0.1:PORT`) |
//! | in | `start SESSIONS COUNT` | wait until `SESSIONS` sessions are in the cluster, then broadcast `COUNT` ticks, one per period |
//! | out | `started` | the first tick is about to go |
//! | out | `done JSON` | the last tick went; JSON is a [`ServerStats`] |
//! | in | `stats` | asks for the counters now |
//! | out | `stats JSON` | a [`ServerStats`] |
//! | out | `error TEXT` | a command failed |
//!
//! It exits when its standard input closes.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use crimson_axum::cluster::{Cluster, LocalCluster};
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};

const SOAK: ConfigName<Tick, Tick> = ConfigName::new("soak");
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::MissedTickBehavior;

use crate::{unix_micros, Tick};

/// How long `start` waits for every expected session to be in the cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server counted, as it reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ServerStats {
    /// Broadcasts made (one per tick).
    pub(crate) broadcasts: u64,
    /// Sum over the broadcasts of `Delivery::delivered`: messages queued for a session.
    pub(crate) queued: u64,
    /// Sum of `Delivery::dropped_oldest`.
    pub(crate) dropped_oldest: u64,
    /// Sum of `Delivery::failed`: sessions a broadcast could not queue for.
    pub(crate) failed: u64,
    /// Broadcasts that returned an error.
    pub(crate) broadcast_errors: u64,
    /// The longest a single broadcast call took, in µs.
    pub(crate) slowest_broadcast_us: u64,
    /// Sessions in the cluster now.
    pub(crate) sessions: usize,
    /// Sessions that have connected since the server started.
    pub(crate) connected: u64,
    /// Sessions that have ended since the server started, by close code.
    pub(crate) closed: BTreeMap<u16, u64>,
    /// Errors the sessions met (the config's error hook).
    pub(crate) errors: u64,
    /// The first few errors, as text.
    pub(crate) first_errors: Vec<String>,
    /// Sum over the live sessions of `Outbox::sent`: messages written and flushed.
    pub(crate) outbox_sent: u64,
    /// Sum over the live sessions of `Outbox::dropped`.
    pub(crate) outbox_dropped: u64,
    /// Messages waiting in the live sessions' queues now.
    pub(crate) outbox_waiting: u64,
}

impl ServerStats {
    /// Sessions that have ended, whatever the code.
    pub(crate) fn closed_total(&self) -> u64 {
        self.closed.values().sum()
    }
}

/// Counters the hooks and the broadcaster update.
#[derive(Default)]
struct Counters {
    broadcasts: AtomicU64,
    queued: AtomicU64,
    dropped_oldest: AtomicU64,
    failed: AtomicU64,
    broadcast_errors: AtomicU64,
    slowest_broadcast_us: AtomicU64,
    connected: AtomicU64,
    closed: Mutex<BTreeMap<u16, u64>>,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

/// The counters, and what the cluster's live sessions say about their queues.
fn snapshot(cluster: &Cluster<Tick>, counters: &Counters) -> ServerStats {
    let mut stats = ServerStats {
        broadcasts: counters.broadcasts.load(Ordering::Relaxed),
        queued: counters.queued.load(Ordering::Relaxed),
        dropped_oldest: counters.dropped_oldest.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        broadcast_errors: counters.broadcast_errors.load(Ordering::Relaxed),
        slowest_broadcast_us: counters.slowest_broadcast_us.load(Ordering::Relaxed),
        sessions: cluster.node().len(),
        connected: counters.connected.load(Ordering::Relaxed),
        closed: counters
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        errors: counters.errors.load(Ordering::Relaxed),
        first_errors: counters
            .first_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        ..ServerStats::default()
    };
    for info in cluster.node().sessions() {
        if let Some(session) = cluster.node().get(info.id) {
            let queue = session.stats();
            stats.outbox_sent += queue.sent;
            stats.outbox_dropped += queue.dropped;
            stats.outbox_waiting += queue.waiting;
        }
    }
    stats
}

/// A session only listens: the broadcaster does the talking. (Clients send nothing; the
/// loop ends when the session does.)
async fn listen(mut session: CrimsonSession<Tick, Tick>) {
    while session.recv().await.is_some() {}
}

/// Broadcasts `count` ticks through `cluster`, one every `period`, once `sessions` sessions
/// have joined.
async fn broadcast(
    cluster: Cluster<Tick>,
    counters: Arc<Counters>,
    sessions: usize,
    count: u64,
    period: Duration,
) {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    while cluster.node().len() < sessions {
        if Instant::now() >= deadline {
            println!(
                "error only {} of {sessions} sessions joined the cluster within {JOIN_TIMEOUT:?}",
                cluster.node().len()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("started");
    let mut ticks = tokio::time::interval(period);
    // A late tick is made up at once: the run makes exactly `count` broadcasts.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for seq in 0..count {
        ticks.tick().await;
        let tick = Tick {
            seq,
            sent_at_us: unix_micros(),
        };
        let began = Instant::now();
        let result = cluster.broadcast(&tick).await;
        let took = began.elapsed().as_micros() as u64;
        counters
            .slowest_broadcast_us
            .fetch_max(took, Ordering::Relaxed);
        counters.broadcasts.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(delivery) => {
                counters
                    .queued
                    .fetch_add(delivery.delivered as u64, Ordering::Relaxed);
                counters
                    .dropped_oldest
                    .fetch_add(delivery.dropped_oldest as u64, Ordering::Relaxed);
                counters
                    .failed
                    .fetch_add(delivery.failed as u64, Ordering::Relaxed);
            }
            Err(err) => {
                counters.broadcast_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("soak server: broadcast {seq} failed: {err}");
            }
        }
    }
    let stats = snapshot(&cluster, &counters);
    println!("done {}", serde_json::to_string(&stats).unwrap_or_default());
}

/// Serves the soak route on 127.0.0.1 (any port) and obeys the commands on stdin.
pub(crate) async fn serve(period: Duration) -> io::Result<()> {
    crimson_examples::init_tracing("warn");
    let counters = Arc::new(Counters::default());
    let cluster: Cluster<Tick> = Cluster::new(LocalCluster::new());
    // Crimson's defaults, plus hooks that count what happens to the sessions.
    let config = CrimsonConfig::new()
        .cluster(cluster.clone())
        .on_connect({
            let counters = counters.clone();
            move |_| {
                counters.connected.fetch_add(1, Ordering::Relaxed);
            }
        })
        .on_close({
            let counters = counters.clone();
            move |_, record| {
                let mut closed = counters.closed.lock().unwrap_or_else(|e| e.into_inner());
                *closed.entry(record.code.as_u16()).or_default() += 1;
            }
        })
        .on_error({
            let counters = counters.clone();
            move |_, err| {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = counters
                    .first_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if first.len() < 10 {
                    first.push(err.to_string());
                }
            }
        });
    let app = Router::new()
        .crimson("/soak", SOAK, listen)
        .layer(CrimsonLayer::new().config(SOAK, config));
    let listener = crimson_examples::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    tokio::spawn(async move {
        // The soak's clients all come from a few loopback addresses.
        let served = crimson_axum::serve(listener, app)
            .max_connections_per_ip(None)
            .await;
        if let Err(err) = served {
            eprintln!("soak server: {err}");
            std::process::exit(1);
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", sessions, count] => match (sessions.parse(), count.parse()) {
                (Ok(sessions), Ok(count)) => {
                    tokio::spawn(broadcast(
                        cluster.clone(),
                        counters.clone(),
                        sessions,
                        count,
                        period,
                    ));
                }
                _ => println!("error bad start line: {line:?}"),
            },
            ["stats"] => {
                let stats = snapshot(&cluster, &counters);
                println!(
                    "stats {}",
                    serde_json::to_string(&stats).unwrap_or_default()
                );
            }
            _ => println!("error unknown command: {line:?}"),
        }
    }
    // The soak process let go of us.
    std::process::exit(0);
}
