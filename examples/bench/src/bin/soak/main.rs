//! The soak run (issue #7): many connections held for a long time, a broadcast every period,
//! and proof that nothing was lost and the server's memory did not grow.
//!
//! ```text
//! cargo build --release -p crimson-bench --bin soak
//! ./target/release/soak [--conns 10000] [--secs 60] [--period-ms 100] [--out bench-out]
//!     [--concurrency 64] [--sample-ms 2000]
//! ```
//!
//! - **Two processes.** This process starts the server as a child (itself, with `--serve`,
//!   on 127.0.0.1 and any free port): one Crimson route with `CrimsonConfig::new()` (the
//!   defaults) on a `LocalCluster`. The server's own broadcaster sends a JSON
//!   `{"seq":N,"sent_at_us":T}` to every session through the cluster, once per period, and
//!   counts what each `Delivery` says (queued, dropped, failed).
//! - **The clients** are raw tokio-tungstenite connections in this process, opened
//!   `--concurrency` at a time. Once all `--conns` are in the server's cluster, the measured
//!   window starts: `--secs` × 1000 / `--period-ms` broadcasts. Every client keeps reading
//!   and checks the sequence: a gap is a lost message, a duplicate or a reordering is a bad
//!   one, a connection that ends is a failure.
//! - **Reconciliation.** At the end the server reports how many broadcasts it made, how many
//!   messages it queued, and how many its sessions' writers sent and dropped. "0 lost" means
//!   that the clients' count equals the server's sent count equals broadcasts × connections,
//!   and that no client saw a gap.
//! - **Memory.** The server's `VmRSS` (`/proc/PID/status`) is sampled every `--sample-ms`
//!   (default: window / 30, 100 ms to 2 s). It is stable when the mean of the window's last
//!   third exceeds the mean of its middle third (the first third is warm-up) by at most
//!   2 % or 1 MiB, whichever is larger, and the least-squares line through the last two
//!   thirds rises by no more than that either.
//! - **Leaks.** Afterwards the clients reset their connections; every session must leave the
//!   server's cluster within 20 s.
//! - Also reported: publish→deliver latency (the `sent_at_us` stamp against this process's
//!   clock, the same host's `SystemTime`), overall and in each third of the window, and the
//!   server's CPU time (`/proc/PID/stat`), sampled with RSS so its use in each third shows too.
//!
//! It prints a Markdown report and writes it to `OUT/soak.md`, with the figures and every RSS
//! sample in `OUT/soak.json`. It exits with 1 if anything was lost, a connection failed, a
//! count did not reconcile, RSS was not stable or a session stayed behind. BENCHMARKS.md
//! ("Soak") holds the figures of a full run.

mod child;
mod clients;
mod report;
mod server;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crimson_axum::CrimsonMessage;
use crimson_examples::{arg, flag};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use child::{parse_line, ServerProcess};
use clients::Progress;
use report::Run;
use server::ServerStats;

/// What the server broadcasts.
#[derive(Debug, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
pub(crate) struct Tick {
    /// 0, 1, 2, … one per broadcast.
    pub(crate) seq: u64,
    /// When the server made it, µs since the Unix epoch.
    pub(crate) sent_at_us: u64,
}

/// Microseconds since the Unix epoch (both processes share this host's clock).
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) conns: usize,
    pub(crate) secs: f64,
    pub(crate) period: Duration,
    pub(crate) out: PathBuf,
    pub(crate) concurrency: usize,
    pub(crate) sample: Duration,
}

impl Options {
    fn parse() -> io::Result<Self> {
        fn number<T: std::str::FromStr>(name: &str, default: &str) -> io::Result<T> {
            let text = arg(name, "", default);
            text.parse()
                .map_err(|_| io::Error::other(format!("--{name}: not a number: {text:?}")))
        }
        let conns: usize = number("conns", "10000")?;
        let secs: f64 = number("secs", "60")?;
        let period_ms: u64 = number("period-ms", "100")?;
        if !(1..=18_000).contains(&conns) {
            // Each process has ~19k descriptors (ulimit -n 20000).
            return Err(io::Error::other("--conns: 1 to 18,000"));
        }
        if !(secs > 0.0 && secs <= 86_400.0) {
            return Err(io::Error::other("--secs: more than 0, at most a day"));
        }
        if period_ms == 0 {
            return Err(io::Error::other("--period-ms: at least 1"));
        }
        let default_sample = (secs * 1000.0 / 30.0).clamp(100.0, 2000.0) as u64;
        let sample_ms: u64 = number("sample-ms", &default_sample.to_string())?;
        Ok(Self {
            conns,
            secs,
            period: Duration::from_millis(period_ms),
            out: PathBuf::from(arg("out", "", "bench-out")),
            concurrency: number("concurrency", "64")?,
            sample: Duration::from_millis(sample_ms.max(10)),
        })
    }

    /// Broadcasts in the window.
    pub(crate) fn broadcasts(&self) -> u64 {
        ((self.secs * 1000.0 / self.period.as_millis() as f64).round() as u64).max(1)
    }
}

/// Seconds from `start` to `at` (negative if before).
fn since(start: Instant, at: Instant) -> f64 {
    match at.checked_duration_since(start) {
        Some(after) => after.as_secs_f64(),
        None => -start.duration_since(at).as_secs_f64(),
    }
}

/// Asks for the server's counters until its writers have settled every queued message (sent
/// or dropped), or 5 s passed.
async fn settled_stats(server: &mut ServerProcess) -> io::Result<ServerStats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = server.stats().await?;
        let settled = stats.outbox_sent + stats.outbox_dropped >= stats.queued;
        if settled || Instant::now() >= deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn soak(options: &Options) -> io::Result<Run> {
    let count = options.broadcasts();
    // The machine is shared: say how busy it was before we started.
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut server = ServerProcess::start(options.period).await?;
    let rss_start_kib = server.rss_kib()?;
    eprintln!(
        "soak: server on {} (pid {}); opening {} connections",
        server.addr,
        server.pid(),
        options.conns
    );

    let connecting = Instant::now();
    let conns = clients::connect_all(server.addr, options.conns, options.concurrency).await?;
    let connect_secs = connecting.elapsed().as_secs_f64();
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = watch::channel(false);
    let readers: Vec<_> = conns
        .into_iter()
        .map(|ws| tokio::spawn(clients::read(ws, count, progress.clone(), stopped.clone())))
        .collect();
    server.command(&format!("start {} {count}", options.conns))?;
    server.expect("started", Duration::from_secs(40)).await?;
    let start = Instant::now();
    let cpu_start = server.cpu()?;
    let own_cpu_start = crimson_bench::measure::cpu_time("self")?;
    let rss_connected_kib = server.rss_kib()?;
    eprintln!(
        "soak: {} connections in {connect_secs:.1} s; {count} broadcasts, one every {:?}",
        options.conns, options.period
    );

    // The window: sample RSS until the server says it made its last broadcast.
    let mut samples = vec![(0.0, rss_connected_kib)];
    let mut cpu_samples = vec![(0.0, 0.0)];
    let mut next_sample = start + options.sample;
    let give_up = start + options.period * count as u32 + Duration::from_secs(60);
    let done = loop {
        let wait = next_sample.saturating_duration_since(Instant::now());
        if let Some(line) = server.line_within(wait).await? {
            break parse_line(&line, "done")?;
        }
        if Instant::now() >= give_up {
            return Err(io::Error::other("the server did not finish its broadcasts"));
        }
        let t = start.elapsed().as_secs_f64();
        samples.push((t, server.rss_kib()?));
        let cpu = server.cpu()?.saturating_sub(cpu_start);
        cpu_samples.push((t, cpu.as_secs_f64()));
        next_sample += options.sample;
    };
    let window_secs = start.elapsed().as_secs_f64();
    let cpu = server.cpu()?.saturating_sub(cpu_start);
    let own_cpu = crimson_bench::measure::cpu_time("self")?.saturating_sub(own_cpu_start);
    cpu_samples.push((window_secs, cpu.as_secs_f64()));
    let at_done: ServerStats = serde_json::from_str(&done).map_err(io::Error::other)?;

    // Let the last ticks arrive, then stop the readers.
    let complete = progress.wait(options.conns, Duration::from_secs(10)).await;
    let _ = stop.send(true);
    let mut outcome = report::Clients::default();
    let mut open = Vec::with_capacity(options.conns);
    for reader in readers {
        let reader = reader.await.map_err(io::Error::other)?;
        outcome.received += reader.received;
        outcome.lost += reader.lost;
        outcome.bad += reader.bad;
        if let Some((at, why)) = reader.failure {
            outcome.failures.push((since(start, at), why));
        }
        for (all, third) in outcome.latencies_us.iter_mut().zip(reader.latencies_us) {
            all.extend(third);
        }
        open.extend(reader.ws);
    }
    outcome.complete = complete;
    for third in &mut outcome.latencies_us {
        third.sort_unstable();
    }
    let server_end = settled_stats(&mut server).await?;
    let rss_end_kib = server.rss_kib()?;
    eprintln!(
        "soak: window over after {window_secs:.1} s; {} of {} clients have every tick",
        complete, options.conns
    );

    // Leaks: reset every connection; every session must leave the cluster.
    drop(open);
    let leaving = Instant::now();
    let mut left = server.stats().await?;
    while left.sessions > 0 && leaving.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = server.stats().await?;
    }
    let leave_secs = leaving.elapsed().as_secs_f64();
    let rss_left_kib = server.rss_kib()?;
    server.stop();

    Ok(Run {
        broadcasts: count,
        connect_secs,
        window_secs,
        cpu_secs: cpu.as_secs_f64(),
        client_cpu_secs: own_cpu.as_secs_f64(),
        load_before,
        rss_start_kib,
        rss_connected_kib,
        rss_end_kib,
        rss_left_kib,
        samples,
        cpu_samples,
        at_done,
        server: server_end,
        clients: outcome,
        sessions_left: left.sessions,
        leave_secs,
        closed_after_leaving: left.closed_total(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    if flag("help") || flag("h") {
        println!(
            "soak [--conns 10000] [--secs 60] [--period-ms 100] [--out bench-out] \
             [--concurrency 64] [--sample-ms MS]"
        );
        return ExitCode::SUCCESS;
    }
    if flag("serve") {
        let period = arg("period-ms", "", "100").parse().unwrap_or(100);
        return match server::serve(Duration::from_millis(period.max(1))).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("soak server: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("soak: {err}");
            return ExitCode::from(2);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = if args.is_empty() {
        "cargo run --release -p crimson-bench --bin soak".to_owned()
    } else {
        format!(
            "cargo run --release -p crimson-bench --bin soak -- {}",
            args.join(" ")
        )
    };
    // Before the run: the binary measures the tree as it was built.
    let source = crimson_bench::measure::source_state();
    let run = match soak(&options).await {
        Ok(run) => run,
        Err(err) => {
            eprintln!("soak: FAILED: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = report::Report::new(&options, command, source, run);
    let markdown = report.markdown();
    println!("{markdown}");
    let written = std::fs::create_dir_all(&options.out)
        .and_then(|()| std::fs::write(options.out.join("soak.md"), &markdown))
        .and_then(|()| {
            let json = serde_json::to_string_pretty(&report.json()).map_err(io::Error::other)?;
            std::fs::write(options.out.join("soak.json"), json + "\n")
        });
    match written {
        Ok(()) => eprintln!(
            "soak: wrote {0}/soak.md and {0}/soak.json",
            options.out.display()
        ),
        Err(err) => {
            eprintln!("soak: cannot write to {}: {err}", options.out.display());
            return ExitCode::FAILURE;
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
