//! Closing with messages in flight: every message `send` accepted is handed to a socket, put
//! back for the next connection, or counted as discarded, whichever way the connection ends
//! (a close frame that fails, a write stalled past the close timeout, the server dropping the
//! connection), and the writer never panics on the way.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use crimson_client::{ClientError, ClientEvent, CloseCode, ClosedBy, CrimsonClient, RetryPolicy};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn text(n: &str) -> String {
    format!(r#"{{"text":"{n}"}}"#)
}

/// `disconnect()` with a queued message the server is slow to read: the writer is still
/// flushing it when the server's own close frame arrives, so the client's close frame is
/// refused (the server closed first) right after the queue was written. That used to panic
/// the writer (`batch.drain(fed..)` on the emptied batch).
#[tokio::test]
async fn a_close_frame_refused_after_the_queue_was_written_does_not_panic() {
    trace();
    let panics = record_panics();
    let lengths = Arc::new(Mutex::new(Vec::new()));
    let recorded = lengths.clone();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let server = RawServer::serve(small_window_listener(), move |mut ws, _, _| {
        let recorded = recorded.clone();
        let keep = keep.clone();
        async move {
            // The client is stuck writing the big message: close, then read it all.
            wait_unread(&ws, 8 << 10).await;
            ws.close(Some(CloseFrame {
                code: WsCode::Normal,
                reason: "bye".into(),
            }))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    recorded.lock().unwrap().push(text.len());
                }
            }
            // Keep the TCP connection open: the client ends it.
            keep.lock().unwrap().push(ws);
        }
    });
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .close_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();

    client.send(stalling_message()).unwrap();
    within("disconnect", client.disconnect(CloseCode::NORMAL, "done"))
        .await
        .unwrap();

    let panics = panics.lock().unwrap().clone();
    assert!(panics.is_empty(), "the client panicked: {panics:#?}");
    let close = next_event(&mut events, "the close", |event| match event {
        ClientEvent::Closed(close) => Some(close.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (close.code, close.by, close.reconnect),
        (CloseCode::NORMAL, ClosedBy::Server, false)
    );
    // The message was written and read; nothing was left to discard.
    within("the server to read the message", async {
        while lengths.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        *lengths.lock().unwrap(),
        [text(&"x".repeat(STALLING_LEN)).len()]
    );
    assert_eq!(client.discarded(), 0);
    assert_eq!(client.queued(), 0);
}

/// `disconnect()` while a write is stalled on a server that stopped reading: the close gives
/// up after the close timeout (not twice that), and the two messages the writer had taken but
/// the socket never accepted are counted as discarded and reported, not lost silently.
#[tokio::test]
async fn disconnect_during_a_stalled_write_discards_and_reports_what_the_socket_never_took() {
    trace();
    let stalled = Arc::new(Notify::new());
    let signal = stalled.clone();
    let server = RawServer::serve(small_window_listener(), move |ws, _, _| {
        let signal = signal.clone();
        async move {
            wait_unread(&ws, 8 << 10).await;
            signal.notify_one();
            // Never read again; keep the connection open.
            std::future::pending::<()>().await;
            drop(ws);
        }
    });
    let close_timeout = Duration::from_secs(1);
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .close_timeout(close_timeout)
        .without_heartbeat()
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();

    // One batch: the big message is handed to the socket, the two small ones wait behind it.
    client.send(stalling_message()).unwrap();
    client.send(say("one")).unwrap();
    client.send(say("two")).unwrap();
    within("the write to stall", stalled.notified()).await;

    let started = tokio::time::Instant::now();
    within("disconnect", client.disconnect(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(client.discarded(), 2);
    assert_eq!(client.queued(), 0);
    let discarded = next_event(&mut events, "the discard report", |event| match event {
        ClientEvent::Error(error) => match **error {
            ClientError::Discarded(count) => Some(count),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(discarded, 2);
    // The close gave up after the close timeout, not at the safety net of twice that.
    assert!(took < close_timeout * 9 / 5, "the close took {took:?}");
}

/// The server drops the connection (a FIN, no close frame) while the writer is stuck on a
/// batch: the messages of that batch the socket never accepted go out on the next connection,
/// in order. They used to vanish with the aborted writer.
#[tokio::test]
async fn messages_a_dropped_connection_never_took_go_out_on_the_next_one() {
    trace();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = received.clone();
    let server = RawServer::serve(small_window_listener(), move |mut ws, _, number| {
        let recorded = recorded.clone();
        async move {
            if number > 1 {
                return record_texts(&mut ws, &recorded).await;
            }
            wait_unread(&ws, 8 << 10).await;
            // End our side without a close frame, never read, keep the socket.
            ws.get_mut().shutdown().await.unwrap();
            std::future::pending::<()>().await;
        }
    });
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(RetryPolicy::fixed(Duration::from_millis(50)).unwrap())
        .without_heartbeat()
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();

    client.send(stalling_message()).unwrap();
    client.send(say("one")).unwrap();
    client.send(say("two")).unwrap();

    let close = next_event(&mut events, "the dropped connection", |event| match event {
        ClientEvent::Closed(close) => Some(close.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (close.code, close.by, close.reconnect),
        (CloseCode::ABNORMAL, ClosedBy::Failure, true)
    );
    within("the requeued messages", async {
        while received.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The big one was handed to the first socket (at most once): it is not sent again.
    assert_eq!(*received.lock().unwrap(), [text("one"), text("two")]);
    assert_eq!(client.queued(), 0);
    assert_eq!(client.discarded(), 0);
}

/// A server killed outright (SIGKILL): its kernel resets the connection. The client reports a
/// lost connection, not a broken protocol, and reconnects.
#[tokio::test]
async fn a_reset_connection_is_lost_not_a_protocol_error() {
    trace();
    let server = RawServer::serve(small_window_listener(), move |ws, _, number| async move {
        if number > 1 {
            return std::future::pending::<()>().await;
        }
        // What the kernel does for a killed process: a reset, no close frame, no FIN.
        ws.get_ref().set_zero_linger().unwrap();
        drop(ws);
    });
    let client = CrimsonClient::<Say, Heard>::builder()
        .url(server.url())
        .retry(RetryPolicy::fixed(Duration::from_millis(50)).unwrap())
        .without_heartbeat()
        .build()
        .unwrap();
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    let error = next_event(&mut events, "the lost connection", |event| match event {
        ClientEvent::Error(error) => match &**error {
            ClientError::Connection(reason) => Some(reason.clone()),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert!(
        error.starts_with("the connection was lost: ")
            || error == "the server dropped the connection without a close frame",
        "{error}"
    );
    assert!(!error.contains("protocol"), "{error}");
    let close = next_event(&mut events, "the close", |event| match event {
        ClientEvent::Closed(close) => Some(close.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (close.code, close.by, close.reconnect),
        (CloseCode::ABNORMAL, ClosedBy::Failure, true)
    );
}

/// A message over the client's `max_message_size` is refused with a close frame that says
/// so (1009), not by dropping the connection silently.
#[tokio::test]
async fn an_oversize_message_is_answered_with_a_1009_close_frame() {
    trace();
    let (got, closed) = tokio::sync::oneshot::channel();
    let got = Arc::new(Mutex::new(Some(got)));
    let server = RawServer::start("127.0.0.1:0", move |mut ws, _, number| {
        let got = got.clone();
        async move {
            if number > 1 {
                return;
            }
            ws.send(Message::text("x".repeat(2048))).await.unwrap();
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(frame) = message {
                    let frame = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    if let Some(got) = got.lock().unwrap().take() {
                        let _ = got.send(frame);
                    }
                    break;
                }
            }
        }
    })
    .await;
    let client = CrimsonClient::<String, String>::builder()
        .url(server.url())
        .max_message_size(1024)
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let frame = within("the client's close frame", closed).await.unwrap();
    let (code, reason) = frame.expect("a close frame with a code");
    assert_eq!(code, CloseCode::TOO_BIG.as_u16());
    assert!(
        reason.contains("1024"),
        "the reason names the limit: {reason}"
    );
}
