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
    /// Round trips as requests over the Crimson protocol (`/request`, `crimson.v1.json`:
    /// `req id=N` answered by `res id=N`) instead of plain echoes.
    pub(crate) requests: bool,
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
    requests: bool,
    start: Instant,
    end: Instant,
) -> io::Result<Counted> {
    // As requests, each message goes behind `req id=N` and comes back behind `res id=N`. An
    // id need only be unique among the open requests: with answers in order, ids 1 to
    // `in_flight` in turn are, and the frames are made once (the client's cost stays that of
    // plain echoes, so the comparison measures the server).
    let ids = in_flight.max(1) as u64;
    let asks: Vec<Utf8Bytes> = (1..=ids)
        .map(|id| Utf8Bytes::from(format!("req id={id}\n{}", payload.as_str())))
        .collect();
    let answers: Vec<Utf8Bytes> = (1..=ids)
        .map(|id| Utf8Bytes::from(format!("res id={id}\n{}", payload.as_str())))
        .collect();
    let mut asked_n = 0usize;
    let mut frame = |payload: &Utf8Bytes| -> Utf8Bytes {
        if !requests {
            return payload.clone();
        }
        let next = asks[asked_n % asks.len()].clone();
        asked_n += 1;
        next
    };
    let mut answered_n = 0usize;
    // A server that stops answering cannot hold the run past its end by more than this.
    let give_up = end + Duration::from_secs(5);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let burst = async {
        for _ in 0..in_flight {
            sent.push_back(Instant::now());
            ws.feed(Message::Text(frame(&payload))).await?;
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
                // Every server re-encodes the decoded message, which gives back the same bytes;
                // an answer comes behind its request's id, in order.
                let expected = if requests {
                    answered_n += 1;
                    &answers[(answered_n - 1) % answers.len()]
                } else {
                    &payload
                };
                if text != *expected {
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
        client::send_by(&mut ws, Message::Text(frame(&payload)), give_up).await?;
    }
    Ok(Counted {
        ws,
        replies,
        latencies,
    })
}

/// One run against `server`: messages/s, p50/p99 round trip (µs), server CPU µs per message.
pub(crate) async fn run(server: Server, shape: Echo) -> io::Result<Values> {
    let values = measure(&server, shape).await;
    server.stop();
    values
}

/// Plain echoes against requests, on one server, in the order `round` says (alternating):
/// each one's throughput and latency, and their ratio.
pub(crate) async fn run_requests(server: Server, shape: Echo, round: usize) -> io::Result<Values> {
    let plain = Echo {
        requests: false,
        ..shape
    };
    let asked = Echo {
        requests: true,
        ..shape
    };
    // While the requests run: how late a crimson-client's request timeout fires.
    let late = tokio::spawn(timeout_lateness(server.addr, shape.warmup + shape.measure));
    let (plain, asked) = if round % 2 == 0 {
        let plain = measure(&server, plain).await?;
        (plain, measure(&server, asked).await?)
    } else {
        let asked = measure(&server, asked).await?;
        (measure(&server, plain).await?, asked)
    };
    let late = late.await.map_err(io::Error::other)??;
    server.stop();
    Ok(Values::from([
        ("echo_msgs_per_s", plain["msgs_per_s"]),
        ("requests_per_s", asked["msgs_per_s"]),
        (
            "requests_over_echo",
            asked["msgs_per_s"] / plain["msgs_per_s"],
        ),
        ("echo_p99_us", plain["p99_us"]),
        ("request_p50_us", asked["p50_us"]),
        ("request_p99_us", asked["p99_us"]),
        ("echo_cpu_us_per_msg", plain["cpu_us_per_msg"]),
        ("request_cpu_us_per_msg", asked["cpu_us_per_msg"]),
        ("timeout_late_max_ms", late),
    ]))
}

/// The request the server never answers in time (bench-server's `seq` `u64::MAX`).
#[derive(Clone, serde::Serialize, serde::Deserialize, crimson_client::CrimsonMessage)]
struct Never {
    seq: u64,
    pad: String,
}

impl crimson_client::CrimsonRequest for Never {
    type Response = Never;
}

/// For `during`, requests with a 100 ms timeout that the server does not answer in time, one
/// after another from one crimson-client: the most any timeout fired after its deadline, in
/// ms.
async fn timeout_lateness(server: std::net::SocketAddr, during: Duration) -> io::Result<f64> {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let client = crimson_client::CrimsonClient::<Never, Never>::builder()
        .url(format!("ws://{server}/request"))
        .build()
        .map_err(io::Error::other)?;
    tokio::time::timeout(Duration::from_secs(10), client.connect())
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let end = Instant::now() + during;
    let mut latest = Duration::ZERO;
    while Instant::now() < end {
        let asked = Instant::now();
        let never = Never {
            seq: u64::MAX,
            pad: String::new(),
        };
        match client.request(never, TIMEOUT).await {
            Err(crimson_client::RequestError::Timeout(_)) => {
                latest = latest.max(asked.elapsed().saturating_sub(TIMEOUT));
            }
            other => {
                return Err(io::Error::other(format!(
                    "expected a timeout, got {:?}",
                    other.map(|_| "an answer")
                )))
            }
        }
    }
    let _ = client
        .disconnect(crimson_client::CloseCode::NORMAL, "done")
        .await;
    Ok(latest.as_secs_f64() * 1e3)
}

/// One echo run against `server`, which keeps running.
async fn measure(server: &Server, shape: Echo) -> io::Result<Values> {
    let (path, protocol) = if shape.requests {
        ("/request", Some("crimson.v1.json"))
    } else {
        ("/echo", None)
    };
    let (conns, _) =
        client::connect_many_asking(server.addr, path, shape.conns, 32, 0, None, protocol, true)
            .await?;
    let start = Instant::now() + shape.warmup;
    let end = start + shape.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ws) in conns.into_iter().enumerate() {
        let payload = Utf8Bytes::from(client::json_message(shape.size, i as u64, ""));
        tasks.spawn(drive(
            ws,
            payload,
            shape.in_flight,
            shape.requests,
            start,
            end,
        ));
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
