//! How sessions start, end and are limited: the close each way of ending sends and the record
//! the hooks get, graceful shutdown, connection limits, lifetimes, heartbeats, stalled writes,
//! idle clients; and the HTTP answers a route gives instead of upgrading (plain HTTP, origin,
//! setup mistakes).

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use crimson_axum::cluster::{Cluster, LocalCluster, LIFETIME_OVER};
use crimson_axum::sessions::{OverflowPolicy, Queued, SessionInfo};
use crimson_axum::testing::{TestError, TestServer};
use crimson_axum::{
    CloseCode, CloseRecord, ClosedBy, ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession,
    RouterExt,
};
use crimson_tests::apps::{chat, chat_app, CHAT};
use crimson_tests::messages::{ChatMessage, ChatResponse};
use crimson_tests::raw::{self, RawClient};
use crimson_tests::support::{bounded, Closes, Errors, Events};
use tokio::sync::oneshot;

const TEXT: ConfigName<String, String> = ConfigName::new("text");

fn record(code: CloseCode, reason: &str, by: ClosedBy) -> CloseRecord {
    CloseRecord {
        code,
        reason: reason.to_owned(),
        by,
    }
}

async fn idle(mut session: CrimsonSession<String, String>) {
    while session.recv().await.is_some() {}
}

async fn echo(mut session: CrimsonSession<String, String>) {
    while let Some(text) = session.recv().await {
        if session.send(text).await.is_err() {
            break;
        }
    }
}

/// `handler` at `path` with a `String` config.
fn text_app<H, T>(path: &str, config: CrimsonConfig<String, String>, handler: H) -> Router
where
    H: crimson_axum::CrimsonHandler<T, (), String, String>,
    T: 'static,
{
    Router::new()
        .crimson(path, TEXT, handler)
        .layer(CrimsonLayer::new().config(TEXT, config))
}

// ---------------------------------------------------------------------------------------
// How a session ends

#[tokio::test]
async fn a_returning_handler_closes_1000_session_ended_after_its_messages() {
    let closes = Closes::new();
    let (app, _) = chat_app(CrimsonConfig::new().on_close(closes.hook()));
    let server = TestServer::new(app).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    conn.send(&ChatMessage::new("last words")).await.unwrap();
    conn.send(&ChatMessage::new("bye")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap().text, "last words");
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::NORMAL, "session ended")
    );
    assert_eq!(
        closes.of_path("/chat").await,
        record(CloseCode::NORMAL, "session ended", ClosedBy::Server)
    );
}

#[tokio::test]
async fn a_client_close_is_reported_with_its_code_and_closed_by_client() {
    let closes = Closes::new();
    let seen_by_handler: Events<Option<CloseRecord>> = Events::new();
    let handler = {
        let seen = seen_by_handler.clone();
        move |mut session: CrimsonSession<String, String>| async move {
            while session.recv().await.is_some() {}
            seen.push(session.close_record());
        }
    };
    let server = TestServer::new(text_app(
        "/t",
        CrimsonConfig::new().on_close(closes.hook()),
        handler,
    ))
    .await;
    let conn = server.connect::<String, String>("/t").await.unwrap();
    conn.close(CloseCode::application(4001).unwrap(), "bye")
        .await
        .unwrap();
    let expected = record(CloseCode::from_u16(4001), "bye", ClosedBy::Client);
    assert_eq!(closes.of_path("/t").await, expected);
    assert_eq!(
        seen_by_handler.wait_len(1).await,
        [Some(expected)],
        "the handler sees the same record once its input ends"
    );
}

/// `close(code, reason)` decides how the session ends, even when the handler returns right
/// after it (its return must not replace the close with 1000 "session ended").
#[tokio::test]
async fn a_close_requested_just_before_the_handler_returns_keeps_its_code() {
    let closes = Closes::new();
    let handler = |session: CrimsonSession<String, String>| async move {
        let _ = session.send("goodbye".into()).await;
        session.close(CloseCode::application(4100).unwrap(), "bye");
    };
    let server = TestServer::new(text_app(
        "/c",
        CrimsonConfig::new().on_close(closes.hook()),
        handler,
    ))
    .await;
    let mut conn = server.connect::<String, String>("/c").await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), "goodbye");
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!((code.as_u16(), reason.as_str()), (4100, "bye"));
    assert_eq!(
        closes.of_path("/c").await,
        record(CloseCode::from_u16(4100), "bye", ClosedBy::Server)
    );
}

/// A handler that closes its session first thing (an authorisation check, say) and then
/// waits for its input to end: the close goes out at once, without waiting for the client to
/// send something or for a heartbeat.
#[tokio::test]
async fn a_close_first_thing_in_the_handler_goes_out_at_once() {
    let handler = |mut session: CrimsonSession<String, String>| async move {
        session.close(CloseCode::POLICY, "not allowed");
        while session.recv().await.is_some() {}
    };
    let server = TestServer::new(text_app(
        "/c",
        CrimsonConfig::new().without_heartbeat(),
        handler,
    ))
    .await;
    let mut conn = server.connect::<String, String>("/c").await.unwrap();
    let closed = conn.recv_close().await;
    assert!(
        matches!(&closed, Ok((CloseCode::POLICY, reason)) if reason == "not allowed"),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_long_close_reason_is_cut_to_fit_the_close_frame() {
    let closes = Closes::new();
    let handler = |mut session: CrimsonSession<String, String>| async move {
        let _ = session.recv().await;
        session.close(CloseCode::POLICY, &"é".repeat(100));
        while session.recv().await.is_some() {}
    };
    let server = TestServer::new(text_app(
        "/c",
        CrimsonConfig::new().on_close(closes.hook()),
        handler,
    ))
    .await;
    let mut conn = server.connect::<String, String>("/c").await.unwrap();
    conn.send(&"close, please".to_owned()).await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::POLICY);
    assert!(reason.len() <= 123, "{} bytes", reason.len());
    assert!(
        reason.starts_with("éé") && reason.ends_with('…'),
        "{reason}"
    );
    assert_eq!(closes.of_path("/c").await.reason, reason);
}

#[tokio::test]
async fn terminate_drops_the_connection_without_a_close_frame() {
    let closes = Closes::new();
    let seen_by_handler: Events<Option<CloseRecord>> = Events::new();
    let handler = {
        let seen = seen_by_handler.clone();
        move |mut session: CrimsonSession<String, String>| async move {
            let _ = session.send("going".into()).await;
            session.flush().await;
            session.terminate();
            while session.recv().await.is_some() {}
            seen.push(session.close_record());
        }
    };
    let server = TestServer::new(text_app(
        "/t",
        CrimsonConfig::new().on_close(closes.hook()),
        handler,
    ))
    .await;
    let mut client = RawClient::connect(server.addr(), "/t").await;
    assert_eq!(client.recv_text().await, "going");
    let after = client.recv_until_end().await;
    assert!(after.is_empty(), "no close frame: {after:?}");
    let expected = record(
        CloseCode::ABNORMAL,
        "terminated by the server",
        ClosedBy::Server,
    );
    assert_eq!(closes.of_path("/t").await, expected);
    assert_eq!(seen_by_handler.wait_len(1).await, [Some(expected)]);
}

#[tokio::test]
async fn a_handler_panic_closes_1011_and_the_others_live_on() {
    let closes = Closes::new();
    let errors = Errors::new();
    let (app, layer) = chat_app(
        CrimsonConfig::new()
            .on_close(closes.hook())
            .on_error(errors.hook()),
    );
    let server = TestServer::new(app).await;
    let mut doomed = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    let mut other = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    doomed.send(&ChatMessage::new("panic")).await.unwrap();
    let (code, reason) = doomed.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::INTERNAL_ERROR, "internal server error")
    );
    let closed = closes.wait_len(1).await;
    assert_eq!(
        closed[0].1,
        record(
            CloseCode::INTERNAL_ERROR,
            "internal server error",
            ClosedBy::Server
        )
    );
    assert!(
        errors
            .texts()
            .contains(&"the session handler panicked: asked to panic".to_owned()),
        "{:?}",
        errors.texts()
    );
    other.send(&ChatMessage::new("still here")).await.unwrap();
    assert_eq!(other.recv().await.unwrap().text, "still here");
    let cluster = layer.cluster(CHAT).unwrap();
    assert_eq!(
        cluster.node().len(),
        1,
        "the panicked session left its cluster"
    );
}

/// Served by `crimson_axum::serve`: on its shutdown signal every session sends what it has
/// queued, then closes with 1001; handlers see their input end, and the server returns.
#[tokio::test]
async fn graceful_shutdown_flushes_then_closes_1001() {
    let ended = Arc::new(AtomicUsize::new(0));
    let closes = Closes::new();
    let handler = {
        let ended = ended.clone();
        move |mut session: CrimsonSession<ChatMessage, ChatResponse>| async move {
            while session.recv().await.is_some() {}
            ended.fetch_add(1, Ordering::SeqCst);
        }
    };
    let layer = CrimsonLayer::new().config(CHAT, CrimsonConfig::new().on_close(closes.hook()));
    let app = Router::new()
        .crimson("/chat", CHAT, handler)
        .layer(layer.clone());
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signalled) = oneshot::channel::<()>();
    let server = tokio::spawn(
        crimson_axum::serve(listener, app)
            .grace(Duration::from_secs(10))
            .with_graceful_shutdown(async move {
                let _ = signalled.await;
            })
            .into_future(),
    );
    shutdown_flushes_then_closes(addr, &layer, signal, server, &ended, &closes).await;
}

/// Served by `axum::serve` with the layer's [`ShutdownHandle`](crimson_axum::ShutdownHandle):
/// the same.
#[tokio::test]
async fn graceful_shutdown_through_the_layers_handle_under_axum_serve() {
    let ended = Arc::new(AtomicUsize::new(0));
    let closes = Closes::new();
    let handler = {
        let ended = ended.clone();
        move |mut session: CrimsonSession<ChatMessage, ChatResponse>| async move {
            while session.recv().await.is_some() {}
            ended.fetch_add(1, Ordering::SeqCst);
        }
    };
    let layer = CrimsonLayer::new().config(CHAT, CrimsonConfig::new().on_close(closes.hook()));
    let app = Router::new()
        .crimson("/chat", CHAT, handler)
        .layer(layer.clone());
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signalled) = oneshot::channel::<()>();
    let handle = layer.shutdown_handle();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(handle.on(async move {
                let _ = signalled.await;
            }))
            .into_future(),
    );
    shutdown_flushes_then_closes(addr, &layer, signal, server, &ended, &closes).await;
    assert!(layer.shutdown_handle().is_shutting_down());
}

async fn shutdown_flushes_then_closes<E: std::fmt::Debug>(
    addr: std::net::SocketAddr,
    layer: &CrimsonLayer,
    signal: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), E>>,
    ended: &AtomicUsize,
    closes: &Closes,
) {
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(RawClient::connect(addr, "/chat").await);
    }
    assert_eq!(layer.live_sessions(), 3);
    let cluster = layer.cluster(CHAT).unwrap();
    for n in 0..50 {
        let delivery = cluster
            .broadcast(&ChatResponse::new(n.to_string(), "s"))
            .await
            .unwrap();
        assert_eq!(delivery.delivered, 3);
    }
    signal.send(()).unwrap();
    for client in &mut clients {
        for n in 0..50 {
            let got: ChatResponse = serde_json::from_str(&client.recv_text().await).unwrap();
            assert_eq!(got.text, n.to_string(), "queued messages are flushed first");
        }
        assert_eq!(
            client.recv_close().await,
            (1001, "server shutting down".to_owned())
        );
        // The client answers; then the server ends the connection.
        client.send_close(1001, "").await;
        assert!(client.recv_until_end().await.is_empty());
    }
    bounded("the server stops once its sessions have ended", server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.load(Ordering::SeqCst), 3, "every handler ended");
    assert_eq!(layer.live_sessions(), 0);
    let records = closes.wait_len(3).await;
    assert!(
        records.iter().all(|(_, r)| *r
            == record(
                CloseCode::GOING_AWAY,
                "server shutting down",
                ClosedBy::Server
            )),
        "{records:?}"
    );
}

/// A client that stopped reading, with its socket and its queue full, cannot hold a shutdown
/// up: the server returns within its grace period and the session is dropped with it (not
/// left until its write timeout, a minute here).
#[tokio::test]
async fn a_client_that_does_not_read_cannot_hold_up_a_shutdown() {
    let closes = Closes::new();
    let layer = CrimsonLayer::new().config(
        TEXT,
        CrimsonConfig::new()
            .outgoing_queue(8, OverflowPolicy::DropOldest)
            .write_timeout(Duration::from_secs(60))
            .close_timeout(Duration::from_millis(500))
            .on_close(closes.hook()),
    );
    let app = Router::new().crimson("/s", TEXT, idle).layer(layer.clone());
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signalled) = oneshot::channel::<()>();
    let server = tokio::spawn(
        crimson_axum::serve(listener, app)
            .grace(Duration::from_millis(500))
            .with_graceful_shutdown(async move {
                let _ = signalled.await;
            })
            .into_future(),
    );
    let (_stalled, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/s"))
        .await
        .unwrap();
    let cluster = layer.cluster(TEXT).unwrap();
    // Until its socket, its write buffer and its queue are full.
    let chunk = "s".repeat(64 * 1024);
    let mut sent = 0;
    loop {
        assert!(sent < 5_000, "the queue never filled");
        let delivery = cluster.broadcast(&chunk).await.unwrap();
        assert_eq!(delivery.delivered, 1);
        if delivery.dropped_oldest > 0 {
            break;
        }
        sent += 1;
        tokio::task::yield_now().await;
    }
    signal.send(()).unwrap();
    bounded("the server returns within its grace period", server)
        .await
        .unwrap()
        .unwrap();
    let ended = closes.of_path("/s").await;
    assert_eq!(
        ended,
        record(
            CloseCode::GOING_AWAY,
            "server shutting down",
            ClosedBy::Server
        )
    );
    assert_eq!(layer.live_sessions(), 0);
    assert!(cluster.node().is_empty());
}

#[tokio::test]
async fn dropping_the_test_server_closes_its_sessions_1001() {
    let closes = Closes::new();
    let (app, _) = chat_app(CrimsonConfig::new().on_close(closes.hook()));
    let server = TestServer::new(app).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    drop(server);
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::GOING_AWAY, "server shutting down")
    );
    assert_eq!(
        closes.of_path("/chat").await,
        record(
            CloseCode::GOING_AWAY,
            "server shutting down",
            ClosedBy::Server
        )
    );
}

// ---------------------------------------------------------------------------------------
// Limits

async fn a_limit_of_one_closes_the_second_1013(config: CrimsonConfig<String, String>) {
    let closes = Closes::new();
    let connects: Events<SessionInfo> = Events::new();
    let config = config.on_close(closes.hook()).on_connect({
        let connects = connects.clone();
        move |info| connects.push(info.clone())
    });
    let server = TestServer::new(text_app("/l", config, echo)).await;
    let mut first = server.connect::<String, String>("/l").await.unwrap();
    let mut second = server.connect::<String, String>("/l").await.unwrap();
    let (code, reason) = second.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (
            CloseCode::TRY_AGAIN_LATER,
            "connection limit reached (1 sessions)"
        )
    );
    // The first one is not disturbed.
    first.send(&"still here".to_owned()).await.unwrap();
    assert_eq!(first.recv().await.unwrap(), "still here");
    assert_eq!(connects.len(), 1, "a refused session never connected");
    // Once the first has gone, there is room again.
    first.close(CloseCode::NORMAL, "").await.unwrap();
    closes
        .wait_until("the first session's close", |events| {
            events.iter().any(|(_, r)| r.by == ClosedBy::Client)
        })
        .await;
    let mut third = server.connect::<String, String>("/l").await.unwrap();
    third.send(&"room again".to_owned()).await.unwrap();
    assert_eq!(third.recv().await.unwrap(), "room again");
}

#[tokio::test]
async fn the_configs_connection_limit_closes_1013() {
    a_limit_of_one_closes_the_second_1013(CrimsonConfig::new().max_connections(Some(1))).await;
}

#[tokio::test]
async fn the_clusters_connection_limit_closes_1013() {
    let limited = LocalCluster::builder().max_connections(1).build();
    a_limit_of_one_closes_the_second_1013(CrimsonConfig::new().cluster(Cluster::new(limited)))
        .await;
}

/// A refused session was never connected: `on_close` must not report it (an app counting
/// `on_connect` and `on_close` would go wrong), as when an upgrade does not complete.
#[tokio::test]
async fn a_refused_session_is_not_reported_to_on_close() {
    let closes = Closes::new();
    let config = CrimsonConfig::new()
        .max_connections(Some(1))
        .on_close(closes.hook());
    let server = TestServer::new(text_app("/l", config, echo)).await;
    let mut first = server.connect::<String, String>("/l").await.unwrap();
    let mut second = server.connect::<String, String>("/l").await.unwrap();
    assert_eq!(
        second.recv_close().await.unwrap().0,
        CloseCode::TRY_AGAIN_LATER
    );
    first.send(&"x".to_owned()).await.unwrap();
    assert_eq!(first.recv().await.unwrap(), "x");
    first.close(CloseCode::NORMAL, "done").await.unwrap();
    let records = closes
        .wait_until("the first session's close", |events| {
            events.iter().any(|(_, r)| r.reason == "done")
        })
        .await;
    assert_eq!(
        closes.records(),
        [record(CloseCode::NORMAL, "done", ClosedBy::Client)],
        "only the session that connected is reported: {records:?}"
    );
}

#[tokio::test]
async fn the_per_address_limit_is_429_before_the_upgrade() {
    let closes = Closes::new();
    let connects: Events<SessionInfo> = Events::new();
    let config = CrimsonConfig::new()
        .max_connections_per_address(Some(2))
        .on_close(closes.hook())
        .on_connect({
            let connects = connects.clone();
            move |info| connects.push(info.clone())
        });
    let server = TestServer::new(text_app("/a", config, echo)).await;
    let first = server.connect::<String, String>("/a").await.unwrap();
    let _second = server.connect::<String, String>("/a").await.unwrap();
    match server.connect::<String, String>("/a").await {
        Err(TestError::Http { status, body }) => {
            assert_eq!(status, 429);
            assert_eq!(
                body,
                "too many WebSocket connections from this address (at most 2): try again later"
            );
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    let response = raw::http(
        server.addr(),
        "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 5"),
        "{response}"
    );
    assert_eq!(connects.len(), 2, "refused before any session existed");
    // A slot frees when a session ends.
    first.close(CloseCode::NORMAL, "").await.unwrap();
    closes.wait_len(1).await;
    let mut again = server.connect::<String, String>("/a").await.unwrap();
    again.send(&"in".to_owned()).await.unwrap();
    assert_eq!(again.recv().await.unwrap(), "in");
}

#[tokio::test]
async fn the_session_lifetime_closes_1008() {
    let closes = Closes::new();
    let cluster = Cluster::new(
        LocalCluster::builder()
            .max_lifetime(Duration::from_millis(100))
            .watchdog_interval(Duration::from_millis(20))
            .build(),
    );
    let config = CrimsonConfig::new()
        .cluster(cluster)
        .on_close(closes.hook());
    let server = TestServer::new(text_app("/l", config, idle)).await;
    let mut conn = server.connect::<String, String>("/l").await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!((code, reason.as_str()), (CloseCode::POLICY, LIFETIME_OVER));
    assert_eq!(
        closes.of_path("/l").await,
        record(CloseCode::POLICY, "session lifetime over", ClosedBy::Server)
    );
}

#[tokio::test]
async fn the_idle_timeout_closes_a_silent_client_1008() {
    let closes = Closes::new();
    let config = CrimsonConfig::new()
        .idle_timeout(Some(Duration::from_millis(300)))
        .on_close(closes.hook());
    let app = Router::new()
        .crimson("/talker", TEXT, echo)
        .crimson("/silent", TEXT, echo)
        .layer(CrimsonLayer::new().config(TEXT, config));
    let server = TestServer::new(app).await;
    // Connected first, and says something at once.
    let mut talker = server.connect::<String, String>("/talker").await.unwrap();
    talker.send(&"hi".to_owned()).await.unwrap();
    assert_eq!(talker.recv().await.unwrap(), "hi");
    let mut silent = server.connect::<String, String>("/silent").await.unwrap();
    let (code, reason) = silent.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::POLICY, "no message within 300ms")
    );
    assert_eq!(
        closes.of_path("/silent").await,
        record(
            CloseCode::POLICY,
            "no message within 300ms",
            ClosedBy::Server
        )
    );
    // The talker has been quiet for longer than the timeout since, and is still served.
    talker.send(&"still here".to_owned()).await.unwrap();
    assert_eq!(talker.recv().await.unwrap(), "still here");
    assert_eq!(closes.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Dead and slow peers

/// A peer that stops answering pings is dropped after the timeout; one that reads is never.
#[tokio::test]
async fn a_dead_peer_is_dropped_after_the_ping_timeout() {
    let closes = Closes::new();
    let errors = Errors::new();
    // A pong timeout long enough that a loaded machine never misses a live client's answer.
    let config = CrimsonConfig::new()
        .heartbeat(Duration::from_millis(100), Duration::from_secs(1))
        .on_close(closes.hook())
        .on_error(errors.hook());
    let app = Router::new()
        .crimson("/live", TEXT, idle)
        .crimson("/dead", TEXT, idle)
        .layer(CrimsonLayer::new().config(TEXT, config));
    let server = TestServer::new(app).await;

    // A live client answers pings while it reads: it reads for the whole test.
    let mut live = server.connect::<String, String>("/live").await.unwrap();
    live.set_timeout(Duration::from_secs(60));
    let reading = tokio::spawn(async move { live.recv().await });

    // A client that never reads never answers.
    let (_dead, _) = tokio_tungstenite::connect_async(server.url("/dead"))
        .await
        .unwrap();
    assert_eq!(
        closes.of_path("/dead").await,
        record(
            CloseCode::ABNORMAL,
            "no answer to a ping within 1s",
            ClosedBy::Failure
        )
    );
    assert!(
        errors
            .texts()
            .contains(&"no answer to a ping within the pong timeout".to_owned()),
        "{:?}",
        errors.texts()
    );
    // By now the live client has answered several pings.
    assert!(!reading.is_finished(), "the live client is still connected");
    assert_eq!(closes.len(), 1, "{:?}", closes.all());
    reading.abort();
}

/// A handler that does not read holds the reader back (TCP slows the client down) but is
/// not mistaken for a dead peer: pongs wait unread behind its messages, yet the session lives.
#[tokio::test]
async fn a_handler_that_does_not_read_is_not_a_dead_peer() {
    async fn busy(session: CrimsonSession<String, String>) {
        // Several heartbeat timeouts without reading anything.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = session.send("still here".into()).await;
    }
    let closes = Closes::new();
    let config = CrimsonConfig::new()
        .heartbeat(Duration::from_millis(50), Duration::from_millis(200))
        .incoming_queue(4)
        .on_close(closes.hook());
    let server = TestServer::new(text_app("/b", config, busy)).await;
    let mut conn = server.connect::<String, String>("/b").await.unwrap();
    for n in 0..50 {
        conn.send(&n.to_string()).await.unwrap();
    }
    assert_eq!(conn.recv().await.unwrap(), "still here");
    assert_eq!(conn.recv_close().await.unwrap().0, CloseCode::NORMAL);
    assert_eq!(
        closes.of_path("/b").await,
        record(CloseCode::NORMAL, "session ended", ClosedBy::Server)
    );
}

/// A handler sending with `send().await` to a client that stopped reading waits for room;
/// the write timeout ends the session, and other sessions are served all the while.
#[tokio::test]
async fn a_stalled_writer_is_cut_by_the_write_timeout_and_never_delays_the_others() {
    let stalled: Events<()> = Events::new();
    let ended: Events<u64> = Events::new();
    let flood = {
        let stalled = stalled.clone();
        let ended = ended.clone();
        move |session: CrimsonSession<String, String>| async move {
            let chunk = "y".repeat(64 * 1024);
            let mut sent = 0u64;
            // Until the queue is full: the socket and the write buffer are, too.
            loop {
                match session.try_send(chunk.clone()) {
                    Ok(Queued::Queued) => sent += 1,
                    Ok(Queued::DroppedOldest) => break,
                    Err(err) => panic!("{err}"),
                }
                tokio::task::yield_now().await;
            }
            stalled.push(());
            while session.send(chunk.clone()).await.is_ok() {
                sent += 1;
            }
            ended.push(sent);
        }
    };
    let closes = Closes::new();
    let errors = Errors::new();
    let layer = CrimsonLayer::new().config(
        TEXT,
        CrimsonConfig::new()
            .outgoing_queue(16, OverflowPolicy::DropOldest)
            .write_timeout(Duration::from_secs(3))
            .on_close(closes.hook())
            .on_error(errors.hook()),
    );
    let app = Router::new()
        .crimson("/flood", TEXT, flood)
        .crimson("/echo", TEXT, echo)
        .layer(layer.clone());
    let server = TestServer::new(app).await;
    let cluster = layer.cluster(TEXT).unwrap();

    let (_stalled, _) = tokio_tungstenite::connect_async(server.url("/flood"))
        .await
        .unwrap();
    stalled.wait_len(1).await;
    let mut other = server.connect::<String, String>("/echo").await.unwrap();
    for n in 0..20 {
        other.send(&n.to_string()).await.unwrap();
        assert_eq!(other.recv().await.unwrap(), n.to_string());
    }
    assert!(
        closes.is_empty(),
        "the round trips were served while the flood was stalled: {:?}",
        closes.all()
    );

    assert_eq!(
        closes.of_path("/flood").await,
        record(
            CloseCode::ABNORMAL,
            "no write progress within 3s",
            ClosedBy::Failure
        )
    );
    assert!(
        errors
            .texts()
            .contains(&"a write made no progress within 3s: the client stopped reading".to_owned()),
        "{:?}",
        errors.texts()
    );
    ended.wait_len(1).await;
    assert_eq!(cluster.node().len(), 1, "only the reading session is left");
    other.send(&"after".to_owned()).await.unwrap();
    assert_eq!(other.recv().await.unwrap(), "after");
}

// ---------------------------------------------------------------------------------------
// Answers without an upgrade

#[tokio::test]
async fn plain_http_gets_426_saying_it_is_a_websocket_endpoint() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let server = TestServer::new(app).await;
    let response = raw::http(
        server.addr(),
        "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response.contains("this is a WebSocket endpoint"),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("upgrade: websocket"),
        "{response}"
    );
}

#[tokio::test]
async fn broken_upgrade_requests_get_their_own_status() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let server = TestServer::new(app).await;
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nConnection: close\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (
            format!("POST /chat HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\n{key}Content-Length: 0\r\n\r\n"),
            "405",
            "a WebSocket upgrade must use GET",
        ),
        (
            format!("GET /chat HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 8\r\n{key}\r\n"),
            "426",
            "`Sec-WebSocket-Version` must be 13",
        ),
        (
            format!("GET /chat HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n"),
            "400",
            "no `Sec-WebSocket-Key` header",
        ),
    ];
    for (request, status, says) in cases {
        let response = raw::http(server.addr(), &request).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{request}\n=> {response}"
        );
        assert!(response.contains(says), "{response}");
    }
}

#[tokio::test]
async fn a_disallowed_origin_is_403_before_the_upgrade() {
    let connects: Events<SessionInfo> = Events::new();
    let config = CrimsonConfig::new()
        .allowed_origins(["http://good.example"])
        .on_connect({
            let connects = connects.clone();
            move |info| connects.push(info.clone())
        });
    let (app, _) = chat_app(config);
    let server = TestServer::new(app).await;
    let refused = |result: Result<_, TestError>| match result {
        Err(TestError::Http { status, body }) => (status, body),
        Ok(_) => panic!("expected a 403, got a connection"),
        Err(other) => panic!("expected a 403, got {other}"),
    };
    let evil = server
        .connect_with::<ChatMessage, ChatResponse>("/chat", &[("origin", "http://evil.example")])
        .await;
    assert_eq!(
        refused(evil),
        (
            403,
            "origin `http://evil.example` is not allowed to open this WebSocket".to_owned()
        )
    );
    let none = server.connect::<ChatMessage, ChatResponse>("/chat").await;
    assert_eq!(
        refused(none),
        (
            403,
            "this WebSocket requires an allowed `Origin` header".to_owned()
        )
    );
    assert!(connects.is_empty());
    let mut good = server
        .connect_with::<ChatMessage, ChatResponse>("/chat", &[("origin", "HTTP://Good.Example")])
        .await
        .expect("origins compare without case");
    good.send(&ChatMessage::new("in")).await.unwrap();
    assert_eq!(good.recv().await.unwrap().text, "in");
}

// ---------------------------------------------------------------------------------------
// Setup mistakes: with string config names they are found at request time (500); typed
// names make them compile errors.

async fn http_error(app: Router, path: &str) -> (u16, String) {
    let server = TestServer::new(app).await;
    match server.connect::<String, String>(path).await {
        Err(TestError::Http { status, body }) => (status, body),
        Ok(_) => panic!("expected an HTTP error, got a connection"),
        Err(other) => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test]
async fn a_string_config_name_takes_its_types_from_the_handler() {
    let app = Router::new().crimson("/chat", "chat", chat).layer(
        CrimsonLayer::new().config("chat", CrimsonConfig::<ChatMessage, ChatResponse>::new()),
    );
    let server = TestServer::new(app).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    conn.send(&ChatMessage::new("typed by the handler"))
        .await
        .unwrap();
    assert_eq!(conn.recv().await.unwrap().text, "typed by the handler");
}

#[tokio::test]
async fn a_missing_config_is_a_500_naming_it() {
    let layer = CrimsonLayer::new().config(CHAT, CrimsonConfig::new());
    let app = Router::new()
        .crimson("/chat", "nope", chat)
        .layer(layer.clone());
    let (status, body) = http_error(app, "/chat").await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with("Crimson config \"nope\" is not registered: add `CrimsonLayer::new().config(\"nope\", CrimsonConfig::<crimson_tests::messages::ChatMessage, crimson_tests::messages::ChatResponse>::new())`"),
        "{body}"
    );
    assert!(body.ends_with("(registered: \"chat\")"), "{body}");
    // The same check at startup.
    let err = layer
        .cluster::<ChatMessage, ChatResponse>("nope")
        .unwrap_err();
    assert_eq!(err.to_string(), body);
}

#[tokio::test]
async fn mismatched_config_types_are_a_500_naming_both() {
    let layer = CrimsonLayer::new().config(CHAT, CrimsonConfig::new());
    let app = Router::new()
        .crimson("/raw", "chat", idle)
        .layer(layer.clone());
    let (status, body) = http_error(app, "/raw").await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        "Crimson config \"chat\" is registered for CrimsonConfig<crimson_tests::messages::ChatMessage, \
         crimson_tests::messages::ChatResponse>, but this route was mounted for \
         CrimsonSession<alloc::string::String, alloc::string::String>"
    );
    assert_eq!(
        layer
            .cluster::<String, String>("chat")
            .unwrap_err()
            .to_string(),
        body
    );
}

#[tokio::test]
async fn a_route_without_its_layer_is_a_500_saying_so() {
    let app = Router::new().crimson("/chat", "chat", chat);
    let (status, body) = http_error(app, "/chat").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("Crimson route /chat needs config \"chat\", but no CrimsonLayer is applied"),
        "{body}"
    );
}

fn panic_text(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let panic = std::panic::catch_unwind(run).expect_err("it panics");
    match panic.downcast::<String>() {
        Ok(text) => *text,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .unwrap_or_default(),
    }
}

#[test]
fn registering_an_invalid_config_panics_with_the_reason() {
    let text = panic_text(|| {
        let _ = CrimsonLayer::new().config(
            CHAT,
            CrimsonConfig::new().outgoing_queue(0, OverflowPolicy::Disconnect),
        );
    });
    assert_eq!(
        text,
        "Crimson config \"chat\" is invalid: the outgoing queue must hold at least 1 message"
    );
    let text = panic_text(|| {
        let _ = CrimsonLayer::new().config(CHAT, CrimsonConfig::new().max_connections(Some(0)));
    });
    assert!(text.contains("max_connections is 0"), "{text}");
}

#[test]
fn registering_a_name_twice_panics() {
    let text = panic_text(|| {
        let _ = CrimsonLayer::new()
            .config(CHAT, CrimsonConfig::new())
            .config("chat", CrimsonConfig::<String, String>::new());
    });
    assert_eq!(text, "Crimson config \"chat\" is registered twice");
}

// ---------------------------------------------------------------------------------------
// `crimson_axum::serve`'s own limits

/// Serves `app` with `configure` applied; returns its address.
async fn serve_with(
    app: Router,
    configure: impl FnOnce(crimson_axum::Serve) -> crimson_axum::Serve,
) -> std::net::SocketAddr {
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(configure(crimson_axum::serve(listener, app)).into_future());
    addr
}

/// Whether the server closes `tcp` within `within` (a read ends or fails).
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_handshake_never_finished_is_closed_by_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = text_app("/s", CrimsonConfig::new(), idle);
    let addr = serve_with(app, |serve| {
        serve.handshake_timeout(Duration::from_millis(300))
    })
    .await;
    // One says nothing; one sends half its request.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /s HTTP/1.1\r\nHost: x\r\nUpgrade: web")
        .await
        .unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    assert!(closed_within(&mut half, Duration::from_secs(10)).await);
    // A client that finishes its handshake in time is served.
    let served = tokio_tungstenite::connect_async(format!("ws://{addr}/s")).await;
    assert!(served.is_ok(), "{:?}", served.err());
}

#[tokio::test]
async fn one_address_past_its_connection_limit_is_cut_at_once() {
    let app = text_app("/s", CrimsonConfig::new(), idle);
    let addr = serve_with(app, |serve| serve.max_connections_per_ip(Some(2))).await;
    let url = format!("ws://{addr}/s");
    let (_first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // The third from 127.0.0.1 is closed before anything is read from it.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(10)).await);
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    // Another address is not limited by this one's connections.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = other.connect(addr).await.unwrap();
    let (_fourth, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("another address connects");
}
