//! crimson-axum over real sockets: typed round trips, bad input, faults, shutdown.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use crimson_axum::cluster::{Cluster, LocalCluster};
use crimson_axum::{
    CloseCode, CrimsonConfig, CrimsonLayer, CrimsonSession, DecodeErrorPolicy, RouterExt,
};
use crimson_examples::{ChatMessage, ChatResponse};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `app` on 127.0.0.1:0 until the returned sender is dropped.
async fn serve(app: Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    (addr, stop_tx)
}

async fn connect(addr: std::net::SocketAddr, path: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .unwrap();
    ws
}

async fn next_text(ws: &mut Client) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out")
            .expect("stream ended")
            .unwrap()
        {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and reason.
async fn close_of(ws: &mut Client) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn chat(mut session: CrimsonSession<ChatMessage, ChatResponse>) {
    let from = session.id().to_string();
    while let Some(message) = session.recv().await {
        if message.text == "panic" {
            panic!("asked to panic");
        }
        let _ = session
            .cluster()
            .broadcast(&ChatResponse {
                text: message.text,
                from: from.clone(),
                at: 0,
            })
            .await;
    }
}

fn chat_app(config: CrimsonConfig<ChatMessage, ChatResponse>) -> (Router, CrimsonLayer) {
    let layer = CrimsonLayer::new().config("chat", config);
    let app = Router::new()
        .crimson::<ChatMessage, ChatResponse, _, _>("/chat", "chat", chat)
        .layer(layer.clone());
    (app, layer)
}

#[tokio::test]
async fn typed_broadcast_reaches_every_session() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let (addr, _stop) = serve(app).await;
    let mut a = connect(addr, "/chat").await;
    let mut b = connect(addr, "/chat").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.send(Message::text(r#"{"text":"hello"}"#)).await.unwrap();
    for ws in [&mut a, &mut b] {
        let got: serde_json::Value = serde_json::from_str(&next_text(ws).await).unwrap();
        assert_eq!(got["text"], "hello");
    }
}

#[tokio::test]
async fn plain_http_gets_an_error_that_says_websocket() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let (addr, _stop) = serve(app).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response.contains("this is a WebSocket endpoint"),
        "{response}"
    );
}

// The multi-thread runtime: the close frame must go out whichever task runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_message_closes_1007_and_reports() {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let config =
        CrimsonConfig::new().on_error(move |_, err| seen.lock().unwrap().push(err.to_string()));
    let (app, _) = chat_app(config);
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    ws.send(Message::text(r#"{"txt":"typo"}"#)).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1007);
    assert!(
        reason.contains("ChatMessage") && reason.contains("missing field `text`"),
        "{reason}"
    );
    assert!(reason.len() <= 123);
    let errors = errors.lock().unwrap();
    assert!(
        errors[0].contains("cannot decode `crimson_examples::ChatMessage` from JSON"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn skip_policy_skips_and_goes_on() {
    let errors = Arc::new(Mutex::new(0));
    let seen = errors.clone();
    let config = CrimsonConfig::new()
        .decode_errors(DecodeErrorPolicy::Skip)
        .on_error(move |_, _| *seen.lock().unwrap() += 1);
    let (app, _) = chat_app(config);
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    ws.send(Message::text("not json")).await.unwrap();
    ws.send(Message::text(r#"{"text":"ok"}"#)).await.unwrap();
    let got: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(got["text"], "ok");
    assert_eq!(*errors.lock().unwrap(), 1);
}

// The multi-thread runtime: the close frame must go out whichever task runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_1009() {
    let (app, _) = chat_app(
        CrimsonConfig::new()
            .max_message_size(1024)
            .max_frame_size(1024),
    );
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(4096));
    ws.send(Message::text(big)).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("1024"), "{reason}");
}

#[tokio::test]
async fn handler_panic_closes_1011_and_others_live_on() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let (addr, _stop) = serve(app).await;
    let mut doomed = connect(addr, "/chat").await;
    let mut other = connect(addr, "/chat").await;
    doomed
        .send(Message::text(r#"{"text":"panic"}"#))
        .await
        .unwrap();
    let (code, _) = close_of(&mut doomed).await;
    assert_eq!(code, 1011);
    other
        .send(Message::text(r#"{"text":"still here"}"#))
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(&next_text(&mut other).await).unwrap();
    assert_eq!(got["text"], "still here");
}

#[tokio::test]
async fn missing_config_is_a_500_naming_it() {
    let app = Router::new()
        .crimson::<ChatMessage, ChatResponse, _, _>("/chat", "nope", chat)
        .layer(
            CrimsonLayer::new().config("chat", CrimsonConfig::<ChatMessage, ChatResponse>::new()),
        );
    let (addr, _stop) = serve(app).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{addr}/chat"))
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("{err}")
    };
    assert_eq!(response.status(), 500);
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
    assert!(
        body.contains("Crimson config \"nope\" is not registered") && body.contains("\"chat\""),
        "{body}"
    );
}

#[tokio::test]
async fn mismatched_config_types_are_a_500_naming_both() {
    let app = Router::new()
        .crimson::<String, String, _, _>(
            "/raw",
            "chat",
            |_s: CrimsonSession<String, String>| async {},
        )
        .layer(
            CrimsonLayer::new().config("chat", CrimsonConfig::<ChatMessage, ChatResponse>::new()),
        );
    let (addr, _stop) = serve(app).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{addr}/raw"))
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("{err}")
    };
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
    assert!(
        body.contains("registered for CrimsonConfig<crimson_examples::ChatMessage"),
        "{body}"
    );
    assert!(
        body.contains(".crimson::<alloc::string::String, alloc::string::String>()"),
        "{body}"
    );
}

#[tokio::test]
async fn disallowed_origin_is_403_before_upgrade() {
    let (app, _) = chat_app(CrimsonConfig::new().allowed_origins(["http://good.example"]));
    let (addr, _stop) = serve(app).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/chat"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("{err}")
    };
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn an_http_route_pushes_to_sessions_through_the_cluster() {
    let cluster = Cluster::<ChatResponse>::local();
    let push = {
        let cluster = cluster.clone();
        post(move |body: String| async move {
            let delivery = cluster
                .broadcast(&ChatResponse {
                    text: body,
                    from: "http".into(),
                    at: 0,
                })
                .await
                .unwrap();
            delivery.delivered.to_string()
        })
    };
    let (app, _) = chat_app(CrimsonConfig::new().cluster(cluster.clone()));
    let app = app.route("/push", push);
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    while cluster.local_len() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnews",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.ends_with("\r\n\r\n1"), "{response}");
    let got: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        (got["text"].as_str(), got["from"].as_str()),
        (Some("news"), Some("http"))
    );
}

#[tokio::test]
async fn graceful_shutdown_flushes_then_closes_1001() {
    let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = {
        let ended = ended.clone();
        move |mut session: CrimsonSession<ChatMessage, ChatResponse>| async move {
            while session.recv().await.is_some() {}
            ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let layer =
        CrimsonLayer::new().config("chat", CrimsonConfig::<ChatMessage, ChatResponse>::new());
    let app = Router::new()
        .crimson::<ChatMessage, ChatResponse, _, _>("/chat", "chat", handler)
        .layer(layer.clone());

    // Served the way an application does it: axum's graceful shutdown, Crimson's handle.
    let listener = crimson_axum::bind("127.0.0.1:0").await.unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(layer.shutdown_handle().on(async move {
                let _ = signalled.await;
            }))
            .into_future(),
    );

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(addr, "/chat").await);
    }
    while layer.live_sessions() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cluster = layer
        .get::<ChatMessage, ChatResponse>("chat")
        .unwrap()
        .session_cluster()
        .clone();
    for n in 0..50 {
        let delivery = cluster
            .broadcast(&ChatResponse {
                text: n.to_string(),
                from: "s".into(),
                at: 0,
            })
            .await
            .unwrap();
        assert_eq!(delivery.delivered, 3);
    }
    signal.send(()).unwrap();
    for ws in &mut clients {
        for n in 0..50 {
            let got: serde_json::Value = serde_json::from_str(&next_text(ws).await).unwrap();
            assert_eq!(
                got["text"],
                n.to_string(),
                "queued messages are flushed first"
            );
        }
        let (code, reason) = close_of(ws).await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
        // Reading on sends the client's close reply; then the server ends the connection.
        while ws.next().await.is_some() {}
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops once its sessions have ended")
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "every handler ended"
    );
    assert_eq!(layer.live_sessions(), 0);
}

#[tokio::test]
async fn connection_limit_closes_1013() {
    let limited = LocalCluster::builder().max_connections(1).build();
    let (app, _) = chat_app(CrimsonConfig::new().cluster(Cluster::new(limited)));
    let (addr, _stop) = serve(app).await;
    let _first = connect(addr, "/chat").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = connect(addr, "/chat").await;
    let (code, reason) = close_of(&mut second).await;
    assert_eq!((code, reason.as_str()), (1013, "connection limit reached"));
}

#[tokio::test]
async fn client_close_is_reported_with_its_code() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    let config = CrimsonConfig::new()
        .on_close(move |_, code, reason| seen.lock().unwrap().push((code, reason.to_owned())));
    let (app, _) = chat_app(config);
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: WsCode::from(4001),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    // The server answers the close and ends the session.
    while ws.next().await.is_some() {}
    for _ in 0..100 {
        if !closes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        closes.lock().unwrap().as_slice(),
        &[(CloseCode::from_u16(4001), "bye".to_owned())]
    );
}

/// A message that arrived before bad input is still answered; then the close goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_bad_input_are_answered_before_the_close() {
    let (app, _) = chat_app(CrimsonConfig::new());
    let (addr, _stop) = serve(app).await;
    let mut ws = connect(addr, "/chat").await;
    // Both in one write: the server reads them together.
    ws.feed(Message::text(r#"{"text":"first"}"#)).await.unwrap();
    ws.feed(Message::text("not json")).await.unwrap();
    ws.flush().await.unwrap();
    let got: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(got["text"], "first");
    let (code, _) = close_of(&mut ws).await;
    assert_eq!(code, 1007);
}
