//! Connection setup: how fast the server accepts connections and completes WebSocket
//! handshakes, `CONCURRENCY` at a time. Connections stay open until the run ends, so closing
//! is not part of it.

use std::io;
use std::time::Instant;

use crate::client;
use crate::report::Values;
use crate::server::Server;
use crate::stats;

/// Connects in progress at once.
pub(crate) const CONCURRENCY: usize = 64;

/// One run: connects/s, p50/p99 connect time (TCP connect to the 101 response, µs), server
/// CPU µs per connection.
pub(crate) async fn run(server: Server, conns: usize, concurrency: usize) -> io::Result<Values> {
    let cpu_start = server.cpu()?;
    let start = Instant::now();
    let (open, mut times) =
        client::connect_many(server.addr, "/echo", conns, concurrency, 0, None).await?;
    let took = start.elapsed();
    let cpu_end = server.cpu()?;
    server.stop();
    drop(open);
    let mut nanos: Vec<u64> = times.drain(..).map(|t| t.as_nanos() as u64).collect();
    nanos.sort_unstable();
    let cpu = (cpu_end - cpu_start).as_secs_f64() * 1e6;
    Ok(Values::from([
        ("connects_per_s", conns as f64 / took.as_secs_f64()),
        ("p50_us", stats::percentile_us(&nanos, 50.0)),
        ("p99_us", stats::percentile_us(&nanos, 99.0)),
        ("cpu_us_per_conn", cpu / conns.max(1) as f64),
    ]))
}
