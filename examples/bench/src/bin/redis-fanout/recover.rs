//! With `--history`: how long a recovery of 1,000 missed publications takes with the history
//! in Redis, on the server's side: from the `resume` to the last missed publication queued
//! for the session (the read from Redis, the checks, the framing; not the socket).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, SessionCluster};
use crimson_axum::protocol::{self, Kind, Position};
use crimson_axum::sessions::{MemorySink, SessionHandle, SessionId, SessionInfo};
use crimson_axum::Bytes;

/// A session of the protocol on `backend`, its frames in a sink.
fn session(backend: &RedisCluster) -> (SessionId, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new(1 << 20));
    let info = SessionInfo {
        id: SessionId::on_node(backend.node_id()),
        connected_at: std::time::SystemTime::now(),
        remote_addr: None,
        path: "/recover".into(),
        config: "recover".into(),
    };
    let id = info.id;
    backend
        .add(SessionHandle::new(info, sink.clone()).framing(true))
        .expect("no session limit");
    (id, sink)
}

/// The header kinds of what `sink` holds now (taken from it).
fn kinds(sink: &MemorySink) -> Vec<Kind> {
    sink.take()
        .iter()
        .filter_map(|out| protocol::read(out.payload().as_ref()).ok().map(|(k, _)| k))
        .collect()
}

/// Waits (at most 5 s) for the session's `sub` of `all`: where it follows from.
async fn subscribed(sink: &MemorySink) -> Position {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for kind in kinds(sink) {
            if let Kind::Subscribed(at) = kind {
                return at;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no sub frame within 5 s");
}

/// Milliseconds from the resume of `missed` publications to the last queued, `rounds` times.
pub(crate) async fn recover(spec: &str, size: usize, missed: usize, rounds: usize) -> Vec<f64> {
    let backend = RedisCluster::builder(spec)
        .prefix("fanout-recover")
        .history(super::history(size.max(missed)))
        .build()
        .await
        .unwrap_or_else(|err| panic!("recover: {err}"));
    let cluster: Cluster<Bytes> = Cluster::new(backend.clone());
    let mut times = Vec::new();
    for _ in 0..rounds {
        let (id, sink) = session(&backend);
        let from = subscribed(&sink).await;
        backend.remove(id);
        for n in 0..missed {
            let message = Bytes::from(format!("{n:0256}"));
            cluster.broadcast(&message).await.expect("published");
        }
        let (id, sink) = session(&backend);
        subscribed(&sink).await;
        let started = Instant::now();
        backend.resume(id, from);
        let mut got = 0;
        let deadline = started + Duration::from_secs(5);
        while got < missed + 1 {
            got += sink.take().len();
            if Instant::now() > deadline {
                panic!("recovered {got} of {missed} within 5 s");
            }
            tokio::task::yield_now().await;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        backend.remove(id);
    }
    times
}
