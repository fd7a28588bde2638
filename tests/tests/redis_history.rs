//! History in Redis (`RedisCluster` with history): nodes on one real `redis-server` share
//! their streams, so a client that fails over to another node recovers there what it
//! missed, exactly once and in order; Redis that lost its keys is an epoch change, said; and
//! every session of every node sees one order of a room's publications.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use crimson_axum::cluster::redis::RedisCluster;
use crimson_axum::cluster::{Cluster, History};
use crimson_axum::testing::{RedisClusterServer, RedisServer, TestServer};
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
use crimson_client::{ClientEvent, CrimsonClient, Endpoint, RetryPolicy, Subscription};
use crimson_tests::messages::{note, Note};
use crimson_tests::v1::{connect, epoch, Ws};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const NOTES: ConfigName<Note, Note> = ConfigName::new("notes");

/// Joins the room `lobby` at once; says to the room what it is told.
async fn member(mut session: CrimsonSession<Note, Note>) {
    session.cluster().join(session.id(), "lobby").unwrap();
    while let Some(said) = session.recv().await {
        let _ = session.cluster().broadcast_room("lobby", &said).await;
    }
}

/// One node of the app on `redis`: its server, its cluster, its backend.
struct Node {
    server: TestServer,
    cluster: Cluster<Note>,
    backend: RedisCluster,
}

async fn node(redis: &RedisServer, history: History) -> Node {
    node_on(&redis.url(), history).await
}

/// A node on the Redis (or Redis Cluster) at `url`.
async fn node_on(url: &str, history: History) -> Node {
    let backend = RedisCluster::builder(url)
        .prefix("notes")
        .heartbeat(Duration::from_millis(200))
        .max_backoff(Duration::from_millis(200))
        .probe(Duration::from_millis(100), Duration::from_millis(300))
        .check_payloads::<Note>()
        .build()
        .await
        .unwrap();
    let cluster = Cluster::new(backend.clone());
    let config = CrimsonConfig::new()
        .protocol(true)
        .with_history(history)
        .cluster(cluster.clone());
    let app = Router::new()
        .crimson("/notes", NOTES, member)
        .layer(CrimsonLayer::new().config(NOTES, config));
    Node {
        server: TestServer::new(app).await,
        cluster,
        backend,
    }
}

fn history() -> History {
    History::new(100, Duration::from_secs(300))
}

/// Waits for `check`, at most 5 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 5 s");
}

/// The next recovery event of `lobby`'s stream (those of `all`, where nothing is published,
/// are recovered with 0).
async fn recovery(events: &mut Subscription<ClientEvent>) -> ClientEvent {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("events go on")
            .unwrap();
        match &next {
            ClientEvent::Recovered { stream, count } if stream == "all" => assert_eq!(*count, 0),
            ClientEvent::NotRecovered { stream, .. } if stream == "all" => {}
            ClientEvent::Recovered { .. } | ClientEvent::NotRecovered { .. } => return next,
            _ => {}
        }
    }
}

async fn next_note(incoming: &mut Subscription<Note>) -> String {
    tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await
        .expect("a message within 10 s")
        .expect("messages go on")
        .unwrap()
        .text
}

/// A client of the protocol that tries `urls` in turn, a new one on every reconnect (as
/// `chat-client --url A --url B` does), `retry` after a drop.
fn failing_over(urls: Vec<String>, retry: Duration) -> CrimsonClient<Note, Note> {
    let next = Arc::new(AtomicUsize::new(0));
    CrimsonClient::builder()
        .endpoint(move || {
            let url = urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()].clone();
            async move { Ok::<_, crimson_client::BoxError>(Endpoint::new(url)) }
        })
        .retry(RetryPolicy::fixed(retry).unwrap())
        .build()
        .unwrap()
}

/// Waits until the room's member on `node` is counted cluster-wide and warm there (its node
/// is subscribed to the room and knows where the stream stands).
async fn in_the_room(node: &Node, members: usize) {
    eventually("the members are counted", async || {
        node.cluster.room_len("lobby").await.unwrap() == members
    })
    .await;
}

#[tokio::test]
async fn a_client_that_fails_over_recovers_on_the_other_node_exactly_once_in_order() {
    let redis = RedisServer::start();
    let a = node(&redis, history()).await;
    let b = node(&redis, history()).await;
    // Long enough for everything below to be published while it is away.
    let client = failing_over(
        vec![a.server.url("/notes"), b.server.url("/notes")],
        Duration::from_secs(1),
    );
    let mut events = client.events();
    let mut incoming = client.incoming();
    client.connect().await.unwrap();
    in_the_room(&b, 1).await;
    // Published through B, delivered by A.
    for n in 1..=3 {
        b.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 1..=3 {
        got.push(next_note(&mut incoming).await);
    }
    assert_eq!(got, ["1", "2", "3"]);

    // A goes, its server and its cluster: the client's connection drops.
    let Node {
        server,
        cluster,
        backend,
    } = a;
    drop((server, cluster, backend));
    for n in 4..=6 {
        b.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    match recovery(&mut events).await {
        ClientEvent::Recovered { stream, count } => {
            assert_eq!(stream, "room:lobby");
            assert_eq!(count, 3, "4, 5 and 6 were published while it was away");
        }
        other => panic!("{other:?}"),
    }
    b.cluster.broadcast_room("lobby", &note("7")).await.unwrap();
    while got.last().map(String::as_str) != Some("7") {
        got.push(next_note(&mut incoming).await);
    }
    assert_eq!(
        got,
        ["1", "2", "3", "4", "5", "6", "7"],
        "once each, in order"
    );
    let lobby = client
        .positions()
        .into_iter()
        .find(|p| p.stream == "room:lobby")
        .unwrap();
    assert_eq!(lobby.offset, 7);
    assert_eq!(b.backend.stats().stream_gaps, 0);
}

#[tokio::test]
async fn redis_that_lost_its_keys_is_an_epoch_change_said_to_the_client() {
    let mut redis = RedisServer::start();
    let a = node(&redis, history()).await;
    let client = failing_over(vec![a.server.url("/notes")], Duration::from_millis(100));
    let mut events = client.events();
    let mut incoming = client.incoming();
    client.connect().await.unwrap();
    in_the_room(&a, 1).await;
    a.cluster
        .broadcast_room("lobby", &note("before"))
        .await
        .unwrap();
    assert_eq!(next_note(&mut incoming).await, "before");
    let epoch = client.positions()[1].epoch.clone();

    // Redis restarts empty (no persistence): the history and its epoch are gone.
    redis.stop();
    redis.restart();
    eventually("the node is back on Redis", async || {
        a.backend.is_connected()
    })
    .await;
    // The client is told, live or when it resumes: never a silent gap.
    match recovery(&mut events).await {
        ClientEvent::NotRecovered { stream, reason } => {
            assert_eq!(stream, "room:lobby");
            assert_eq!(reason, "epoch_changed");
        }
        other => panic!("{other:?}"),
    }
    a.cluster
        .broadcast_room("lobby", &note("after"))
        .await
        .unwrap();
    assert_eq!(next_note(&mut incoming).await, "after");
    let now = client.positions()[1].clone();
    assert_ne!(now.epoch, epoch);
    assert_eq!(now.offset, 1, "a new stream from its start");

    // A client away while Redis lost the keys (FLUSHALL) is told when it resumes.
    let id = a.cluster.node().sessions().pop().unwrap().id;
    a.cluster
        .node()
        .get(id)
        .unwrap()
        .close(crimson_axum::CloseCode::RESTART, "cut");
    assert_eq!(redis.command(&[b"FLUSHALL"]), "+OK");
    match recovery(&mut events).await {
        ClientEvent::NotRecovered { stream, reason } => {
            assert_eq!(stream, "room:lobby");
            assert_eq!(reason, "epoch_changed");
        }
        other => panic!("{other:?}"),
    }
}

/// The offsets and texts of `lobby`'s publications `ws` gets, until `n` of them.
async fn publications(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a frame, got {other:?} after {}", got.len()),
        };
        let (header, body) = frame.split_once('\n').unwrap();
        if !header.starts_with("pub s=room%3Alobby ") {
            continue;
        }
        let offset = header
            .split(' ')
            .find_map(|f| f.strip_prefix("o="))
            .unwrap()
            .parse()
            .unwrap();
        let note: Note = serde_json::from_str(body).unwrap();
        got.push((offset, note.text));
    }
    got
}

#[tokio::test]
async fn publishers_on_two_nodes_make_one_order_for_every_session() {
    let redis = RedisServer::start();
    let a = node(&redis, history()).await;
    let b = node(&redis, history()).await;
    let mut sessions = Vec::new();
    for server in [&a.server, &b.server, &a.server, &b.server] {
        sessions.push(connect(&server.url("/notes")).await);
    }
    in_the_room(&a, 4).await;
    const EACH: usize = 40;
    let publish = |node: &Node, name: &'static str| {
        let cluster = node.cluster.clone();
        tokio::spawn(async move {
            for n in 0..EACH {
                cluster
                    .broadcast_room("lobby", &note(&format!("{name}{n}")))
                    .await
                    .unwrap();
            }
        })
    };
    let (from_a, from_b) = (publish(&a, "a"), publish(&b, "b"));
    from_a.await.unwrap();
    from_b.await.unwrap();
    let mut orders = Vec::new();
    for ws in &mut sessions {
        orders.push(publications(ws, 2 * EACH).await);
    }
    let offsets: Vec<u64> = orders[0].iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        (1..=2 * EACH as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "one order on both nodes");
    }
    // Each publisher's own order is kept within it.
    for name in ["a", "b"] {
        let own: Vec<&str> = orders[0]
            .iter()
            .map(|(_, text)| text.as_str())
            .filter(|text| text.starts_with(name))
            .collect();
        let expected: Vec<String> = (0..EACH).map(|n| format!("{name}{n}")).collect();
        assert_eq!(own, expected);
    }
    for ws in &mut sessions {
        let _ = ws.close(None).await;
    }
}

/// A cluster message (`wire.rs`, version 3) broadcasting `text` to `lobby`, as another node
/// would have published it.
fn lobby_message(text: &str) -> Vec<u8> {
    let mut message = vec![3, 0];
    message.extend_from_slice(&0x00c0_ffeeu64.to_be_bytes()); // origin
    message.extend_from_slice(&0u32.to_be_bytes()); // stream
    message.extend_from_slice(&0u64.to_be_bytes()); // seq
    message.extend_from_slice(&0u64.to_be_bytes()); // sent at
    message.push(2); // to a room
    message.extend_from_slice(&5u32.to_be_bytes());
    message.extend_from_slice(b"lobby");
    message.extend_from_slice(format!("{{\"text\":\"{text}\"}}").as_bytes());
    message
}

/// What the publish script does, but the publish: a publication this node's subscription
/// missed (it was down), kept in the history (or not: `kept`).
fn missed(redis: &RedisServer, offset: u64, text: &str, kept: bool) {
    let next = redis.command(&[b"HINCRBY", b"notes:{room:lobby}:stream", b"o", b"1"]);
    assert_eq!(next, format!(":{offset}"));
    if kept {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let id = format!("0-{offset}");
        let added = redis.command(&[
            b"XADD",
            b"notes:{room:lobby}:history",
            id.as_bytes(),
            b"m",
            &lobby_message(text),
            b"t",
            now.as_bytes(),
        ]);
        assert!(added.starts_with('$'), "{added}");
    }
}

/// The next frame of `ws`'s `lobby` stream (`pub`, `recovered` or `lost`; `sub` if
/// `sub`), its header and body.
async fn lobby_frame(ws: &mut Ws) -> String {
    next_of_lobby(ws, false).await
}

async fn next_of_lobby(ws: &mut Ws, sub: bool) -> String {
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a frame, got {other:?}"),
        };
        if frame.contains(" s=room%3Alobby ") && (sub || !frame.starts_with("sub ")) {
            return frame;
        }
    }
}

/// A node that missed publications (its subscription was down) reads them back from the
/// history when the next one shows the gap, so its sessions get every publication once, in
/// order, without a reconnect of their own; what the history no longer has is said.
#[tokio::test]
async fn a_node_that_missed_publications_reads_them_back_or_says_so() {
    let redis = RedisServer::start();
    let a = node(&redis, history()).await;
    let b = node(&redis, history()).await;
    let mut ws = connect(&a.server.url("/notes")).await;
    in_the_room(&b, 1).await;
    b.cluster.broadcast_room("lobby", &note("1")).await.unwrap();
    let first = lobby_frame(&mut ws).await;
    let epoch = first.split(' ').nth(2).unwrap().to_owned();
    assert_eq!(
        first,
        format!("pub s=room%3Alobby {epoch} o=1\n{{\"text\":\"1\"}}")
    );
    missed(&redis, 2, "2", true);
    missed(&redis, 3, "3", true);
    b.cluster.broadcast_room("lobby", &note("4")).await.unwrap();
    for n in 2..=4 {
        assert_eq!(
            lobby_frame(&mut ws).await,
            format!("pub s=room%3Alobby {epoch} o={n}\n{{\"text\":\"{n}\"}}")
        );
    }
    // Gone from the history (fewer than its size came after it: it expired): said before
    // what follows.
    missed(&redis, 5, "5", false);
    b.cluster.broadcast_room("lobby", &note("6")).await.unwrap();
    assert_eq!(
        lobby_frame(&mut ws).await,
        format!("lost s=room%3Alobby {epoch} o=5 reason=expired\n")
    );
    assert_eq!(
        lobby_frame(&mut ws).await,
        format!("pub s=room%3Alobby {epoch} o=6\n{{\"text\":\"6\"}}")
    );
    assert_eq!(a.backend.stats().stream_gaps, 1);
    assert_eq!(b.backend.stats().stream_gaps, 0);
    let _ = ws.close(None).await;
}

#[tokio::test]
async fn the_history_is_in_redis_under_the_apps_prefix() {
    let redis = RedisServer::start();
    let a = node(&redis, History::new(2, Duration::from_secs(60))).await;
    let _ws = connect(&a.server.url("/notes")).await;
    in_the_room(&a, 1).await;
    for n in 1..=3 {
        a.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    let entries = redis.command(&[b"XLEN", b"notes:{room:lobby}:history"]);
    assert_eq!(entries, ":2", "capped at the history's size");
    let offset = redis.command(&[b"HGET", b"notes:{room:lobby}:stream", b"o"]);
    assert_eq!(offset, "$1", "a bulk string follows: 3");
    let ttl = redis.command(&[b"PTTL", b"notes:{room:lobby}:history"]);
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
    let delivery = a.cluster.broadcast(&note("to all")).await.unwrap();
    assert_eq!(delivery.delivered, 1, "this node's session, through Redis");
    assert_eq!(redis.command(&[b"EXISTS", b"notes:{all:0}:history"]), ":1");
}

/// Sends `resume` of `lobby` at `epoch`, `offset` and returns the answer's header.
/// A new connection to `url` that resumes `lobby` from `offset` (a stream is resumed once per
/// connection); it and the answer.
async fn resume_on(url: &str, epoch: &str, offset: u64) -> (Ws, String) {
    let mut ws = connect(url).await;
    let answer = resume(&mut ws, epoch, offset).await;
    (ws, answer)
}

async fn resume(ws: &mut Ws, epoch: &str, offset: u64) -> String {
    ws.send(Message::text(format!(
        "resume s=room%3Alobby e={epoch} o={offset}\n"
    )))
    .await
    .unwrap();
    lobby_frame(ws).await
}

/// Every answer to a resume, on a node that did not deliver what it recovers: the reasons
/// are those of `docs/protocol.md`, read from Redis.
#[tokio::test]
async fn resumes_are_answered_from_the_history_in_redis() {
    let redis = RedisServer::start();
    let a = node(
        &redis,
        History::new(3, Duration::from_secs(300)).recover_limit(2),
    )
    .await;
    let b = node(
        &redis,
        History::new(3, Duration::from_secs(300)).recover_limit(2),
    )
    .await;
    let mut on_a = connect(&a.server.url("/notes")).await;
    in_the_room(&b, 1).await;
    for n in 1..=5 {
        b.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    let fifth = publications(&mut on_a, 5).await;
    assert_eq!(fifth[4], (5, "5".to_owned()));
    let mut on_b = connect(&b.server.url("/notes")).await;
    let sub = next_of_lobby(&mut on_b, true).await;
    let e = epoch(&sub);
    assert_eq!(sub, format!("sub s=room%3Alobby e={e} o=5\n"));
    let lost = |o: u64, reason: &str| format!("lost s=room%3Alobby e={e} o={o} reason={reason}\n");
    assert_eq!(
        resume(&mut on_b, &e, 4).await,
        format!("recovered s=room%3Alobby e={e} o=5 n=1\n")
    );
    assert_eq!(
        lobby_frame(&mut on_b).await,
        format!("pub s=room%3Alobby e={e} o=5\n{{\"text\":\"5\"}}")
    );
    let url = b.server.url("/notes");
    // A stream is resumed once per connection: each of these on a connection of its own.
    assert_eq!(
        resume_on(&url, &e, 5).await.1,
        format!("recovered s=room%3Alobby e={e} o=5 n=0\n")
    );
    assert_eq!(resume_on(&url, &e, 2).await.1, lost(5, "over_limit"));
    assert_eq!(resume_on(&url, &e, 1).await.1, lost(5, "history_too_short"));
    assert_eq!(resume_on(&url, &e, 9).await.1, lost(5, "unknown_position"));
    assert_eq!(
        resume_on(&url, "other", 5).await.1,
        lost(5, "epoch_changed")
    );
}

#[tokio::test]
async fn publications_older_than_the_history_keeps_are_expired() {
    let redis = RedisServer::start();
    let a = node(&redis, History::new(10, Duration::from_millis(500))).await;
    let mut ws = connect(&a.server.url("/notes")).await;
    in_the_room(&a, 1).await;
    a.cluster.broadcast_room("lobby", &note("1")).await.unwrap();
    let first = lobby_frame(&mut ws).await;
    let e = epoch(&first);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The history lives on (the last publication refreshed it), its first entry has expired.
    a.cluster.broadcast_room("lobby", &note("2")).await.unwrap();
    assert!(lobby_frame(&mut ws).await.starts_with("pub "));
    let url = a.server.url("/notes");
    assert_eq!(
        resume_on(&url, &e, 0).await.1,
        format!("lost s=room%3Alobby e={e} o=2 reason=expired\n")
    );
    let (mut again, answer) = resume_on(&url, &e, 1).await;
    assert_eq!(answer, format!("recovered s=room%3Alobby e={e} o=2 n=1\n"));
    assert!(lobby_frame(&mut again).await.ends_with("{\"text\":\"2\"}"));
    // Nothing published for longer: the whole history expired.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        resume_on(&url, &e, 1).await.1,
        format!("lost s=room%3Alobby e={e} o=2 reason=expired\n")
    );
}

/// On a Redis Cluster the history of a room is on the room's shard (its hash tag), `all`'s
/// on broadcast channel 0's; scripts publish with SPUBLISH there.
#[tokio::test]
async fn history_on_a_redis_cluster_recovers_on_another_node() {
    let redis = RedisClusterServer::start();
    let a = node_on(&redis.urls()[0], history()).await;
    let b = node_on(&redis.urls()[4], history()).await;
    assert!(a.backend.is_redis_cluster());
    let mut on_a = connect(&a.server.url("/notes")).await;
    in_the_room(&b, 1).await;
    for n in 1..=3 {
        b.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    let got = publications(&mut on_a, 3).await;
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [1, 2, 3]);
    let delivery = b.cluster.broadcast(&note("to all")).await.unwrap();
    assert_eq!(delivery.remote_nodes, 1);
    let mut on_b = connect(&b.server.url("/notes")).await;
    let sub = next_of_lobby(&mut on_b, true).await;
    let e = epoch(&sub);
    assert_eq!(
        resume(&mut on_b, &e, 1).await,
        format!("recovered s=room%3Alobby e={e} o=3 n=2\n")
    );
    assert!(lobby_frame(&mut on_b).await.ends_with("{\"text\":\"2\"}"));
    assert!(lobby_frame(&mut on_b).await.ends_with("{\"text\":\"3\"}"));
}

/// Anything that can write to Redis can write on these channels and keys: what is not
/// Crimson's is dropped and counted, never delivered, and a history entry that is not (or is
/// too large) is a gap said as `unavailable`.
#[tokio::test]
async fn what_is_not_crimsons_in_the_history_or_on_the_channel_is_dropped_and_counted() {
    let redis = RedisServer::start();
    let a = node(&redis, history()).await;
    let mut ws = connect(&a.server.url("/notes")).await;
    in_the_room(&a, 1).await;
    a.cluster.broadcast_room("lobby", &note("1")).await.unwrap();
    let first = lobby_frame(&mut ws).await;
    let e = epoch(&first);
    let channel = b"notes:{room:lobby}:ch";
    let envelope = |offset: u64, message: &[u8]| {
        let mut bytes = format!("h{e} {offset}\n").into_bytes();
        bytes.extend_from_slice(message);
        bytes
    };
    let not_a_note = {
        let mut message = lobby_message("x");
        message.truncate(message.len() - br#"{"text":"x"}"#.len());
        message.extend_from_slice(b"[1,2]");
        message
    };
    let mut elsewhere = lobby_message("x");
    elsewhere[35] = b'L'; // room "Lobby": another stream's, on this channel
    for bad in [
        b"h".to_vec(),
        b"hno-end".to_vec(),
        envelope(2, b"\x03short"),
        envelope(2, &envelope(2, &lobby_message("nested"))),
        envelope(2, &not_a_note),
        envelope(2, &elsewhere),
    ] {
        assert_eq!(redis.command(&[b"PUBLISH", channel, &bad]), ":1");
    }
    // A history entry too large to be Crimson's (over max_payload): left out by the read.
    let next = redis.command(&[b"HINCRBY", b"notes:{room:lobby}:stream", b"o", b"1"]);
    assert_eq!(next, ":2");
    let huge = vec![b'x'; 2 << 20];
    redis.command(&[
        b"XADD",
        b"notes:{room:lobby}:history",
        b"0-2",
        b"m",
        &huge,
        b"t",
        b"1",
    ]);
    a.cluster.broadcast_room("lobby", &note("3")).await.unwrap();
    assert_eq!(
        lobby_frame(&mut ws).await,
        format!("lost s=room%3Alobby e={e} o=2 reason=unavailable\n")
    );
    assert!(lobby_frame(&mut ws).await.ends_with("{\"text\":\"3\"}"));
    let stats = a.backend.stats();
    assert_eq!(stats.malformed, 6, "{stats:?}");
    assert_eq!(stats.undecodable, 1, "{stats:?}");
    assert_eq!(stats.stream_gaps, 1, "{stats:?}");
}

/// A session that leaves a room while its resume is read from Redis gets no answer after
/// its `unsub`: its client forgot the stream (an answer then would be taken for a new one).
#[tokio::test]
async fn a_resume_read_while_the_room_is_left_is_not_answered_after_the_unsub() {
    use crimson_axum::cluster::SessionCluster;
    use crimson_axum::protocol::{self, Kind, Position};
    use crimson_axum::sessions::{MemorySink, SessionHandle, SessionId, SessionInfo};

    let redis = RedisServer::start();
    let a = node(&redis, history()).await;
    for n in 0..20 {
        let id = SessionId::on_node(a.backend.node_id());
        let sink = Arc::new(MemorySink::new(256));
        let info = SessionInfo {
            id,
            connected_at: std::time::SystemTime::now(),
            remote_addr: None,
            path: "/notes".into(),
            config: "notes".into(),
        };
        a.backend
            .add(SessionHandle::new(info, sink.clone()).framing(true))
            .unwrap();
        a.cluster.join(id, "lobby").unwrap();
        a.cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
        // Where the room stands, from the session's own frames.
        let mut epoch = None;
        eventually("the session's sub", async || {
            for frame in sink.take() {
                if let Ok((Kind::Subscribed(at) | Kind::Publication(at), _)) =
                    protocol::read(frame.payload().as_ref())
                {
                    epoch = Some(at.epoch);
                }
            }
            epoch.is_some()
        })
        .await;
        a.backend.resume(
            id,
            Position {
                stream: "room:lobby".into(),
                epoch: epoch.unwrap(),
                offset: 0,
            },
        );
        a.cluster.leave(id, "lobby");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let kinds: Vec<String> = sink
            .take()
            .iter()
            .map(|frame| {
                let text = frame.payload().as_bytes();
                let header = text.split(|&b| b == b'\n').next().unwrap();
                String::from_utf8_lossy(header)
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let unsub = kinds
            .iter()
            .position(|kind| kind == "unsub")
            .unwrap_or_else(|| panic!("no unsub in {kinds:?}"));
        assert!(
            kinds[unsub + 1..].is_empty(),
            "round {n}: nothing after the unsub: {kinds:?}"
        );
        a.backend.remove(id);
    }
}
