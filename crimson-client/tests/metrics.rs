//! The metrics a client records (feature `metrics`), read back through metrics-util's
//! debugging recorder: state changes, reconnect attempts and the outbox's depth across a
//! server that goes away and comes back.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use crimson_client::{CloseCode, ConnectionState, CrimsonClient, RetryPolicy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Counters and gauges by name and `state` label, summed over snapshots (a snapshot drains
/// the debugging recorder: counters and gauges swap to 0).
#[derive(Default)]
struct Figures(BTreeMap<(String, String), f64>);

impl Figures {
    fn update(&mut self, snapshotter: &Snapshotter) -> &mut Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let state = key
                .key()
                .labels()
                .find(|label| label.key() == "state")
                .map(|label| label.value().to_owned())
                .unwrap_or_default();
            let delta = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(v) => v.into_inner(),
                DebugValue::Histogram(_) => continue,
            };
            *self
                .0
                .entry((key.key().name().to_owned(), state))
                .or_default() += delta;
        }
        self
    }

    fn get(&self, name: &str, state: &str) -> f64 {
        self.0
            .get(&(name.to_owned(), state.to_owned()))
            .copied()
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn a_client_counts_its_states_reconnects_and_outbox() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    let mut figures = Figures::default();

    let server = ChatServer::start("127.0.0.1:0").await;
    let addr = server.addr;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(
            RetryPolicy::fixed(Duration::from_millis(50))
                .unwrap()
                .with_jitter(0.0)
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut state = client.state();
    within("connect", client.connect()).await.unwrap();
    client.send(say("hello")).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "hello");
    figures.update(&snapshotter);
    assert_eq!(
        figures.get("crimson_client_state_changes_total", "connecting"),
        1.0
    );
    assert_eq!(
        figures.get("crimson_client_state_changes_total", "connected"),
        1.0
    );
    assert_eq!(figures.get("crimson_client_outbox_depth", ""), 0.0);

    // The server goes away: the client retries, and what it is given waits in its outbox.
    server.stop().await;
    wait_state(&mut state, "retrying", ConnectionState::is_retrying).await;
    client.send(say("one")).unwrap();
    client.send(say("two")).unwrap();
    figures.update(&snapshotter);
    assert!(figures.get("crimson_client_reconnect_attempts_total", "") >= 1.0);
    assert!(figures.get("crimson_client_state_changes_total", "retrying") >= 1.0);
    assert_eq!(
        figures.get("crimson_client_outbox_depth", ""),
        client.queued() as f64
    );
    assert_eq!(client.queued(), 2);

    // It comes back: the outbox is written, its depth back to 0.
    let server = ChatServer::start(&addr.to_string()).await;
    wait_state(&mut state, "reconnected", ConnectionState::is_connected).await;
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "one");
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "two");
    figures.update(&snapshotter);
    assert_eq!(figures.get("crimson_client_outbox_depth", ""), 0.0);
    assert_eq!(
        figures.get("crimson_client_state_changes_total", "connected"),
        2.0
    );
    let attempts = figures.get("crimson_client_reconnect_attempts_total", "");
    assert_eq!(
        figures.get("crimson_client_state_changes_total", "retrying"),
        attempts
    );

    client.disconnect(CloseCode::NORMAL, "done").await.unwrap();
    figures.update(&snapshotter);
    assert_eq!(
        figures.get("crimson_client_state_changes_total", "closed"),
        1.0
    );
    server.stop().await;
}
