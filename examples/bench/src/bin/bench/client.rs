//! Load clients: raw tokio-tungstenite connections over loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crimson_bench::measure;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub(crate) use measure::Ws;

/// Source addresses 127.0.0.1 ..= 127.0.0.SOURCES: each has its own ephemeral ports towards
/// the server, so 10k+ connections (over several rounds) stay far from the ~14k a single
/// source address can bind.
const SOURCES: u8 = 5;

/// The source address of the `i`th connection.
pub(crate) fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCES as usize) as u8))
}

/// Connects to `ws://server{path}` from `source` (an 8 KiB read buffer).
pub(crate) async fn connect(server: SocketAddr, path: &str, source: IpAddr) -> io::Result<Ws> {
    measure::connect(server, path, source, 8 << 10).await
}

/// [`connect`], asking for subprotocol `protocol` when given.
pub(crate) async fn connect_asking(
    server: SocketAddr,
    path: &str,
    source: IpAddr,
    protocol: Option<&str>,
) -> io::Result<Ws> {
    measure::connect_asking(server, path, source, 8 << 10, protocol).await
}

/// Sends `message` (flushing it), giving up at `deadline`: a server that stops reading cannot
/// hold a run.
pub(crate) async fn send_by(
    ws: &mut Ws,
    message: Message,
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    tokio::time::timeout_at(deadline, ws.send(message))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "send timed out"))?
        .map_err(io::Error::other)
}

/// Sends `message` and waits (at most 10 s) for one text message back.
pub(crate) async fn round_trip(ws: &mut Ws, message: Utf8Bytes) -> io::Result<()> {
    send_by(
        ws,
        Message::Text(message),
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => return Ok(()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(io::Error::other(format!("closed: {frame:?}")))
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(io::Error::other(err)),
                None => return Err(io::Error::other("connection ended")),
            }
        }
    });
    reply
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo within 10 s"))?
}

/// `count` connections made by `concurrency` workers (each connects, then does one round
/// trip with `hello` if given), with how long each connect took. Source addresses rotate
/// from `first_source`.
pub(crate) async fn connect_many(
    server: SocketAddr,
    path: &'static str,
    count: usize,
    concurrency: usize,
    first_source: usize,
    hello: Option<Utf8Bytes>,
) -> io::Result<(Vec<Ws>, Vec<Duration>)> {
    connect_many_asking(
        server,
        path,
        count,
        concurrency,
        first_source,
        hello,
        None,
        false,
    )
    .await
}

/// [`connect_many`], asking for subprotocol `protocol` when given: on every connection
/// (`all`), or on every second one (the odd-numbered: a room of two codecs).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect_many_asking(
    server: SocketAddr,
    path: &'static str,
    count: usize,
    concurrency: usize,
    first_source: usize,
    hello: Option<Utf8Bytes>,
    protocol: Option<&'static str>,
    all: bool,
) -> io::Result<(Vec<Ws>, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Mutex::new((
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    )));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let next = next.clone();
        let done = done.clone();
        let hello = hello.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, io::Error>(());
                }
                let start = Instant::now();
                let protocol = protocol.filter(|_| all || i % 2 == 1);
                let mut ws =
                    connect_asking(server, path, source(first_source + i), protocol).await?;
                let took = start.elapsed();
                if let Some(hello) = &hello {
                    round_trip(&mut ws, hello.clone()).await?;
                }
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                done.0.push(ws);
                done.1.push(took);
            }
        });
    }
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                failure.get_or_insert(err);
                next.store(count, Ordering::Relaxed);
            }
            Err(err) => {
                failure.get_or_insert(io::Error::other(err));
            }
        }
    }
    let (conns, times) = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
    match failure {
        Some(err) => Err(io::Error::new(
            err.kind(),
            format!("after {} of {count} connections: {err}", conns.len()),
        )),
        None => Ok((conns, times)),
    }
}

/// A JSON text message of exactly `size` bytes: `{"seq":S,<extra>"pad":"xxx…"}` (`seq` has
/// 10 digits, so every message of a run has the same size).
pub(crate) fn json_message(size: usize, seq: u64, extra: &str) -> String {
    let seq = 1_000_000_000 + seq % 1_000_000_000;
    let head = format!("{{\"seq\":{seq},{extra}\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut text = String::with_capacity(size);
    text.push_str(&head);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    text
}

/// A key as it appears in a message, and escaped, as it appears when the message travelled
/// as a string inside another one (the chat server's `text`).
pub(crate) type Key = (&'static str, &'static str);

/// The sequence number's key.
pub(crate) const SEQ: Key = ("\"seq\":", "\\\"seq\\\":");
/// The send time's key.
pub(crate) const SENT: Key = ("\"sent\":", "\\\"sent\\\":");

/// The unsigned integer after `key` (e.g. `"seq":`) in a compact JSON text, or after its
/// escaped form (`\"seq\":`).
pub(crate) fn json_u64(text: &str, (key, escaped): Key) -> Option<u64> {
    let at = match text.find(key) {
        Some(at) => at + key.len(),
        None => text.find(escaped)? + escaped.len(),
    };
    let digits = text[at..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_asked_size_and_parse_back() {
        assert_eq!(json_message(32, 7, "").len(), 32);
        for size in [64, 256, 1024] {
            let text = json_message(size, 7, "\"sent\":123456,");
            assert_eq!(text.len(), size, "{text}");
            assert_eq!(json_u64(&text, SEQ), Some(1_000_000_007));
            assert_eq!(json_u64(&text, SENT), Some(123_456));
            let wrapped = serde_json::json!({ "text": text }).to_string();
            assert_eq!(json_u64(&wrapped, SEQ), Some(1_000_000_007));
            assert_eq!(json_u64(&wrapped, SENT), Some(123_456));
        }
        assert_eq!(json_u64("{}", SEQ), None);
    }
}
