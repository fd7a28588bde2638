//! The chat client: sends a greeting and every line typed on stdin, prints every connection
//! state change and every message the server broadcasts, and reconnects with exponential
//! backoff when the server goes away.
//!
//! `cargo run -p crimson-examples --bin chat-client [-- --url ws://HOST:PORT/chat --name NAME]`
//! (or `CRIMSON_URL`, `CRIMSON_NAME`); it connects to `ws://127.0.0.1:54321/chat` by default,
//! where `chat-server` listens. With `--codec cbor` (or `msgpack`, `protobuf`: the schema in
//! `proto/chat.proto`) it asks the server for that codec instead of JSON: the same chat room,
//! the same types.
//!
//! stdout gets one line per event: `state: <state>` for each state change and
//! `<sender>: <text>` for each message. Closes and errors go to stderr. At the end of stdin it
//! waits (up to 10 s) until the server has broadcast back everything it sent, so
//! `echo hi | chat-client` shows the reply; then, or at once on Ctrl-C, it disconnects with
//! 1000 and exits once the close is done. `--help` prints the usage.

use std::collections::VecDeque;
use std::time::Duration;

use crimson_client::{
    ClientEvent, CloseCode, ConnectionState, CrimsonClient, RetryPolicy, Subscription,
};
use crimson_examples::{arg, ChatMessage, ChatResponse, DEFAULT_ADDR};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

const USAGE: &str = "\
usage: chat-client [--url URL]... [--name NAME] [--codec CODEC]

Sends a greeting and every line typed on stdin to a chat-server, and prints every state change
and every message it broadcasts. Reconnects when the server goes away, and then gets what was
said meanwhile: it prints `recovered N` (N messages it had missed, printed before) or
`not recovered: REASON` (it missed messages that are gone) on a line of its own. The line
/who asks the server who is here (a request; the answer prints as `server: N here`).

  --url URL     where the server is (default ws://127.0.0.1:54321/chat; env CRIMSON_URL,
                commas between URLs); give it more than once to try each in turn (another
                node of the same chat, sharing a Redis)
  --name NAME   who says hello (default chat-client; env CRIMSON_NAME)
  --codec CODEC json (the default), cbor, msgpack or protobuf (proto/chat.proto): asked for
                with Sec-WebSocket-Protocol (env CRIMSON_CODEC)
  --help        print this and exit
";

/// Messages this client fell behind on and missed, reported at most once a second (a flood
/// lags many times a second: one line each would bury everything else).
struct Missed {
    count: u64,
    since: Option<tokio::time::Instant>,
}

impl Missed {
    fn add(&mut self, count: u64) {
        self.count += count;
        let now = tokio::time::Instant::now();
        if self
            .since
            .is_none_or(|at| now - at >= Duration::from_secs(1))
        {
            self.flush();
            self.since = Some(now);
        }
    }

    fn flush(&mut self) {
        if self.count > 0 {
            eprintln!("missed {} message(s): this client fell behind", self.count);
            self.count = 0;
        }
    }
}

fn print_message(message: Result<ChatResponse, crimson_client::Lagged>, missed: &mut Missed) {
    match message {
        Ok(message) => println!("{}: {}", message.from, message.text),
        Err(lagged) => missed.add(lagged.0),
    }
}

/// Prints an event: state changes on stdout, closes and errors on stderr.
fn print_event(event: ClientEvent) {
    match event {
        ClientEvent::State(state) => println!("state: {state}"),
        ClientEvent::Connected { url } => eprintln!("connected to {url}"),
        ClientEvent::Closed(close) => eprintln!(
            "closed: {} {:?}{}",
            close.code,
            close.reason,
            if close.reconnect {
                " (reconnecting)"
            } else {
                ""
            }
        ),
        ClientEvent::Error(error) => eprintln!("error: {error}"),
        ClientEvent::Recovered { count, .. } => println!("recovered {count}"),
        ClientEvent::NotRecovered { reason, .. } => println!("not recovered: {reason}"),
        other => eprintln!("{other:?}"),
    }
}

/// Sends `text`, remembering it until the server broadcasts it back; says so when it cannot
/// be queued.
fn send(
    client: &CrimsonClient<ChatMessage, ChatResponse>,
    pending: &mut VecDeque<String>,
    text: String,
) {
    match client.send(ChatMessage { text: text.clone() }) {
        Ok(()) => pending.push_back(text),
        Err(err) => eprintln!("not sent: {err}"),
    }
}

/// Asks the server who is here (a request: the Crimson protocol) and prints the answer as
/// `server: N here`, when it comes.
fn who(client: &CrimsonClient<ChatMessage, ChatResponse>) {
    let client = client.clone();
    tokio::spawn(async move {
        let asked = ChatMessage {
            text: "/who".into(),
        };
        match client.request(asked, Duration::from_secs(5)).await {
            Ok(answer) => println!("{}: {}", answer.from, answer.text),
            Err(err) => eprintln!("/who: {err}"),
        }
    });
}

/// Prints whatever is already waiting on both streams.
fn drain(
    incoming: &mut Subscription<ChatResponse>,
    events: &mut Subscription<ClientEvent>,
    missed: &mut Missed,
) {
    use futures_util::FutureExt;
    while let Some(Some(message)) = incoming.next().now_or_never() {
        print_message(message, missed);
    }
    missed.flush();
    while let Some(Some(Ok(event))) = events.next().now_or_never() {
        print_event(event);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if crimson_examples::help(USAGE) {
        return Ok(());
    }
    crimson_examples::init_tracing("error");

    let name = arg("name", "CRIMSON_NAME", "chat-client");
    let urls = crimson_examples::args("url", "CRIMSON_URL", &format!("ws://{DEFAULT_ADDR}/chat"));
    let codec = arg("codec", "CRIMSON_CODEC", "json");
    // Each attempt takes the next URL: a node that is down is skipped for the next.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = CrimsonClient::<ChatMessage, ChatResponse>::builder()
        .endpoint(move || {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = urls[at % urls.len()].clone();
            async move { Ok::<_, crimson_client::BoxError>(crimson_client::Endpoint::new(url)) }
        })
        .codec(codec)
        .retry(RetryPolicy::exponential(
            Duration::from_millis(500),
            Duration::from_secs(10),
        )?)
        .build()?;
    // Subscribe before connecting so that nothing is missed. The event stream has every state
    // change in order (the `state()` watch keeps only the latest).
    let mut events = client.events();
    let mut incoming = client.incoming();

    client.connect(); // runs in the background; the greeting waits in the outbox until connected
    let mut pending = VecDeque::new(); // sent, not yet broadcast back
    send(&client, &mut pending, format!("hello from {name}"));

    let mut missed = Missed {
        count: 0,
        since: None,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Set at the end of stdin: how long to wait for the last echoes.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_some() && pending.is_empty() {
            break;
        }
        tokio::select! {
            Some(message) = incoming.next() => {
                if let Ok(message) = &message {
                    if pending.front() == Some(&message.text) {
                        pending.pop_front();
                    }
                }
                print_message(message, &mut missed);
            }
            Some(event) = events.next() => match event {
                Ok(ClientEvent::State(ConnectionState::Closed)) => {
                    // A normal close by the server, or the retry policy gave up.
                    print_event(ClientEvent::State(ConnectionState::Closed));
                    return Ok(());
                }
                Ok(event) => print_event(event),
                Err(lagged) => missed.add(lagged.0),
            },
            line = lines.next_line(), if deadline.is_none() => match line {
                Ok(Some(line)) if line.trim() == "/who" => who(&client),
                Ok(Some(line)) if !line.trim().is_empty() => send(&client, &mut pending, line),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                }
            },
            () = sleep_until(deadline) => {
                eprintln!("{} message(s) were not broadcast back in time", pending.len());
                break;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    // Writes what is still queued, then closes with 1000 and waits for the server's answer.
    client.disconnect(CloseCode::NORMAL, "bye").await?;
    drain(&mut incoming, &mut events, &mut missed);
    Ok(())
}
