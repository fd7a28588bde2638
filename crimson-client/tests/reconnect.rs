//! Reconnecting: after the server goes away, with a fresh endpoint each attempt, with the
//! outbox delivered in order, only for abnormal closes, backing off from a server that closes
//! at once, and never after a 4xx refusal of the upgrade.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use crimson_client::{
    BoxError, ClientError, ClientEvent, CloseCode, ClosedBy, ConnectError, ConnectionState,
    CrimsonClient, Endpoint, RetryPolicy,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn fixed(ms: u64) -> RetryPolicy {
    RetryPolicy::fixed(Duration::from_millis(ms))
        .unwrap()
        .with_jitter(0.0)
        .unwrap()
}

#[tokio::test]
async fn reconnects_when_the_server_comes_back_on_the_same_port() {
    trace();
    let server = ChatServer::start("127.0.0.1:0").await;
    let addr = server.addr;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(100))
        .build()
        .unwrap();
    let mut state = client.state();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    client.send(say("before")).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "before");

    // The server shuts down (its sessions close with 1001) and its port is free: at least
    // one attempt is refused before it comes back.
    server.stop().await;
    wait_state(&mut state, "retrying", ConnectionState::is_retrying).await;
    let refused = next_event(&mut events, "a refused attempt", |event| match event {
        ClientEvent::Error(error) => matches!(**error, ClientError::Connect { .. }).then_some(()),
        _ => None,
    });
    refused.await;

    let server = ChatServer::start(&addr.to_string()).await;
    wait_state(&mut state, "reconnected", ConnectionState::is_connected).await;
    client.send(say("after")).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "after");
    drop(server);
}

#[tokio::test]
async fn the_endpoint_provider_is_asked_before_every_attempt_and_its_headers_reach_the_server() {
    trace();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    // Connection 1 closes with 1011 at once; connection 2 stays and echoes.
    let server = RawServer::start("127.0.0.1:0", move |mut ws, headers, number| {
        let recorded = recorded.clone();
        async move {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            recorded.lock().unwrap().push(auth);
            if number == 1 {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: WsCode::Error,
                        reason: "try again".into(),
                    }))
                    .await;
                while ws.next().await.is_some() {}
                return;
            }
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() && ws.send(message).await.is_err() {
                    break;
                }
            }
        }
    })
    .await;

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let url = server.url();
    let client = CrimsonClient::<Say, Heard>::builder()
        .endpoint(move || {
            let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let url = url.clone();
            async move {
                // The token service is down on the second call: that attempt fails and the
                // next one asks again.
                if call == 2 {
                    return Err::<Endpoint, BoxError>("token service unavailable".into());
                }
                Ok(Endpoint::new(url).bearer(format!("token-{call}")))
            }
        })
        .retry(fixed(50))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();

    // Closed by 1011, then one failed attempt, then connected again.
    let endpoint_error = next_event(&mut events, "the provider's error", |event| match event {
        ClientEvent::Error(error) => match &**error {
            ClientError::Endpoint(source) => Some(source.to_string()),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(endpoint_error, "token service unavailable");
    next_event(&mut events, "the second connection", |event| {
        matches!(event, ClientEvent::Connected { .. }).then_some(())
    })
    .await;
    client.send(say("ping")).unwrap();
    assert_eq!(client.receive(PATIENCE).await.unwrap().text, "ping");

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["Bearer token-1", "Bearer token-3"]
    );
}

#[tokio::test]
async fn the_outbox_is_delivered_in_order_after_a_reconnect() {
    trace();
    let received = Arc::new(Mutex::new(Vec::new()));
    let session = {
        let received = received.clone();
        move |mut ws: Ws, _, _| {
            let received = received.clone();
            async move { record_texts(&mut ws, &received).await }
        }
    };
    let server = RawServer::start("127.0.0.1:0", session.clone()).await;
    let addr = server.addr;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(100))
        .build()
        .unwrap();
    let mut state = client.state();
    within("connect", client.connect()).await.unwrap();
    client.send(say("0")).unwrap();
    within("the first message", async {
        while received.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // The server dies without a close frame; messages sent while the client retries wait.
    server.stop().await;
    wait_state(&mut state, "retrying", ConnectionState::is_retrying).await;
    for n in 1..=50 {
        client.send(say(n.to_string())).unwrap();
    }
    assert!(client.queued() > 0);

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _server = RawServer::serve(listener, session);
    within("every message", async {
        while received.lock().unwrap().len() < 51 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let expected: Vec<String> = (0..=50).map(|n| format!(r#"{{"text":"{n}"}}"#)).collect();
    assert_eq!(*received.lock().unwrap(), expected);
    assert_eq!(client.queued(), 0);
}

#[tokio::test]
async fn a_normal_close_ends_the_client_but_1011_and_1001_reconnect() {
    trace();
    let codes = [WsCode::Error, WsCode::Away, WsCode::Normal];
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, number| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let code = codes.get(number - 1).copied().unwrap_or(WsCode::Normal);
            let _ = ws
                .close(Some(CloseFrame {
                    code,
                    reason: format!("close #{number}").into(),
                }))
                .await;
            while ws.next().await.is_some() {}
        }
    })
    .await;

    let closes = Arc::new(Mutex::new(Vec::new()));
    let hooked = closes.clone();
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(50))
        .on_close(move |close| hooked.lock().unwrap().push(close.clone()))
        .build()
        .unwrap();
    let mut state = client.state();
    within("connect", client.connect()).await.unwrap();
    // Connected three times, then closed for good by the 1000.
    within("the normal close", async {
        while closes.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    wait_state(&mut state, "closed", ConnectionState::is_closed).await;

    let closes = closes.lock().unwrap().clone();
    let summary: Vec<_> = closes
        .iter()
        .map(|c| (c.code.as_u16(), c.reason.as_str(), c.by, c.reconnect))
        .collect();
    assert_eq!(
        summary,
        [
            (1011, "close #1", ClosedBy::Server, true),
            (1001, "close #2", ClosedBy::Server, true),
            (1000, "close #3", ClosedBy::Server, false),
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "no reconnect after 1000"
    );
    assert!(matches!(
        client.send(say("late")),
        Err(crimson_client::SendError::Closed)
    ));
}

#[tokio::test]
async fn a_custom_predicate_decides_what_is_abnormal() {
    let server = RawServer::start("127.0.0.1:0", |mut ws, _, _| async move {
        let _ = ws
            .close(Some(CloseFrame {
                code: WsCode::Away,
                reason: "deploy".into(),
            }))
            .await;
        while ws.next().await.is_some() {}
    })
    .await;
    // Only 1011 reconnects here: a 1001 ends the client.
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(50))
        .abnormal_close(|code, _| code == CloseCode::INTERNAL_ERROR)
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    let close = next_event(&mut events, "the close", |event| match event {
        ClientEvent::Closed(close) => Some(close.clone()),
        _ => None,
    })
    .await;
    assert_eq!(close.code, CloseCode::GOING_AWAY);
    assert!(!close.reconnect);
    wait_state(&mut client.state(), "closed", ConnectionState::is_closed).await;
}

#[tokio::test]
async fn disconnect_sends_its_code_and_reason_after_the_queue_and_does_not_reconnect() {
    trace();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        let recorded = recorded.clone();
        async move {
            while let Some(Ok(message)) = ws.next().await {
                match message {
                    Message::Text(text) => recorded.lock().unwrap().push(text.to_string()),
                    Message::Close(Some(frame)) => recorded.lock().unwrap().push(format!(
                        "close {} {}",
                        u16::from(frame.code),
                        frame.reason
                    )),
                    _ => {}
                }
            }
        }
    })
    .await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(50))
        .build()
        .unwrap();
    within("connect", client.connect()).await.unwrap();
    client.send(say("last words")).unwrap();
    let code = CloseCode::application(4000).unwrap();
    within("disconnect", client.disconnect(code, "done for today"))
        .await
        .unwrap();
    assert!(client.state().borrow().is_closed());
    within("the close frame", async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [r#"{"text":"last words"}"#, "close 4000 done for today"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // A reserved code is refused; disconnecting a closed client is a no-op.
    assert_eq!(
        client
            .disconnect(CloseCode::ABNORMAL, "")
            .await
            .unwrap_err()
            .to_string(),
        "close code 1006 may not be sent: use 1000, 1001, 1008, 1011, or 3000 to 4999"
    );
    client.disconnect(CloseCode::NORMAL, "again").await.unwrap();

    // And connect() starts it again.
    within("reconnect", client.connect()).await.unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// Everything a client announced until it went `Closed`: the `Retrying` states, the close
/// events' `reconnect` flags and the errors.
struct Story {
    retrying: Vec<(u32, Duration)>,
    reconnect: Vec<bool>,
    errors: Vec<String>,
}

async fn story_until_closed(events: &mut crimson_client::Subscription<ClientEvent>) -> Story {
    let mut story = Story {
        retrying: Vec::new(),
        reconnect: Vec::new(),
        errors: Vec::new(),
    };
    within("the client to close", async {
        while let Some(event) = events.next().await {
            match event.expect("lagged") {
                ClientEvent::State(ConnectionState::Retrying {
                    attempt,
                    next_delay,
                }) => story.retrying.push((attempt, next_delay)),
                ClientEvent::State(ConnectionState::Closed) => break,
                ClientEvent::Closed(close) => story.reconnect.push(close.reconnect),
                ClientEvent::Error(error) => story.errors.push(error.to_string()),
                _ => {}
            }
        }
    })
    .await;
    story
}

/// A server that accepts every connection and closes it at once with 1013, except those for
/// which `hold` says how long to keep them open first.
async fn closing_server(
    hold: impl Fn(usize) -> Option<Duration> + Send + Sync + 'static,
) -> (RawServer, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let hold = Arc::new(hold);
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, number| {
        counted.fetch_add(1, Ordering::SeqCst);
        let hold = hold(number);
        async move {
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            let _ = ws
                .close(Some(CloseFrame {
                    code: WsCode::Again,
                    reason: "too many connections".into(),
                }))
                .await;
            while ws.next().await.is_some() {}
        }
    })
    .await;
    (server, connections)
}

fn exponential(initial_ms: u64, max_attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(initial_ms), Duration::from_secs(10))
        .unwrap()
        .with_jitter(0.0)
        .unwrap()
        .with_max_attempts(max_attempts)
        .unwrap()
}

#[tokio::test]
async fn a_server_that_closes_every_connection_at_once_is_backed_off_until_the_limit() {
    trace();
    let (server, connections) = closing_server(|_| None).await;
    // The default `stable_after` (5 s) is far longer than these connections last.
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(exponential(50, 3))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    let story = story_until_closed(&mut events).await;

    let ms = Duration::from_millis;
    assert_eq!(story.retrying, [(1, ms(50)), (2, ms(100)), (3, ms(200))]);
    // The last close says truthfully that no reconnect follows.
    assert_eq!(story.reconnect, [true, true, true, false]);
    assert_eq!(
        story.errors.last().map(String::as_str),
        Some("gave up after 3 reconnect attempts")
    );
    assert_eq!(connections.load(Ordering::SeqCst), 4);
    assert!(matches!(
        client.send(say("late")),
        Err(crimson_client::SendError::Closed)
    ));
}

#[tokio::test]
async fn a_connection_that_stays_up_for_stable_after_starts_the_backoff_over() {
    trace();
    // The third connection stays up well past `stable_after`; the others close at once.
    let (server, connections) =
        closing_server(|number| (number == 3).then_some(Duration::from_millis(600))).await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(exponential(30, 2))
        .stable_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    let story = story_until_closed(&mut events).await;

    let attempts: Vec<u32> = story.retrying.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts, [1, 2, 1, 2]);
    assert_eq!(story.reconnect, [true, true, true, true, false]);
    assert_eq!(
        story.errors.last().map(String::as_str),
        Some("gave up after 2 reconnect attempts")
    );
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

/// Answers an upgrade request with its status.
struct Refuse(u16);

impl Callback for Refuse {
    fn on_request(self, _: &Request, _: Response) -> Result<Response, ErrorResponse> {
        Err(Response::builder().status(self.0).body(None).unwrap())
    }
}

/// A server that refuses every upgrade with `status`; counts the attempts.
async fn refusing_server(status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(tokio_tungstenite::accept_hdr_async(tcp, Refuse(status)));
        }
    });
    (url, attempts)
}

#[tokio::test]
async fn an_upgrade_refused_with_a_4xx_closes_the_client_but_408_429_and_5xx_are_retried() {
    trace();
    for status in [400, 401, 403, 404] {
        let (url, attempts) = refusing_server(status).await;
        // A policy without limit: only the rejection can end it.
        let client = CrimsonClient::<Say, Heard>::builder()
            .url(&url)
            .retry(fixed(20))
            .build()
            .unwrap();
        let mut events = client.events();
        let err = within("connect", client.connect()).await.unwrap_err();
        let ConnectError::GaveUp(error) = &err else {
            panic!("{status}: {err:?}")
        };
        assert!(
            matches!(**error, ClientError::Rejected { status: got, .. } if got == status),
            "{status}: {error}"
        );
        assert_eq!(
            error.to_string(),
            format!("{url} refused the WebSocket upgrade with HTTP {status}")
        );
        assert!(client.state().borrow().is_closed());
        let story = story_until_closed(&mut events).await;
        assert!(story.retrying.is_empty(), "{status}: {:?}", story.retrying);
        assert_eq!(story.errors, [error.to_string()]);
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{status}");
    }
    for status in [408, 429, 500, 503] {
        let (url, attempts) = refusing_server(status).await;
        let client = CrimsonClient::<Say, Heard>::builder()
            .url(&url)
            .retry(fixed(20).with_max_attempts(2).unwrap())
            .build()
            .unwrap();
        let err = within("connect", client.connect()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not connect: gave up after 2 reconnect attempts",
            "{status}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "{status}");
    }
}

/// With `retry_unauthorized(n)`, a 401 is tried again up to n times, asking the endpoint
/// provider each time (a token may have been refreshed); the (n+1)-th refusal in a row closes.
#[tokio::test]
async fn unauthorized_is_retried_with_a_fresh_endpoint_when_asked() {
    trace();
    let (url, attempts) = refusing_server(401).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let client = CrimsonClient::<Say, Heard>::builder()
        .endpoint(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let url = url.clone();
            async move { Ok::<_, std::io::Error>(crimson_client::Endpoint::new(url)) }
        })
        .retry(fixed(20))
        .retry_unauthorized(2)
        .build()
        .unwrap();
    let err = within("connect", client.connect()).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "two retries after the first refusal"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "the provider is asked every time"
    );
}

/// Accepts an upgrade whose bearer token is `token`, refuses others with 401.
struct Token(&'static str);

impl Callback for Token {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let expected = format!("Bearer {}", self.0);
        match request.headers().get("authorization") {
            Some(got) if got.as_bytes() == expected.as_bytes() => Ok(response),
            _ => Err(Response::builder().status(401).body(None).unwrap()),
        }
    }
}

/// The token-refresh story: the first token is refused; the provider, asked again, gives a
/// fresh one, the client connects, and what was queued meanwhile is delivered, not dropped.
#[tokio::test]
async fn a_refreshed_token_gets_in_and_the_queue_survives_the_refusal() {
    trace();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, Token("fresh")).await
                else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message {
                        recorded.lock().unwrap().push(text.as_str().to_owned());
                    }
                }
            });
        }
    });
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let client = CrimsonClient::<Say, Heard>::builder()
        .endpoint(move || {
            // The first token has expired; asking again refreshes it.
            let token = if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                "expired"
            } else {
                "fresh"
            };
            let url = url.clone();
            async move { Ok::<_, std::io::Error>(crimson_client::Endpoint::new(url).bearer(token)) }
        })
        .retry(fixed(20))
        .retry_unauthorized(1)
        .build()
        .unwrap();
    client.send(say("queued")).unwrap_err(); // closed: nothing is queued before connect()
    let connecting = client.connect();
    client.send(say("sent while refused")).unwrap();
    within("connect with the fresh token", connecting)
        .await
        .unwrap();
    within("the queued message", async {
        while received.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked once more after the 401"
    );
    assert_eq!(received.lock().unwrap()[0], text("sent while refused"));
    assert_eq!(client.discarded(), 0);
}

/// What `on_connect` sends goes out first on every connection, ahead of the outbox.
#[tokio::test]
async fn on_connect_sends_first_on_every_connection() {
    trace();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = received.clone();
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, number| {
        let recorded = recorded.clone();
        async move {
            // The first connection reads two messages, then drops; the second records on.
            if number == 1 {
                for _ in 0..2 {
                    if let Some(Ok(message)) = ws.next().await {
                        recorded
                            .lock()
                            .unwrap()
                            .push(message.to_text().unwrap().to_owned());
                    }
                }
                return;
            }
            record_texts(&mut ws, &recorded).await;
        }
    })
    .await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(fixed(20))
        .on_connect(|connected| connected.send(say("hello")))
        .build()
        .unwrap();
    client.connect();
    client.send(say("queued before connecting")).unwrap();
    within("two connections' messages", async {
        while received.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received[0], text("hello"));
    assert_eq!(received[1], text("queued before connecting"));
    assert_eq!(
        received[2],
        text("hello"),
        "again first on the second connection"
    );
}

fn text(n: &str) -> String {
    format!(r#"{{"text":"{n}"}}"#)
}

/// The state watch wakes only for a change: `Connecting` is not reported twice in a row.
#[tokio::test]
async fn the_state_watch_reports_each_change_once() {
    trace();
    let server = ChatServer::start("127.0.0.1:0").await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .build()
        .unwrap();
    let mut state = client.state();
    client.connect();
    let mut seen = Vec::new();
    while seen.last() != Some(&ConnectionState::Connected) {
        within("a state change", state.changed()).await.unwrap();
        seen.push(*state.borrow_and_update());
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] != pair[1]),
        "a state repeated: {seen:?}"
    );
    assert_eq!(seen.first(), Some(&ConnectionState::Connecting));
}
