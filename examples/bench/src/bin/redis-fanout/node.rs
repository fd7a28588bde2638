//! A server node of the benchmark (a child process): a `RedisCluster` with in-memory
//! sessions that count what reaches them. One of them also timestamps each relayed message,
//! for the pub/sub hop's latency. Commands on stdin, one per line: `stats` answers one JSON
//! line (counters since the start, latencies since the last `stats`); end of input exits.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::SessionCluster;
use crimson_axum::sessions::{
    Deliver, Outgoing, Queued, SendError, SessionHandle, SessionId, SessionInfo,
};
use crimson_axum::CloseCode;
use crimson_bench::measure;

use super::{now_us, PREFIX};

/// The most latency samples kept between two `stats`.
const MAX_SAMPLES: usize = 200_000;

/// A session that counts deliveries; the probe also samples the hop's latency.
#[derive(Debug)]
struct Counting {
    delivered: Arc<AtomicU64>,
    samples: Option<Arc<Mutex<Vec<u32>>>>,
}

impl Deliver for Counting {
    fn deliver(&self, message: Outgoing) -> Result<Queued, SendError> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(samples) = &self.samples {
            let bytes = message.payload().as_bytes();
            if let Some(sent) = bytes.get(..8).and_then(|b| b.try_into().ok()) {
                let latency = now_us().saturating_sub(u64::from_be_bytes(sent));
                let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
                if samples.len() < MAX_SAMPLES {
                    samples.push(u32::try_from(latency).unwrap_or(u32::MAX));
                }
            }
        }
        Ok(Queued::Queued)
    }

    fn close(&self, _code: CloseCode, _reason: &str) {}

    fn is_closed(&self) -> bool {
        false
    }
}

/// Runs a node on the Redis at `spec` with `sessions` sessions until stdin ends; with history
/// in Redis when `history` says how much.
pub(crate) async fn run(spec: &str, sessions: usize, history: Option<usize>) {
    let mut builder = RedisCluster::builder(spec).prefix(PREFIX);
    if let Some(size) = history {
        builder = builder.history(super::history(size));
    }
    let backend = builder
        .build()
        .await
        .unwrap_or_else(|err| panic!("node: {err}"));
    let delivered = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let relayed = Arc::new(AtomicU64::new(0));
    for n in 0..sessions {
        let info = SessionInfo {
            id: SessionId::on_node(backend.node_id()),
            connected_at: std::time::SystemTime::now(),
            remote_addr: None,
            path: "/fanout".into(),
            config: "fanout".into(),
        };
        let sink = Counting {
            delivered: if n == 0 {
                relayed.clone()
            } else {
                delivered.clone()
            },
            samples: (n == 0).then(|| samples.clone()),
        };
        backend
            .add(SessionHandle::new(info, Arc::new(sink)))
            .expect("no session limit");
    }
    println!("ready");

    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if line.trim() != "stats" {
            continue;
        }
        let mut taken = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
        taken.sort_unstable();
        let at = |q: f64| {
            taken
                .get(((taken.len() as f64 * q) as usize).min(taken.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let relayed = relayed.load(Ordering::Relaxed);
        let stats = backend.stats();
        let line = serde_json::json!({
            "relayed": relayed,
            "delivered": relayed + delivered.load(Ordering::Relaxed),
            "cpu_s": measure::cpu_time("self").map(|d| d.as_secs_f64()).unwrap_or(0.0),
            "p50_us": at(0.50),
            "p99_us": at(0.99),
            "samples": taken.len(),
            "lost": stats.lost,
            "connected": backend.is_connected(),
        });
        println!("{line}");
    }
}
