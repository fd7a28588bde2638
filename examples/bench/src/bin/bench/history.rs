//! Recovery after a reconnect, timed: a client of the Crimson protocol on `/hsub` (history on)
//! leaves, `missed` messages are published meanwhile, and it comes back with `resume`: how
//! long from its `resume` to the last missed message, and what keeping them costs the server.

use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::report::Values;
use crate::server::Server;

/// The next Text frame, within 10 s.
async fn next_text(ws: &mut Ws) -> io::Result<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(io::Error::other(format!("closed: {frame:?}")))
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => return Err(io::Error::other(err)),
            Ok(None) => return Err(io::Error::other("the connection ended")),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in 10 s")),
        }
    }
}

/// A header's field `key=…`.
fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let header = frame.split('\n').next()?;
    header
        .split(' ')
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Times the recovery of `missed` messages of 256 B. (The memory they take is not measured
/// here: the server's RSS does not move by a few hundred KiB; BENCHMARKS.md has the sizes.)
pub(crate) async fn recover(server: &Server, missed: usize) -> io::Result<Values> {
    let addr = server.addr;
    let connect =
        |i| client::connect_asking(addr, "/hsub", client::source(i), Some("crimson.v1.json"));
    // Where the leaving client follows `all` from.
    let mut leaving = connect(0).await?;
    let sub = next_text(&mut leaving).await?;
    let (Some(epoch), Some(offset)) = (field(&sub, "e"), field(&sub, "o")) else {
        return Err(io::Error::other(format!(
            "expected a sub frame, got {sub:?}"
        )));
    };
    let (epoch, from): (String, u64) =
        (epoch.to_owned(), offset.parse().map_err(io::Error::other)?);
    leaving.close(None).await.map_err(io::Error::other)?;
    drop(leaving);
    // A live subscriber sees every publication, so they are all kept when it has.
    let mut watcher = connect(1).await?;
    next_text(&mut watcher).await?;
    let mut publisher = client::connect(addr, "/hpub", client::source(2)).await?;
    for seq in 0..missed as u64 {
        let text = client::json_message(256, seq, "\"sent\":0,");
        publisher
            .send(Message::Text(text.into()))
            .await
            .map_err(io::Error::other)?;
    }
    let mut last = from;
    while last < from + missed as u64 {
        let frame = next_text(&mut watcher).await?;
        if let Some(o) = field(&frame, "o").and_then(|o| o.parse().ok()) {
            last = o;
        }
    }

    let mut back = connect(3).await?;
    let started = Instant::now();
    back.send(Message::Text(
        format!("resume s=all e={epoch} o={from}\n").into(),
    ))
    .await
    .map_err(io::Error::other)?;
    let mut count = None;
    let mut got = 0u64;
    while count.is_none_or(|n| got < n) {
        let frame = next_text(&mut back).await?;
        if frame.starts_with("recovered ") {
            count = field(&frame, "n").and_then(|n| n.parse().ok());
        } else if frame.starts_with("lost ") {
            return Err(io::Error::other(format!("not recovered: {frame}")));
        } else if count.is_some() && frame.starts_with("pub ") {
            got += 1;
            let offset: u64 = field(&frame, "o").and_then(|o| o.parse().ok()).unwrap_or(0);
            if offset != from + got {
                return Err(io::Error::other(format!(
                    "recovered offset {offset}, expected {}",
                    from + got
                )));
            }
        }
    }
    let took = started.elapsed();
    if got != missed as u64 {
        return Err(io::Error::other(format!("recovered {got} of {missed}")));
    }
    drop((back, watcher, publisher));
    Ok(Values::from([("recover_ms", took.as_secs_f64() * 1e3)]))
}
