//! Sending and receiving: errors when closed or full, subscribers, bad input, and any
//! WebSocket server (a bare axum one here).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::routing::get;
use axum::Router;
use common::*;
use crimson_client::{
    ClientError, ClientEvent, CloseCode, ConnectError, ConnectionState, CrimsonClient, Lagged,
    ReceiveError, RetryPolicy, SendError,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn send_fails_while_the_client_is_closed() {
    let client = CrimsonClient::<Say, Heard>::builder()
        .url("ws://127.0.0.1:9/never")
        .build()
        .unwrap();
    let err = client.send(say("too early")).unwrap_err();
    assert!(matches!(err, SendError::Closed));
    assert_eq!(
        err.to_string(),
        "the client is closed: call connect() before sending"
    );
}

#[tokio::test]
async fn a_full_outbox_fails_and_what_it_held_is_reported_when_the_client_closes() {
    let addr = free_port().await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(format!("ws://{addr}/nobody"))
        .retry(RetryPolicy::fixed(Duration::from_secs(30)).unwrap())
        .outgoing_queue(3)
        .build()
        .unwrap();
    let mut events = client.events();
    client.connect();
    // Nothing listens: the client retries and the outbox fills.
    wait_state(
        &mut client.state(),
        "retrying",
        ConnectionState::is_retrying,
    )
    .await;
    for n in 0..3 {
        client.send(say(n.to_string())).unwrap();
    }
    let err = client.send(say("one too many")).unwrap_err();
    assert!(matches!(err, SendError::Full(3)));
    assert_eq!(
        err.to_string(),
        "the outbox is full (3 messages wait for the connection)"
    );
    assert_eq!(client.queued(), 3);

    within("disconnect", client.disconnect(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    let discarded = next_event(&mut events, "the discard report", |event| match event {
        ClientEvent::Error(error) => match **error {
            ClientError::Discarded(count) => Some(count),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(discarded, 3);
    assert_eq!(client.discarded(), 3);
    assert!(matches!(client.send(say("after")), Err(SendError::Closed)));
}

#[tokio::test]
async fn every_incoming_subscriber_gets_every_message() {
    let server = ChatServer::start("127.0.0.1:0").await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .build()
        .unwrap();
    let first = client.incoming();
    let second = client.incoming();
    within("connect", client.connect()).await.unwrap();
    for n in 0..5 {
        client.send(say(n.to_string())).unwrap();
    }
    let expected: Vec<String> = (0..5).map(|n| n.to_string()).collect();
    for subscriber in [first, second] {
        let got: Vec<String> = within(
            "five messages",
            subscriber.take(5).map(|m| m.unwrap().text).collect(),
        )
        .await;
        assert_eq!(got, expected);
    }
    // `receive` reads a subscription of its own, made when the client was built.
    for n in 0..5 {
        assert_eq!(client.receive(PATIENCE).await.unwrap().text, n.to_string());
    }
    assert_eq!(
        client.receive(Duration::from_millis(50)).await.unwrap_err(),
        ReceiveError::Timeout(Duration::from_millis(50))
    );
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_how_many_it_missed() {
    // Sends message n when asked for the n-th time: paced by the reader that keeps up.
    let server = RawServer::start("127.0.0.1:0", |mut ws, _, _| async move {
        let mut n = 0;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() {
                let reply = Message::text(format!(r#"{{"text":"{n}"}}"#));
                if ws.send(reply).await.is_err() {
                    break;
                }
                n += 1;
            }
        }
    })
    .await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .incoming_queue(4)
        .build()
        .unwrap();
    let mut slow = client.incoming();
    let mut fast = client.incoming();
    within("connect", client.connect()).await.unwrap();
    // The fast one reads all ten as they come.
    for n in 0..10 {
        client.send(say("next")).unwrap();
        let message = within("a message", fast.next()).await.unwrap().unwrap();
        assert_eq!(message.text, n.to_string());
    }
    // The slow one read nothing: it hears that it missed six, then gets the last four.
    assert_eq!(within("lag", slow.next()).await.unwrap(), Err(Lagged(6)));
    for n in 6..10 {
        assert_eq!(
            within("a message", slow.next())
                .await
                .unwrap()
                .unwrap()
                .text,
            n.to_string()
        );
    }
    assert_eq!(
        client.receive(PATIENCE).await.unwrap_err(),
        ReceiveError::Lagged(6)
    );
}

#[tokio::test]
async fn an_undecodable_message_is_skipped_and_reported() {
    let server = RawServer::start("127.0.0.1:0", |mut ws, _, _| async move {
        ws.send(Message::text("not json")).await.unwrap();
        ws.send(Message::text(r#"{"text":"fine"}"#)).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let hooked = errors.clone();
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .on_error(move |error| hooked.lock().unwrap().push(error.to_string()))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "fine");
    let decode = next_event(&mut events, "the decode error", |event| match event {
        ClientEvent::Error(error) => match &**error {
            ClientError::Decode(err) => Some(err.short_type_name()),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(decode, "Heard");
    assert_eq!(client.skipped(), 1);
    assert!(
        client.state().borrow().is_connected(),
        "the connection stays"
    );
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("skipped an incoming message: cannot decode `"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn works_with_a_bare_axum_websocket_server() {
    // Plain axum, no Crimson: echoes text frames upper-cased.
    let app = Router::new().route(
        "/echo",
        get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if let AxumMessage::Text(text) = message {
                        let upper = text.as_str().to_uppercase();
                        if socket.send(AxumMessage::text(upper)).await.is_err() {
                            break;
                        }
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // `String` is a raw text message type: no codec.
    let client = CrimsonClient::<String, String>::builder()
        .url(format!("ws://{addr}/echo"))
        .build()
        .unwrap();
    within("connect", client.connect()).await.unwrap();
    client.send("hello".to_owned()).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap(), "HELLO");
    // Typed JSON goes through the same server untouched (but upper-cased).
    let typed = CrimsonClient::<Say, Heard>::builder()
        .url(format!("ws://{addr}/echo"))
        .build()
        .unwrap();
    within("connect", typed.connect()).await.unwrap();
    typed.send(say("x")).unwrap();
    // `{"TEXT":"X"}` is not a `Heard`: skipped and counted, never a panic.
    assert!(typed.receive(Duration::from_millis(300)).await.is_err());
    assert_eq!(typed.skipped(), 1);
}

#[tokio::test]
async fn an_invalid_endpoint_closes_the_client_with_a_clear_error() {
    for (url, reason) in [
        (
            "http://127.0.0.1:1/x",
            "invalid endpoint `http://127.0.0.1:1/x`: the scheme must be ws or wss, not http",
        ),
        (
            "127.0.0.1:1/x",
            "invalid endpoint `127.0.0.1:1/x`: the URL has no scheme: start it with ws:// or wss://",
        ),
    ] {
        let client = CrimsonClient::<Say, Heard>::builder()
            .url(url)
            .build()
            .unwrap();
        let err = within("connect", client.connect()).await.unwrap_err();
        let ConnectError::GaveUp(error) = err else {
            panic!("{err:?}")
        };
        assert_eq!(error.to_string(), reason);
        assert!(client.state().borrow().is_closed());
    }
}

#[tokio::test]
async fn connect_says_why_it_gave_up_after_max_attempts() {
    let addr = free_port().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(format!("ws://{addr}/nobody"))
        .retry(
            RetryPolicy::fixed(Duration::from_millis(20))
                .unwrap()
                .with_max_attempts(2)
                .unwrap(),
        )
        .on_error(move |error| {
            if matches!(error, ClientError::Connect { .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let err = within("connect", client.connect()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not connect: gave up after 2 reconnect attempts"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "the first try and 2 retries"
    );
    assert!(client.state().borrow().is_closed());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection_with_1001() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let recorded = closes.clone();
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, _| {
        let recorded = recorded.clone();
        async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(Some(frame)) = message {
                    recorded
                        .lock()
                        .unwrap()
                        .push((u16::from(frame.code), frame.reason.to_string()));
                }
            }
        }
    })
    .await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .build()
        .unwrap();
    let mut incoming = client.incoming();
    within("connect", client.connect()).await.unwrap();
    let clone = client.clone();
    drop(client);
    assert!(
        clone.state().borrow().is_connected(),
        "a clone keeps it alive"
    );
    drop(clone);
    within("the close frame", async {
        while closes.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        *closes.lock().unwrap(),
        [(1001, "client dropped".to_owned())]
    );
    // With the client gone, its subscriptions end.
    assert!(within("the stream's end", incoming.next()).await.is_none());
}
