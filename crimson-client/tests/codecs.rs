//! One route, several codecs: each connection speaks the one it asked for with
//! `Sec-WebSocket-Protocol`, and one broadcast reaches all of them (`docs/protocol.md`).

mod common;

use std::time::Duration;

use axum::Router;
use common::within;
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
use crimson_client::{BuildError, ClientError, ConnectError, CrimsonClient, RetryPolicy};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What clients send, in any of four codecs.
#[derive(
    Clone, PartialEq, Serialize, Deserialize, prost::Message, crimson_axum::CrimsonMessage,
)]
#[crimson(codecs("json", "cbor", "msgpack", "protobuf"))]
struct Post {
    #[prost(string, tag = "1")]
    text: String,
}

/// What every client gets.
#[derive(
    Clone, PartialEq, Serialize, Deserialize, prost::Message, crimson_axum::CrimsonMessage,
)]
#[crimson(codecs("json", "cbor", "msgpack", "protobuf"))]
struct Posted {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
}

const ROOM: ConfigName<Post, Posted> = ConfigName::new("room");

/// Broadcasts every post to everyone, numbered.
async fn room(mut session: CrimsonSession<Post, Posted>) {
    let mut seq = 0;
    while let Some(post) = session.recv().await {
        seq += 1;
        let _ = session
            .cluster()
            .broadcast(&Posted {
                text: post.text,
                seq,
            })
            .await;
    }
}

async fn server() -> crimson_axum::testing::TestServer {
    server_on(crimson_axum::cluster::Cluster::local()).await
}

async fn server_on(
    cluster: crimson_axum::cluster::Cluster<Posted>,
) -> crimson_axum::testing::TestServer {
    let app = Router::new()
        .crimson("/room", ROOM, room)
        .layer(CrimsonLayer::new().config(ROOM, CrimsonConfig::new().cluster(cluster)));
    crimson_axum::testing::TestServer::new(app).await
}

/// Across Redis a broadcast travels once, in the default codec (JSON), and each node
/// re-encodes it for its sessions of other codecs.
#[tokio::test]
async fn across_redis_each_node_speaks_its_clients_codecs() {
    use crimson_axum::cluster::redis::RedisCluster;
    use crimson_axum::cluster::Cluster;

    let redis = crimson_axum::testing::RedisServer::start();
    let node = async || {
        let backend = RedisCluster::builder(redis.url())
            .prefix("codecs")
            .check_payloads::<Posted>()
            .build()
            .await
            .unwrap();
        server_on(Cluster::new(backend)).await
    };
    let (a, b) = (node().await, node().await);
    let on_a = client(&a.url("/room"), None);
    let on_b = client(&b.url("/room"), Some("protobuf"));
    let also_b = client(&b.url("/room"), Some("msgpack"));
    for client in [&on_a, &on_b, &also_b] {
        within("connect", client.connect()).await.unwrap();
    }
    // Node B's sessions are subscribed once B is; a few tries until the first crosses.
    let mut crossed = false;
    for attempt in 0..50 {
        on_a.send(Post {
            text: format!("try {attempt}"),
        })
        .unwrap();
        let _ = on_a.receive(Duration::from_secs(5)).await.unwrap();
        if let Ok(posted) = on_b.receive(Duration::from_millis(100)).await {
            assert_eq!(posted.text, format!("try {attempt}"));
            crossed = true;
            break;
        }
    }
    assert!(crossed, "a broadcast from node A reached node B");
    on_a.send(Post {
        text: "over Redis".into(),
    })
    .unwrap();
    for client in [&on_b, &also_b] {
        let mut got = client.receive(Duration::from_secs(5)).await.unwrap();
        while got.text != "over Redis" {
            got = client.receive(Duration::from_secs(5)).await.unwrap();
        }
    }
}

fn client(url: &str, codec: Option<&str>) -> CrimsonClient<Post, Posted> {
    let mut builder = CrimsonClient::<Post, Posted>::builder()
        .url(url)
        .retry(RetryPolicy::never());
    if let Some(codec) = codec {
        builder = builder.codec(codec);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn one_room_in_four_codecs_each_connection_its_own() {
    let server = server().await;
    let url = server.url("/room");
    let clients = [None, Some("cbor"), Some("msgpack"), Some("protobuf")]
        .map(|codec| (codec, client(&url, codec)));
    for (_, client) in &clients {
        within("connect", client.connect()).await.unwrap();
    }
    // A raw connection asking for CBOR: the server names it, and its frames are CBOR.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "crimson.yaml, crimson.cbor, crimson.json".parse().unwrap(),
    );
    let (mut raw, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "crimson.cbor",
        "the first one asked for that the route speaks"
    );
    // Each client posts in turn; every client gets each post, decoded from its own codec.
    for (codec, sender) in &clients {
        let text = format!("from {}", codec.unwrap_or("default"));
        sender.send(Post { text: text.clone() }).unwrap();
        for (receiving, receiver) in &clients {
            let posted = receiver
                .receive(Duration::from_secs(5))
                .await
                .unwrap_or_else(|err| panic!("{receiving:?}: {err}"));
            assert_eq!(posted.text, text, "{receiving:?}");
        }
    }
    for n in 1..=4usize {
        let frame = within("raw", raw.next()).await.unwrap().unwrap();
        let Message::Binary(bytes) = frame else {
            panic!("a CBOR connection gets Binary frames, not {frame:?}");
        };
        let posted = <Posted as crimson_axum::CrimsonMessage>::decode_in(
            crimson_axum::PayloadRef::Binary(&bytes),
            1,
        )
        .unwrap();
        assert_eq!(
            (posted.text.as_str(), posted.seq),
            (
                ["from default", "from cbor", "from msgpack", "from protobuf"][n - 1],
                1
            ),
            "each sender's first"
        );
    }
}

#[tokio::test]
async fn asking_only_for_unspoken_codecs_is_refused_with_both_lists() {
    let server = server().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /room HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: crimson.yaml, chat\r\n\r\n",
        server.addr()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The connection stays open (HTTP/1.1): read until the body is whole.
    let mut answer = Vec::new();
    while !answer.ends_with(b"crimson.protobuf") {
        let mut buf = [0u8; 1024];
        let n = within("the answer", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.ends_with(
            "none of the subprotocols asked for (crimson.yaml) is spoken here; this route \
             speaks: crimson.json, crimson.cbor, crimson.msgpack, crimson.protobuf"
        ),
        "{answer}"
    );

    // A codec both types speak: connected.
    let client = CrimsonClient::<Post, Posted>::builder()
        .url(server.url("/room"))
        .codec("cbor")
        .build()
        .unwrap();
    within("connect", client.connect()).await.unwrap();
    let err = CrimsonClient::<Post, Posted>::builder()
        .url(server.url("/room"))
        .codec("yaml")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::UnknownCodec { .. }));
    assert_eq!(
        err.to_string(),
        "codec \"yaml\" is not spoken by both message types (both speak: \"json\", \"cbor\", \
         \"msgpack\", \"protobuf\")"
    );
}

/// What a client asking for `codec` at `url` gave up with.
async fn give_up(url: &str, codec: &str) -> std::sync::Arc<ClientError> {
    let client = CrimsonClient::<Post, Posted>::builder()
        .url(url)
        .codec(codec)
        .retry(RetryPolicy::fixed(Duration::from_millis(50)).unwrap())
        .build()
        .unwrap();
    match within("connect", client.connect()).await.unwrap_err() {
        ConnectError::GaveUp(cause) => cause,
        err => panic!("{err}"),
    }
}

/// A route of types without codec tokens (hand-written `String`) ignores
/// `Sec-WebSocket-Protocol` and answers none: a client asking for a codec is told so, once,
/// and gives up.
#[tokio::test]
async fn a_route_that_does_not_negotiate_fails_a_client_asking_for_another_codec() {
    const PLAIN: ConfigName<String, String> = ConfigName::new("plain");
    let app = Router::new()
        .crimson("/plain", PLAIN, |mut s: CrimsonSession<String, String>| async move {
            while s.recv().await.is_some() {}
        })
        .layer(CrimsonLayer::new().config(PLAIN, CrimsonConfig::new()));
    let server = crimson_axum::testing::TestServer::new(app).await;
    let cause = give_up(&server.url("/plain"), "cbor").await;
    assert!(matches!(*cause, ClientError::Codec { .. }), "{cause}");
    assert!(
        cause.to_string().ends_with(
            "does not speak codec crimson.v1.cbor or crimson.cbor: the server chose no \
             subprotocol: the route does not negotiate codecs, and speaks its types' defaults"
        ),
        "{cause}"
    );
}

/// What a narrower route speaks: JSON and CBOR only.
#[derive(
    Clone, PartialEq, Serialize, Deserialize, prost::Message, crimson_axum::CrimsonMessage,
)]
#[crimson(codecs("json", "cbor"))]
struct Narrow {
    #[prost(string, tag = "1")]
    text: String,
}

const NARROW: ConfigName<Narrow, Narrow> = ConfigName::new("narrow");

/// A client asking for a codec its types speak but the route does not: refused for good,
/// and the error carries the server's reason.
#[tokio::test]
async fn a_codec_the_route_lacks_fails_the_client_with_the_servers_reason() {
    let app = Router::new()
        .crimson("/narrow", NARROW, |mut s: CrimsonSession<Narrow, Narrow>| async move {
            while s.recv().await.is_some() {}
        })
        .layer(CrimsonLayer::new().config(NARROW, CrimsonConfig::new()));
    let server = crimson_axum::testing::TestServer::new(app).await;
    let cause = give_up(&server.url("/narrow"), "msgpack").await;
    assert!(
        matches!(*cause, ClientError::Rejected { status: 400, .. }),
        "{cause}"
    );
    assert!(
        cause.to_string().ends_with(
            "refused the WebSocket upgrade with HTTP 400: none of the subprotocols asked for \
             (crimson.v1.msgpack, crimson.msgpack) is spoken here; this route speaks: \
             crimson.json, crimson.cbor"
        ),
        "{cause}"
    );
}

const ECHO: ConfigName<Post, Posted> = ConfigName::new("echo");

/// A session's own sends and a cluster's `send_to` reach a client in the codec it chose.
#[tokio::test]
async fn sends_and_send_to_speak_the_sessions_codec() {
    let app = Router::new()
        .crimson(
            "/echo",
            ECHO,
            |mut s: CrimsonSession<Post, Posted>| async move {
                while let Some(post) = s.recv().await {
                    s.send(Posted {
                        text: post.text.clone(),
                        seq: 1,
                    })
                    .await
                    .unwrap();
                    s.try_send(Posted {
                        text: post.text.clone(),
                        seq: 2,
                    })
                    .unwrap();
                    s.cluster()
                        .send_to(
                            s.id(),
                            &Posted {
                                text: post.text,
                                seq: 3,
                            },
                        )
                        .await
                        .unwrap();
                }
            },
        )
        .layer(CrimsonLayer::new().config(ECHO, CrimsonConfig::new()));
    let server = crimson_axum::testing::TestServer::new(app).await;
    for codec in ["msgpack", "protobuf", "cbor"] {
        let client = client(&server.url("/echo"), Some(codec));
        within("connect", client.connect()).await.unwrap();
        client.send(Post { text: codec.into() }).unwrap();
        for seq in 1..=3 {
            let posted = client.receive(Duration::from_secs(5)).await.unwrap();
            assert_eq!((posted.text.as_str(), posted.seq), (codec, seq));
        }
    }
}
