//! The heartbeat: a server that stops answering pings is found dead and left; one that
//! answers keeps its connection.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use crimson_client::{
    ClientError, ClientEvent, CloseCode, ClosedBy, ConnectionState, CrimsonClient, RetryPolicy,
};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_server_that_stops_answering_pings_is_detected_and_the_client_retries() {
    trace();
    // Completes the WebSocket handshake, then never reads again: pings go unanswered.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let _server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            keep.lock().unwrap().push(ws);
        }
    });

    let client = CrimsonClient::<Say, Heard>::builder()
        .url(format!("ws://{addr}/silent"))
        .heartbeat(Duration::from_millis(100), Duration::from_millis(300))
        .retry(RetryPolicy::fixed(Duration::from_secs(30)).unwrap())
        .build()
        .unwrap();
    let mut events = client.events();
    let mut state = client.state();
    within("connect", client.connect()).await.unwrap();
    let connected_at = tokio::time::Instant::now();

    let error = next_event(&mut events, "the heartbeat error", |event| match event {
        ClientEvent::Error(error) => match **error {
            ClientError::Heartbeat(timeout) => Some(timeout),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(error, Duration::from_millis(300));
    // One interval to the ping plus the timeout, give or take scheduling.
    let took = connected_at.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");

    let close = next_event(&mut events, "the close", |event| match event {
        ClientEvent::Closed(close) => Some(close.clone()),
        _ => None,
    })
    .await;
    assert_eq!(close.code, CloseCode::ABNORMAL);
    assert_eq!(close.by, ClosedBy::Failure);
    assert!(close.reconnect);
    assert!(
        close.reason.starts_with("no answer to a ping"),
        "{}",
        close.reason
    );
    wait_state(&mut state, "retrying", ConnectionState::is_retrying).await;
    assert_eq!(held.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_server_that_answers_pings_keeps_its_connection() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = received.clone();
    // tungstenite answers pings while it reads.
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, _| {
        let recorded = recorded.clone();
        async move { record_texts(&mut ws, &recorded).await }
    })
    .await;
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .heartbeat(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(client.state().borrow().is_connected());
    client.send(say("still here")).unwrap();
    within("the message", async {
        while received.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // No close and no error happened in between.
    while let Ok(Some(event)) = tokio::time::timeout(
        Duration::from_millis(10),
        futures_util::StreamExt::next(&mut events),
    )
    .await
    {
        let event = event.unwrap();
        assert!(
            matches!(event, ClientEvent::State(_) | ClientEvent::Connected { .. }),
            "{event:?}"
        );
    }
}
