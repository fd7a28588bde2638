//! Many nodes as one over a real Redis Cluster (three masters, one replica each, started by
//! each test on free loopback ports): sharded pub/sub, presence on the shards, and a master
//! killed mid-traffic. A missing `redis-server` fails these tests (see
//! `crimson_axum::testing::RedisClusterServer`). Bounded: each test well under 30 s.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, ClusterError, SessionCluster};
use crimson_axum::testing::{RedisClusterServer, TestConnection, TestServer};
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

/// Clients speak: `join:ROOM`, `id?`; anything else is only received.
async fn session(mut session: CrimsonSession<String, String>) {
    let cluster = session.cluster().clone();
    let me = session.id();
    while let Some(line) = session.recv().await {
        if let Some(room) = line.strip_prefix("join:") {
            cluster.join(me, room).unwrap();
            let _ = session.send(format!("joined {room}")).await;
        } else if line == "id?" {
            let _ = session.send(me.to_string()).await;
        }
    }
}

async fn node(spec: &str, broadcast_channels: u16) -> (TestServer, Cluster<String>, RedisCluster) {
    let backend = RedisCluster::builder(spec)
        .prefix("app")
        .heartbeat(Duration::from_millis(300))
        .max_backoff(Duration::from_millis(300))
        .broadcast_channels(broadcast_channels)
        .build()
        .await
        .unwrap();
    let cluster = Cluster::new(backend.clone());
    let app = Router::new()
        .crimson("/chat", CHAT, session)
        .layer(CrimsonLayer::new().config(CHAT, CrimsonConfig::new().cluster(cluster.clone())));
    (TestServer::new(app).await, cluster, backend)
}

async fn eventually(what: &str, bound: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn join(conn: &mut TestConnection<String, String>, room: &str) {
    conn.send(&format!("join:{room}")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), format!("joined {room}"));
}

#[tokio::test]
async fn broadcasts_rooms_and_sends_cross_nodes_on_sharded_channels() {
    let redis = RedisClusterServer::start();
    let seeds = format!(
        "redis+cluster://{}",
        redis
            .urls()
            .iter()
            .take(2)
            .map(|u| u.trim_start_matches("redis://"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (a, cluster_a, backend_a) = node(&seeds, 16).await;
    // One plain URL of any node is enough: the node finds out it is a cluster.
    let (b, cluster_b, backend_b) = node(&redis.urls()[3], 16).await;
    let (c, cluster_c, _backend_c) = node(&redis.urls()[5], 16).await;
    assert!(backend_a.is_redis_cluster() && backend_b.is_redis_cluster());
    let mut a1 = a.connect::<String, String>("/chat").await.unwrap();
    let mut b1 = b.connect::<String, String>("/chat").await.unwrap();
    let mut c1 = c.connect::<String, String>("/chat").await.unwrap();

    // Everyone, from each node.
    for (n, cluster) in [&cluster_a, &cluster_b, &cluster_c].into_iter().enumerate() {
        let text = format!("to all from node {n}");
        let delivery = cluster.broadcast(&text).await.unwrap();
        assert_eq!((delivery.delivered, delivery.remote_nodes), (1, 2), "{n}");
        for conn in [&mut a1, &mut b1, &mut c1] {
            assert_eq!(conn.recv().await.unwrap(), text);
        }
    }

    // A room on its own shard channel: only nodes with members get it.
    join(&mut a1, "red").await;
    join(&mut c1, "red").await;
    eventually(
        "two reds counted across the cluster",
        Duration::from_secs(5),
        async || cluster_b.room_len("red").await.unwrap() == 2,
    )
    .await;
    let delivery = cluster_b
        .broadcast_room("red", &"reds only".into())
        .await
        .unwrap();
    assert_eq!((delivery.delivered, delivery.remote_nodes), (0, 2));
    assert_eq!(a1.recv().await.unwrap(), "reds only");
    assert_eq!(c1.recv().await.unwrap(), "reds only");
    let mut members = cluster_b.room_members("red").await.unwrap();
    members.sort();
    assert_eq!(members.len(), 2);
    assert_eq!(cluster_a.count().await.unwrap(), 3);

    // A targeted send to a session on another node.
    c1.send(&"id?".into()).await.unwrap();
    let c1_id = c1.recv().await.unwrap().parse().unwrap();
    cluster_a.send_to(c1_id, &"psst".into()).await.unwrap();
    assert_eq!(c1.recv().await.unwrap(), "psst");
    b1.set_timeout(Duration::from_millis(200));
    assert!(b1.recv().await.is_err(), "b1 got nothing it should not");

    // Where things live: a room's channel and presence share a slot; the broadcast
    // channels spread over every master.
    let master = redis.master_of("app:{room:red}:ch");
    assert_eq!(
        redis.master_of(&format!(
            "app:{{room:red}}:node:{:016x}",
            backend_a.node_id()
        )),
        master
    );
    let masters: HashSet<u16> = (0..16)
        .map(|k| redis.master_of(&format!("app:{{all:{k}}}:ch")))
        .collect();
    assert_eq!(masters.len(), 3, "16 broadcast channels over 3 masters");
    let stats = backend_b.stats();
    assert_eq!((stats.lost, stats.malformed), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn a_master_killed_mid_traffic_delivery_resumes_and_every_loss_is_counted() {
    let mut redis = RedisClusterServer::start();
    let spec = redis.urls()[0].clone();
    // One broadcast channel, so that the test knows (and kills) its shard.
    let (_a, cluster_a, backend_a) = node(&spec, 1).await;
    let (b, _cluster_b, backend_b) = node(&spec, 1).await;
    let mut b1 = b.connect::<String, String>("/chat").await.unwrap();
    let victim = redis.master_of("app:{all:0}:ch");
    // A room whose channel lives on the same master.
    let room = (0..)
        .map(|n| format!("r{n}"))
        .find(|room| redis.master_of(&format!("app:{{room:{room}}}:ch")) == victim)
        .unwrap();
    join(&mut b1, &room).await;
    eventually("b1's room is counted", Duration::from_secs(5), async || {
        cluster_a.room_len(&room).await.unwrap() == 1
    })
    .await;

    // Node A sends every 20 ms: to all, then to the room; B counts what arrives.
    let receiver = tokio::spawn(async move {
        let mut got = BTreeSet::new();
        b1.set_timeout(Duration::from_secs(20));
        while let Ok(text) = b1.recv().await {
            if text == "end" {
                break;
            }
            got.insert(text);
        }
        got
    });
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    let mut killed_at = None;
    let mut back_after = None;
    for n in 0.. {
        if n == 25 {
            redis.kill(victim);
            killed_at = Some(Instant::now());
        }
        for (kind, text) in [("all", format!("all {n}")), ("room", format!("room {n}"))] {
            let began = Instant::now();
            let result = if kind == "all" {
                cluster_a.broadcast(&text).await
            } else {
                cluster_a.broadcast_room(&room, &text).await
            };
            slowest = slowest.max(began.elapsed());
            match result {
                Ok(_) => {
                    if let (Some(at), None) = (killed_at, back_after) {
                        if failed.iter().any(|f: &String| f.starts_with(kind)) {
                            back_after = Some(at.elapsed());
                        }
                    }
                    sent.push(text);
                }
                Err(ClusterError::Unavailable { .. }) => failed.push(text),
                Err(other) => panic!("{other}"),
            }
        }
        if back_after.is_some_and(|_| n % 10 == 0) || start.elapsed() > Duration::from_secs(25) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back_after = back_after.expect("cross-node delivery resumed after the failover");
    // Each node finds the new master on its own: B may resubscribe a little after A
    // publishes again (what it misses meanwhile is counted when the next message comes).
    eventually("both nodes are back", Duration::from_secs(10), async || {
        backend_a.is_connected() && backend_b.is_connected()
    })
    .await;
    // A last message on each channel lets B see any gap before it.
    cluster_a
        .broadcast_room(&room, &"tail".into())
        .await
        .unwrap();
    cluster_a.broadcast(&"end".into()).await.unwrap();
    let got = receiver.await.unwrap();

    let stats_a = backend_a.stats();
    let stats_b = backend_b.stats();
    let missing: Vec<&String> = sent.iter().filter(|t| !got.contains(*t)).collect();
    println!(
        "failover: {} sent ok, {} failed (the sender was told), {} of the ok ones missing at B, \
         B counted {} lost; delivery back {back_after:?} after the kill; slowest broadcast \
         {slowest:?}; A {stats_a:?}; B {stats_b:?}",
        sent.len(),
        failed.len(),
        missing.len(),
        stats_b.lost
    );
    assert!(!failed.is_empty(), "the kill was noticed");
    assert_eq!(stats_a.publish_failures, failed.len() as u64);
    assert!(
        stats_b.lost >= missing.len() as u64,
        "every message that went missing is counted: {missing:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "nothing hangs: {slowest:?}"
    );
    assert!(back_after < Duration::from_secs(20));
    assert!(got.contains("tail"), "delivery resumed for the room too");
}
