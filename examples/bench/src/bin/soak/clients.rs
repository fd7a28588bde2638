//! The soak's clients: raw tokio-tungstenite connections (no Crimson code), each reading every
//! tick and checking its sequence number.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::{unix_micros, Tick};

use crimson_bench::measure;

pub(crate) use measure::Ws;

/// Clients bind 127.0.0.21 ..= 127.0.0.24 in turn. Each source address has its own ephemeral
/// ports, and these are not the ones the load benchmark uses (127.0.0.1–5), so the two can run
/// side by side without running out of ports.
const FIRST_SOURCE: u8 = 21;
const SOURCES: usize = 4;

/// Latency samples kept per client and third of the window (long runs stay bounded).
const MAX_SAMPLES: usize = 100_000;

/// Opens one connection to `ws://server/soak` from `source` (a 4 KiB read buffer).
async fn connect(server: SocketAddr, source: IpAddr) -> io::Result<Ws> {
    measure::connect(server, "/soak", source, 4 << 10).await
}

/// Opens `count` connections, `concurrency` at a time. On the first failure, says how many
/// had been opened.
pub(crate) async fn connect_all(
    server: SocketAddr,
    count: usize,
    concurrency: usize,
) -> io::Result<Vec<Ws>> {
    let mut attempts = futures_util::stream::iter(0..count)
        .map(|i| {
            let source = Ipv4Addr::new(127, 0, 0, FIRST_SOURCE + (i % SOURCES) as u8);
            connect(server, IpAddr::V4(source))
        })
        .buffer_unordered(concurrency.max(1));
    let mut open = Vec::with_capacity(count);
    while let Some(attempt) = attempts.next().await {
        match attempt {
            Ok(ws) => open.push(ws),
            Err(err) => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("connect failed after {} of {count}: {err}", open.len()),
                ))
            }
        }
    }
    Ok(open)
}

/// How the readers tell the run they are done: each one settles once, when it has every
/// tick or its connection failed.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    settled: AtomicUsize,
    changed: Notify,
}

impl Progress {
    fn settle(&self) {
        self.settled.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Waits until `readers` have settled or `timeout` passed; returns how many settled.
    pub(crate) async fn wait(&self, readers: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let settled = self.settled.load(Ordering::Acquire);
            if settled >= readers {
                return settled;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.settled.load(Ordering::Acquire);
            }
        }
    }
}

/// What one client saw.
#[derive(Debug)]
pub(crate) struct Reader {
    /// Ticks received.
    pub(crate) received: u64,
    /// Ticks never received: gaps in the sequence, and those missing at the end.
    pub(crate) lost: u64,
    /// Ticks that came twice or out of order, or did not decode.
    pub(crate) bad: u64,
    /// The connection failed: when, and how.
    pub(crate) failure: Option<(Instant, String)>,
    /// Publish→deliver latencies, µs, of the ticks in each third of the window.
    pub(crate) latencies_us: [Vec<u32>; 3],
    /// The connection, kept open until the run is over.
    pub(crate) ws: Option<Ws>,
}

/// Reads ticks until told to stop; expects ticks `0 .. count`, in order, each once.
pub(crate) async fn read(
    mut ws: Ws,
    count: u64,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Reader {
    let mut reader = Reader {
        received: 0,
        lost: 0,
        bad: 0,
        failure: None,
        latencies_us: Default::default(),
        ws: None,
    };
    let mut next = 0u64;
    let mut settled = false;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            message = ws.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            // Pings are answered by tungstenite on the next read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                reader.bad += 1;
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(
                    || "closed by the server (no code)".to_owned(),
                    |f| format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                );
                reader.failure = Some((Instant::now(), why));
                break;
            }
            Some(Err(err)) => {
                reader.failure = Some((Instant::now(), err.to_string()));
                break;
            }
            None => {
                reader.failure = Some((Instant::now(), "the connection ended".to_owned()));
                break;
            }
        };
        let now_us = unix_micros();
        let Ok(tick) = serde_json::from_str::<Tick>(&text) else {
            reader.bad += 1;
            continue;
        };
        reader.received += 1;
        let third = &mut reader.latencies_us[(tick.seq.min(count - 1) * 3 / count) as usize];
        if third.len() < MAX_SAMPLES {
            let latency = now_us.saturating_sub(tick.sent_at_us);
            third.push(u32::try_from(latency).unwrap_or(u32::MAX));
        }
        if tick.seq == next {
            next += 1;
        } else if tick.seq > next {
            reader.lost += tick.seq - next;
            next = tick.seq + 1;
        } else {
            // Seen before, or overtaken by a later one: either way not in order.
            reader.bad += 1;
        }
        if !settled && next >= count {
            settled = true;
            progress.settle();
        }
    }
    if !settled {
        progress.settle();
    }
    reader.lost += count.saturating_sub(next);
    if reader.failure.is_none() {
        reader.ws = Some(ws);
    }
    reader
}
