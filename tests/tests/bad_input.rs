//! What a client sends that the server refuses, and how it says so: undecodable messages
//! (1007, or skipped), messages over the limit (1009), invalid UTF-8 (1007), broken frames and
//! invalid close codes (1002). Raw frames come from `crimson_tests::raw`, written byte by byte.

use crimson_axum::testing::TestServer;
use crimson_axum::{CloseCode, CloseRecord, ClosedBy, CrimsonConfig, DecodeErrorPolicy, Payload};
use crimson_tests::apps::chat_app;
use crimson_tests::messages::{ChatMessage, ChatResponse};
use crimson_tests::raw::{close_payload, frame, op, RawClient};
use crimson_tests::support::{Closes, Errors};

/// The chat app served with `config` plus recorders for its hooks.
async fn serve(config: CrimsonConfig<ChatMessage, ChatResponse>) -> (TestServer, Closes, Errors) {
    let closes = Closes::new();
    let errors = Errors::new();
    let (app, _) = chat_app(config.on_close(closes.hook()).on_error(errors.hook()));
    (TestServer::new(app).await, closes, errors)
}

fn text(json: &str) -> Payload {
    Payload::Text(json.into())
}

fn said(json: &str) -> String {
    let response: ChatResponse = serde_json::from_str(json).expect("a ChatResponse");
    response.text
}

// The multi-thread runtime: the close frame must go out whichever task runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_closes_1007_naming_its_type_and_field() {
    let (server, closes, errors) = serve(CrimsonConfig::new()).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    conn.send_raw(text(r#"{"txt":"typo"}"#)).await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::INVALID_PAYLOAD);
    assert!(
        reason.starts_with("invalid JSON message for ChatMessage: missing field `text`"),
        "{reason}"
    );
    let record = closes.of_path("/chat").await;
    assert_eq!(
        record,
        CloseRecord {
            code: CloseCode::INVALID_PAYLOAD,
            reason: reason.clone(),
            by: ClosedBy::Server
        }
    );
    let errors = errors.texts();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "cannot decode `crimson_tests::messages::ChatMessage` from JSON: missing field `text`"
        ),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_decode_error_is_cut_to_fit_a_close_frame() {
    let (server, _closes, errors) = serve(CrimsonConfig::new()).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    // A JSON string where an object belongs: serde quotes the whole string in its error.
    let long = format!("\"{}\"", "a".repeat(300));
    conn.send_raw(text(&long)).await.unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(code, CloseCode::INVALID_PAYLOAD);
    assert!(reason.len() <= 123, "{} bytes: {reason}", reason.len());
    assert!(reason.starts_with("invalid JSON message for ChatMessage: invalid type: string"));
    assert!(reason.ends_with('…'), "{reason}");
    // The hook gets the whole error.
    assert!(errors.texts()[0].len() > 300, "{:?}", errors.texts());
}

#[tokio::test]
async fn the_skip_policy_skips_counts_reports_and_goes_on() {
    let (server, closes, errors) =
        serve(CrimsonConfig::new().decode_errors(DecodeErrorPolicy::Skip)).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    conn.send_raw(text("not json")).await.unwrap();
    conn.send_raw(text(r#"{"txt":"typo"}"#)).await.unwrap();
    conn.send(&ChatMessage::new("ok")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap().text, "ok");
    conn.send(&ChatMessage::new("skipped?")).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        ChatResponse::new("2", "server"),
        "the session counts what it skipped"
    );
    let errors = errors.texts();
    assert_eq!(errors.len(), 2, "each skip is reported: {errors:?}");
    assert!(errors[0].contains("expected ident"), "{errors:?}");
    assert!(errors[1].contains("missing field `text`"), "{errors:?}");
    assert!(closes.is_empty(), "still open: {:?}", closes.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_closes_1009_naming_the_limit() {
    let (server, closes, errors) = serve(CrimsonConfig::new().max_message_size(1024)).await;
    let mut conn = server
        .connect::<ChatMessage, ChatResponse>("/chat")
        .await
        .unwrap();
    // Exactly at the limit: accepted.
    let padding = 1024 - r#"{"text":""}"#.len();
    let at_limit = ChatMessage::new("x".repeat(padding));
    conn.send(&at_limit).await.unwrap();
    assert_eq!(conn.recv().await.unwrap().text, at_limit.text);
    // One byte over: refused.
    conn.send(&ChatMessage::new("x".repeat(padding + 1)))
        .await
        .unwrap();
    let (code, reason) = conn.recv_close().await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (
            CloseCode::TOO_BIG,
            "message too big: the limit is 1024 bytes"
        )
    );
    assert_eq!(
        closes.of_path("/chat").await,
        CloseRecord {
            code: CloseCode::TOO_BIG,
            reason,
            by: ClosedBy::Server
        }
    );
    assert_eq!(errors.len(), 1, "{:?}", errors.texts());
}

/// Raising the limit raises it for single frames too (there is no separate frame limit left
/// at 64 KiB), and the reason names the limit that was set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_limit_takes_a_100_kib_message_in_one_frame() {
    let limit = 256 << 10;
    let (server, closes, _) = serve(CrimsonConfig::new().max_message_size(limit)).await;
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(100 << 10));
    client.send(op::TEXT, big.as_bytes()).await;
    let echoed = client.recv_text().await;
    assert_eq!(said(&echoed).len(), 100 << 10);
    // Past the raised limit, in one frame: refused, naming it.
    let over = format!(r#"{{"text":"{}"}}"#, "x".repeat(limit));
    client
        .write_lossy(&frame(true, false, op::TEXT, over.as_bytes(), true))
        .await;
    assert_eq!(
        client.recv_close().await,
        (1009, format!("message too big: the limit is {limit} bytes"))
    );
    client.recv_until_end().await;
    assert_eq!(closes.of_path("/chat").await.code, CloseCode::TOO_BIG);
}

/// The limit is on the message, however it is split into frames.
#[tokio::test]
async fn a_fragmented_message_over_the_limit_closes_1009() {
    let (server, closes, _) = serve(CrimsonConfig::new().max_message_size(1024)).await;
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    let piece = vec![b' '; 600];
    client
        .write(&frame(false, false, op::TEXT, &piece, true))
        .await;
    client
        .write_lossy(&frame(false, false, op::CONTINUATION, &piece, true))
        .await;
    client
        .write_lossy(&frame(true, false, op::CONTINUATION, &piece, true))
        .await;
    assert_eq!(
        client.recv_close().await,
        (1009, "message too big: the limit is 1024 bytes".to_owned())
    );
    client.recv_until_end().await;
    assert_eq!(closes.of_path("/chat").await.code, CloseCode::TOO_BIG);
}

/// The error hook's text says what went wrong once: `SessionError::TooBig` and `::Protocol`
/// already prefix their message, so the reason they carry must not repeat the prefix.
#[tokio::test]
async fn error_hook_texts_do_not_repeat_their_prefix() {
    let (server, closes, errors) = serve(CrimsonConfig::new().max_message_size(16)).await;
    let mut big = RawClient::connect(server.addr(), "/chat").await;
    big.send(op::TEXT, &[b' '; 17]).await;
    assert_eq!(big.recv_close().await.0, 1009);
    let mut bad = RawClient::connect(server.addr(), "/chat").await;
    bad.send_close(999, "").await;
    assert_eq!(bad.recv_close().await.0, 1002);
    closes.wait_len(2).await;
    let texts = errors.texts();
    assert!(
        texts.contains(&"message too big: the limit is 16 bytes".to_owned()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"WebSocket protocol error: invalid close code 999".to_owned()),
        "{texts:?}"
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_1007() {
    let (server, closes, _) = serve(CrimsonConfig::new()).await;
    let invalid = "invalid UTF-8 in a text message";

    // In one frame.
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    client.send(op::TEXT, b"{\"text\":\"\xff\"}").await;
    assert_eq!(client.recv_close().await, (1007, invalid.to_owned()));
    client.recv_until_end().await;

    // In the second frame of a message, the first still open.
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    client
        .write(&frame(false, false, op::TEXT, b"{\"text\":\"ok", true))
        .await;
    client
        .write_lossy(&frame(true, false, op::CONTINUATION, b"\xc3\x28\"}", true))
        .await;
    assert_eq!(client.recv_close().await, (1007, invalid.to_owned()));
    client.recv_until_end().await;

    // A character split between two frames is fine.
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    client
        .write(&frame(false, false, op::TEXT, b"{\"text\":\"caf\xc3", true))
        .await;
    client
        .write(&frame(true, false, op::CONTINUATION, b"\xa9\"}", true))
        .await;
    assert_eq!(said(&client.recv_text().await), "café");

    // A close reason that is not UTF-8.
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    client.send(op::CLOSE, b"\x03\xe8\xff\xfe").await;
    assert_eq!(client.recv_close().await, (1007, invalid.to_owned()));
    client.recv_until_end().await;

    let records = closes.wait_len(3).await;
    assert!(
        records
            .iter()
            .all(|(_, r)| r.code == CloseCode::INVALID_PAYLOAD
                && r.reason == invalid
                && r.by == ClosedBy::Server),
        "{records:?}"
    );
}

/// Odd but valid input is not refused: pings between the frames of a message (answered with
/// their payload), empty frames, an empty message.
#[tokio::test]
async fn unusual_but_valid_frames_are_accepted() {
    let (server, closes, errors) = serve(CrimsonConfig::new()).await;
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    let mut bytes = frame(false, false, op::TEXT, br#"{"text":"#, true);
    bytes.extend(frame(true, false, op::PING, b"are you there", true));
    bytes.extend(frame(false, false, op::CONTINUATION, b"", true));
    bytes.extend(frame(false, false, op::CONTINUATION, br#""pieces"#, true));
    bytes.extend(frame(true, false, op::PONG, b"unasked", true));
    bytes.extend(frame(true, false, op::CONTINUATION, br#""}"#, true));
    client.write(&bytes).await;
    let pong = client.next_frame().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (op::PONG, &b"are you there"[..])
    );
    assert_eq!(said(&client.recv_text().await), "pieces");
    // One byte at a time.
    for byte in frame(true, false, op::TEXT, br#"{"text":"slowly"}"#, true) {
        client.write(&[byte]).await;
    }
    assert_eq!(said(&client.recv_text().await), "slowly");
    // A Binary frame holding JSON is decoded the same way.
    client.send(op::BINARY, br#"{"text":"as bytes"}"#).await;
    assert_eq!(said(&client.recv_text().await), "as bytes");
    client.send_close(1000, "done").await;
    assert_eq!(client.recv_close().await.0, 1000);
    assert_eq!(
        closes.of_path("/chat").await,
        CloseRecord {
            code: CloseCode::NORMAL,
            reason: "done".into(),
            by: ClosedBy::Client
        }
    );
    assert!(errors.is_empty(), "{:?}", errors.texts());
}

#[tokio::test]
async fn protocol_errors_close_1002_saying_what_was_wrong() {
    let (server, closes, _) = serve(CrimsonConfig::new()).await;
    let mut two_starts = frame(false, false, op::TEXT, b"a", true);
    two_starts.extend(frame(true, false, op::TEXT, b"b", true));
    let mut non_minimal = vec![0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4];
    non_minimal.extend([b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unmasked",
            frame(true, false, op::TEXT, b"{}", false),
            "a frame from the client is not masked",
        ),
        (
            "continuation first",
            frame(true, false, op::CONTINUATION, b"x", true),
            "a continuation frame without a message to continue",
        ),
        (
            "two starts",
            two_starts,
            "a new message started before the last one ended",
        ),
        (
            "rsv1 without compression",
            frame(true, true, op::TEXT, b"x", true),
            "RSV1 is set on a frame that cannot be compressed here",
        ),
        (
            "rsv2",
            {
                let mut f = frame(true, false, op::TEXT, b"x", true);
                f[0] |= 0x20;
                f
            },
            "a reserved bit (RSV2 or RSV3) is set",
        ),
        (
            "reserved data opcode",
            frame(true, false, 0x3, b"x", true),
            "a frame has a reserved opcode",
        ),
        (
            "reserved control opcode",
            frame(true, false, 0xB, b"", true),
            "a frame has a reserved opcode",
        ),
        (
            "fragmented ping",
            frame(false, false, op::PING, b"p", true),
            "a control frame is fragmented",
        ),
        (
            "long ping",
            frame(true, false, op::PING, &[0; 126], true),
            "a control frame carries more than 125 bytes",
        ),
        (
            "one-byte close",
            frame(true, false, op::CLOSE, &[3], true),
            "a close frame has a one-byte payload",
        ),
        (
            "non-minimal length",
            non_minimal,
            "a frame length is not minimally encoded",
        ),
    ];
    for (n, (name, bytes, what)) in cases.iter().enumerate() {
        let path = format!("/chat?case={n}");
        let mut client = RawClient::connect(server.addr(), &path).await;
        client.write_lossy(bytes).await;
        let (code, reason) = client.recv_close().await;
        assert_eq!(
            (code, reason.as_str()),
            (1002, format!("protocol error: {what}").as_str()),
            "{name}"
        );
        // The server ends the connection after its close (no answer can be read).
        let after = client.recv_until_end().await;
        assert!(after.is_empty(), "{name}: {after:?}");
    }
    let records = closes.wait_len(cases.len()).await;
    for (_, record) in &records {
        assert_eq!(record.code, CloseCode::PROTOCOL_ERROR, "{record:?}");
        assert_eq!(record.by, ClosedBy::Server, "{record:?}");
        assert!(record.reason.starts_with("protocol error: "), "{record:?}");
    }
}

/// A close frame with a code no endpoint may send is a protocol error: the server answers
/// 1002 and its record names the code it got.
#[tokio::test]
async fn a_peer_close_with_an_invalid_code_is_answered_1002() {
    let (server, closes, _) = serve(CrimsonConfig::new()).await;
    let invalid = [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];
    for code in invalid {
        let mut client = RawClient::connect(server.addr(), "/chat").await;
        client.send_close(code, "bad").await;
        let expected = format!("protocol error: invalid close code {code}");
        assert_eq!(
            client.recv_close().await,
            (1002, expected.clone()),
            "{code}"
        );
        client.recv_until_end().await;
    }
    let records = closes.wait_len(invalid.len()).await;
    for code in invalid {
        let expected = CloseRecord {
            code: CloseCode::PROTOCOL_ERROR,
            reason: format!("protocol error: invalid close code {code}"),
            by: ClosedBy::Server,
        };
        assert!(
            records.iter().any(|(_, record)| *record == expected),
            "no record names {code}: {records:?}"
        );
    }
}

/// Valid codes are echoed and recorded as the client's; no code at all is answered 1000 and
/// recorded as 1005.
#[tokio::test]
async fn a_peer_close_with_a_valid_code_is_echoed_and_recorded_as_the_clients() {
    let (server, closes, _) = serve(CrimsonConfig::new()).await;
    let valid = [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999];
    for code in valid {
        let mut client = RawClient::connect(server.addr(), "/chat").await;
        client.send_close(code, &format!("bye {code}")).await;
        assert_eq!(client.recv_close().await.0, code);
        client.recv_until_end().await;
        let records = closes
            .wait_until(&format!("the close {code}"), |events| {
                events
                    .iter()
                    .any(|(_, r)| r.reason == format!("bye {code}"))
            })
            .await;
        let (_, record) = records.last().unwrap();
        assert_eq!(
            record,
            &CloseRecord {
                code: CloseCode::from_u16(code),
                reason: format!("bye {code}"),
                by: ClosedBy::Client
            }
        );
    }
    let mut client = RawClient::connect(server.addr(), "/chat").await;
    client.send(op::CLOSE, &[]).await;
    assert_eq!(client.recv_close().await, (1000, String::new()));
    client.recv_until_end().await;
    let records = closes.wait_len(valid.len() + 1).await;
    assert_eq!(
        records.last().unwrap().1,
        CloseRecord {
            code: CloseCode::NO_STATUS,
            reason: String::new(),
            by: ClosedBy::Client
        }
    );
}

/// A message that arrived before bad input is still answered; then the close goes out. The
/// good message and the bad input arrive in one write, so the server reads them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_bad_input_are_answered_before_the_close() {
    let (server, _, _) = serve(CrimsonConfig::new().max_message_size(1024)).await;
    let first = frame(true, false, op::TEXT, br#"{"text":"first"}"#, true);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "undecodable",
            frame(true, false, op::TEXT, b"not json", true),
            1007,
        ),
        ("unmasked", frame(true, false, op::TEXT, b"{}", false), 1002),
        (
            "too big",
            frame(true, false, op::TEXT, &[b' '; 2048], true),
            1009,
        ),
        (
            "invalid UTF-8",
            frame(true, false, op::TEXT, b"\xff", true),
            1007,
        ),
        (
            "invalid close code",
            frame(true, false, op::CLOSE, &close_payload(999, ""), true),
            1002,
        ),
    ];
    for (name, bad, code) in cases {
        let mut client = RawClient::connect(server.addr(), "/chat").await;
        let mut both = first.clone();
        both.extend(bad);
        client.write(&both).await;
        assert_eq!(said(&client.recv_text().await), "first", "{name}");
        assert_eq!(client.recv_close().await.0, code, "{name}");
        // Answered (where the server still reads), the close ends the connection at once.
        client
            .write_lossy(&frame(
                true,
                false,
                op::CLOSE,
                &close_payload(code, ""),
                true,
            ))
            .await;
        client.recv_until_end().await;
    }
}
