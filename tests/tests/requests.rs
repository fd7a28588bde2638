//! The Crimson protocol (`crimson.v1`, `docs/protocol.md`) spoken by hand, frame by frame,
//! by a raw WebSocket client: requests to the server and their answers, requests from the
//! server, and plain clients on the same route unchanged.

use std::time::Duration;

use axum::Router;
use crimson_axum::testing::TestServer;
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonRequest, CrimsonSession,
    Incoming, RequestError, RouterExt,
};
use crimson_tests::v1::{connect_asking as connect, next_text, Ws};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
struct Ask {
    q: String,
}

#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
struct Answer {
    a: String,
}

impl CrimsonRequest for Ask {
    type Response = Answer;
}

#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
struct Ping {
    n: i64,
}

#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
struct Pong {
    n: i64,
}

impl CrimsonRequest for Ping {
    type Response = Pong;
}

const ASK: ConfigName<Ask, Answer> = ConfigName::new("ask");
const PING: ConfigName<Ping, Ping> = ConfigName::new("ping");

/// Answers requests (upper-cased), refuses `reject`, leaves `ignore` unanswered, and echoes
/// plain messages.
async fn answering(mut session: CrimsonSession<Ask, Answer>) {
    while let Some(incoming) = session.recv_incoming().await {
        match incoming {
            Incoming::Request(request) => match request.value().q.as_str() {
                "ignore" => drop(request),
                "reject" => request.reject(4001, "no").unwrap(),
                q => {
                    let a = q.to_uppercase();
                    request.respond(Answer { a }).unwrap();
                }
            },
            Incoming::Message(ask) => {
                let a = format!("msg {}", ask.q);
                session.send(Answer { a }).await.unwrap();
            }
        }
    }
}

/// Asks its client three times and reports each outcome as a plain message: the answer's
/// number, -1 for a timeout, -2 for a refusal (its code in the next message), -3 when the
/// client does not speak the protocol.
async fn asking(mut session: CrimsonSession<Ping, Ping>) {
    for (n, timeout) in [(1, 5_000), (2, 200), (3, 5_000)] {
        let outcome = match session
            .request(Ping { n }, Duration::from_millis(timeout))
            .await
        {
            Ok(pong) => pong.n,
            Err(RequestError::Timeout(_)) => -1,
            Err(RequestError::Rejected { code, .. }) => {
                session.send(Ping { n: -2 }).await.unwrap();
                i64::from(code)
            }
            Err(RequestError::NoProtocol) => -3,
            Err(other) => panic!("{other}"),
        };
        session.send(Ping { n: outcome }).await.unwrap();
    }
    while session.recv().await.is_some() {}
}

async fn server() -> TestServer {
    let app = Router::new()
        .crimson("/ask", ASK, answering)
        .crimson("/ping", PING, asking)
        .layer(
            CrimsonLayer::new()
                .config(ASK, CrimsonConfig::new().protocol(true))
                .config(PING, CrimsonConfig::new().protocol(true)),
        );
    TestServer::new(app).await
}

#[tokio::test]
async fn requests_to_the_server_are_answered_frame_by_frame() {
    let server = server().await;
    let (mut ws, chosen) = connect(&server.url("/ask"), Some("crimson.v1.json")).await;
    assert_eq!(chosen.as_deref(), Some("crimson.v1.json"));
    let mut say = async |frame: &str| ws.send(Message::text(frame)).await.unwrap();
    say("req id=1\n{\"q\":\"hi\"}").await;
    say("\n{\"q\":\"plain\"}").await;
    say("req id=2\n{\"q\":\"ignore\"}").await;
    say("req id=3\n{\"q\":\"reject\"}").await;
    say("req id=18446744073709551615\n{\"q\":\"max\"}").await;
    assert_eq!(next_text(&mut ws).await, "res id=1\n{\"a\":\"HI\"}");
    assert_eq!(next_text(&mut ws).await, "\n{\"a\":\"msg plain\"}");
    assert_eq!(next_text(&mut ws).await, "err id=2 code=500\nnot answered");
    assert_eq!(next_text(&mut ws).await, "err id=3 code=4001\nno");
    assert_eq!(
        next_text(&mut ws).await,
        "res id=18446744073709551615\n{\"a\":\"MAX\"}"
    );
    // A frame without its header line breaks the protocol: 1002, saying why.
    ws.send(Message::text("{\"q\":\"no header\"}"))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(frame.code, WsCode::Protocol);
            assert_eq!(
                frame.reason.as_str(),
                "crimson.v1: a frame needs a header line ending in \\n (empty for a message)"
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_client_of_the_same_route_is_unchanged() {
    let server = server().await;
    let (mut ws, chosen) = connect(&server.url("/ask"), None).await;
    assert_eq!(chosen, None);
    ws.send(Message::text("{\"q\":\"x\"}")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "{\"a\":\"msg x\"}");
    // Asking for the plain codec by name is plain too.
    let (mut ws, chosen) = connect(&server.url("/ask"), Some("crimson.json")).await;
    assert_eq!(chosen.as_deref(), Some("crimson.json"));
    ws.send(Message::text("{\"q\":\"y\"}")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "{\"a\":\"msg y\"}");
}

#[tokio::test]
async fn the_server_asks_and_gets_answers_timeouts_and_refusals() {
    let server = server().await;
    let (mut ws, _) = connect(&server.url("/ping"), Some("crimson.v1.json")).await;
    assert_eq!(next_text(&mut ws).await, "req id=1\n{\"n\":1}");
    ws.send(Message::text("res id=1\n{\"n\":10}"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "\n{\"n\":10}");
    // The second is not answered within its 200 ms.
    assert_eq!(next_text(&mut ws).await, "req id=2\n{\"n\":2}");
    assert_eq!(next_text(&mut ws).await, "\n{\"n\":-1}");
    // Answered late: ignored.
    ws.send(Message::text("res id=2\n{\"n\":20}"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "req id=3\n{\"n\":3}");
    ws.send(Message::text("err id=3 code=4002\nbusy"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "\n{\"n\":-2}");
    assert_eq!(next_text(&mut ws).await, "\n{\"n\":4002}");

    // A client without the protocol cannot be asked.
    let (mut plain, _) = connect(&server.url("/ping"), None).await;
    for _ in 0..3 {
        assert_eq!(next_text(&mut plain).await, "{\"n\":-3}");
    }
}

#[tokio::test]
async fn the_protocol_is_refused_where_the_config_does_not_turn_it_on() {
    const PLAIN: ConfigName<Ask, Answer> = ConfigName::new("plain");
    let app = Router::new()
        .crimson("/plain", PLAIN, answering)
        .layer(CrimsonLayer::new().config(PLAIN, CrimsonConfig::new()));
    let server = TestServer::new(app).await;
    // Its one codec asked for by name: chosen, named, and spoken (a session once panicked
    // counting this one's traffic).
    let (mut ws, chosen) = connect(&server.url("/plain"), Some("crimson.json")).await;
    assert_eq!(chosen.as_deref(), Some("crimson.json"));
    ws.send(Message::text("{\"q\":\"named\"}")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "{\"a\":\"msg named\"}");
    // Asked for the protocol where it is off: refused before the upgrade, saying what is
    // spoken.
    let mut request = server.url("/plain").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "crimson.v1.json".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert_eq!(
                body,
                "none of the subprotocols asked for (crimson.v1.json) is spoken here; this route \
                 speaks: crimson.json"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

impl CrimsonRequest for Answer {
    type Response = Ask;
}

const ACK: ConfigName<Ask, Answer> = ConfigName::new("ack");

/// On `go`, asks every session of the node and says what came back, sorted.
async fn acking(mut session: CrimsonSession<Ask, Answer>) {
    while let Some(ask) = session.recv().await {
        if ask.q != "go" {
            continue;
        }
        let question = Answer { a: "ack?".into() };
        let mut answers = session
            .cluster()
            .broadcast_with_ack(
                &question,
                crimson_axum::cluster::Target::All,
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        assert_eq!(answers.asked(), 4);
        let mut lines = Vec::new();
        while let Some((_, result)) = answers.next().await {
            lines.push(match result {
                Ok(ask) => format!("ok {}", ask.q),
                Err(err) => format!("err {err}"),
            });
        }
        lines.sort();
        session
            .send(Answer {
                a: lines.join("; "),
            })
            .await
            .unwrap();
    }
}

/// A raw protocol client that answers the first request it gets with `answer(id)`, or not
/// at all.
fn answering_with(mut ws: Ws, answer: Option<fn(&str) -> String>) -> tokio::task::JoinHandle<Ws> {
    tokio::spawn(async move {
        let asked = next_text(&mut ws).await;
        assert_eq!(asked.split_once('\n').unwrap().1, "{\"a\":\"ack?\"}");
        let id = asked
            .strip_prefix("req id=")
            .and_then(|rest| rest.split_once('\n'))
            .unwrap()
            .0
            .to_owned();
        if let Some(answer) = answer {
            ws.send(Message::text(answer(&id))).await.unwrap();
        }
        ws
    })
}

/// An acknowledged broadcast reaches every session of the node and streams each one's
/// answer, or why there is none.
#[tokio::test]
async fn a_broadcast_with_ack_streams_every_sessions_answer_or_why_not() {
    let app = Router::new()
        .crimson("/ack", ACK, acking)
        .layer(CrimsonLayer::new().config(ACK, CrimsonConfig::new().protocol(true)));
    let server = TestServer::new(app).await;
    let url = server.url("/ack");
    let (yes, _) = connect(&url, Some("crimson.v1.json")).await;
    let (no, _) = connect(&url, Some("crimson.v1.json")).await;
    let (silent, _) = connect(&url, Some("crimson.v1.json")).await;
    let (mut plain, _) = connect(&url, None).await;
    let yes = answering_with(yes, Some(|id| format!("res id={id}\n{{\"q\":\"one\"}}")));
    let no = answering_with(no, Some(|id| format!("err id={id} code=4009\nno")));
    let silent = answering_with(silent, None);
    plain.send(Message::text("{\"q\":\"go\"}")).await.unwrap();
    assert_eq!(
        next_text(&mut plain).await,
        "{\"a\":\"err no answer within 300ms; err the client refused (4009): no; err the \
         session's client does not speak the Crimson protocol (crimson.v1); ok one\"}"
    );
    for task in [yes, no, silent] {
        task.await.unwrap();
    }
}
