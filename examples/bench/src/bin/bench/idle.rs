//! Idle memory: the server's resident memory per connection that has done one round trip and
//! then sits idle.

use std::io;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::client;
use crate::report::Values;
use crate::server::Server;

/// Connections made (and kept) before the baseline reading, so one-off costs (runtime
/// threads, allocator arenas, the first session's setup) are not charged to the others.
pub(crate) const WARM: usize = 100;

/// How many connections are being set up at once.
const CONCURRENCY: usize = 128;

/// Resident memory after things settle: read a few times, 250 ms apart, until it stops
/// growing (at most 2 s).
async fn settled_rss(server: &Server) -> io::Result<u64> {
    let mut last = server.rss_kib()?;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.rss_kib()?;
        if now <= last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// One run: `(RSS with WARM + conns connections − RSS with WARM) / conns`, in KiB. Each
/// connection does one echo round trip on `/echo`, or (`path` given: a subscriber route) just
/// connects.
pub(crate) async fn run(
    server: Server,
    conns: usize,
    path: Option<&'static str>,
) -> io::Result<Values> {
    let hello = path
        .is_none()
        .then(|| Utf8Bytes::from(client::json_message(32, 0, "")));
    let path = path.unwrap_or("/echo");
    let (warm, _) =
        client::connect_many(server.addr, path, WARM, CONCURRENCY, 0, hello.clone()).await?;
    let before = settled_rss(&server).await?;
    let (idle, _) =
        client::connect_many(server.addr, path, conns, CONCURRENCY, WARM, hello).await?;
    let after = settled_rss(&server).await?;
    server.stop();
    drop((warm, idle));
    Ok(Values::from([
        (
            "kib_per_conn",
            after.saturating_sub(before) as f64 / conns.max(1) as f64,
        ),
        ("rss_mib", after as f64 / 1024.0),
    ]))
}
