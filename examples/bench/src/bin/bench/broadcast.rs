//! Broadcast fan-out: `subscribers` connections on `/sub`, one publisher on `/pub` whose every
//! message the server sends to all subscribers.
//!
//! The publisher keeps at most `WINDOW` messages in flight: it sends message `s` once message
//! `s − WINDOW` has reached every subscriber. So the server is kept busy without any
//! subscriber queue ever nearing its bound (256), and neither server drops anything. Each
//! message carries its send time (ns on this process's clock); subscribers measure
//! publish→deliver latency against it.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::report::Values;
use crate::server::Server;
use crate::stats;

/// Messages the publisher may have in flight.
pub(crate) const WINDOW: u64 = 32;
/// Delivery counters kept, one per message, reused round-robin (more than `WINDOW`).
const RING: u64 = 1024;
/// Added to send times so every message has the same length.
const SENT_BASE: u64 = 1_000_000_000_000_000;
/// Latency samples kept per subscriber, so memory stays bounded on long runs.
const MAX_SAMPLES: usize = 200_000;

/// One broadcast run's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Broadcast {
    pub(crate) subscribers: usize,
    pub(crate) size: usize,
    pub(crate) window: u64,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
    /// Publish one message every this often instead of as fast as the window allows.
    pub(crate) pace: Option<Duration>,
    /// Through the `chat-server` example: subscribers and publisher on `/chat`, the
    /// publisher's message `{"text": ...}` carrying the sequence number and send time, and
    /// the publisher reading its own copies.
    pub(crate) chat: bool,
    /// A room of two codecs: every second subscriber asks for CBOR
    /// (`Sec-WebSocket-Protocol: crimson.cbor`), the others get the default, JSON.
    pub(crate) mixed: bool,
    /// Subscribers of the Crimson protocol (`crimson.v1.json`): on `/hsub` (history on) when
    /// `history`, else on `/sub`.
    pub(crate) protocol: bool,
    pub(crate) history: bool,
}

/// The publisher's message as a CBOR subscriber decodes it: `bench-server`'s `Tick`.
#[derive(serde::Serialize, serde::Deserialize, crimson_axum::CrimsonMessage)]
#[crimson(codecs("json", "cbor"))]
struct Tick {
    seq: u64,
    sent: u64,
    pad: String,
}

impl Broadcast {
    pub(crate) fn paths(&self) -> (&'static str, &'static str) {
        if self.chat {
            ("/chat", "/chat")
        } else if self.history {
            ("/hsub", "/hpub")
        } else {
            ("/sub", "/pub")
        }
    }
}

/// Nanoseconds on this process's clock.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// What the publisher and the subscribers share.
struct Shared {
    subscribers: u32,
    /// Subscribers that have received at least one message.
    ready: AtomicUsize,
    /// The first counted message; `u64::MAX` while the subscribers are still being found.
    base: AtomicU64,
    /// How many subscribers got message `s`, at `s % RING`.
    got: Vec<AtomicU32>,
    /// Wakes the publisher: a message reached everyone, or everyone is ready.
    progress: Notify,
}

struct Subscribed {
    ws: Ws,
    delivered: u64,
    latencies: Vec<u64>,
}

async fn subscriber(
    mut ws: Ws,
    shared: Arc<Shared>,
    start: Instant,
    end: Instant,
) -> io::Result<Subscribed> {
    let mut first = true;
    let mut delivered = 0;
    let mut latencies = Vec::new();
    let stop = tokio::time::sleep_until(end);
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            () = &mut stop => break,
            next = ws.next() => next,
        };
        // Only the publisher's messages count (a chat server may say other things too).
        let numbers = match next {
            Some(Ok(Message::Text(text))) => (
                client::json_u64(&text, client::SEQ),
                client::json_u64(&text, client::SENT),
            ),
            // A CBOR subscriber of a room of two codecs.
            Some(Ok(Message::Binary(bytes))) => {
                use crimson_axum::CrimsonMessage as _;
                match Tick::decode_in(crimson_axum::PayloadRef::Binary(&bytes), 1) {
                    Ok(tick) => (Some(tick.seq), Some(tick.sent)),
                    Err(_) => (None, None),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(io::Error::other(format!("subscriber closed: {frame:?}")))
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(io::Error::other(err)),
            None => return Err(io::Error::other("subscriber connection ended")),
        };
        let now = Instant::now();
        let received = now_ns();
        let (Some(seq), Some(sent)) = numbers else {
            continue;
        };
        let seq = seq.wrapping_sub(1_000_000_000);
        let sent = sent.wrapping_sub(SENT_BASE);
        if first {
            first = false;
            if shared.ready.fetch_add(1, Ordering::AcqRel) + 1 == shared.subscribers as usize {
                shared.progress.notify_one();
            }
        }
        if seq >= shared.base.load(Ordering::Acquire) {
            let slot = &shared.got[(seq % RING) as usize];
            if slot.fetch_add(1, Ordering::AcqRel) + 1 == shared.subscribers {
                shared.progress.notify_one();
            }
        }
        if now >= start && now < end {
            delivered += 1;
            if latencies.len() < MAX_SAMPLES {
                latencies.push(received.saturating_sub(sent));
            }
        }
    }
    Ok(Subscribed {
        ws,
        delivered,
        latencies,
    })
}

async fn publish(ws: &mut Publisher, seq: u64, shape: &Broadcast, end: Instant) -> io::Result<()> {
    let sent = format!("\"sent\":{},", SENT_BASE + now_ns());
    let text = if shape.chat {
        // The chat's message has one field, `text`: the numbers travel inside it (escaped in
        // the broadcast, where `"seq":` is still found).
        let inner = client::json_message(shape.size, seq, &sent);
        serde_json::json!({ "text": inner }).to_string()
    } else {
        client::json_message(shape.size, seq, &sent)
    };
    let give_up = end + Duration::from_secs(5);
    tokio::time::timeout_at(give_up, ws.send(Message::Text(text.into())))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "send timed out"))?
        .map_err(io::Error::other)
}

/// The publisher's sending half (its reading half is drained by a task of its own, so that a
/// chat server's copies of its own messages do not pile up).
type Publisher = futures_util::stream::SplitSink<Ws, Message>;

/// Publishes until `end`: first one message every 20 ms until every subscriber has one (so
/// all are registered), then windowed. Returns how many messages were published.
async fn publisher(
    ws: Ws,
    shared: Arc<Shared>,
    shape: Broadcast,
    end: Instant,
) -> io::Result<(Publisher, u64)> {
    let (mut ws, mut reading) = ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = reading.next().await {} });
    let mut seq = 0u64;
    while shared.ready.load(Ordering::Acquire) < shared.subscribers as usize {
        if Instant::now() >= end {
            return Err(io::Error::other(format!(
                "only {} of {} subscribers got a message",
                shared.ready.load(Ordering::Acquire),
                shared.subscribers
            )));
        }
        publish(&mut ws, seq, &shape, end).await?;
        seq += 1;
        let _ = tokio::time::timeout(Duration::from_millis(20), shared.progress.notified()).await;
    }
    let base = seq;
    shared.base.store(base, Ordering::Release);
    if let Some(pace) = shape.pace {
        // Paced: one message every `pace`, whatever the subscribers have had.
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < end {
            ticks.tick().await;
            publish(&mut ws, seq, &shape, end).await?;
            seq += 1;
        }
        return Ok((ws, seq - base));
    }
    while Instant::now() < end {
        if seq - base >= shape.window {
            let waited = (seq - shape.window) % RING;
            let slot = &shared.got[waited as usize];
            if slot.load(Ordering::Acquire) < shared.subscribers {
                let _ = tokio::time::timeout_at(end, shared.progress.notified()).await;
                continue;
            }
        }
        // Slot `seq % RING` last counted message `seq − RING`, which every subscriber has had.
        shared.got[(seq % RING) as usize].store(0, Ordering::Release);
        publish(&mut ws, seq, &shape, end).await?;
        seq += 1;
    }
    Ok((ws, seq - base))
}

/// One run: delivered messages/s, p50/p99 publish→deliver latency (µs), server CPU µs per
/// delivered message.
pub(crate) async fn run(server: Server, shape: Broadcast) -> io::Result<Values> {
    let values = measure(&server, shape).await;
    server.stop();
    values
}

/// A room of one codec against a room of two, on one server, in the order `round` says
/// (alternating, so neither always runs on a warmer server): the CPU per delivery of each
/// and their ratio.
pub(crate) async fn run_mixed(
    server: Server,
    shape: Broadcast,
    round: usize,
) -> io::Result<Values> {
    let single = Broadcast {
        mixed: false,
        ..shape
    };
    let mixed = Broadcast {
        mixed: true,
        ..shape
    };
    let (single, mixed) = if round % 2 == 0 {
        let single = measure(&server, single).await?;
        (single, measure(&server, mixed).await?)
    } else {
        let mixed = measure(&server, mixed).await?;
        (measure(&server, single).await?, mixed)
    };
    server.stop();
    let cpu = |values: &Values| values["cpu_us_per_delivery"];
    let delivered = |values: &Values| values["delivered_per_s"];
    Ok(Values::from([
        ("single_cpu_us_per_delivery", cpu(&single)),
        ("mixed_cpu_us_per_delivery", cpu(&mixed)),
        ("mixed_over_single", cpu(&mixed) / cpu(&single)),
        ("single_delivered_per_s", delivered(&single)),
        ("mixed_delivered_per_s", delivered(&mixed)),
    ]))
}

/// History off against on, on one server, in the order `round` says: subscribers of the
/// Crimson protocol both times (`pub s= e= o=` headers with history, empty ones without).
pub(crate) async fn run_history(
    server: Server,
    shape: Broadcast,
    round: usize,
) -> io::Result<Values> {
    let off = Broadcast {
        protocol: true,
        history: false,
        ..shape
    };
    let on = Broadcast {
        protocol: true,
        history: true,
        ..shape
    };
    let (off, on) = if round % 2 == 0 {
        let off = measure(&server, off).await?;
        (off, measure(&server, on).await?)
    } else {
        let on = measure(&server, on).await?;
        (measure(&server, off).await?, on)
    };
    let recovery = crate::history::recover(&server, 1000).await;
    server.stop();
    let mut values = recovery?;
    let cpu = |values: &Values| values["cpu_us_per_delivery"];
    let delivered = |values: &Values| values["delivered_per_s"];
    values.extend([
        ("on_over_off", delivered(&on) / delivered(&off)),
        ("cpu_on_over_off", cpu(&on) / cpu(&off)),
        ("off_delivered_per_s", delivered(&off)),
        ("on_delivered_per_s", delivered(&on)),
        ("off_cpu_us_per_delivery", cpu(&off)),
        ("on_cpu_us_per_delivery", cpu(&on)),
    ]);
    Ok(values)
}

/// One broadcast run against `server`, which keeps running.
async fn measure(server: &Server, shape: Broadcast) -> io::Result<Values> {
    let (sub_path, pub_path) = shape.paths();
    let (subs, _) = client::connect_many_asking(
        server.addr,
        sub_path,
        shape.subscribers,
        64,
        0,
        None,
        if shape.mixed {
            Some("crimson.cbor")
        } else if shape.protocol {
            Some("crimson.v1.json")
        } else {
            None
        },
        false,
    )
    .await?;
    let publisher_ws = client::connect(server.addr, pub_path, client::source(0)).await?;
    let shared = Arc::new(Shared {
        subscribers: shape.subscribers as u32,
        ready: AtomicUsize::new(0),
        base: AtomicU64::new(u64::MAX),
        got: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        progress: Notify::new(),
    });
    // Finding every subscriber takes a few 20 ms ticks; time for it comes on top.
    let start = Instant::now() + Duration::from_millis(500) + shape.warmup;
    let end = start + shape.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for ws in subs {
        tasks.spawn(subscriber(ws, shared.clone(), start, end));
    }
    let publishing = tokio::spawn(publisher(publisher_ws, shared.clone(), shape, end));
    tokio::time::sleep_until(start).await;
    let cpu_start = server.cpu()?;
    tokio::time::sleep_until(end).await;
    let cpu_end = server.cpu()?;

    let mut delivered = 0u64;
    let mut latencies = Vec::new();
    let mut keep = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(io::Error::other).and_then(|r| r) {
            Ok(sub) => {
                delivered += sub.delivered;
                latencies.extend(sub.latencies);
                keep.push(sub.ws);
            }
            Err(err) => {
                failure.get_or_insert(err);
            }
        }
    }
    let published = publishing.await.map_err(io::Error::other).and_then(|r| r);
    drop(keep);
    if let Some(err) = failure {
        return Err(err);
    }
    let (_, published) = published?;
    latencies.sort_unstable();
    let cpu = (cpu_end - cpu_start).as_secs_f64() * 1e6;
    Ok(Values::from([
        (
            "delivered_per_s",
            delivered as f64 / shape.measure.as_secs_f64(),
        ),
        ("p50_us", stats::percentile_us(&latencies, 50.0)),
        ("p99_us", stats::percentile_us(&latencies, 99.0)),
        ("cpu_us_per_delivery", cpu / delivered.max(1) as f64),
        ("published", published as f64),
    ]))
}
