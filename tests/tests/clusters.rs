//! Clusters on one node: typed broadcasts, rooms, targeted sends, the membership stream, an
//! HTTP route pushing into sessions, and what a full outgoing queue does to its session alone.

use std::time::Duration;

use axum::routing::post;
use axum::Router;
use crimson_axum::cluster::{Cluster, Membership, SendToError, Target};
use crimson_axum::sessions::{OverflowPolicy, SessionId};
use crimson_axum::testing::{TestConnection, TestError, TestServer};
use crimson_axum::{
    CloseCode, CloseRecord, ClosedBy, ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession,
    RouterExt,
};
use crimson_tests::apps::{chat_app, CHAT};
use crimson_tests::messages::{ChatMessage, ChatResponse};
use crimson_tests::raw;
use crimson_tests::support::{bounded, Closes};

const ROOMS: ConfigName<String, String> = ConfigName::new("rooms");

/// A session driven by commands: `join:ROOM`, `leave:ROOM`, `room:ROOM:TEXT` (to the rest of
/// the room), `id?`; anything else is echoed.
async fn commands(mut session: CrimsonSession<String, String>) {
    let cluster = session.cluster().clone();
    let me = session.id();
    while let Some(line) = session.recv().await {
        if let Some(room) = line.strip_prefix("join:") {
            let joined = cluster.join(me, room);
            let _ = session
                .send(format!("joined {room}: {}", joined.is_ok()))
                .await;
        } else if let Some(room) = line.strip_prefix("leave:") {
            cluster.leave(me, room);
            let _ = session.send(format!("left {room}")).await;
        } else if let Some(rest) = line.strip_prefix("room:") {
            let (room, text) = rest.split_once(':').unwrap();
            let delivery = cluster
                .broadcast_room_except(room, &text.to_owned(), me)
                .await
                .unwrap();
            let _ = session
                .send(format!("reached {}", delivery.delivered))
                .await;
        } else if line == "id?" {
            let _ = session.send(me.to_string()).await;
        } else {
            let _ = session.send(line).await;
        }
    }
}

async fn rooms_server(config: CrimsonConfig<String, String>) -> (TestServer, Cluster<String>) {
    let layer = CrimsonLayer::new().config(ROOMS, config);
    let app = Router::new()
        .crimson("/rooms", ROOMS, commands)
        .layer(layer.clone());
    (TestServer::new(app).await, layer.cluster(ROOMS).unwrap())
}

async fn ask(conn: &mut TestConnection<String, String>, line: &str) -> String {
    conn.send(&line.to_owned()).await.unwrap();
    conn.recv().await.unwrap()
}

async fn id_of(conn: &mut TestConnection<String, String>) -> SessionId {
    ask(conn, "id?").await.parse().unwrap()
}

#[tokio::test]
async fn a_typed_broadcast_reaches_every_session() {
    let (app, layer) = chat_app(CrimsonConfig::new());
    let cluster = layer.cluster(CHAT).unwrap();
    let mut joined = cluster.node().membership();
    let server = TestServer::new(app).await;
    let mut a = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    let Some(Membership::Joined(a_info)) = joined.next().await else {
        panic!("a joined first")
    };
    let mut b = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    a.send(&ChatMessage::new("hello")).await.unwrap();
    for conn in [&mut a, &mut b] {
        assert_eq!(
            conn.recv().await.unwrap(),
            ChatResponse::new("hello", a_info.id.to_string())
        );
    }
    // Everyone but a.
    let delivery = cluster
        .broadcast_except(&ChatResponse::new("not for a", "test"), a_info.id)
        .await
        .unwrap();
    assert_eq!((delivery.delivered, delivery.failed), (1, 0));
    let delivery = cluster
        .broadcast(&ChatResponse::new("for all", "test"))
        .await
        .unwrap();
    assert_eq!((delivery.delivered, delivery.remote_nodes), (2, 0));
    assert_eq!(b.recv().await.unwrap().text, "not for a");
    assert_eq!(b.recv().await.unwrap().text, "for all");
    assert_eq!(
        a.recv().await.unwrap().text,
        "for all",
        "a skipped 'not for a'"
    );
}

/// `TestServer::connect` returns once the session is in its cluster: a broadcast made right
/// after it reaches the new session, every time.
#[tokio::test]
async fn a_broadcast_right_after_connect_reaches_the_new_session() {
    let (app, layer) = chat_app(CrimsonConfig::new());
    let cluster = layer.cluster(CHAT).unwrap();
    let server = TestServer::new(app).await;
    for n in 0..200 {
        let mut conn = server
            .connect::<ChatMessage, ChatResponse>("/chat")
            .await
            .unwrap();
        let delivery = cluster
            .broadcast(&ChatResponse::new(n.to_string(), "test"))
            .await
            .unwrap();
        assert!(delivery.delivered >= 1, "round {n}: {delivery:?}");
        assert_eq!(conn.recv().await.unwrap().text, n.to_string(), "round {n}");
        conn.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

#[tokio::test]
async fn rooms_targets_and_sends_by_id() {
    let (server, cluster) = rooms_server(CrimsonConfig::new()).await;
    let mut a = server.connect::<String, String>("/rooms").await.unwrap();
    let mut b = server.connect::<String, String>("/rooms").await.unwrap();
    let mut c = server.connect::<String, String>("/rooms").await.unwrap();
    let (a_id, b_id, c_id) = (
        id_of(&mut a).await,
        id_of(&mut b).await,
        id_of(&mut c).await,
    );
    assert_eq!(ask(&mut a, "join:red").await, "joined red: true");
    assert_eq!(ask(&mut b, "join:red").await, "joined red: true");
    assert_eq!(ask(&mut b, "join:blue").await, "joined blue: true");
    assert_eq!(ask(&mut c, "join:blue").await, "joined blue: true");
    assert_eq!(
        ask(&mut c, "join:").await,
        "joined : false",
        "an empty name"
    );

    assert_eq!(cluster.room_len("red").await.unwrap(), 2);
    let mut reds = cluster.room_members("red").await.unwrap();
    reds.sort();
    let mut expected = vec![a_id, b_id];
    expected.sort();
    assert_eq!(reds, expected);
    assert_eq!(cluster.node().rooms_of(b_id), ["blue", "red"]);
    assert_eq!(cluster.node().room_members("blue").len(), 2);
    assert_eq!(cluster.room_len("green").await.unwrap(), 0);

    // To the rest of the room: b only.
    assert_eq!(ask(&mut a, "room:red:psst").await, "reached 1");
    assert_eq!(b.recv().await.unwrap(), "psst");
    // To the whole room, from outside.
    let delivery = cluster
        .broadcast_room("red", &"all reds".to_owned())
        .await
        .unwrap();
    assert_eq!(delivery.delivered, 2);
    assert_eq!(
        a.recv().await.unwrap(),
        "all reds",
        "a skipped its own psst"
    );
    assert_eq!(b.recv().await.unwrap(), "all reds");
    let delivery = cluster
        .broadcast_room_except("blue", &"blue but b".to_owned(), b_id)
        .await
        .unwrap();
    assert_eq!(delivery.delivered, 1);
    let delivery = cluster
        .broadcast_to(&"blues".to_owned(), Target::Room("blue".into()))
        .await
        .unwrap();
    assert_eq!(delivery.delivered, 2);
    assert_eq!(c.recv().await.unwrap(), "blue but b");
    assert_eq!(c.recv().await.unwrap(), "blues");
    assert_eq!(b.recv().await.unwrap(), "blues", "b skipped 'blue but b'");
    // This node's sessions, by a filter.
    let delivery = cluster
        .broadcast_local(&"only c".to_owned(), |info| info.id == c_id)
        .unwrap();
    assert_eq!(delivery.delivered, 1);
    assert_eq!(c.recv().await.unwrap(), "only c");

    // By id.
    cluster.send_to(a_id, &"direct".to_owned()).await.unwrap();
    assert_eq!(a.recv().await.unwrap(), "direct");
    let nobody = SessionId::from_parts(cluster.node_id(), u64::MAX);
    let err = cluster.send_to(nobody, &"?".to_owned()).await.unwrap_err();
    assert!(
        matches!(err, SendToError::NotFound(id) if id == nobody),
        "{err}"
    );
    assert_eq!(err.to_string(), format!("no live session has id {nobody}"));
    assert!(cluster.node().get(a_id).is_some());
    let mut ids: Vec<_> = cluster.node().sessions().iter().map(|s| s.id).collect();
    ids.sort();
    let mut all = vec![a_id, b_id, c_id];
    all.sort();
    assert_eq!(ids, all);

    // Leaving, by command and by going away.
    assert_eq!(ask(&mut a, "leave:red").await, "left red");
    assert_eq!(cluster.room_members("red").await.unwrap(), [b_id]);
    let mut events = cluster.node().membership();
    b.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(
        bounded("b leaves", events.next()).await,
        Some(Membership::Left(b_id))
    );
    assert_eq!(cluster.room_len("red").await.unwrap(), 0);
    assert_eq!(cluster.node().room_members("blue"), [c_id]);
    assert!(cluster.node().rooms_of(b_id).is_empty());
    assert!(cluster.node().get(b_id).is_none());
    assert_eq!(cluster.count().await.unwrap(), 2);
}

#[tokio::test]
async fn the_membership_stream_tells_who_comes_goes_and_joins() {
    let (server, cluster) = rooms_server(CrimsonConfig::new()).await;
    let mut events = cluster.node().membership();
    let mut conn = server.connect::<String, String>("/rooms").await.unwrap();
    let Some(Membership::Joined(info)) = bounded("joined", events.next()).await else {
        panic!("expected Joined first")
    };
    assert_eq!(
        (info.path.as_str(), info.config.as_str()),
        ("/rooms", "rooms")
    );
    assert!(info.remote_addr.is_some_and(|a| a.ip().is_loopback()));
    assert_eq!(id_of(&mut conn).await, info.id);
    ask(&mut conn, "join:red").await;
    ask(&mut conn, "leave:red").await;
    assert_eq!(
        bounded("joined red", events.next()).await,
        Some(Membership::JoinedRoom(info.id, "red".into()))
    );
    assert_eq!(
        bounded("left red", events.next()).await,
        Some(Membership::LeftRoom(info.id, "red".into()))
    );

    // A subscriber that falls behind is told how much it missed, then goes on.
    let mut slow = cluster.node().membership();
    for _ in 0..1100 {
        cluster.join(info.id, "busy").unwrap();
        cluster.leave(info.id, "busy");
    }
    assert_eq!(
        bounded("lagged", slow.next()).await,
        Some(Membership::Lagged(2200 - 1024))
    );
    assert!(matches!(
        bounded("after the lag", slow.next()).await,
        Some(Membership::JoinedRoom(..) | Membership::LeftRoom(..))
    ));

    drop(conn);
    loop {
        match bounded("left", slow.next()).await {
            Some(Membership::Left(id)) => {
                assert_eq!(id, info.id);
                break;
            }
            Some(Membership::JoinedRoom(..) | Membership::LeftRoom(..)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_http_route_pushes_into_sessions_through_a_cluster_clone() {
    let cluster = Cluster::<ChatResponse>::local();
    let push = {
        let cluster = cluster.clone();
        post(move |body: String| async move {
            let delivery = cluster
                .broadcast(&ChatResponse::new(body, "http"))
                .await
                .unwrap();
            delivery.delivered.to_string()
        })
    };
    let (app, _) = chat_app(CrimsonConfig::new().cluster(cluster.clone()));
    let server = TestServer::new(app.route("/push", push)).await;
    let mut a = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    let mut b = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    assert_eq!(cluster.count().await.unwrap(), 2);
    let response = raw::http(
        server.addr(),
        "POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnews",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\n2"), "{response}");
    for conn in [&mut a, &mut b] {
        assert_eq!(
            conn.recv().await.unwrap(),
            ChatResponse::new("news", "http")
        );
    }
}

/// A client that never reads cannot slow the others down: its queue overflows and it alone
/// is closed as a slow consumer, while a reading client gets every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_closes_its_slow_consumer_1008_and_no_one_else() {
    const QUEUE: usize = 64;
    let closes = Closes::new();
    let layer = CrimsonLayer::new().config(
        ROOMS,
        CrimsonConfig::new()
            .outgoing_queue(QUEUE, OverflowPolicy::Disconnect)
            .close_timeout(Duration::from_millis(300))
            .on_close(closes.hook()),
    );
    let app = Router::new()
        .crimson("/slow", ROOMS, commands)
        .crimson("/feed", ROOMS, commands)
        .layer(layer.clone());
    let server = TestServer::new(app).await;
    let cluster = layer.cluster(ROOMS).unwrap();

    // The stalled client: completes the handshake, then never reads.
    let (_stalled, _) = tokio_tungstenite::connect_async(server.url("/slow"))
        .await
        .unwrap();
    let mut reader = server.connect::<String, String>("/feed").await.unwrap();
    assert_eq!(cluster.node().len(), 2);

    let chunk = "x".repeat(16 * 1024);
    let (received_tx, mut received) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let got = reader
                .recv()
                .await
                .expect("the reading client gets every message");
            if got == "end" {
                return (reader, n);
            }
            assert!(
                got.starts_with(&format!("{n}:")),
                "message {n} out of order"
            );
            n += 1;
            received_tx.send_replace(n);
        }
    });
    // Until the stalled client's queue overflows (its socket buffers fill first).
    let mut failed = 0;
    let mut sent = 0;
    while failed == 0 {
        assert!(sent < 100_000, "the stalled queue never overflowed");
        // Keep the reading client within half its queue, however slow the machine: only the
        // stalled client can overflow.
        bounded(
            "the reader reads",
            received.wait_for(|received| sent - received < QUEUE / 2),
        )
        .await
        .unwrap();
        let delivery = cluster.broadcast(&format!("{sent}:{chunk}")).await.unwrap();
        assert!(delivery.delivered >= 1, "{delivery:?}");
        failed += delivery.failed;
        sent += 1;
    }
    let slow = closes.of_path("/slow").await;
    assert_eq!(
        slow,
        CloseRecord {
            code: CloseCode::POLICY,
            reason: format!("slow consumer: {QUEUE} messages were waiting"),
            by: ClosedBy::Server
        }
    );
    assert_eq!(cluster.node().len(), 1, "the reader is still in");
    let delivery = cluster.broadcast(&"end".to_owned()).await.unwrap();
    assert_eq!((delivery.delivered, delivery.failed), (1, 0));
    let (reader, got) = bounded("the reader keeps up", reading).await.unwrap();
    assert_eq!(got, sent);

    // The reader goes away without a close frame.
    drop(reader);
    assert_eq!(
        closes.of_path("/feed").await,
        CloseRecord {
            code: CloseCode::ABNORMAL,
            reason: "connection dropped without a close frame".into(),
            by: ClosedBy::Failure
        }
    );
    assert!(cluster.node().is_empty());
}

/// With `DropOldest` a full queue loses its oldest messages instead, and the session stays.
#[tokio::test]
async fn drop_oldest_keeps_a_slow_consumer_and_its_newest_messages() {
    let closes = Closes::new();
    let (server, cluster) = rooms_server(
        CrimsonConfig::new()
            .outgoing_queue(8, OverflowPolicy::DropOldest)
            .on_close(closes.hook()),
    )
    .await;
    let mut slow = server.connect::<String, String>("/rooms").await.unwrap();
    let chunk = "z".repeat(16 * 1024);
    let mut sent = 0;
    let mut dropped = 0;
    while dropped == 0 {
        assert!(sent < 100_000, "the queue never filled");
        let delivery = cluster.broadcast(&format!("{sent}:{chunk}")).await.unwrap();
        assert_eq!((delivery.delivered, delivery.failed), (1, 0));
        dropped += delivery.dropped_oldest;
        sent += 1;
        if sent % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    cluster.broadcast(&"last".to_owned()).await.unwrap();
    // Now it reads: in order, fewer than were sent, up to the last.
    let mut got = Vec::new();
    loop {
        let text = slow.recv().await.unwrap();
        if text == "last" {
            break;
        }
        got.push(text.split_once(':').unwrap().0.parse::<usize>().unwrap());
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert!(got.len() < sent, "the oldest were dropped: {got:?}");
    assert_eq!(got.last(), Some(&(sent - 1)), "the newest were kept");
    slow.set_timeout(Duration::from_millis(50));
    assert!(matches!(slow.recv().await, Err(TestError::Timeout)));
    assert!(closes.is_empty(), "{:?}", closes.all());
}
