//! The Crimson client under the Autobahn|Testsuite conformance run (`scripts/autobahn.sh`):
//! the suite's client loop, driven against `wstest -m fuzzingserver`.
//!
//! `cargo run --release -p crimson-bench --bin autobahn-client -- ws://127.0.0.1:9001 crimson-client`
//!
//! It asks `URL/getCaseCount` how many cases there are, then for each case N connects to
//! `URL/runCase?case=N&agent=AGENT` and sends every message back, as it came (Text stays Text,
//! Binary stays Binary), until the server closes; last, `URL/updateReports?agent=AGENT` has
//! the suite write its reports. Each connection is a fresh [`CrimsonClient`] of `Payload`s
//! (no codec) without heartbeat or retries, with limits raised for the suite's 16 MiB
//! messages.
//!
//! stderr gets one line per case: its number, how many messages were echoed, and how the
//! connection closed. The exit status is non-zero when the suite cannot be reached or a case
//! cannot be run at all; the verdicts are in the suite's reports.

use std::error::Error;
use std::time::Duration;

use crimson_client::{
    ClientEvent, CloseEvent, ConnectionState, CrimsonClient, Payload, RetryPolicy,
};
use futures_util::{FutureExt, StreamExt};

/// The largest message accepted: the suite's largest are 16 MiB.
const MAX_SIZE: usize = 32 << 20;
/// Room for every message of a case to wait, in and out (the suite sends up to 1000 at once).
const QUEUE: usize = 1 << 14;

/// A client for one connection to `url`: no retries, no heartbeat, the suite's sizes.
fn client(url: String) -> Result<CrimsonClient<Payload, Payload>, Box<dyn Error>> {
    Ok(CrimsonClient::<Payload, Payload>::builder()
        .url(url)
        .retry(RetryPolicy::never())
        .without_heartbeat()
        .connect_timeout(Duration::from_secs(30))
        .max_message_size(MAX_SIZE)
        .outgoing_queue(QUEUE)
        .incoming_queue(QUEUE)
        .build()?)
}

/// What happened on one connection.
#[derive(Debug, Default)]
struct Outcome {
    /// Messages received (and, unless sending failed, echoed).
    received: usize,
    /// The first text message, if any.
    first_text: Option<String>,
    /// How the connection closed; `None` when it never opened.
    close: Option<CloseEvent>,
    /// What went wrong on the way, as the client reported it.
    errors: Vec<String>,
}

/// Connects to `url` and runs until the client is closed again (the server closed, or the
/// connection failed), echoing each message when `echo` is set.
async fn converse(url: String, echo: bool) -> Result<Outcome, Box<dyn Error>> {
    let client = client(url)?;
    // Subscribe before connecting so that nothing is missed.
    let mut incoming = client.incoming();
    let mut events = client.events();
    let mut outcome = Outcome::default();
    drop(client.connect()); // runs in the background; the events say how it goes
    loop {
        tokio::select! {
            // Echo what has arrived before looking at how the connection ended.
            biased;
            Some(message) = incoming.next() => match message {
                Ok(payload) => {
                    outcome.received += 1;
                    if let (None, Payload::Text(text)) = (&outcome.first_text, &payload) {
                        outcome.first_text = Some(text.as_str().to_owned());
                    }
                    if echo {
                        if let Err(err) = client.send(payload) {
                            outcome.errors.push(format!("echo not sent: {err}"));
                        }
                    }
                }
                Err(lagged) => outcome.errors.push(lagged.to_string()),
            },
            Some(event) = events.next() => match event {
                Ok(ClientEvent::State(ConnectionState::Closed)) => break,
                Ok(ClientEvent::Closed(close)) => outcome.close = Some(close),
                Ok(ClientEvent::Error(err)) => outcome.errors.push(err.to_string()),
                Ok(_) => {}
                Err(lagged) => outcome.errors.push(format!("events: {lagged}")),
            },
            else => break,
        }
    }
    // What came after the close: messages (too late to echo) and errors (queued echoes
    // discarded).
    while let Some(Some(Ok(_))) = incoming.next().now_or_never() {
        outcome.received += 1;
    }
    while let Some(Some(event)) = events.next().now_or_never() {
        if let Ok(ClientEvent::Error(err)) = event {
            outcome.errors.push(err.to_string());
        }
    }
    Ok(outcome)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    crimson_examples::init_tracing("error");

    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let agent = args.next().unwrap_or_else(|| "crimson-client".to_owned());

    let counted = converse(format!("{base}/getCaseCount"), false).await?;
    let count: u32 = match counted.first_text.as_deref().map(str::parse) {
        Some(Ok(count)) => count,
        _ => {
            return Err(format!(
                "no case count from {base}/getCaseCount: {:?}",
                counted.errors
            )
            .into())
        }
    };
    eprintln!("{count} cases, agent {agent}");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let outcome = converse(url, true).await?;
        let Some(close) = &outcome.close else {
            return Err(format!("case {case}: no connection: {:?}", outcome.errors).into());
        };
        eprintln!(
            "case {case}/{count}: {} message(s); closed {} {:?} by {:?}{}",
            outcome.received,
            close.code,
            close.reason,
            close.by,
            if outcome.errors.is_empty() {
                String::new()
            } else {
                format!("; {}", outcome.errors.join("; "))
            }
        );
    }

    let updated = converse(format!("{base}/updateReports?agent={agent}"), false).await?;
    if updated.close.is_none() {
        return Err(format!("could not update the reports: {:?}", updated.errors).into());
    }
    eprintln!("reports updated");
    Ok(())
}
