//! The metrics a server records (feature `metrics`), read back through metrics-util's
//! debugging recorder: names, labels and values against what the test sent.
//!
//! One recorder serves the whole file (a process has one global recorder); each test uses a
//! config of its own, so its figures are its own.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use crimson_axum::testing::TestServer;
use crimson_axum::{
    Bytes, CloseCode, ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, Payload, RouterExt,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Taken by each test for its whole length: the figures of one config's test are its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        snapshotter
    })
}

/// What was recorded so far. A snapshot drains the recorder (counters and gauges swap to 0,
/// histograms are emptied), so snapshots are merged here: counters and gauges (only ever
/// incremented or decremented here) add up, histograms append.
fn recorded() -> MutexGuard<'static, Recorded> {
    static RECORDED: Mutex<Recorded> = Mutex::new(BTreeMap::new());
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let labels = key
            .key()
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect::<Vec<_>>();
        let entry = recorded
            .entry((key.key().name().to_owned(), labels))
            .or_insert(Value::Counter(0));
        match (entry, value) {
            (Value::Counter(n), DebugValue::Counter(more)) => *n += more,
            (entry @ Value::Counter(0), DebugValue::Gauge(v)) => {
                *entry = Value::Gauge(v.into_inner());
            }
            (Value::Gauge(g), DebugValue::Gauge(v)) => *g += v.into_inner(),
            (entry @ Value::Counter(0), DebugValue::Histogram(values)) => {
                *entry = Value::Histogram(values.into_iter().map(|v| v.into_inner()).collect());
            }
            (Value::Histogram(all), DebugValue::Histogram(values)) => {
                all.extend(values.into_iter().map(|v| v.into_inner()));
            }
            (entry, value) => panic!("{entry:?} then {value:?}"),
        }
    }
    recorded
}

type Recorded = BTreeMap<(String, Vec<(String, String)>), Value>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// Every metric named `name` whose labels include `labels`.
fn find(name: &str, labels: &[(&str, &str)]) -> Vec<Value> {
    recorded()
        .iter()
        .filter(|((found, _), _)| found == name)
        .filter(|((_, found), _)| {
            labels
                .iter()
                .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
        })
        .map(|(_, value)| value.clone())
        .collect()
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    find(name, labels)
        .into_iter()
        .map(|value| match value {
            Value::Counter(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(name, labels).pop() {
        Some(Value::Gauge(value)) => value,
        other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
    }
}

/// Waits until the counter reaches `want` (a session's close is recorded as its task ends).
async fn wait_for(name: &str, labels: &[(&str, &str)], want: u64) {
    for _ in 0..200 {
        if counter(name, labels) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{name} {labels:?} stayed at {} (wanted {want})",
        counter(name, labels)
    );
}

async fn echo(mut session: CrimsonSession<String, String>) {
    while let Some(text) = session.recv().await {
        if session.send(text).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn an_echo_session_is_counted_message_by_message() {
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    const CONFIG: ConfigName<String, String> = ConfigName::new("metrics-echo");
    let app = Router::new()
        .crimson("/echo", CONFIG, echo)
        .layer(CrimsonLayer::new().config(CONFIG, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    let config = ("config", "metrics-echo");

    let mut conn = server.connect::<String, String>("/echo").await.unwrap();
    let mut bytes = 0;
    for n in 0..10 {
        let text = format!("hello {n}");
        bytes += text.len() as u64;
        conn.send(&text).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), text);
    }
    assert_eq!(counter("crimson_connections_accepted_total", &[config]), 1);
    assert_eq!(gauge("crimson_connections_open", &[config]), 1.0);
    let text_in = [config, ("codec", "text"), ("frame", "text")];
    assert_eq!(counter("crimson_messages_received_total", &text_in), 10);
    assert_eq!(counter("crimson_bytes_received_total", &text_in), bytes);
    assert_eq!(counter("crimson_messages_sent_total", &text_in), 10);
    assert_eq!(counter("crimson_bytes_sent_total", &text_in), bytes);

    conn.close(CloseCode::NORMAL, "done").await.unwrap();
    let closed = [config, ("code", "1000"), ("side", "client")];
    wait_for("crimson_sessions_closed_total", &closed, 1).await;
    assert_eq!(counter("crimson_sessions_closed_total", &[config]), 1);
    assert_eq!(gauge("crimson_connections_open", &[config]), 0.0);
    assert_eq!(counter("crimson_decode_failures_total", &[config]), 0);
    assert_eq!(counter("crimson_handshakes_rejected_total", &[config]), 0);
}

#[tokio::test]
async fn bad_input_and_refused_handshakes_are_counted_by_reason() {
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    const CONFIG: ConfigName<String, String> = ConfigName::new("metrics-bad");
    let app = Router::new()
        .crimson("/bad", CONFIG, echo)
        .layer(CrimsonLayer::new().config(
            CONFIG,
            CrimsonConfig::new().allowed_origins(["https://chat.example"]),
        ));
    let server = TestServer::new(app).await;
    let config = ("config", "metrics-bad");
    let origin = [("origin", "https://chat.example")];

    // A Binary frame that is not UTF-8 for a String route: 1007, closed by the server.
    let mut conn = server
        .connect_with::<String, String>("/bad", &origin)
        .await
        .unwrap();
    conn.send_raw(Payload::Binary(Bytes::from_static(&[0xff, 0xfe])))
        .await
        .unwrap();
    let (code, _) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::INVALID_PAYLOAD);
    wait_for(
        "crimson_sessions_closed_total",
        &[config, ("code", "1007"), ("side", "server")],
        1,
    )
    .await;
    assert_eq!(
        counter(
            "crimson_decode_failures_total",
            &[config, ("codec", "text")]
        ),
        1
    );
    assert_eq!(counter("crimson_messages_received_total", &[config]), 1);
    assert_eq!(counter("crimson_bytes_received_total", &[config]), 2);

    // An origin that is not allowed: 403 before the upgrade.
    let refused = server
        .connect_with::<String, String>("/bad", &[("origin", "https://evil.example")])
        .await;
    assert!(refused.is_err());
    // Plain HTTP on the WebSocket route: 426.
    let mut http = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    http.write_all(b"GET /bad HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    http.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 426"));

    let rejected = |reason| {
        counter(
            "crimson_handshakes_rejected_total",
            &[config, ("reason", reason)],
        )
    };
    assert_eq!(rejected("origin"), 1);
    assert_eq!(rejected("handshake"), 1);
    assert_eq!(counter("crimson_connections_accepted_total", &[config]), 1);
}

#[tokio::test]
async fn a_full_config_counts_a_connection_limit_refusal() {
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    const CONFIG: ConfigName<String, String> = ConfigName::new("metrics-full");
    let app = Router::new()
        .crimson("/full", CONFIG, echo)
        .layer(CrimsonLayer::new().config(CONFIG, CrimsonConfig::new().max_connections(Some(1))));
    let server = TestServer::new(app).await;
    let config = ("config", "metrics-full");

    let _first = server.connect::<String, String>("/full").await.unwrap();
    let mut second = server.connect::<String, String>("/full").await.unwrap();
    let (code, _) = second.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(
        counter(
            "crimson_handshakes_rejected_total",
            &[config, ("reason", "connection_limit")]
        ),
        1
    );
    assert_eq!(counter("crimson_connections_accepted_total", &[config]), 1);
    assert_eq!(gauge("crimson_connections_open", &[config]), 1.0);
}

async fn chat(mut session: CrimsonSession<String, String>) {
    while let Some(text) = session.recv().await {
        let _ = session.cluster().broadcast(&text).await;
    }
}

#[tokio::test]
async fn a_broadcast_records_its_fan_out() {
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    const CONFIG: ConfigName<String, String> = ConfigName::new("metrics-chat");
    let app = Router::new()
        .crimson("/chat", CONFIG, chat)
        .layer(CrimsonLayer::new().config(CONFIG, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    let config = ("config", "metrics-chat");

    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(server.connect::<String, String>("/chat").await.unwrap());
    }
    conns[0].send(&"hi all".to_string()).await.unwrap();
    for conn in &mut conns {
        assert_eq!(conn.recv().await.unwrap(), "hi all");
    }
    // One broadcast reaching three sessions .
    let fan_out = find("crimson_broadcast_recipients", &[("target", "all")]);
    let sizes: Vec<f64> = fan_out
        .into_iter()
        .flat_map(|value| match value {
            Value::Histogram(values) => values,
            other => panic!("not a histogram: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [3.0], "fan-out sizes recorded");
    // One message in, three out (one per member).
    assert_eq!(counter("crimson_messages_received_total", &[config]), 1);
    assert_eq!(counter("crimson_messages_sent_total", &[config]), 3);
    assert_eq!(counter("crimson_bytes_sent_total", &[config]), 18);
    assert_eq!(
        counter("crimson_broadcast_failed_total", &[("target", "all")]),
        0
    );
}

/// Two nodes on one real `redis-server`: a room broadcast from one reaches a session of the
/// other, and the publish and its relay lag are recorded.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_broadcast_through_redis_records_its_publish_and_relay_lag() {
    use std::sync::Arc;

    use crimson_axum::cluster::redis::RedisCluster;
    use crimson_axum::cluster::{Cluster, SessionCluster};
    use crimson_axum::sessions::{MemorySink, SessionHandle, SessionId, SessionInfo};

    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let redis = crimson_axum::testing::RedisServer::start();
    let backend = async || {
        RedisCluster::builder(redis.url())
            .prefix("metrics")
            .build()
            .await
            .unwrap()
    };
    let a = Cluster::<String>::new(backend().await);
    let backend_b = backend().await;
    let b = Cluster::<String>::new(backend_b.clone());
    let id = SessionId::on_node(backend_b.node_id());
    let sink = Arc::new(MemorySink::new(16));
    let info = SessionInfo {
        id,
        connected_at: std::time::SystemTime::now(),
        remote_addr: None,
        path: "/metrics".into(),
        config: "metrics-redis".into(),
    };
    backend_b
        .add(SessionHandle::new(info, sink.clone()))
        .unwrap();
    b.join(id, "lobby").unwrap();
    for _ in 0..100 {
        if a.room_len("lobby").await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published_before = counter("crimson_redis_publishes_total", &[]);
    let reached = a
        .broadcast_room("lobby", &"over Redis".to_string())
        .await
        .unwrap();
    assert_eq!(reached.remote_nodes, 1, "{reached:?}");
    for _ in 0..100 {
        if !sink.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.len(), 1, "node B's session got the broadcast");
    assert!(counter("crimson_redis_publishes_total", &[]) > published_before);
    let lags: Vec<f64> = find("crimson_redis_relay_lag_seconds", &[])
        .into_iter()
        .flat_map(|value| match value {
            Value::Histogram(values) => values,
            other => panic!("not a histogram: {other:?}"),
        })
        .collect();
    assert!(!lags.is_empty(), "node B recorded the relay's lag");
    assert!(
        lags.iter().all(|lag| (0.0..5.0).contains(lag)),
        "a lag on loopback is between 0 and 5 s: {lags:?}"
    );
}

/// With history in Redis, resumes are answered by the node after reading Redis: each is
/// counted in `crimson_recoveries_total` by its outcome, as in memory.
#[cfg(feature = "redis")]
#[tokio::test]
async fn resumes_answered_from_redis_are_counted_by_outcome() {
    use std::sync::Arc;

    use crimson_axum::cluster::redis::RedisCluster;
    use crimson_axum::cluster::{Cluster, History, SessionCluster};
    use crimson_axum::protocol::{self, Kind, Position};
    use crimson_axum::sessions::{MemorySink, SessionHandle, SessionId, SessionInfo};

    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let redis = crimson_axum::testing::RedisServer::start();
    let backend = RedisCluster::builder(redis.url())
        .prefix("metrics-history")
        .history(History::new(10, Duration::from_secs(60)))
        .build()
        .await
        .unwrap();
    let cluster = Cluster::<String>::new(backend.clone());
    let id = SessionId::on_node(backend.node_id());
    let sink = Arc::new(MemorySink::new(64));
    let info = SessionInfo {
        id,
        connected_at: std::time::SystemTime::now(),
        remote_addr: None,
        path: "/metrics".into(),
        config: "metrics-history".into(),
    };
    backend
        .add(SessionHandle::new(info, sink.clone()).framing(true))
        .unwrap();
    cluster.broadcast(&"kept".to_string()).await.unwrap();
    // The publication comes back through Redis, behind its position.
    let mut epoch = None;
    for _ in 0..250 {
        for frame in sink.take() {
            if let Ok((Kind::Publication(at), _)) = protocol::read(frame.payload().as_ref()) {
                epoch = Some(at.epoch);
            }
        }
        if epoch.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let epoch = epoch.expect("the publication was delivered");
    let recovered = ("outcome", "recovered");
    let changed = ("outcome", "epoch_changed");
    let (recovered_before, changed_before) = (
        counter("crimson_recoveries_total", &[recovered]),
        counter("crimson_recoveries_total", &[changed]),
    );
    let messages_before = counter("crimson_recovered_messages_total", &[]);
    let at = |epoch: &str| Position {
        stream: "all".into(),
        epoch: epoch.into(),
        offset: 0,
    };
    backend.resume(id, at(&epoch));
    backend.resume(id, at("not-this-one"));
    wait_for(
        "crimson_recoveries_total",
        &[recovered],
        recovered_before + 1,
    )
    .await;
    wait_for("crimson_recoveries_total", &[changed], changed_before + 1).await;
    assert_eq!(
        counter("crimson_recovered_messages_total", &[]),
        messages_before + 1
    );
}

/// A message of two codecs (JSON, the default, and CBOR).
#[derive(serde::Serialize, serde::Deserialize, crimson_axum::CrimsonMessage)]
#[crimson(codecs("json", "cbor"))]
struct Note {
    text: String,
}

async fn notes(mut session: CrimsonSession<Note, Note>) {
    while let Some(note) = session.recv().await {
        if session.send(note).await.is_err() {
            break;
        }
    }
}

/// Traffic is counted under the codec each session speaks, and asking only for codecs the
/// route does not speak is counted as a `subprotocol` refusal.
#[tokio::test]
async fn traffic_is_counted_by_the_codec_each_session_chose() {
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    const CONFIG: ConfigName<Note, Note> = ConfigName::new("metrics-codecs");
    let app = Router::new()
        .crimson("/notes", CONFIG, notes)
        .layer(CrimsonLayer::new().config(CONFIG, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    let mut json = server.connect::<Note, Note>("/notes").await.unwrap();
    let mut cbor = server
        .connect_speaking::<Note, Note>("/notes", "cbor")
        .await
        .unwrap();
    for conn in [&mut json, &mut cbor] {
        conn.send(&Note { text: "hi".into() }).await.unwrap();
        assert_eq!(conn.recv().await.unwrap().text, "hi");
    }
    let refused = server
        .connect_speaking::<Note, Note>("/notes", "msgpack")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, crimson_axum::testing::TestError::Http { status: 400, body } if body.contains("crimson.msgpack")),
        "{refused}"
    );
    let config = ("config", "metrics-codecs");
    for (codec, frame) in [("JSON", "text"), ("CBOR", "binary")] {
        let labels = [config, ("codec", codec), ("frame", frame)];
        assert_eq!(
            counter("crimson_messages_received_total", &labels),
            1,
            "{codec}"
        );
        assert_eq!(
            counter("crimson_messages_sent_total", &labels),
            1,
            "{codec}"
        );
    }
    assert_eq!(
        counter(
            "crimson_handshakes_rejected_total",
            &[config, ("reason", "subprotocol")]
        ),
        1
    );
}
