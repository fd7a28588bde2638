//! Recovery after a reconnect (`docs/protocol.md`, "Streams and recovery"): the frames by
//! hand, and crimson-client resuming by itself: every missed publication once and in order,
//! or an explicit "not recovered".

use std::time::Duration;

use axum::Router;
use crimson_axum::cluster::Cluster;
use crimson_axum::testing::TestServer;
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
use crimson_client::{ClientEvent, CrimsonClient, RetryPolicy};
use crimson_tests::messages::{note, Note};
use crimson_tests::v1::{connect, epoch, next_text};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const NOTES: ConfigName<Note, Note> = ConfigName::new("notes");

/// Joins the room `lobby` when told `join` (at once when `join_at_once`), leaves it when
/// told `leave`; otherwise reads.
async fn handler(mut session: CrimsonSession<Note, Note>, join_at_once: bool) {
    if join_at_once {
        session.cluster().join(session.id(), "lobby").unwrap();
    }
    while let Some(note) = session.recv().await {
        if note.text == "join" {
            session.cluster().join(session.id(), "lobby").unwrap();
        } else if note.text == "leave" {
            session.cluster().leave(session.id(), "lobby");
        }
    }
}

async fn server(size: usize, join_at_once: bool) -> (TestServer, Cluster<Note>) {
    let config = CrimsonConfig::new()
        .protocol(true)
        .history(size, Duration::from_secs(300));
    let cluster = config.session_cluster().clone();
    let app = Router::new()
        .crimson("/notes", NOTES, move |session| {
            handler(session, join_at_once)
        })
        .layer(CrimsonLayer::new().config(NOTES, config));
    (TestServer::new(app).await, cluster)
}

/// Waits until the node has exactly `n` sessions.
async fn sessions(cluster: &Cluster<Note>, n: usize) {
    for _ in 0..500 {
        if cluster.node().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the node has {} sessions, not {n}", cluster.node().len());
}

#[tokio::test]
async fn the_frames_of_a_recovery_by_hand() {
    let (server, cluster) = server(100, false).await;
    let mut ws = connect(&server.url("/notes")).await;
    sessions(&cluster, 1).await;
    // Where the session follows `all` from: the client can resume even if nothing comes.
    let sub = next_text(&mut ws).await;
    let e = epoch(&sub);
    assert_eq!(sub, format!("sub s=all e={e} o=0\n"));
    cluster.broadcast(&note("a")).await.unwrap();
    cluster.broadcast(&note("b")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        format!("pub s=all e={e} o=1\n{{\"text\":\"a\"}}")
    );
    assert_eq!(
        next_text(&mut ws).await,
        format!("pub s=all e={e} o=2\n{{\"text\":\"b\"}}")
    );
    ws.close(None).await.unwrap();
    drop(ws);
    sessions(&cluster, 0).await;
    // Published while nobody listens: kept.
    cluster.broadcast(&note("c")).await.unwrap();
    cluster.broadcast(&note("d")).await.unwrap();

    let mut ws = connect(&server.url("/notes")).await;
    ws.send(Message::text(format!("resume s=all e={e} o=2\n")))
        .await
        .unwrap();
    // Queued when the session was added, before the resume was read: the client skips it.
    assert_eq!(next_text(&mut ws).await, format!("sub s=all e={e} o=4\n"));
    assert_eq!(
        next_text(&mut ws).await,
        format!("recovered s=all e={e} o=4 n=2\n")
    );
    assert_eq!(
        next_text(&mut ws).await,
        format!("pub s=all e={e} o=3\n{{\"text\":\"c\"}}")
    );
    assert_eq!(
        next_text(&mut ws).await,
        format!("pub s=all e={e} o=4\n{{\"text\":\"d\"}}")
    );
    cluster.broadcast(&note("live")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        format!("pub s=all e={e} o=5\n{{\"text\":\"live\"}}")
    );
    // Another epoch, a position from the future: each on a connection of its own (a stream
    // is resumed once per connection).
    for (resume, answer) in [
        (
            "resume s=all e=nope o=1\n".to_owned(),
            format!("lost s=all e={e} o=5 reason=epoch_changed\n"),
        ),
        (
            format!("resume s=all e={e} o=9\n"),
            format!("lost s=all e={e} o=5 reason=unknown_position\n"),
        ),
    ] {
        let mut other = connect(&server.url("/notes")).await;
        other.send(Message::text(resume)).await.unwrap();
        assert_eq!(
            next_text(&mut other).await,
            format!("sub s=all e={e} o=5\n")
        );
        assert_eq!(next_text(&mut other).await, answer);
        other.close(None).await.unwrap();
    }
    // A stream that is not Crimson's.
    ws.send(Message::text("resume s=chat e=x o=1\n"))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        "lost s=chat e= o=0 reason=unknown_position\n"
    );

    // A room's stream: the resume waits for the join.
    ws.send(Message::text("\n{\"text\":\"join\"}"))
        .await
        .unwrap();
    sessions(&cluster, 1).await;
    for _ in 0..500 {
        if cluster.node().room_members("lobby").len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sub = next_text(&mut ws).await;
    let re = epoch(&sub);
    assert_eq!(sub, format!("sub s=room%3Alobby e={re} o=0\n"));
    cluster.broadcast_room("lobby", &note("r1")).await.unwrap();
    let r1 = next_text(&mut ws).await;
    assert_eq!(
        r1,
        format!("pub s=room%3Alobby e={re} o=1\n{{\"text\":\"r1\"}}")
    );
    ws.close(None).await.unwrap();
    drop(ws);
    sessions(&cluster, 0).await;
    cluster.broadcast_room("lobby", &note("r2")).await.unwrap();

    let mut ws = connect(&server.url("/notes")).await;
    ws.send(Message::text(format!("resume s=room%3Alobby e={re} o=1\n")))
        .await
        .unwrap();
    sessions(&cluster, 1).await;
    assert_eq!(next_text(&mut ws).await, format!("sub s=all e={e} o=5\n"));
    // Not in the room yet: nothing comes; published meanwhile, still kept.
    cluster.broadcast_room("lobby", &note("r3")).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.next())
            .await
            .is_err(),
        "nothing before the join"
    );
    ws.send(Message::text("\n{\"text\":\"join\"}"))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        format!("recovered s=room%3Alobby e={re} o=3 n=2\n")
    );
    assert!(next_text(&mut ws).await.ends_with("{\"text\":\"r2\"}"));
    assert!(next_text(&mut ws).await.ends_with("{\"text\":\"r3\"}"));
}

#[tokio::test]
async fn a_plain_client_gets_plain_frames_from_a_route_with_history() {
    let (server, cluster) = server(100, true).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url("/notes"))
        .await
        .unwrap();
    sessions(&cluster, 1).await;
    cluster.broadcast(&note("plain")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "{\"text\":\"plain\"}");
}

#[tokio::test]
async fn too_many_resumes_close_the_connection() {
    let (server, _cluster) = server(100, false).await;
    let mut ws = connect(&server.url("/notes")).await;
    for n in 0..=64 {
        ws.send(Message::text(format!("resume s=room%3A{n} e=x o=1\n")))
            .await
            .unwrap();
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1008);
                assert_eq!(
                    frame.reason.as_str(),
                    "crimson.v1: more than 64 resume frames on one connection"
                );
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

/// A stream resumed again on the same connection is refused: each resume may send a whole
/// recovery past the queue's capacity, so 64 resumes of one stream by a client that does not
/// read would queue 64 recoveries.
#[tokio::test]
async fn a_stream_resumed_twice_on_one_connection_closes_it() {
    let (server, cluster) = server(100, false).await;
    let mut ws = connect(&server.url("/notes")).await;
    sessions(&cluster, 1).await;
    let e = epoch(&next_text(&mut ws).await);
    for n in 0..3 {
        cluster.broadcast(&note(&n.to_string())).await.unwrap();
    }
    for _ in 0..3 {
        next_text(&mut ws).await;
    }
    for _ in 0..2 {
        ws.send(Message::text(format!("resume s=all e={e} o=0\n")))
            .await
            .unwrap();
    }
    assert_eq!(
        next_text(&mut ws).await,
        format!("recovered s=all e={e} o=3 n=3\n")
    );
    for _ in 0..3 {
        assert!(next_text(&mut ws).await.starts_with("pub s=all"));
    }
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(
                frame.reason.as_str(),
                "crimson.v1: stream `all` resumed twice on one connection"
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A client that stops reading while the room is flooded, on a route whose queues drop the
/// oldest: what was dropped is never a silent gap. Reading again, it gets every publication
/// in order, and a `lost … reason=dropped` where publications went, before what follows them.
#[tokio::test]
async fn a_slow_reader_is_told_what_its_queue_dropped() {
    let config = CrimsonConfig::new()
        .protocol(true)
        .history(16, Duration::from_secs(300))
        .outgoing_queue(8, crimson_axum::sessions::OverflowPolicy::DropOldest)
        .write_timeout(Duration::from_secs(60));
    let cluster = config.session_cluster().clone();
    let app = Router::new()
        .crimson("/notes", NOTES, |session| handler(session, false))
        .layer(CrimsonLayer::new().config(NOTES, config));
    let server = TestServer::new(app).await;
    let mut ws = connect(&server.url("/notes")).await;
    sessions(&cluster, 1).await;
    let e = epoch(&next_text(&mut ws).await);
    // It reads nothing now: the socket, the write buffer, then the queue fill up.
    let chunk = "s".repeat(64 * 1024);
    let mut published = 0u64;
    let mut dropped = 0;
    while dropped < 40 {
        assert!(published < 5_000, "the queue never filled");
        let delivery = cluster.broadcast(&note(&chunk)).await.unwrap();
        published += 1;
        dropped += delivery.dropped_oldest;
        // The session's task writes what the socket takes meanwhile.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut last = 0;
    let mut gaps = 0;
    while last < published {
        let frame = next_text(&mut ws).await;
        let header = frame.split('\n').next().unwrap();
        let offset: u64 = header
            .split(' ')
            .find_map(|field| field.strip_prefix("o="))
            .unwrap()
            .parse()
            .unwrap();
        if header.starts_with("lost ") {
            assert_eq!(
                header,
                format!("lost s=all e={e} o={offset} reason=dropped")
            );
            assert!(offset > last, "a gap told at {offset} after {last}");
            gaps += 1;
        } else {
            assert!(header.starts_with(&format!("pub s=all e={e} ")), "{header}");
            assert_eq!(offset, last + 1, "{offset} after {last} with no gap told");
        }
        last = offset;
    }
    assert!(gaps > 0);
    assert!(
        last > 40 + 8,
        "some were written before the queue filled, or after the gap"
    );
    assert!(
        gaps < dropped,
        "consecutive drops are told once ({gaps} notices for {dropped} dropped)"
    );
}

/// A crimson-client that reconnects 50 ms after a drop.
fn client(url: String) -> CrimsonClient<Note, Note> {
    CrimsonClient::builder()
        .url(url)
        .retry(RetryPolicy::fixed(Duration::from_millis(50)).unwrap())
        .build()
        .unwrap()
}

/// The next recovery event of the room's stream (the client follows `all` too, where
/// nothing is published: recovered with 0).
async fn event(events: &mut crimson_client::Subscription<ClientEvent>) -> ClientEvent {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("events go on")
            .unwrap();
        match &next {
            ClientEvent::Recovered { stream, count } if stream == "all" => assert_eq!(*count, 0),
            ClientEvent::Recovered { .. } | ClientEvent::NotRecovered { .. } => return next,
            _ => {}
        }
    }
}

/// A crimson-client connected to `/notes`, with its events and messages subscribed to before
/// it connected, once the node has its session.
async fn connected(
    server: &TestServer,
    cluster: &Cluster<Note>,
) -> (
    CrimsonClient<Note, Note>,
    crimson_client::Subscription<ClientEvent>,
    crimson_client::Subscription<Note>,
) {
    let client = client(server.url("/notes"));
    let events = client.events();
    let incoming = client.incoming();
    client.connect().await.unwrap();
    sessions(cluster, 1).await;
    (client, events, incoming)
}

/// The next message the application gets, within 5 s.
async fn next_note(incoming: &mut crimson_client::Subscription<Note>) -> Note {
    tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .expect("a message within 5 s")
        .expect("messages go on")
        .unwrap()
}

/// Cuts the node's only session (as a restart of a proxy would), then waits until it is gone.
async fn cut(cluster: &Cluster<Note>) {
    let session = cluster.node().sessions().pop().expect("one session");
    cluster
        .node()
        .get(session.id)
        .unwrap()
        .close(crimson_axum::CloseCode::RESTART, "cut");
    for _ in 0..500 {
        if cluster.node().get(session.id).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the session did not end");
}

#[tokio::test]
async fn crimson_client_recovers_what_it_missed_once_and_in_order() {
    let (server, cluster) = server(100, true).await;
    let (client, mut events, mut incoming) = connected(&server, &cluster).await;
    for n in 1..=3 {
        cluster
            .broadcast_room("lobby", &note(&n.to_string()))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        cut(&cluster).await;
        // While it is away; the next connection's resume may come before or after them.
        for _ in 0..3 {
            cluster.broadcast_room("lobby", &note("x")).await.unwrap();
        }
        match event(&mut events).await {
            ClientEvent::Recovered { stream, count } => {
                assert_eq!(stream, "room:lobby");
                assert!(count <= 3, "{count}");
            }
            other => panic!("{other:?}"),
        }
    }
    cluster
        .broadcast_room("lobby", &note("last"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.last().map(|n: &Note| n.text.as_str()) != Some("last") {
        let next = next_note(&mut incoming).await;
        got.push(next);
    }
    let texts: Vec<&str> = got.iter().map(|n| n.text.as_str()).collect();
    let mut expected = vec!["1", "2", "3"];
    expected.extend(std::iter::repeat_n("x", 15));
    expected.push("last");
    assert_eq!(texts, expected, "every publication once, in order");
    let positions = client.positions();
    assert_eq!(positions.len(), 2, "{positions:?}");
    assert_eq!(positions[0].stream, "all");
    assert_eq!(positions[0].offset, 0);
    assert_eq!(positions[1].stream, "room:lobby");
    assert_eq!(positions[1].offset, 19);
    assert!(client.not_recovered().is_empty());
}

/// A room the session leaves is told (`unsub`): crimson-client forgets its stream, so a
/// reconnect resumes `all` only, and nothing is said of the room.
#[tokio::test]
async fn crimson_client_forgets_a_room_it_left() {
    let (server, cluster) = server(100, false).await;
    let (client, mut events, mut incoming) = connected(&server, &cluster).await;
    let streams = |client: &CrimsonClient<Note, Note>| -> Vec<String> {
        client.positions().into_iter().map(|p| p.stream).collect()
    };
    client.send(note("join")).unwrap();
    for _ in 0..500 {
        if cluster.room_len("lobby").await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster
        .broadcast_room("lobby", &note("hello"))
        .await
        .unwrap();
    let hello = next_note(&mut incoming).await;
    assert_eq!(hello.text, "hello");
    assert_eq!(streams(&client), ["all", "room:lobby"]);
    client.send(note("leave")).unwrap();
    for _ in 0..500 {
        if streams(&client) == ["all"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(streams(&client), ["all"], "the room left is forgotten");
    // Published while it is out of the room, then while it is away: not its to recover.
    cluster
        .broadcast_room("lobby", &note("not yours"))
        .await
        .unwrap();
    cut(&cluster).await;
    cluster
        .broadcast_room("lobby", &note("not yours either"))
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("events go on")
            .unwrap();
        match next {
            ClientEvent::Recovered { stream, count } => {
                assert_eq!((stream.as_str(), count), ("all", 0));
                break;
            }
            ClientEvent::NotRecovered { stream, reason } => panic!("{stream}: {reason}"),
            _ => {}
        }
    }
    assert!(client.not_recovered().is_empty());
    assert_eq!(streams(&client), ["all"]);
}

#[tokio::test]
async fn crimson_client_is_told_when_it_cannot_recover() {
    let (server, cluster) = server(2, true).await;
    let (client, mut events, mut incoming) = connected(&server, &cluster).await;
    cluster
        .broadcast_room("lobby", &note("seen"))
        .await
        .unwrap();
    let seen = next_note(&mut incoming).await;
    assert_eq!(seen.text, "seen");
    // Three missed, two kept: too many.
    let old = cluster.node().sessions().pop().unwrap().id;
    cluster
        .node()
        .get(old)
        .unwrap()
        .close(crimson_axum::CloseCode::RESTART, "cut");
    for _ in 0..500 {
        if cluster.node().get(old).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for n in 0..3 {
        cluster
            .broadcast_room("lobby", &note(&format!("gone {n}")))
            .await
            .unwrap();
    }
    match event(&mut events).await {
        ClientEvent::NotRecovered { stream, reason } => {
            assert_eq!(stream, "room:lobby");
            assert_eq!(reason, "history_too_short");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.not_recovered(),
        [("room:lobby".to_owned(), "history_too_short".to_owned())],
        "the state behind the event"
    );
    cluster
        .broadcast_room("lobby", &note("after"))
        .await
        .unwrap();
    let next = next_note(&mut incoming).await;
    assert_eq!(
        next.text, "after",
        "the stream goes on after the gap, which was said"
    );
}
