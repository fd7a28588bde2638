//! Echo round trips: `conns` connections, each keeping `in_flight` messages outstanding
//! (1: one round trip at a time; 16: pipelined), for a warm-up and then a measured window.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::client::{self, Ws};
use crate::report::Values;
use crate::server::Server;
use crate::stats;

/// One echo run's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Echo {
    pub(crate) conns: usize,
    pub(crate) in_flight: usize,
    pub(crate) size: usize,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What one connection counted inside the measured window.
struct Counted {
    ws: Ws,
    replies: u64,
    latencies: Vec<u64>,
}

/// Drives one connection until `end`; replies that arrive in `[start, end)` count.
async fn drive(
    mut ws: Ws,
    payload: Utf8Bytes,
    in_flight: usize,
    start: Instant,
    end: Instant,
) -> io::Result<Counted> {
    // A server that stops answering cannot hold the run past its end by more than this.
    let give_up = end + Duration::from_secs(5);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let burst = async {
        for _ in 0..in_flight {
            sent.push_back(Instant::now());
            ws.feed(Message::Text(payload.clone())).await?;
        }
        ws.flush().await
    };
    tokio::time::timeout_at(give_up, burst)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "send timed out"))?
        .map_err(io::Error::other)?;
    let mut replies = 0;
    let mut latencies = Vec::new();
    loop {
        let next = tokio::time::timeout_at(give_up, ws.next())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo for 5 s"))?;
        match next {
            Some(Ok(Message::Text(text))) => {
                // Every server re-encodes the decoded message, which gives back the same bytes.
                if text != payload {
                    return Err(io::Error::other(format!(
                        "the echo differs from the message: {text:?}"
                    )));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(io::Error::other(format!("server closed: {frame:?}")))
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(io::Error::other(err)),
            None => return Err(io::Error::other("connection ended")),
        }
        let now = Instant::now();
        let asked = sent.pop_front().expect("a reply answers a message");
        if now >= end {
            break;
        }
        if now >= start {
            replies += 1;
            latencies.push((now - asked).as_nanos() as u64);
        }
        sent.push_back(Instant::now());
        client::send_by(&mut ws, Message::Text(payload.clone()), give_up).await?;
    }
    Ok(Counted {
        ws,
        replies,
        latencies,
    })
}

/// One run against `server`: messages/s, p50/p99 round trip (µs), server CPU µs per message.
pub(crate) async fn run(server: Server, shape: Echo) -> io::Result<Values> {
    let (conns, _) = client::connect_many(server.addr, "/echo", shape.conns, 32, 0, None).await?;
    let start = Instant::now() + shape.warmup;
    let end = start + shape.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ws) in conns.into_iter().enumerate() {
        let payload = Utf8Bytes::from(client::json_message(shape.size, i as u64, ""));
        tasks.spawn(drive(ws, payload, shape.in_flight, start, end));
    }
    tokio::time::sleep_until(start).await;
    let cpu_start = server.cpu()?;
    tokio::time::sleep_until(end).await;
    let cpu_end = server.cpu()?;

    let mut replies = 0u64;
    let mut latencies = Vec::new();
    let mut keep = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(io::Error::other).and_then(|r| r) {
            Ok(counted) => {
                replies += counted.replies;
                latencies.extend(counted.latencies);
                keep.push(counted.ws);
            }
            Err(err) => {
                failure.get_or_insert(err);
            }
        }
    }
    server.stop();
    drop(keep);
    if let Some(err) = failure {
        return Err(err);
    }
    latencies.sort_unstable();
    let cpu = (cpu_end - cpu_start).as_secs_f64() * 1e6;
    Ok(Values::from([
        ("msgs_per_s", replies as f64 / shape.measure.as_secs_f64()),
        ("p50_us", stats::percentile_us(&latencies, 50.0)),
        ("p99_us", stats::percentile_us(&latencies, 99.0)),
        ("cpu_us_per_msg", cpu / replies.max(1) as f64),
    ]))
}
