//! Handlers: axum extractors before the upgrade, the split halves of a session, raw payload
//! routes, and user code that panics (a decoder, a hook) without taking more than its own
//! session down.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Router;
use crimson_axum::sessions::SessionInfo;
use crimson_axum::testing::{TestError, TestServer};
use crimson_axum::{
    CloseCode, ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonSession,
    DecodeError, EncodeError, FrameKind, Payload, PayloadRef, RouterExt,
};
use crimson_tests::raw::{op, RawClient};
use crimson_tests::support::{bounded, eventually, Closes, Events};
use futures_util::StreamExt;

const GREET: ConfigName<String, String> = ConfigName::new("greet");

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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: CrimsonSession<String, String>,
) {
    let same_peer = session.remote_addr() == Some(peer) && peer.ip().is_loopback();
    let header = session
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let info = session.info();
    let _ = session
        .send(format!(
            "{} {user} in {} ({same_peer}, {header}, {} {})",
            app.greeting, room.room, info.path, info.config
        ))
        .await;
}

fn greet_app(connects: &Events<SessionInfo>) -> Router {
    let connects = connects.clone();
    Router::new()
        .crimson("/greet", GREET, greet)
        .layer(CrimsonLayer::new().config(
            GREET,
            CrimsonConfig::new().on_connect(move |info| connects.push(info.clone())),
        ))
        .with_state(App { greeting: "hello" })
}

#[tokio::test]
async fn extractors_run_before_the_upgrade() {
    let connects = Events::new();
    let server = TestServer::new(greet_app(&connects)).await;
    let mut conn = server
        .connect_with::<String, String>("/greet?room=lobby", &[("x-user", "ada")])
        .await
        .unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        "hello ada in lobby (true, ada, /greet greet)"
    );
    // The handler returned: the session closes normally after its message.
    assert_eq!(
        conn.recv_close().await.unwrap(),
        (CloseCode::NORMAL, "session ended".to_owned())
    );
    assert_eq!(connects.len(), 1);
}

#[tokio::test]
async fn an_extractor_rejection_answers_its_own_status_and_does_not_upgrade() {
    let connects = Events::new();
    let server = TestServer::new(greet_app(&connects)).await;
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
        Err(TestError::Http { status, body }) => {
            assert_eq!(status, 400, "Query's own rejection: {body}");
            assert!(body.contains("missing field `room`"), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(connects.is_empty(), "no session was started");
}

#[tokio::test]
async fn the_split_sender_works_from_other_tasks_and_recv_timeout_times_out() {
    async fn ticker(session: CrimsonSession<String, String>) {
        let (sender, mut receiver) = session.split();
        let ticks = {
            let sender = sender.clone();
            tokio::spawn(async move {
                for n in 0..3 {
                    sender.send(format!("tick {n}")).await.unwrap();
                }
                sender.flush().await;
            })
        };
        ticks.await.unwrap();
        // The client waits for the ticks before it sends anything.
        match receiver.recv_timeout(Duration::from_millis(50)).await {
            Err(_) => sender.send("timeout".into()).await.unwrap(),
            Ok(got) => sender.send(format!("unexpected {got:?}")).await.unwrap(),
        }
        let echoed = receiver.next().await.unwrap();
        sender.send(format!("echo {echoed}")).await.unwrap();
        let within = receiver.recv_timeout(Duration::from_secs(10)).await;
        sender.send(format!("then {within:?}")).await.unwrap();
        sender.close(CloseCode::application(4100).unwrap(), "bye");
        assert!(sender.is_closed());
        assert!(
            sender.send("late".into()).await.is_err(),
            "sending after close errors"
        );
        assert!(sender.try_send("late".into()).is_err());
        // The close ends the input too.
        assert_eq!(receiver.next().await, None);
    }
    let app = Router::new()
        .crimson("/t", GREET, ticker)
        .layer(CrimsonLayer::new().config(GREET, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<String, String>("/t").await.unwrap();
    for n in 0..3 {
        assert_eq!(conn.recv().await.unwrap(), format!("tick {n}"));
    }
    assert_eq!(conn.recv().await.unwrap(), "timeout");
    conn.send(&"x".to_owned()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), "echo x");
    conn.send(&"y".to_owned()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), "then Ok(Some(\"y\"))");
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
    const RAW: ConfigName<Payload, Payload> = ConfigName::new("raw");
    let app = Router::new()
        .crimson("/echo", RAW, echo)
        .layer(CrimsonLayer::new().config(RAW, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    let mut conn = server.connect::<Payload, Payload>("/echo").await.unwrap();
    let binary = Payload::Binary(vec![0u8, 159, 146, 150].into());
    conn.send(&binary).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), binary);
    let text = Payload::Text("ü".into());
    conn.send(&text).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), text);
    let empty = Payload::Binary(Vec::new().into());
    conn.send(&empty).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), empty);
    // A large binary message (over one read, several frames on the way back in one piece).
    let large = Payload::Binary((0..60_000u32).map(|n| n as u8).collect::<Vec<_>>().into());
    conn.send(&large).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), large);

    // The frame kind is kept: a raw client sees a Binary frame for a Binary payload.
    let mut raw = RawClient::connect(server.addr(), "/echo").await;
    raw.send(op::BINARY, &[1, 2, 3]).await;
    let frame = raw.next_frame().await.unwrap();
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (op::BINARY, &[1, 2, 3][..])
    );
}

/// A message type whose decoder panics on "boom": user code running in the session's reader.
#[derive(Debug)]
struct Touchy(String);

impl CrimsonMessage for Touchy {
    const FRAME: FrameKind = FrameKind::Text;
    const CODEC: &'static str = "text";

    fn encode(&self) -> Result<Payload, EncodeError> {
        self.0.encode()
    }

    fn decode(payload: PayloadRef<'_>) -> Result<Self, DecodeError> {
        let text = String::decode(payload)?;
        assert!(text != "boom", "decoder exploded");
        Ok(Self(text))
    }
}

/// A decoder that panics takes its own session down, and all of it: the connection ends, the
/// close hook reports it, the handler sees its input end, the session leaves its cluster and
/// the layer's count. Other sessions go on.
#[tokio::test]
async fn a_panicking_decoder_ends_its_session_with_a_full_teardown() {
    const TOUCHY: ConfigName<Touchy, String> = ConfigName::new("touchy");
    let closes = Closes::new();
    let handler_saw: Events<Vec<String>> = Events::new();
    let layer = CrimsonLayer::new().config(TOUCHY, CrimsonConfig::new().on_close(closes.hook()));
    let app = Router::new()
        .crimson("/t", TOUCHY, {
            let handler_saw = handler_saw.clone();
            move |mut session: CrimsonSession<Touchy, String>| async move {
                let mut got = Vec::new();
                while let Some(Touchy(text)) = session.recv().await {
                    let _ = session.send(format!("got {text}")).await;
                    got.push(text);
                }
                handler_saw.push(got);
            }
        })
        .layer(layer.clone());
    let server = TestServer::new(app).await;
    let cluster = layer.cluster(TOUCHY).unwrap();
    let mut other = server.connect::<String, String>("/t").await.unwrap();

    let mut client = RawClient::connect(server.addr(), "/t").await;
    client.send(op::TEXT, b"fine").await;
    assert_eq!(client.recv_text().await, "got fine");
    client.send(op::TEXT, b"boom").await;
    // The connection ends, whatever the server says first.
    bounded("the connection ends", client.recv_until_end()).await;

    let record = closes.wait_len(1).await.remove(0).1;
    assert!(
        [CloseCode::ABNORMAL, CloseCode::INTERNAL_ERROR].contains(&record.code),
        "{record:?}"
    );
    assert_eq!(
        handler_saw.wait_len(1).await,
        [vec!["fine".to_owned()]],
        "the handler saw its input end"
    );
    assert_eq!(cluster.node().len(), 1, "the session left its cluster");
    assert_eq!(layer.live_sessions(), 1);
    other.send(&"still here".to_owned()).await.unwrap();
    assert_eq!(other.recv().await.unwrap(), "got still here");
}

async fn idle(mut session: CrimsonSession<String, String>) {
    while session.recv().await.is_some() {}
}

/// Each hook panics for one path; the sessions it ran for leave their cluster and the
/// layer's count, and the server serves the next session.
#[tokio::test]
async fn a_panicking_hook_does_not_leak_its_session() {
    let config = CrimsonConfig::new()
        .on_connect(|info| assert!(info.path != "/connect", "on_connect failed"))
        .on_error(|info, _| assert!(info.path != "/error", "on_error failed"))
        .on_close(|info, _| assert!(info.path != "/close", "on_close failed"));
    let layer = CrimsonLayer::new().config(GREET, config);
    let app = Router::new()
        .crimson("/connect", GREET, idle)
        .crimson("/error", GREET, idle)
        .crimson("/close", GREET, idle)
        .crimson("/ok", GREET, idle)
        .layer(layer.clone());
    let server = TestServer::new(app).await;
    let cluster = layer.cluster(GREET).unwrap();
    let gone = |what: &'static str| {
        let cluster = cluster.clone();
        let layer = layer.clone();
        async move {
            eventually(what, || {
                cluster.node().is_empty() && layer.live_sessions() == 0
            })
            .await;
        }
    };

    // on_connect runs before the client sees the upgrade: the request fails.
    let doomed = tokio_tungstenite::connect_async(server.url("/connect")).await;
    if let Ok((mut ws, _)) = doomed {
        bounded("the connection ends", async {
            while ws.next().await.is_some() {}
        })
        .await;
    }
    gone("the session of a failed on_connect left").await;

    // on_error runs in the session's reader.
    let mut client = RawClient::connect(server.addr(), "/error").await;
    client.send(op::BINARY, &[0xff]).await;
    bounded("the connection ends", client.recv_until_end()).await;
    gone("the session of a failed on_error left").await;

    // on_close runs at the very end.
    let conn = server.connect::<String, String>("/close").await.unwrap();
    conn.close(CloseCode::NORMAL, "").await.unwrap();
    gone("the session of a failed on_close left").await;

    let mut fine = server.connect::<String, String>("/ok").await.unwrap();
    assert_eq!(cluster.node().len(), 1);
    fine.set_timeout(Duration::from_millis(100));
    assert!(matches!(fine.recv().await, Err(TestError::Timeout)));
}
