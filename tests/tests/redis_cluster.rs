//! Many nodes as one: `RedisCluster` against a real `redis-server` started for each test.
//! A missing `redis-server` fails these tests (see `crimson_axum::testing::RedisServer`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, ClusterError, LocalCluster, SessionCluster};
use crimson_axum::sessions::{MemorySink, SessionHandle, SessionId, SessionInfo};
use crimson_axum::testing::{RedisServer, TestConnection, TestError, TestServer};
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

/// A chat node whose clients speak a tiny command language:
/// `join:ROOM`, `room:ROOM:TEXT`, `to:ID:TEXT`, `id?`, or any text to broadcast.
async fn commands(mut session: CrimsonSession<String, String>) {
    let cluster = session.cluster().clone();
    let me = session.id();
    while let Some(line) = session.recv().await {
        if let Some(room) = line.strip_prefix("join:") {
            cluster.join(me, room).unwrap();
            let _ = session.send(format!("joined {room}")).await;
        } else if let Some(rest) = line.strip_prefix("room:") {
            let (room, text) = rest.split_once(':').unwrap();
            cluster
                .broadcast_room(room, &text.to_owned())
                .await
                .unwrap();
        } else if let Some(rest) = line.strip_prefix("to:") {
            let (id, text) = rest.split_once(':').unwrap();
            let result = cluster.send_to(id.parse().unwrap(), &text.to_owned()).await;
            let _ = session.send(format!("sent: {}", result.is_ok())).await;
        } else if line == "id?" {
            let _ = session.send(me.to_string()).await;
        } else {
            cluster.broadcast(&line).await.unwrap();
        }
    }
}

async fn node(redis: &RedisServer, prefix: &str) -> (TestServer, Cluster<String>, RedisCluster) {
    let backend = RedisCluster::builder(redis.url())
        .prefix(prefix)
        .heartbeat(Duration::from_millis(200))
        .max_backoff(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let cluster = Cluster::new(backend.clone());
    let app = Router::new()
        .crimson("/chat", CHAT, commands)
        .layer(CrimsonLayer::new().config(CHAT, CrimsonConfig::new().cluster(cluster.clone())));
    (TestServer::new(app).await, cluster, backend)
}

/// A client of `server`, the `expected`-th session of its node: `connect` returns once the
/// session is in its cluster.
async fn client(
    server: &TestServer,
    cluster: &Cluster<String>,
    expected: usize,
) -> TestConnection<String, String> {
    let conn = server.connect::<String, String>("/chat").await.unwrap();
    assert_eq!(
        cluster.node().len(),
        expected,
        "the session joined its cluster"
    );
    conn
}

async fn eventually(what: &str, bound: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

fn ghost_info(node: u64, path: String) -> SessionInfo {
    SessionInfo {
        id: SessionId::on_node(node),
        connected_at: std::time::SystemTime::now(),
        remote_addr: None,
        path,
        config: "chat".into(),
    }
}

#[tokio::test]
async fn broadcasts_rooms_and_targeted_sends_cross_nodes() {
    let redis = RedisServer::start();
    let (a, cluster_a, _) = node(&redis, "app").await;
    let (b, cluster_b, backend_b) = node(&redis, "app").await;
    let mut a1 = client(&a, &cluster_a, 1).await;
    let mut b1 = client(&b, &cluster_b, 1).await;
    let mut b2 = client(&b, &cluster_b, 2).await;

    a1.send(&"hello everyone".into()).await.unwrap();
    for conn in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(conn.recv().await.unwrap(), "hello everyone");
    }

    a1.send(&"join:red".into()).await.unwrap();
    assert_eq!(a1.recv().await.unwrap(), "joined red");
    b1.send(&"join:red".into()).await.unwrap();
    assert_eq!(b1.recv().await.unwrap(), "joined red");
    // A join counts cluster-wide once written, and its node is subscribed by then.
    eventually(
        "both reds are counted",
        Duration::from_secs(5),
        async || cluster_b.room_len("red").await.unwrap() == 2,
    )
    .await;
    b2.send(&"room:red:only reds".into()).await.unwrap();
    assert_eq!(a1.recv().await.unwrap(), "only reds");
    assert_eq!(b1.recv().await.unwrap(), "only reds");

    // A targeted send from node A to a session on node B.
    b2.send(&"id?".into()).await.unwrap();
    let b2_id = b2.recv().await.unwrap();
    a1.send(&format!("to:{b2_id}:psst")).await.unwrap();
    assert_eq!(a1.recv().await.unwrap(), "sent: true");
    assert_eq!(
        b2.recv().await.unwrap(),
        "psst",
        "b2 got neither the room message nor anything else first"
    );

    // A session on a node that is gone: an error, not silence.
    let nowhere = SessionId::from_parts(0x0123_4567_89ab_cdef, 1);
    let err = cluster_a.send_to(nowhere, &"boo".into()).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no live session has id {nowhere}"));
    // A session that has left a live node: that node counts the miss, and says so.
    let ghost = SessionId::from_parts(b2_id.parse::<SessionId>().unwrap().node(), 999_999);
    cluster_a.send_to(ghost, &"boo".into()).await.unwrap();
    eventually(
        "node B counts the undeliverable relay",
        Duration::from_secs(5),
        async || backend_b.relay_failures() == 1,
    )
    .await;

    // Binary payloads cross as bytes.
    let bytes_cluster: Cluster<crimson_axum::Bytes> =
        Cluster::from_arc(cluster_a.backend().clone());
    let delivery = bytes_cluster
        .broadcast(&crimson_axum::Bytes::from_static(&[0, 159, 255]))
        .await
        .unwrap();
    assert_eq!((delivery.delivered, delivery.remote_nodes), (1, 1));
}

#[tokio::test]
async fn counts_span_nodes_and_a_crashed_nodes_sessions_expire() {
    let redis = RedisServer::start();
    let (a, cluster_a, _) = node(&redis, "app").await;
    let _a1 = client(&a, &cluster_a, 1).await;

    // A node that "crashes": sessions registered, then its tasks stop without cleanup.
    let crashing = RedisCluster::builder(redis.url())
        .prefix("app")
        .heartbeat(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    for n in 0..3 {
        let info = ghost_info(crashing.node_id(), format!("/ghost/{n}"));
        crashing
            .add(SessionHandle::new(info, Arc::new(MemorySink::new(4))))
            .unwrap();
    }
    eventually(
        "4 sessions cluster-wide",
        Duration::from_secs(5),
        async || cluster_a.count().await.unwrap() == 4,
    )
    .await;
    drop(crashing);
    let gone = eventually(
        "the crashed node's sessions expire",
        Duration::from_secs(5),
        async || cluster_a.count().await.unwrap() == 1,
    )
    .await;
    println!("a crashed node's sessions left the count after {gone:?} (heartbeat 200 ms)");
}

#[tokio::test]
async fn prefixes_keep_apps_apart() {
    let redis = RedisServer::start();
    let (x, cluster_x, _) = node(&redis, "app-x").await;
    let (y, cluster_y, _) = node(&redis, "app-y").await;
    let mut x1 = client(&x, &cluster_x, 1).await;
    let mut y1 = client(&y, &cluster_y, 1).await;
    x1.send(&"for x only".into()).await.unwrap();
    assert_eq!(x1.recv().await.unwrap(), "for x only");
    y1.set_timeout(Duration::from_millis(300));
    assert!(matches!(y1.recv().await, Err(TestError::Timeout)));
    assert_eq!(cluster_y.count().await.unwrap(), 1);
}

#[tokio::test]
async fn an_outage_keeps_local_delivery_reports_errors_and_recovers() {
    let mut redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis, "app").await;
    let (b, cluster_b, backend_b) = node(&redis, "app").await;
    let mut a1 = client(&a, &cluster_a, 1).await;
    let mut b1 = client(&b, &cluster_b, 1).await;

    redis.stop();
    eventually(
        "node A notices the outage",
        Duration::from_secs(5),
        async || !backend_a.is_connected(),
    )
    .await;
    match cluster_a.broadcast(&"during the outage".into()).await {
        Err(ClusterError::Unavailable { local, .. }) => assert_eq!(local.delivered, 1),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        a1.recv().await.unwrap(),
        "during the outage",
        "local delivery goes on"
    );
    assert!(
        cluster_a.count().await.is_err(),
        "cluster-wide counts are an error, not a guess"
    );

    redis.restart();
    let restarted = Instant::now();
    // Bound: the nodes retry at most every 500 ms (max_backoff) and connect in well under a
    // second; allow 5 s for a loaded machine.
    eventually(
        "both nodes resubscribe",
        Duration::from_secs(5),
        async || backend_a.is_connected() && backend_b.is_connected(),
    )
    .await;
    let mut n = 0;
    b1.set_timeout(Duration::from_millis(100));
    loop {
        n += 1;
        let _ = cluster_a.broadcast(&format!("after {n}")).await;
        if let Ok(text) = b1.recv().await {
            assert!(text.starts_with("after "), "{text}");
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "cross-node delivery did not resume"
        );
    }
    println!(
        "cross-node broadcasts resumed {:?} after Redis restarted",
        restarted.elapsed()
    );
    // Presence is rewritten after the restart, so counts recover too.
    eventually(
        "presence is rewritten",
        Duration::from_secs(5),
        async || cluster_a.count().await.is_ok_and(|n| n == 2),
    )
    .await;
}

#[tokio::test]
async fn a_node_limit_and_a_bad_url_are_clear() {
    let redis = RedisServer::start();
    let limited = RedisCluster::builder(redis.url())
        .local(LocalCluster::builder().max_connections(0))
        .build()
        .await
        .unwrap();
    let info = ghost_info(limited.node_id(), "/".into());
    let err = limited
        .add(SessionHandle::new(info, Arc::new(MemorySink::new(1))))
        .unwrap_err();
    assert_eq!(err.to_string(), "connection limit reached (0 sessions)");

    let err = RedisCluster::builder("http://nope")
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`http://nope` is not a Redis URL"),
        "{err}"
    );
    let dead = RedisServer::start();
    let url = dead.url();
    drop(dead);
    let err = RedisCluster::builder(url.clone())
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to Redis at {url}")),
        "{err}"
    );
}

/// Adds `n` sessions (in-memory sinks) to `backend`; their ids.
fn add_sessions(backend: &RedisCluster, n: usize) -> Vec<SessionId> {
    (0..n)
        .map(|k| {
            let info = ghost_info(backend.node_id(), format!("/s/{k}"));
            let id = info.id;
            backend
                .add(SessionHandle::new(info, Arc::new(MemorySink::new(4))))
                .unwrap();
            id
        })
        .collect()
}

async fn sorted_members(cluster: &Cluster<String>, room: &str) -> Vec<SessionId> {
    let mut members = cluster.room_members(room).await.unwrap();
    members.sort();
    members
}

#[tokio::test]
async fn rooms_span_nodes_and_a_crashed_nodes_members_expire() {
    let mut redis = RedisServer::start();
    let (_a, cluster_a, backend_a) = node(&redis, "app").await;
    let a = add_sessions(&backend_a, 3);
    let crashing = RedisCluster::builder(redis.url())
        .prefix("app")
        .heartbeat(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let b = add_sessions(&crashing, 2);

    for id in [a[0], a[1]] {
        cluster_a.join(id, "red").unwrap();
    }
    for id in &b {
        crashing.join(*id, "red").unwrap();
    }
    cluster_a.join(a[2], "blue").unwrap();
    let mut reds = vec![a[0], a[1], b[0], b[1]];
    reds.sort();
    eventually(
        "both nodes' red members are listed",
        Duration::from_secs(5),
        async || sorted_members(&cluster_a, "red").await == reds,
    )
    .await;
    assert_eq!(cluster_a.room_len("red").await.unwrap(), 4);
    assert_eq!(cluster_a.room_len("blue").await.unwrap(), 1);
    assert_eq!(cluster_a.room_len("green").await.unwrap(), 0);
    let b_view: Cluster<String> = Cluster::new(crashing.clone());
    assert_eq!(
        sorted_members(&b_view, "red").await,
        reds,
        "every node sees the same"
    );

    // Leaving, and a session that goes away, leave the room on every node's count.
    cluster_a.leave(a[0], "red");
    backend_a.remove(a[1]);
    eventually("leaves are written", Duration::from_secs(5), async || {
        cluster_a.room_len("red").await.unwrap() == 2
    })
    .await;

    // Redis restarts empty: every node rewrites its room members.
    redis.restart();
    let restarted = Instant::now();
    eventually(
        "room presence is rewritten after Redis restarts",
        Duration::from_secs(10),
        async || {
            cluster_a.room_len("red").await.is_ok_and(|n| n == 2)
                && cluster_a.room_len("blue").await.is_ok_and(|n| n == 1)
        },
    )
    .await;
    println!(
        "room presence rewritten {:?} after Redis restarted",
        restarted.elapsed()
    );

    // A crash: the node's tasks stop without cleanup; its members expire with its heartbeat.
    drop(b_view);
    drop(crashing);
    let gone = eventually(
        "the crashed node's room members expire",
        Duration::from_secs(5),
        async || cluster_a.room_len("red").await.unwrap() == 0,
    )
    .await;
    println!("a crashed node's room members left after {gone:?} (heartbeat 200 ms)");
    assert_eq!(cluster_a.room_members("red").await.unwrap(), vec![]);
    assert_eq!(cluster_a.room_len("blue").await.unwrap(), 1);
}

#[tokio::test]
async fn a_hung_redis_is_found_within_a_second_and_never_holds_up_local_delivery() {
    let redis = RedisServer::start();
    let (a, cluster_a, backend_a) = node(&redis, "app").await;
    let (b, cluster_b, backend_b) = node(&redis, "app").await;
    let mut a1 = client(&a, &cluster_a, 1).await;
    let mut b1 = client(&b, &cluster_b, 1).await;
    a1.send(&"warm-up".into()).await.unwrap();
    assert_eq!(b1.recv().await.unwrap(), "warm-up");
    assert_eq!(a1.recv().await.unwrap(), "warm-up");

    // Watches for the moment node A finds Redis unavailable.
    let watched = backend_a.clone();
    let detection = tokio::spawn(async move {
        let start = Instant::now();
        while watched.is_connected() && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    });
    redis.pause();
    let paused = Instant::now();
    // A broadcast while the hang is not yet noticed: local delivery does not wait for the
    // publish, which fails within its bounded wait.
    let sender = cluster_a.clone();
    let broadcast = tokio::spawn(async move {
        (
            sender.broadcast(&"in the hang".into()).await,
            Instant::now(),
        )
    });
    assert_eq!(a1.recv().await.unwrap(), "in the hang");
    let local = paused.elapsed();
    let (result, returned) = broadcast.await.unwrap();
    match result {
        Err(ClusterError::Unavailable { local, .. }) => assert_eq!(local.delivered, 1),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let waited = returned - paused;

    let detected = detection.await.unwrap();
    assert!(!backend_a.is_connected(), "not found within 5 s");
    // Found: every later cross-node operation fails at once.
    let start = Instant::now();
    for n in 0..20 {
        match cluster_a.broadcast(&format!("fast {n}")).await {
            Err(ClusterError::Unavailable { local, .. }) => assert_eq!(local.delivered, 1),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(a1.recv().await.unwrap(), format!("fast {n}"));
    }
    let per_failed_broadcast = start.elapsed() / 20;
    println!(
        "hung Redis: local delivery after {local:?}, first broadcast failed after {waited:?}, \
         hang detected after {detected:?}, then a broadcast fails in {per_failed_broadcast:?} \
         (with local delivery)"
    );
    assert!(
        local < Duration::from_millis(300),
        "local delivery waited {local:?}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "the publish waited {waited:?}"
    );
    assert!(
        detected < Duration::from_secs(3),
        "detected after {detected:?}"
    );
    assert!(per_failed_broadcast < Duration::from_millis(100));
    assert!(
        backend_a.stats().publish_failures >= 21,
        "{:?}",
        backend_a.stats()
    );
    assert!(cluster_a.count().await.is_err(), "counts fail fast too");

    redis.resume();
    let resumed = Instant::now();
    eventually(
        "both nodes find Redis again",
        Duration::from_secs(5),
        async || backend_a.is_connected() && backend_b.is_connected(),
    )
    .await;
    // The publish frozen in Redis's socket may still arrive; then the new ones do.
    cluster_a.broadcast(&"after".into()).await.unwrap();
    loop {
        let text = b1.recv().await.unwrap();
        if text == "after" {
            break;
        }
        assert_eq!(
            text, "in the hang",
            "only the frozen publish may come first"
        );
    }
    println!(
        "cross-node delivery back {:?} after Redis resumed",
        resumed.elapsed()
    );
}

/// A broadcast to all in Crimson's wire format (version 2, see crimson-core's
/// `cluster::redis`), as any client that can write to Redis could publish it: the `seq`-th
/// message of its origin.
fn forged_broadcast(origin: u64, seq: u64, binary: bool, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![2, u8::from(binary)];
    message.extend_from_slice(&origin.to_be_bytes());
    message.extend_from_slice(&7u32.to_be_bytes()); // stream
    message.extend_from_slice(&seq.to_be_bytes());
    message.push(0); // target: all
    message.extend_from_slice(payload);
    message
}

#[tokio::test]
async fn oversized_undecodable_and_foreign_relays_are_dropped_and_counted() {
    use crimson_tests::messages::ChatResponse;

    let redis = RedisServer::start();
    let backend = RedisCluster::builder(redis.url())
        .prefix("app")
        .max_payload(64 * 1024)
        .check_payloads::<ChatResponse>()
        .broadcast_channels(1)
        .build()
        .await
        .unwrap();
    let info = ghost_info(backend.node_id(), "/chat".into());
    let sink = Arc::new(MemorySink::new(16));
    backend.add(SessionHandle::new(info, sink.clone())).unwrap();
    let publish = |message: &[u8]| {
        let reply = redis.command(&[b"PUBLISH", b"app:{all:0}:ch", message]);
        assert_eq!(reply, ":1", "the node is subscribed");
    };
    let elsewhere = 0x0123_4567_89ab_cdef;

    publish(&forged_broadcast(
        elsewhere,
        1,
        false,
        &vec![b' '; 20 << 20],
    ));
    let just_over = vec![b' '; 64 * 1024 + 1];
    publish(&forged_broadcast(elsewhere, 2, false, &just_over));
    let not_a_response = br#"{"not":"a chat response"}"#;
    publish(&forged_broadcast(elsewhere, 3, false, not_a_response));
    publish(&forged_broadcast(elsewhere, 4, true, &[0xff, 0xfe]));
    publish(b"hello from redis-cli");
    let good = br#"{"text":"hi","from":"elsewhere"}"#;
    // Seq 5 is never published: the receiver counts it as lost.
    publish(&forged_broadcast(elsewhere, 6, false, good));
    eventually(
        "the good message arrives",
        Duration::from_secs(5),
        async || sink.len() == 1,
    )
    .await;
    let stats = backend.stats();
    println!("{stats:?}");
    assert_eq!(
        (
            stats.oversized,
            stats.undecodable,
            stats.malformed,
            stats.lost
        ),
        (2, 2, 1, 1),
        "{stats:?}"
    );

    // The sender side: a payload over max_payload is delivered locally and refused for
    // Redis, with an error that says why.
    let cluster: Cluster<String> = Cluster::new(backend.clone());
    let big = "x".repeat(64 * 1024 + 1);
    match cluster.broadcast(&big).await {
        Err(err @ ClusterError::Unavailable { local, .. }) => {
            assert_eq!(local.delivered, 1);
            assert!(
                err.to_string().contains("over max_payload (65536 bytes)"),
                "{err}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(sink.len(), 2);
    assert_eq!(backend.stats().publish_failures, 1);
}
