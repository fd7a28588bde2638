//! The chat programs end to end: the Rust client, across a Redis cluster.

mod common;

use common::{client_with, server};
use crimson_axum::testing::{RedisClusterServer, RedisServer};

#[test]
fn the_chat_client_talks_to_the_chat_server() {
    let (_server, url) = server(&[]);
    // Each waits for its own greeting: then its session is surely in the chat's cluster.
    let mut alice = client_with(&url, &["--name", "alice"]);
    alice.expect_line(": hello from alice");
    let bob = client_with(&url, &["--name", "bob"]);
    bob.expect_line(": hello from bob");
    alice.type_line("hi bob");
    bob.expect_line(": hi bob");
    alice.expect_line(": hi bob");
}

#[test]
fn two_chat_servers_on_one_redis_are_one_room() {
    let redis = RedisServer::start();
    let (_one, url_one) = server(&["--redis", &redis.url()]);
    let (_two, url_two) = server(&["--redis", &redis.url()]);
    let mut alice = client_with(&url_one, &["--name", "alice"]);
    alice.expect_line(": hello from alice");
    let bob = client_with(&url_two, &["--name", "bob"]);
    bob.expect_line(": hello from bob");
    alice.type_line("across the cluster");
    bob.expect_line(": across the cluster");
}

/// The history is in Redis too: a chat client that fails over from one chat server to the
/// other (`--url` twice) recovers there what was said while it was away.
#[test]
fn chat_client_fails_over_between_two_chat_servers_on_one_redis_and_recovers() {
    let redis = RedisServer::start();
    let (one, url_one) = server(&["--redis", &redis.url()]);
    let (_two, url_two) = server(&["--redis", &redis.url()]);
    let watcher = client_with(&url_one, &["--url", &url_two, "--name", "watcher"]);
    watcher.expect_line(": hello from watcher");
    drop(one);
    // Said through the other server while the watcher is away (it waits 0.5 s or so to
    // reconnect), or just after: either way it gets each once.
    let mut talker = client_with(&url_two, &["--name", "talker"]);
    talker.expect_line(": hello from talker");
    talker.type_line("while you were away");
    talker.expect_line(": while you were away");
    let recovered = watcher.expect_line("recovered");
    assert!(recovered.starts_with("recovered "), "{recovered}");
    watcher.expect_line(": hello from talker");
    watcher.expect_line(": while you were away");
    assert_eq!(
        redis.command(&[b"EXISTS", b"crimson-chat:{all:0}:history"]),
        ":1",
        "the chat's history is in Redis, under its prefix"
    );
}

#[test]
fn two_chat_servers_on_a_redis_cluster_are_one_room() {
    let redis = RedisClusterServer::start();
    let seeds: Vec<String> = redis
        .urls()
        .iter()
        .map(|url| url.trim_start_matches("redis://").to_owned())
        .collect();
    let spec = format!("redis+cluster://{}", seeds[..3].join(","));
    let (_one, url_one) = server(&["--redis", &spec]);
    let (_two, url_two) = server(&["--redis", &redis.urls()[4]]);
    let mut alice = client_with(&url_one, &["--name", "alice"]);
    alice.expect_line(": hello from alice");
    let bob = client_with(&url_two, &["--name", "bob"]);
    bob.expect_line(": hello from bob");
    alice.type_line("across the shards");
    bob.expect_line(": across the shards");
}

/// `--help` prints the usage and exits at once, serving nothing (a server on its default
/// port, or a client dialling it, would not exit by itself).
#[test]
fn help_prints_the_usage_and_starts_nothing() {
    for (program, usage) in [
        (env!("CARGO_BIN_EXE_chat-server"), "usage: chat-server"),
        (env!("CARGO_BIN_EXE_chat-client"), "usage: chat-client"),
    ] {
        let mut child = std::process::Command::new(program)
            .arg("--help")
            .env_remove("CRIMSON_ADDR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the example starts");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting works") {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} --help was still running after 10 s: it started instead");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let output = child.wait_with_output().expect("its output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(status.success(), "{program} --help exited with {status}");
        assert!(
            stdout.starts_with(usage),
            "{program} --help printed: {stdout}"
        );
    }
}

/// `/metrics` after some chat: the figures are what was sent. Alice says hello (reaching
/// herself), Bob says hello (reaching both), Alice says "hi bob" (reaching both).
#[test]
fn the_chat_server_serves_its_metrics() {
    let (_server, url) = server(&[]);
    let mut alice = client_with(&url, &["--name", "alice"]);
    alice.expect_line(": hello from alice");
    let bob = client_with(&url, &["--name", "bob"]);
    bob.expect_line(": hello from bob");
    alice.expect_line(": hello from bob");
    alice.type_line("hi bob");
    bob.expect_line(": hi bob");
    alice.expect_line(": hi bob");

    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/chat")
        .to_owned();
    let text = scrape(&addr);
    let json_in = r#"config="chat",codec="JSON",frame="text""#;
    let sent_bytes: usize = ["hello from alice", "hello from bob", "hi bob"]
        .iter()
        // chat-client speaks the Crimson protocol: one header byte (`\n`) before each.
        .map(|text| format!(r#"{{"text":"{text}"}}"#).len() + 1)
        .sum();
    let expect = [
        (
            r#"crimson_connections_accepted_total{config="chat"}"#.to_owned(),
            2,
        ),
        (r#"crimson_connections_open{config="chat"}"#.to_owned(), 2),
        (format!("crimson_messages_received_total{{{json_in}}}"), 3),
        (
            format!("crimson_bytes_received_total{{{json_in}}}"),
            sent_bytes,
        ),
        // Five broadcasts, and each client's `sub` frame (where it follows the chat's
        // history from).
        (format!("crimson_messages_sent_total{{{json_in}}}"), 7),
        (
            r#"crimson_broadcast_recipients_count{target="all"}"#.to_owned(),
            // One broadcast per message, whatever codecs the room speaks.
            3,
        ),
        (
            r#"crimson_broadcast_recipients_sum{target="all"}"#.to_owned(),
            5,
        ),
    ];
    for (series, want) in expect {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, want as f64, "{line}");
    }
}

/// `GET /metrics` over a plain socket: the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap()
}
