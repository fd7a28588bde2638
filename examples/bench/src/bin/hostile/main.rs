//! The hostile suite: what a hostile client, a slow network or a misbehaving server can do to
//! the `chat-server` and `chat-client` examples, each scenario measured from outside against
//! the release binaries, and failing on a regression.
//!
//! ```text
//! cargo build --release -p crimson-examples --bin chat-server --bin chat-client -p crimson-bench --bin hostile
//! ./target/release/hostile [--only ping-flood,slowloris,...]
//! ```
//!
//! Scenarios (each bounded in count and time, loopback only):
//! - `ping-flood`: a client sends 200,000 pings and never reads; the server's memory must not
//!   follow (it answers the latest pings only: a bounded pong queue).
//! - `ping-flood-client`: a server floods `chat-client` with pings and never reads; the
//!   client's memory must not follow either.
//! - `flood-client`: a server sends `chat-client` ~100,000 messages a second for 4 s while its
//!   output is read slowly; the client reports what it missed at most once a second, not
//!   once per lag.
//! - `slowloris`: a handshake sent one byte every 100 ms is cut by the handshake timeout.
//! - `silent`: 500 connections that never send a byte are all closed by the handshake timeout.
//! - `room-flood`: one client sends 100,000 messages as fast as it can into the chat room;
//!   three others, probing every 100 ms, keep their connections and their latency.
//! - `partial`: 100 connections each hold a 63 KiB unfinished message; past the server's
//!   budget for unfinished messages new ones are closed with 1013, and memory stays bounded.
//! - `shutdown`: SIGINT with a half-sent handshake and a client that never reads open; the
//!   process is gone within its grace period.
//!
//! It prints one line per scenario with what it measured and exits 1 if any failed.

mod raw;
mod scenarios;

use std::time::{Duration, Instant};

use crimson_examples::arg;

const ALL: [&str; 8] = [
    "ping-flood",
    "ping-flood-client",
    "flood-client",
    "slowloris",
    "silent",
    "room-flood",
    "partial",
    "shutdown",
];

/// What one scenario found.
pub(crate) struct Outcome {
    /// What it measured, for the report.
    pub(crate) measured: String,
    /// Why it failed, if it did.
    pub(crate) failure: Option<String>,
}

impl Outcome {
    pub(crate) fn check(measured: String, ok: bool, why: impl FnOnce() -> String) -> Self {
        Self {
            failure: (!ok).then(why),
            measured,
        }
    }
}

#[tokio::main]
async fn main() {
    let only = arg("only", "", &ALL.join(","));
    let chosen: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = chosen.iter().find(|s| !ALL.contains(s)) {
        eprintln!(
            "hostile: unknown scenario {unknown:?}; choose from {}",
            ALL.join(", ")
        );
        std::process::exit(2);
    }
    let started = Instant::now();
    let mut failed = 0;
    for name in chosen {
        let at = Instant::now();
        let run = tokio::time::timeout(Duration::from_secs(60), scenarios::run(name)).await;
        let outcome = match run {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => Outcome {
                measured: String::new(),
                failure: Some(format!("could not run: {err}")),
            },
            Err(_) => Outcome {
                measured: String::new(),
                failure: Some("did not finish within 60 s".into()),
            },
        };
        let took = at.elapsed().as_secs_f64();
        match &outcome.failure {
            None => println!("PASS {name:<18} ({took:.1} s) {}", outcome.measured),
            Some(why) => {
                failed += 1;
                println!("FAIL {name:<18} ({took:.1} s) {}: {why}", outcome.measured);
            }
        }
    }
    println!(
        "hostile: {} in {:.1} s",
        if failed == 0 {
            "all scenarios passed".to_owned()
        } else {
            format!("{failed} scenario(s) FAILED")
        },
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
