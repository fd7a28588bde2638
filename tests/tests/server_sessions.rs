//! crimson-axum sessions: extractors, split halves, timeouts, slow consumers, dead peers —
//! driven through `crimson_axum::testing` and raw sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Router;
use crimson_axum::cluster::{Cluster, LocalCluster};
use crimson_axum::sessions::OverflowPolicy;
use crimson_axum::testing::{TestError, TestServer};
use crimson_axum::{CloseCode, CrimsonConfig, CrimsonLayer, CrimsonSession, Payload, RouterExt};
use futures_util::StreamExt;

type Closes = Arc<Mutex<Vec<(CloseCode, String)>>>;

fn recording() -> (
    Closes,
    impl Fn(&crimson_axum::sessions::SessionInfo, CloseCode, &str) + Send + Sync + 'static,
) {
    let closes: Closes = Arc::default();
    let seen = closes.clone();
    (closes, move |_: &_, code, reason: &str| {
        seen.lock().unwrap().push((code, reason.to_owned()));
    })
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

#[derive(Clone)]
struct App {
    greeting: &'static str,
}

#[derive(serde::Deserialize)]
struct Room {
    room: String,
}

/// A user's own auth extractor: the `x-user` header, or 401.
struct User(String);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(|u| User(u.to_owned()))
            .ok_or((StatusCode::UNAUTHORIZED, "who are you?"))
    }
}

async fn greet(
    State(app): State<App>,
    Query(room): Query<Room>,
    User(user): User,
    session: CrimsonSession<String, String>,
) {
    let loopback = session.remote_addr().is_some_and(|a| a.ip().is_loopback());
    let agent = session.headers().contains_key("x-user");
    let _ = session
        .send(format!(
            "{} {user} in {} ({loopback}, {agent})",
            app.greeting, room.room
        ))
        .await;
    session.flush().await;
}

fn greet_app() -> Router {
    Router::new()
        .crimson::<String, String, _, _>("/greet", "greet", greet)
        .layer(CrimsonLayer::new().config("greet", CrimsonConfig::<String, String>::new()))
        .with_state(App { greeting: "hello" })
}

#[tokio::test]
async fn extractors_run_before_the_upgrade() {
    let server = TestServer::new(greet_app()).await;
    let mut conn = server
        .connect_with::<String, String>("/greet?room=lobby", &[("x-user", "ada")])
        .await
        .unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        "hello ada in lobby (true, true)"
    );
    // The handler returned: the session closes normally after its message.
    assert_eq!(conn.recv_close().await.unwrap().0, CloseCode::NORMAL);
}

#[tokio::test]
async fn an_extractor_rejection_answers_its_own_status_and_does_not_upgrade() {
    let server = TestServer::new(greet_app()).await;
    match server.connect::<String, String>("/greet?room=lobby").await {
        Err(TestError::Http { status, body }) => {
            assert_eq!((status, body.as_str()), (401, "who are you?"));
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    match server
        .connect_with::<String, String>("/greet", &[("x-user", "ada")])
        .await
    {
        Err(TestError::Http { status, .. }) => assert_eq!(status, 400, "Query's own rejection"),
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn split_sender_works_from_other_tasks_and_recv_timeout_times_out() {
    async fn ticker(session: CrimsonSession<String, String>) {
        let (sender, mut receiver) = session.split();
        let ticks = {
            let sender = sender.clone();
            tokio::spawn(async move {
                for n in 0..3 {
                    sender.send(format!("tick {n}")).await.unwrap();
                }
            })
        };
        ticks.await.unwrap();
        match receiver.recv_timeout(Duration::from_millis(50)).await {
            Err(_) => sender.send("timeout".into()).await.unwrap(),
            Ok(got) => sender.send(format!("unexpected {got:?}")).await.unwrap(),
        }
        let echoed = receiver.next().await.unwrap();
        sender.send(format!("echo {echoed}")).await.unwrap();
        sender.close(CloseCode::application(4100).unwrap(), "bye");
        assert!(
            sender.send("late".into()).await.is_err(),
            "sending after close errors"
        );
    }
    let app = Router::new()
        .crimson::<String, String, _, _>("/t", "t", ticker)
        .layer(CrimsonLayer::new().config("t", CrimsonConfig::<String, String>::new()));
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<String, String>("/t").await.unwrap();
    for n in 0..3 {
        assert_eq!(conn.recv().await.unwrap(), format!("tick {n}"));
    }
    assert_eq!(conn.recv().await.unwrap(), "timeout");
    conn.send(&"x".to_string()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), "echo x");
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!((code.as_u16(), reason.as_str()), (4100, "bye"));
}

#[tokio::test]
async fn binary_frames_and_raw_payload_routes() {
    async fn echo(mut session: CrimsonSession<Payload, Payload>) {
        while let Some(payload) = session.recv().await {
            let _ = session.send(payload).await;
        }
    }
    let app = Router::new()
        .crimson::<Payload, Payload, _, _>("/echo", "echo", echo)
        .layer(CrimsonLayer::new().config("echo", CrimsonConfig::<Payload, Payload>::new()));
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<Payload, Payload>("/echo").await.unwrap();
    let binary = Payload::Binary(vec![0u8, 159, 146, 150].into());
    conn.send(&binary).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), binary);
    let text = Payload::Text("ü".into());
    conn.send(&text).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), text);
}

/// A client that never reads cannot slow the others down: its queue overflows and it is
/// closed as a slow consumer, while a reading client gets every message in order.
#[tokio::test]
async fn a_stalled_reader_is_cut_off_and_never_delays_the_others() {
    async fn idle(mut session: CrimsonSession<String, String>) {
        while session.recv().await.is_some() {}
    }
    let cluster = Cluster::<String>::local();
    let (closes, on_close) = recording();
    let config = CrimsonConfig::<String, String>::new()
        .cluster(cluster.clone())
        .outgoing_queue(64, OverflowPolicy::Disconnect)
        .close_timeout(Duration::from_millis(300))
        .on_close(on_close);
    let app = Router::new()
        .crimson::<String, String, _, _>("/feed", "feed", idle)
        .layer(CrimsonLayer::new().config("feed", config));
    let server = TestServer::new(app).await;

    // The stalled client: completes the handshake, then never reads.
    let (_stalled, _) = tokio_tungstenite::connect_async(server.url("/feed"))
        .await
        .unwrap();
    let mut reader = server.connect::<String, String>("/feed").await.unwrap();
    wait_for(|| cluster.local_len() == 2).await;

    let chunk = "x".repeat(16 * 1024);
    let total = 2_000;
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reading = {
        let received = received.clone();
        tokio::spawn(async move {
            for n in 0..total {
                let got = reader
                    .recv()
                    .await
                    .expect("the reading client gets every message");
                assert!(
                    got.starts_with(&format!("{n}:")),
                    "message {n} out of order"
                );
                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let mut failed = 0;
    for n in 0..total {
        // Keep the reading client within half its queue bound, however slow the machine:
        // only the stalled client can overflow.
        while n - received.load(std::sync::atomic::Ordering::Relaxed) >= 32 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let delivery = cluster.broadcast(&format!("{n}:{chunk}")).await.unwrap();
        failed += delivery.failed;
    }
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("reader kept up")
        .unwrap();
    assert!(failed >= 1, "the stalled session's queue overflowed");
    let slow = || {
        closes
            .lock()
            .unwrap()
            .iter()
            .find(|(code, _)| *code == CloseCode::POLICY)
            .cloned()
    };
    wait_for(|| slow().is_some()).await;
    let (_, reason) = slow().unwrap();
    assert!(reason.starts_with("slow consumer"), "{reason}");
    // Both sessions are gone: the stalled one closed, the reader dropped its connection.
    wait_for(|| cluster.local_len() == 0).await;
    assert!(
        closes.lock().unwrap().contains(&(
            CloseCode::ABNORMAL,
            "connection dropped without a close frame".into()
        )),
        "{:?}",
        closes.lock().unwrap()
    );
}

/// A peer that stops answering pings is dropped after the pong timeout.
#[tokio::test]
async fn a_dead_peer_is_detected_by_ping_timeout() {
    async fn idle(mut session: CrimsonSession<String, String>) {
        while session.recv().await.is_some() {}
    }
    let (closes, on_close) = recording();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let config = CrimsonConfig::<String, String>::new()
        .ping_period(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(200))
        .on_close(on_close)
        .on_error(move |_, err| seen.lock().unwrap().push(err.to_string()));
    let app = Router::new()
        .crimson::<String, String, _, _>("/p", "p", idle)
        .layer(CrimsonLayer::new().config("p", config));
    let server = TestServer::new(app).await;

    // A live client answers pings while it reads.
    let mut live = server.connect::<String, String>("/p").await.unwrap();
    live.set_timeout(Duration::from_millis(600));
    assert!(
        matches!(live.recv().await, Err(TestError::Timeout)),
        "still connected after several pings"
    );
    assert!(
        closes.lock().unwrap().is_empty(),
        "a reading client is never timed out"
    );

    // A client that never reads never answers.
    let (_dead, _) = tokio_tungstenite::connect_async(server.url("/p"))
        .await
        .unwrap();
    wait_for(|| !closes.lock().unwrap().is_empty()).await;
    let (code, reason) = closes.lock().unwrap()[0].clone();
    assert_eq!(code, CloseCode::ABNORMAL);
    assert!(reason.contains("no answer to a ping"), "{reason}");
    assert!(errors
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.contains("pong timeout")));
}

#[tokio::test]
async fn max_lifetime_closes_1008() {
    async fn idle(mut session: CrimsonSession<String, String>) {
        while session.recv().await.is_some() {}
    }
    let app = Router::new()
        .crimson::<String, String, _, _>("/l", "l", idle)
        .layer(
            CrimsonLayer::new().config(
                "l",
                CrimsonConfig::<String, String>::new().cluster(Cluster::new(
                    LocalCluster::builder()
                        .max_lifetime(Duration::from_millis(100))
                        .watchdog_interval(Duration::from_millis(20))
                        .build(),
                )),
            ),
        );
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<String, String>("/l").await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::POLICY, "session lifetime over")
    );
}

/// A handler that sends with `send().await` to a client that stopped reading: no overflow
/// (the handler waits for room), so the write timeout ends the session.
#[tokio::test]
async fn a_stalled_write_is_cut_off_by_the_write_timeout() {
    let ended = Arc::new(Mutex::new(None));
    let handler = {
        let ended = ended.clone();
        move |session: CrimsonSession<String, String>| async move {
            let chunk = "y".repeat(64 * 1024);
            let mut sent = 0u64;
            while session.send(chunk.clone()).await.is_ok() {
                sent += 1;
            }
            *ended.lock().unwrap() = Some(sent);
        }
    };
    let (closes, on_close) = recording();
    let cluster = Cluster::<String>::local();
    let config = CrimsonConfig::<String, String>::new()
        .cluster(cluster.clone())
        .max_message_size(128 * 1024)
        .write_timeout(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300))
        .on_close(on_close);
    let app = Router::new()
        .crimson::<String, String, _, _>("/s", "s", handler)
        .layer(CrimsonLayer::new().config("s", config));
    let server = TestServer::new(app).await;
    let (_stalled, _) = tokio_tungstenite::connect_async(server.url("/s"))
        .await
        .unwrap();
    wait_for(|| !closes.lock().unwrap().is_empty()).await;
    let (code, reason) = closes.lock().unwrap()[0].clone();
    assert_eq!(code, CloseCode::ABNORMAL);
    assert!(reason.starts_with("no write progress within"), "{reason}");
    wait_for(|| ended.lock().unwrap().is_some()).await;
    wait_for(|| cluster.local_len() == 0).await;
}

/// A handler that does not read holds the reader back (TCP slows the client down) but is
/// not mistaken for a dead peer: pongs go unread, yet the session lives on.
#[tokio::test]
async fn a_handler_that_does_not_read_is_not_a_dead_peer() {
    async fn busy(session: CrimsonSession<String, String>) {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = session.send("still here".into()).await;
        session.flush().await;
    }
    let (closes, on_close) = recording();
    let config = CrimsonConfig::<String, String>::new()
        .ping_period(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(200))
        .incoming_queue(4)
        .on_close(on_close);
    let app = Router::new()
        .crimson::<String, String, _, _>("/b", "b", busy)
        .layer(CrimsonLayer::new().config("b", config));
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<String, String>("/b").await.unwrap();
    for n in 0..50 {
        conn.send(&n.to_string()).await.unwrap();
    }
    assert_eq!(conn.recv().await.unwrap(), "still here");
    assert_eq!(conn.recv_close().await.unwrap().0, CloseCode::NORMAL);
    wait_for(|| !closes.lock().unwrap().is_empty()).await;
    assert_eq!(
        closes.lock().unwrap()[0],
        (CloseCode::NORMAL, "session ended".to_owned())
    );
}

/// A hook that panics takes its session down, not the server, and the session leaves its
/// cluster all the same.
#[tokio::test]
async fn a_panicking_hook_does_not_leak_its_session() {
    async fn idle(mut session: CrimsonSession<String, String>) {
        while session.recv().await.is_some() {}
    }
    let cluster = Cluster::<String>::local();
    let config = CrimsonConfig::<String, String>::new()
        .cluster(cluster.clone())
        .on_connect(|info| {
            if info.path == "/h" {
                panic!("hook failed");
            }
        });
    let app = Router::new()
        .crimson::<String, String, _, _>("/h", "h", idle)
        .crimson::<String, String, _, _>("/ok", "h", idle)
        .layer(CrimsonLayer::new().config("h", config));
    let server = TestServer::new(app).await;
    let (_doomed, _) = tokio_tungstenite::connect_async(server.url("/h"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cluster.local_len(), 0, "the session left its cluster");
    let _fine = server.connect::<String, String>("/ok").await.unwrap();
    wait_for(|| cluster.local_len() == 1).await;
}

/// A message type whose decoder panics on "boom": user code running in the session's reader.
#[derive(Debug)]
struct Touchy(String);

impl crimson_axum::CrimsonMessage for Touchy {
    const FRAME: crimson_axum::FrameKind = crimson_axum::FrameKind::Text;
    const CODEC: &'static str = "text";

    fn encode(&self) -> Result<Payload, crimson_axum::EncodeError> {
        self.0.encode()
    }

    fn decode(payload: crimson_axum::PayloadRef<'_>) -> Result<Self, crimson_axum::DecodeError> {
        let text = String::decode(payload)?;
        assert!(text != "boom", "decoder exploded");
        Ok(Self(text))
    }
}

#[tokio::test]
async fn a_panicking_decoder_ends_its_session_with_a_full_teardown() {
    let closed = Arc::new(Mutex::new(None));
    let handler_done = Arc::new(Mutex::new(Vec::new()));
    let cluster = Cluster::<String>::local();
    let config = CrimsonConfig::<Touchy, String>::new()
        .cluster(cluster.clone())
        .on_close({
            let closed = closed.clone();
            move |_, code, reason| *closed.lock().unwrap() = Some((code, reason.to_owned()))
        });
    let app = Router::new()
        .crimson::<Touchy, String, _, _>("/t", "t", {
            let handler_done = handler_done.clone();
            move |mut session: CrimsonSession<Touchy, String>| {
                let handler_done = handler_done.clone();
                async move {
                    let mut got = Vec::new();
                    while let Some(Touchy(text)) = session.recv().await {
                        got.push(text);
                    }
                    *handler_done.lock().unwrap() = got;
                }
            }
        })
        .layer(CrimsonLayer::new().config("t", config));
    let server = TestServer::new(app).await;
    let (mut client, _) = tokio_tungstenite::connect_async(server.url("/t"))
        .await
        .unwrap();
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    client.send(Message::text("fine")).await.unwrap();
    client.send(Message::text("boom")).await.unwrap();
    // The connection is dropped, as after a failure: no close frame, then EOF or a reset.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame)) = client.next().await {
            assert!(
                !matches!(frame, Message::Close(_)),
                "no close frame: {frame:?}"
            );
        }
    })
    .await;
    assert!(ended.is_ok(), "the server dropped the connection");
    wait_for(|| closed.lock().unwrap().is_some()).await;
    let (code, reason) = closed.lock().unwrap().clone().unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::ABNORMAL, "internal error")
    );
    wait_for(|| !handler_done.lock().unwrap().is_empty()).await;
    assert_eq!(
        *handler_done.lock().unwrap(),
        ["fine"],
        "the handler saw its input end"
    );
    assert_eq!(cluster.local_len(), 0, "the session left its cluster");
}
