//! The engine's first test: echo, close, bad input.

use axum::Router;
use crimson_axum::testing::{TestError, TestServer};
use crimson_axum::{
    CloseCode, ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, Payload, RouterExt,
};

const ECHO: ConfigName<String, String> = ConfigName::new("echo");

async fn echo(mut session: CrimsonSession<String, String>) {
    while let Some(text) = session.recv().await {
        if text == "bye" {
            return;
        }
        if session.send(text).await.is_err() {
            break;
        }
    }
}

fn app() -> Router {
    Router::new()
        .crimson("/echo", ECHO, echo)
        .layer(CrimsonLayer::new().config(ECHO, CrimsonConfig::new().max_message_size(1024)))
}

#[tokio::test]
async fn echoes_and_closes() {
    let server = TestServer::new(app()).await;
    let mut conn = server.connect::<String, String>("/echo").await.unwrap();
    for n in 0..100 {
        conn.send(&format!("hello {n}")).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), format!("hello {n}"));
    }
    conn.send(&"bye".to_string()).await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::NORMAL, "session ended")
    );
}

#[tokio::test]
async fn too_big_names_the_limit() {
    let server = TestServer::new(app()).await;
    let mut conn = server.connect::<String, String>("/echo").await.unwrap();
    conn.send(&"x".repeat(2000)).await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::TOO_BIG);
    assert_eq!(reason, "message too big: the limit is 1024 bytes");
}

#[tokio::test]
async fn bad_utf8_binary_is_refused() {
    let server = TestServer::new(app()).await;
    let mut conn = server.connect::<String, String>("/echo").await.unwrap();
    conn.send_raw(Payload::Binary(vec![0xff, 0xfe].into()))
        .await
        .unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::INVALID_PAYLOAD, "{reason}");
}

#[tokio::test]
async fn dropping_the_server_ends_its_sessions() {
    let server = TestServer::new(app()).await;
    let mut conn = server.connect::<String, String>("/echo").await.unwrap();
    conn.send(&"one".to_string()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), "one");
    drop(server);
    match conn.recv().await {
        Err(TestError::Closed(code, reason)) => {
            assert_eq!(
                (code, reason.as_str()),
                (CloseCode::GOING_AWAY, "server shutting down")
            );
        }
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}
