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
