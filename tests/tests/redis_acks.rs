//! Acknowledged broadcasts across nodes: `broadcast_with_ack` on one node of a `RedisCluster`
//! asks the sessions of every node (against a real `redis-server` started for each test),
//! answered by raw clients that speak the Crimson protocol frame by frame (JSON and CBOR),
//! refuse, stay silent, leave, or do not speak the protocol at all.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{AckStream, Cluster, ClusterError, Target};
use crimson_axum::sessions::SessionId;
use crimson_axum::testing::{RedisClusterServer, RedisServer, TestServer};
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonRequest, CrimsonSession,
    PayloadRef, RouterExt,
};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What the server asks.
#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs("json", "cbor"))]
struct Check {
    q: String,
}

/// What a client answers.
#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codecs("json", "cbor"))]
struct Checked {
    a: String,
}

impl CrimsonRequest for Check {
    type Response = Checked;
}

const ACK: ConfigName<Checked, Check> = ConfigName::new("ack");

/// Tells the client its session id (a plain message), then only listens.
async fn hello(mut session: CrimsonSession<Checked, Check>) {
    let q = session.id().to_string();
    session.send(Check { q }).await.unwrap();
    while session.recv().await.is_some() {}
}

/// A node serving [`hello`] at `/ack`, the protocol on.
async fn node(redis: &RedisServer) -> (TestServer, Cluster<Check>, RedisCluster) {
    node_at(&redis.url()).await
}

/// A node on the Redis (or Redis Cluster) at `url`.
async fn node_at(url: &str) -> (TestServer, Cluster<Check>, RedisCluster) {
    let backend = RedisCluster::builder(url)
        .prefix("acks")
        .heartbeat(Duration::from_millis(200))
        .max_backoff(Duration::from_millis(500))
        .broadcast_channels(1)
        .build()
        .await
        .unwrap();
    let cluster = Cluster::new(backend.clone());
    let config = CrimsonConfig::new().protocol(true).cluster(cluster.clone());
    let app = Router::new()
        .crimson("/ack", ACK, hello)
        .layer(CrimsonLayer::new().config(ACK, config));
    (TestServer::new(app).await, cluster, backend)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw client: its session's id, and how it speaks.
struct Client {
    ws: Ws,
    id: SessionId,
    cbor: bool,
}

/// How a client treats requests.
#[derive(Clone, Copy)]
enum Behaviour {
    Answer(&'static str),
    Refuse(u16, &'static str),
    Silent,
    /// Closes its connection when asked.
    Leave,
}

fn decode<T: CrimsonMessage>(body: &[u8], cbor: bool) -> T {
    if cbor {
        T::decode_in(PayloadRef::Binary(body), 1).unwrap()
    } else {
        T::decode(PayloadRef::Text(std::str::from_utf8(body).unwrap())).unwrap()
    }
}

/// A frame of `header` and `body` in the connection's frame kind.
fn frame(header: &str, body: &[u8], cbor: bool) -> Message {
    let mut bytes = format!("{header}\n").into_bytes();
    bytes.extend_from_slice(body);
    if cbor {
        Message::binary(bytes)
    } else {
        Message::text(String::from_utf8(bytes).unwrap())
    }
}

async fn next_bytes(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => return Some(bytes.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Connects asking for `protocol` (`None`: a plain client) and reads its session id.
async fn connect(server: &TestServer, protocol: Option<&str>) -> Client {
    let mut request = server.url("/ack").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(chosen.as_deref(), protocol);
    let cbor = protocol.is_some_and(|p| p.ends_with("cbor"));
    let hello = tokio::time::timeout(Duration::from_secs(5), next_bytes(&mut ws))
        .await
        .expect("the hello comes")
        .unwrap();
    let body = match protocol {
        Some(p) if p.starts_with("crimson.v1") => hello.strip_prefix(b"\n").unwrap().to_vec(),
        _ => hello,
    };
    let id = decode::<Check>(&body, cbor).q.parse().unwrap();
    Client { ws, id, cbor }
}

/// Runs `client` with `behaviour` in the background; how many requests it got.
fn serve(
    mut client: Client,
    behaviour: Behaviour,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let task = tokio::spawn(async move {
        while let Some(bytes) = next_bytes(&mut client.ws).await {
            let newline = bytes.iter().position(|b| *b == b'\n').expect("a header");
            let header = std::str::from_utf8(&bytes[..newline]).unwrap();
            let Some(id) = header.strip_prefix("req id=") else {
                continue;
            };
            // In the connection's own codec, made on its node.
            let request: Check = decode(&bytes[newline + 1..], client.cbor);
            assert_eq!(request.q, "there?");
            counter.fetch_add(1, Ordering::SeqCst);
            let reply = match behaviour {
                Behaviour::Answer(a) => {
                    let body = Checked { a: a.into() }
                        .encode_in(usize::from(client.cbor))
                        .unwrap();
                    frame(&format!("res id={id}"), body.as_bytes(), client.cbor)
                }
                Behaviour::Refuse(code, why) => frame(
                    &format!("err id={id} code={code}"),
                    why.as_bytes(),
                    client.cbor,
                ),
                Behaviour::Silent => continue,
                Behaviour::Leave => {
                    let _ = client.ws.close(None).await;
                    return;
                }
            };
            client.ws.send(reply).await.unwrap();
        }
    });
    (asked, task)
}

/// Every item of `answers`, by session (each session once), and how long it took to end.
async fn collect(
    mut answers: AckStream<Checked>,
) -> (BTreeMap<SessionId, String>, Duration, AckStream<Checked>) {
    let start = Instant::now();
    let mut seen = BTreeMap::new();
    while let Some((session, result)) =
        tokio::time::timeout(Duration::from_secs(10), answers.next())
            .await
            .expect("the stream ends")
    {
        let outcome = match result {
            Ok(checked) => format!("ok {}", checked.a),
            Err(err) => format!("err {err}"),
        };
        if let Some(first) = seen.insert(session, outcome.clone()) {
            panic!("{session} yielded twice: {first}, then {outcome}");
        }
    }
    (seen, start.elapsed(), answers)
}

const NO_PROTOCOL: &str =
    "err the session's client does not speak the Crimson protocol (crimson.v1)";

#[tokio::test]
async fn every_session_of_every_node_answers_once_or_says_why_not() {
    let redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis).await;
    let (b, cluster_b, backend_b) = node(&redis).await;
    let json = Some("crimson.v1.json");
    let a_yes = connect(&a, json).await;
    let a_plain = connect(&a, None).await;
    let b_yes = connect(&b, json).await;
    let b_cbor = connect(&b, Some("crimson.v1.cbor")).await;
    let b_no = connect(&b, json).await;
    let b_silent = connect(&b, json).await;
    let b_plain = connect(&b, None).await;
    let b_gone = connect(&b, json).await;
    let expected: BTreeMap<SessionId, String> = [
        (a_yes.id, "ok a".to_owned()),
        (a_plain.id, NO_PROTOCOL.to_owned()),
        (b_yes.id, "ok b".to_owned()),
        (b_cbor.id, "ok b in cbor".to_owned()),
        (b_no.id, "err the client refused (4009): no".to_owned()),
        (b_silent.id, "err no answer within 1s".to_owned()),
        (b_plain.id, NO_PROTOCOL.to_owned()),
        (
            b_gone.id,
            "err the session ended before it answered".to_owned(),
        ),
    ]
    .into();
    assert_eq!(a_yes.id.node(), cluster_a.node_id());
    assert_eq!(b_yes.id.node(), cluster_b.node_id());
    let ids = (a_yes.id, b_yes.id, b_cbor.id);
    let (a_asked, a_task) = serve(a_yes, Behaviour::Answer("a"));
    let (b_asked, b_task) = serve(b_yes, Behaviour::Answer("b"));
    let (cbor_asked, cbor_task) = serve(b_cbor, Behaviour::Answer("b in cbor"));
    let (no_asked, no_task) = serve(b_no, Behaviour::Refuse(4009, "no"));
    let (silent_asked, silent_task) = serve(b_silent, Behaviour::Silent);
    let (_, gone_task) = serve(b_gone, Behaviour::Leave);
    let mut tasks = vec![a_task, b_task, cbor_task, no_task, silent_task, gone_task];
    tasks.push(serve(a_plain, Behaviour::Silent).1);
    tasks.push(serve(b_plain, Behaviour::Silent).1);

    let timeout = Duration::from_secs(1);
    let question = Check { q: "there?".into() };
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::All, timeout)
        .await
        .unwrap();
    assert_eq!(answers.remote_nodes(), 1);
    let (seen, took, answers) = collect(answers).await;
    assert_eq!(seen, expected);
    assert_eq!(
        (answers.asked(), answers.silent_nodes(), answers.unasked()),
        (8, 0, 0)
    );
    // Node B answered for its silent session at its own timeout: the stream ended then,
    // not at its hard deadline (the timeout and a grace second).
    println!("all 8 answers (one timed out at 1 s) in {took:?}");
    assert!(took < timeout + Duration::from_millis(900), "{took:?}");
    assert_eq!(backend_a.open_acks(), 0);

    // A room: only its members are asked, on both nodes.
    let (a_id, b_id, cbor_id) = ids;
    cluster_a.join(a_id, "red").unwrap();
    cluster_b.join(b_id, "red").unwrap();
    cluster_b.join(cbor_id, "red").unwrap();
    let start = Instant::now();
    while cluster_a.room_len("red").await.unwrap() < 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "the room fills");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::Room("red".into()), timeout)
        .await
        .unwrap();
    let (seen, took, _) = collect(answers).await;
    let reds: BTreeMap<SessionId, String> = [
        (a_id, "ok a".to_owned()),
        (b_id, "ok b".to_owned()),
        (cbor_id, "ok b in cbor".to_owned()),
    ]
    .into();
    assert_eq!(seen, reds);
    assert!(took < timeout, "everyone answered: {took:?}");
    // From node B too, to all but one.
    let answers = cluster_b
        .broadcast_with_ack(&question, Target::RoomExcept("red".into(), b_id), timeout)
        .await
        .unwrap();
    let (seen, _, _) = collect(answers).await;
    let others: BTreeMap<SessionId, String> = [
        (a_id, "ok a".to_owned()),
        (cbor_id, "ok b in cbor".to_owned()),
    ]
    .into();
    assert_eq!(seen, others);
    let counts = [&a_asked, &b_asked, &cbor_asked, &no_asked, &silent_asked]
        .map(|c| c.load(Ordering::SeqCst));
    assert_eq!(counts, [3, 2, 3, 1, 1], "nobody outside the room was asked");
    assert_eq!((backend_a.open_acks(), backend_b.open_acks()), (0, 0));
    let (stats_a, stats_b) = (backend_a.stats(), backend_b.stats());
    for stats in [stats_a, stats_b] {
        assert_eq!(
            (
                stats.acks_unserved,
                stats.acks_ignored,
                stats.acks_silent_nodes,
                stats.malformed
            ),
            (0, 0, 0, 0),
            "{stats:?}"
        );
    }
    for task in tasks {
        task.abort();
    }
}

/// A subscriber that never answers: a raw RESP connection subscribed to `channel`.
fn mute_subscriber(redis: &RedisServer, channel: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    let command = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    );
    stream.write_all(command.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut confirmation = [0; 64];
    let n = stream.read(&mut confirmation).unwrap();
    assert!(
        String::from_utf8_lossy(&confirmation[..n]).contains("subscribe"),
        "subscribed"
    );
    stream
}

#[tokio::test]
async fn a_node_that_never_says_is_counted_and_forged_answers_are_ignored() {
    let redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis).await;
    let (_b, _cluster_b, _backend_b) = node(&redis).await;
    let (_, a_task) = serve(
        connect(&a, Some("crimson.v1.json")).await,
        Behaviour::Answer("a"),
    );
    // Something else listens on the broadcast channel and never answers (an older node).
    let _mute = mute_subscriber(&redis, "acks:{all:0}:ch");

    let timeout = Duration::from_millis(300);
    let question = Check { q: "there?".into() };
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::All, timeout)
        .await
        .unwrap();
    assert_eq!(answers.remote_nodes(), 2);
    assert_eq!(backend_a.open_acks(), 1);
    let (seen, took, answers) = collect(answers).await;
    assert_eq!(seen.values().collect::<Vec<_>>(), ["ok a"]);
    assert_eq!(answers.silent_nodes(), 1);
    println!("ended with a silent node after {took:?}");
    assert!(
        took >= timeout + Duration::from_millis(900),
        "at the deadline: {took:?}"
    );
    assert_eq!(backend_a.stats().acks_silent_nodes, 1);
    assert_eq!(backend_a.open_acks(), 0);

    // Anyone who can publish on node A's channel: an answer for an ask that is not open is
    // ignored and counted; a truncated one is malformed.
    let channel = format!("acks:{{node:{:016x}}}:ch", cluster_a.node_id());
    let forged_answers = |count: u32, cut: usize| {
        let mut message = vec![3, 1];
        message.extend_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes()); // origin
        message.extend_from_slice(&1u32.to_be_bytes()); // stream
        message.extend_from_slice(&1u64.to_be_bytes()); // seq
        message.extend_from_slice(&0u64.to_be_bytes()); // sent_at
        message.push(7); // answers
        message.extend_from_slice(&42u64.to_be_bytes()); // ask
        message.extend_from_slice(&count.to_be_bytes());
        for n in 0..u64::from(count) {
            message.extend_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
            message.extend_from_slice(&n.to_be_bytes());
            message.extend_from_slice(&[0, 2]); // codec 0, timed out
        }
        message.truncate(message.len() - cut);
        message
    };
    assert_eq!(
        redis.command(&[b"PUBLISH", channel.as_bytes(), &forged_answers(3, 0)]),
        ":1"
    );
    assert_eq!(
        redis.command(&[b"PUBLISH", channel.as_bytes(), &forged_answers(3, 1)]),
        ":1"
    );
    let start = Instant::now();
    while backend_a.stats().malformed == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the forged messages arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend_a.stats().acks_ignored, 3);
    assert_eq!(backend_a.stats().malformed, 1);
    a_task.abort();
}

#[tokio::test]
async fn the_open_asks_table_empties_after_many_asks_ended_or_dropped() {
    let redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis).await;
    let (b, _cluster_b, backend_b) = node(&redis).await;
    let (a_asked, a_task) = serve(
        connect(&a, Some("crimson.v1.json")).await,
        Behaviour::Answer("a"),
    );
    let (b_asked, b_task) = serve(
        connect(&b, Some("crimson.v1.cbor")).await,
        Behaviour::Answer("b"),
    );
    let question = Check { q: "there?".into() };
    let rounds = 200;
    for n in 0..rounds {
        let answers = cluster_a
            .broadcast_with_ack(&question, Target::All, Duration::from_secs(5))
            .await
            .unwrap();
        if n % 2 == 0 {
            // Dropped at once: what comes later is ignored.
            drop(answers);
            continue;
        }
        let (seen, _, _) = collect(answers).await;
        let mut outcomes: Vec<&str> = seen.values().map(String::as_str).collect();
        outcomes.sort_unstable();
        assert_eq!(outcomes, ["ok a", "ok b"]);
    }
    assert_eq!(backend_a.open_acks(), 0);
    // Every session was asked every time, and node B served every ask.
    let start = Instant::now();
    while b_asked.load(Ordering::SeqCst) < rounds {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node B serves every ask"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a_asked.load(Ordering::SeqCst), rounds);
    assert_eq!(backend_b.stats().acks_unserved, 0);
    println!(
        "{rounds} asks, half dropped: {} late answers ignored",
        backend_a.stats().acks_ignored
    );
    a_task.abort();
    b_task.abort();
}

#[tokio::test]
async fn with_redis_unavailable_it_fails_at_once_and_nobody_is_asked() {
    let mut redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis).await;
    let (asked, task) = serve(
        connect(&a, Some("crimson.v1.json")).await,
        Behaviour::Answer("a"),
    );
    redis.stop();
    let start = Instant::now();
    while backend_a.is_connected() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the outage is noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let question = Check { q: "there?".into() };
    let start = Instant::now();
    let result = cluster_a
        .broadcast_with_ack(&question, Target::All, Duration::from_secs(1))
        .await;
    let took = start.elapsed();
    match result {
        Err(err @ ClusterError::Unavailable { .. }) => {
            assert!(
                err.to_string()
                    .starts_with("the cluster backend is unavailable"),
                "{err}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(took < Duration::from_millis(100), "at once: {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(asked.load(Ordering::SeqCst), 0, "nobody was asked");
    assert_eq!(backend_a.open_acks(), 0);
    task.abort();
}

/// On a Redis Cluster (sharded pub/sub, each channel on its shard): the same, and a node
/// that hears its own request is not counted as one that got it.
#[tokio::test]
async fn across_a_redis_cluster_too() {
    let redis = RedisClusterServer::start();
    let urls = redis.urls();
    let (a, cluster_a, backend_a) = node_at(&urls[0]).await;
    let (b, _cluster_b, backend_b) = node_at(&urls[4]).await;
    assert!(backend_a.is_redis_cluster() && backend_b.is_redis_cluster());
    let (_, a_task) = serve(
        connect(&a, Some("crimson.v1.json")).await,
        Behaviour::Answer("a"),
    );
    let (_, b_task) = serve(
        connect(&b, Some("crimson.v1.cbor")).await,
        Behaviour::Answer("b"),
    );
    let timeout = Duration::from_secs(2);
    let question = Check { q: "there?".into() };
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::All, timeout)
        .await
        .unwrap();
    assert_eq!(answers.remote_nodes(), 1, "node B only");
    let (seen, took, answers) = collect(answers).await;
    let mut outcomes: Vec<&str> = seen.values().map(String::as_str).collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["ok a", "ok b"]);
    assert_eq!(answers.silent_nodes(), 0);
    assert!(took < timeout, "everyone answered: {took:?}");
    assert_eq!(backend_a.open_acks(), 0);
    a_task.abort();
    b_task.abort();
}

/// Adds `n` sessions that cannot be asked (in-memory sinks, no protocol) to `backend`.
fn add_sinks(backend: &RedisCluster, n: usize) {
    use crimson_axum::cluster::SessionCluster;
    use crimson_axum::sessions::{MemorySink, SessionHandle, SessionInfo};
    for k in 0..n {
        let info = SessionInfo {
            id: SessionId::on_node(backend.node_id()),
            connected_at: std::time::SystemTime::now(),
            remote_addr: None,
            path: format!("/sink/{k}"),
            config: "ack".into(),
        };
        backend
            .add(SessionHandle::new(info, Arc::new(MemorySink::new(4))))
            .unwrap();
    }
}

/// A node lists at most `max_payload / 16` sessions for one ask (the rest are counted on
/// both sides, not asked), and relays answers in messages of at most `max_payload`.
#[tokio::test]
async fn sessions_past_one_list_are_counted_not_asked() {
    let redis = RedisServer::start();
    let (_a, cluster_a, _backend_a) = node(&redis).await;
    let backend_b = RedisCluster::builder(redis.url())
        .prefix("acks")
        .broadcast_channels(1)
        .max_payload(200)
        .build()
        .await
        .unwrap();
    add_sinks(&backend_b, 15);
    let question = Check { q: "there?".into() };
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::All, Duration::from_secs(5))
        .await
        .unwrap();
    let (seen, took, answers) = collect(answers).await;
    // 200 / 16 = 12 listed (each answers that it cannot be asked), 3 not.
    assert_eq!(seen.len(), 12);
    assert!(
        seen.values().all(|outcome| outcome == NO_PROTOCOL),
        "{seen:?}"
    );
    assert_eq!((answers.asked(), answers.unasked()), (12, 3));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(backend_b.stats().acks_unserved, 3);
}

/// Past `MAX_SERVING` asks of other nodes at once, a node asks nobody and says so for each
/// session.
#[tokio::test]
async fn a_busy_node_answers_for_each_session_that_it_did_not_ask() {
    use crimson_axum::cluster::redis::MAX_SERVING;
    let redis = RedisServer::start();
    let (_a, cluster_a, _backend_a) = node(&redis).await;
    let (b, _cluster_b, backend_b) = node(&redis).await;
    let (asked, task) = serve(
        connect(&b, Some("crimson.v1.json")).await,
        Behaviour::Silent,
    );
    let question = Check { q: "there?".into() };
    let mut waiting = Vec::new();
    for _ in 0..MAX_SERVING {
        let answers = cluster_a
            .broadcast_with_ack(&question, Target::All, Duration::from_secs(10))
            .await
            .unwrap();
        waiting.push(answers);
    }
    let start = Instant::now();
    while asked.load(Ordering::SeqCst) < MAX_SERVING {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node B serves 256 asks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = cluster_a
        .broadcast_with_ack(&question, Target::All, Duration::from_secs(10))
        .await
        .unwrap();
    let (seen, took, _) = collect(answers).await;
    assert_eq!(
        seen.values().collect::<Vec<_>>(),
        [
            "err the session's node: already serving 256 acknowledged broadcasts of other \
             nodes, so it did not ask the session"
        ]
    );
    assert!(took < Duration::from_secs(2), "at once: {took:?}");
    assert_eq!(asked.load(Ordering::SeqCst), MAX_SERVING);
    assert_eq!(backend_b.stats().acks_unserved, 1);
    drop(waiting);
    task.abort();
}
