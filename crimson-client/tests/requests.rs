//! Requests over the Crimson protocol between crimson-client and a Crimson server: answers,
//! refusals, timeouts, requests from the server, and what a lost connection does to a request
//! (sent again only when idempotent).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Router;
use common::within;
use crimson_axum::testing::TestServer;
use crimson_axum::{
    ConfigName, CrimsonConfig, CrimsonLayer, CrimsonMessage, CrimsonRequest, CrimsonSession,
    Incoming, RouterExt,
};
use crimson_client::{CrimsonClient, Refusal, RequestError, RetryPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, CrimsonMessage)]
struct Ask {
    q: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, CrimsonMessage)]
struct Told {
    a: String,
}

impl CrimsonRequest for Ask {
    type Response = Told;
}

impl CrimsonRequest for Told {
    type Response = Ask;
}

const ASK: ConfigName<Ask, Told> = ConfigName::new("ask");

/// Answers by what is asked: upper-cased, refused, never, late, or after cutting the
/// connection the first time (`cut`); `who` asks the client back first.
async fn answering(State(cuts): State<Arc<AtomicUsize>>, mut session: CrimsonSession<Ask, Told>) {
    while let Some(incoming) = session.recv_incoming().await {
        let Incoming::Request(request) = incoming else {
            continue;
        };
        match request.value().q.as_str() {
            "reject" => request.reject(4001, "not that").unwrap(),
            "ignore" => drop(request),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                request.respond(Told { a: "late".into() }).unwrap();
            }
            "cut" if cuts.fetch_add(1, Ordering::SeqCst) == 0 => {
                session.terminate();
                return;
            }
            "who" | "refused" => {
                let a = if request.value().q == "who" {
                    "who are you?"
                } else {
                    "refuse me"
                };
                let back = session
                    .request(Told { a: a.into() }, Duration::from_secs(5))
                    .await;
                let a = match back {
                    Ok(ask) => format!("you are {}", ask.q),
                    Err(err) => format!("no answer: {err}"),
                };
                request.respond(Told { a }).unwrap();
            }
            q => {
                let a = q.to_uppercase();
                request.respond(Told { a }).unwrap();
            }
        }
    }
}

async fn server(protocol: bool) -> TestServer {
    let app = Router::new()
        .crimson("/ask", ASK, answering)
        .layer(CrimsonLayer::new().config(ASK, CrimsonConfig::new().protocol(protocol)))
        .with_state(Arc::new(AtomicUsize::new(0)));
    TestServer::new(app).await
}

fn client(url: String) -> CrimsonClient<Ask, Told> {
    CrimsonClient::<Ask, Told>::builder()
        .url(url)
        .retry(RetryPolicy::fixed(Duration::from_millis(50)).unwrap())
        .on_request(|told| match told.a.as_str() {
            "refuse me" => Err(Refusal::new(4009, "no")),
            a => Ok(Ask {
                q: format!("asked {a}"),
            }),
        })
        .build()
        .unwrap()
}

fn ask(q: &str) -> Ask {
    Ask { q: q.into() }
}

#[tokio::test]
async fn a_request_gets_its_answer_or_says_why_not() {
    let server = server(true).await;
    let client = client(server.url("/ask"));
    let not_yet = client.request(ask("hi"), Duration::from_secs(1)).await;
    assert!(
        matches!(not_yet, Err(RequestError::Disconnected)),
        "{not_yet:?}"
    );
    within("connect", client.connect()).await.unwrap();
    let second = Duration::from_secs(5);
    assert_eq!(client.request(ask("hi"), second).await.unwrap().a, "HI");
    match client.request(ask("reject"), second).await {
        Err(RequestError::Rejected { code, message }) => {
            assert_eq!((code, message.as_str()), (4001, "not that"));
        }
        other => panic!("{other:?}"),
    }
    match client.request(ask("ignore"), second).await {
        Err(RequestError::Rejected { code, message }) => {
            assert_eq!((code, message.as_str()), (500, "not answered"));
        }
        other => panic!("{other:?}"),
    }
    let err = client
        .request(ask("slow"), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no answer within 100ms");
    // The server asks back, and the client's on_request hook answers.
    assert_eq!(
        client.request(ask("who"), second).await.unwrap().a,
        "you are asked who are you?"
    );
    assert_eq!(
        client.request(ask("refused"), second).await.unwrap().a,
        "no answer: the client refused the request (4009): no"
    );
    // Many at once, each to its own answer.
    let asks = (0..50).map(|n| client.request(ask(&format!("n{n}")), second));
    let answers = futures_util::future::join_all(asks).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().a, format!("N{n}"));
    }
    // The late answer came and found nobody; nothing waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.open_requests(), 0);
}

#[tokio::test]
async fn without_the_protocol_requests_say_so_and_messages_still_flow() {
    let server = server(false).await;
    let client = client(server.url("/ask"));
    within("connect", client.connect()).await.unwrap();
    let err = client
        .request(ask("hi"), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::NoProtocol), "{err}");
    assert_eq!(
        err.to_string(),
        "the connection does not speak the Crimson protocol (crimson.v1): requests cannot be \
         sent on it"
    );
}

/// The server cuts the connection on the first `cut` it gets: a plain request fails with
/// `Disconnected`; an idempotent one is sent again on the next connection and answered.
#[tokio::test]
async fn a_lost_connection_fails_a_request_unless_it_is_idempotent() {
    let server = server(true).await;
    let client = client(server.url("/ask"));
    within("connect", client.connect()).await.unwrap();
    let err = client
        .request(ask("cut"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::Disconnected), "{err:?}");

    // The counter is past its first cut: reset it by a fresh server.
    let server = self::server(true).await;
    let client = self::client(server.url("/ask"));
    within("connect", client.connect()).await.unwrap();
    let told = client
        .request_idempotent(ask("cut"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(told.a, "CUT", "answered on the second connection");

    // Asked before the connection is up: a plain request fails at once, an idempotent one
    // waits in the outbox and goes out once connected.
    let early = self::client(server.url("/ask"));
    let connecting = early.connect();
    let plain = early.request(ask("early"), Duration::from_secs(5)).await;
    assert!(
        matches!(plain, Err(RequestError::Disconnected)),
        "{plain:?}"
    );
    let told = early
        .request_idempotent(ask("early"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(told.a, "EARLY");
    within("connect", connecting).await.unwrap();
}

/// A request from the server to a client without an `on_request` hook is answered for it.
#[tokio::test]
async fn a_client_without_a_hook_refuses_the_servers_requests() {
    let server = server(true).await;
    let client = CrimsonClient::<Ask, Told>::builder()
        .url(server.url("/ask"))
        .build()
        .unwrap();
    within("connect", client.connect()).await.unwrap();
    let told = client
        .request(ask("who"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        told.a,
        "no answer: the client refused the request (500): not answered"
    );
}
