//! The load benchmark: Crimson against a raw axum WebSocket server doing the same work, and
//! against a peer framework, ezsockets (its crates.io release), doing it too.
//!
//! ```text
//! cargo build --release -p crimson-bench --bin bench --bin bench-server
//! cargo run --release -p crimson-bench --bin bench -- [--quick] [--only echo,pipelined,...]
//!     [--rounds N] [--measure SECS] [--warmup SECS] [--out DIR]
//!     [--impls crimson,raw,raw-tuned,ezsockets] [--idle-conns N] [--subscribers N,N]
//!     [--setup-conns N] [--chat-pace-ms N]
//! ```
//!
//! Implementations (`--impls`, all by default): `crimson`; `raw`, axum's own WebSocket with
//! its defaults; `raw-tuned`, the same with Crimson's buffer sizes (2 KiB read, 8 KiB write,
//! 64 KiB message limit): the baseline the ratio targets judge, since it shows what the
//! framework itself costs; `ezsockets`, the ezsockets actor framework through its axum runner, with its
//! defaults. `crimson-metrics` (only when named) is Crimson with a Prometheus recorder
//! installed (`bench-server --impl crimson --metrics`): each scenario then prints, on stderr,
//! its medians against `crimson`'s, what recording the metrics costs. The peer runs every scenario: its session actors decode and answer echoes, and its
//! server actor holds the subscribers and fans each broadcast out (`bench-server`'s `peer.rs`).
//! The table and JSON give its medians and its ratio to raw axum beside Crimson's; a scenario
//! an implementation could not run shows "n/a: why" or "failed", never a number.
//!
//! Every scenario runs against each implementation in turn, alternating the order (A B, B A,
//! …) for `--rounds` rounds (5 by default, 2 with `--quick`), each time against a fresh
//! `bench-server` process (spawned from this executable's directory). The clients run in this
//! process, the server in its own. Medians per implementation are compared as ratios, the only
//! numbers worth reading on a noisy machine. Results go to `--out` (default `bench-out/`):
//! `results.md` (the table, also printed), `bench-results.json` and `bench-ratios.svg`.
//!
//! Scenarios (`--only`, comma separated; all by default):
//! - `echo`: 100 connections, one message in flight each, 32 B and 1 KiB JSON.
//! - `pipelined`: 16 connections, 16 messages in flight each, 32 B and 1 KiB JSON.
//! - `broadcast`: 1,000 and 5,000 subscribers, a publisher, 256 B JSON.
//! - `idle`: server memory per idle connection at 10,000 connections.
//! - `setup`: 5,000 connects (TCP + WebSocket handshake), 64 at a time.
//! - `chat`: the `chat-server` example itself (built next to `bench`), measured from outside:
//!   memory per idle plain client at 10,000 connections, and a message every 5 ms
//!   (`--chat-pace-ms`) to 5,000 subscribers, 1,000,000 deliveries/s offered, more than this
//!   machine's two cores deliver, so it measures how much each server gets through and how
//!   late (publish→deliver latency, deliveries/s, CPU per delivery), against the raw servers'
//!   chat room doing what the example does (`bench-server`'s `/chat`: every connection
//!   subscribes, a message is decoded, answered as `{"text","from","at"}`, encoded once and
//!   queued for all). The example also encodes each message for its Protobuf room.
//!
//! Only loopback addresses are used; every loop is bounded in count and time.

mod broadcast;
mod client;
mod echo;
mod history;
mod idle;
mod report;
mod server;
mod setup;
mod stats;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crimson_examples::{arg, flag};
use report::{Metric, Runs, ScenarioResult, Target, Values};
use server::{Impl, Server, PEER_CRATE};

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    rounds: usize,
    warmup: Duration,
    measure: Duration,
    out: PathBuf,
    only: Vec<String>,
    impls: Vec<Impl>,
    idle_conns: usize,
    subscribers: Vec<usize>,
    setup_conns: usize,
    /// The chat scenario's time between two published messages.
    chat_pace: Duration,
}

const SCENARIOS: [&str; 9] = [
    "echo",
    "requests",
    "pipelined",
    "broadcast",
    "mixed",
    "history",
    "idle",
    "setup",
    "chat",
];

fn number<T: std::str::FromStr>(name: &str, default: T) -> io::Result<T> {
    let text = arg(name, "", "");
    if text.is_empty() {
        return Ok(default);
    }
    text.parse()
        .map_err(|_| io::Error::other(format!("--{name}: not a number: {text:?}")))
}

impl Options {
    fn parse() -> io::Result<Self> {
        let quick = flag("quick");
        let only: Vec<String> = arg("only", "", &SCENARIOS.join(","))
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(unknown) = only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
            return Err(io::Error::other(format!(
                "unknown scenario {unknown:?}; choose from {}",
                SCENARIOS.join(", ")
            )));
        }
        let subscribers = arg(
            "subscribers",
            "",
            if quick { "200,1000" } else { "1000,5000" },
        )
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| io::Error::other("--subscribers: numbers, comma separated"))?;
        let all: Vec<&str> = Impl::ALL.iter().map(|which| which.name()).collect();
        let known: Vec<&str> = Impl::KNOWN.iter().map(|which| which.name()).collect();
        let impls = arg("impls", "", &all.join(","))
            .split(',')
            .map(|s| {
                Impl::parse(s.trim()).ok_or_else(|| {
                    io::Error::other(format!("--impls: unknown {s:?} ({})", known.join(", ")))
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let secs = |name: &str, default: f64| -> io::Result<Duration> {
            let s: f64 = number(name, default)?;
            Duration::try_from_secs_f64(s)
                .map_err(|_| io::Error::other(format!("--{name}: seconds, at least 0")))
        };
        let options = Self {
            quick,
            rounds: number("rounds", if quick { 2 } else { 5 })?.clamp(1, 50),
            warmup: secs("warmup", if quick { 0.3 } else { 0.5 })?,
            measure: secs("measure", if quick { 1.0 } else { 3.0 })?,
            out: PathBuf::from(arg("out", "", "bench-out")),
            only,
            impls,
            idle_conns: number("idle-conns", if quick { 1000 } else { 10_000 })?,
            subscribers,
            setup_conns: number("setup-conns", if quick { 1000 } else { 5000 })?,
            chat_pace: Duration::from_millis(number("chat-pace-ms", 5u64)?.max(1)),
        };
        if options.measure.is_zero() || options.measure > Duration::from_secs(60) {
            return Err(io::Error::other("--measure: more than 0 and at most 60 s"));
        }
        // This process holds every client socket: ~19k descriptors at most (ulimit -n 20000).
        let biggest = options
            .subscribers
            .iter()
            .copied()
            .chain([options.idle_conns + idle::WARM, options.setup_conns])
            .max()
            .unwrap_or(0);
        if biggest > 18_000 {
            return Err(io::Error::other(
                "at most 18,000 client connections: the process has ~19k descriptors",
            ));
        }
        Ok(options)
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }
}

/// Runs `run` against a fresh server of each implementation in `only`, `rounds` times,
/// alternating the order each round; collects each run's values. A failed run is reported,
/// recorded and left out of the medians. `unsupported` names the implementations that cannot
/// do this scenario, and why; they are not run.
async fn alternate<F, Fut>(
    only: &[Impl],
    label: &str,
    scenario: &str,
    unsupported: &[(Impl, &'static str)],
    rounds: usize,
    mut run: F,
) -> Runs
where
    F: FnMut(Server) -> Fut,
    Fut: Future<Output = io::Result<Values>>,
{
    let mut runs = Runs::default();
    for &(which, why) in unsupported {
        if only.contains(&which) {
            eprintln!("[{label}] {}: n/a: {why}", which.name());
            runs.unsupported.insert(which, why);
        }
    }
    let impls: Vec<Impl> = Impl::KNOWN
        .into_iter()
        .filter(|which| !runs.unsupported.contains_key(which))
        .collect();
    for round in 0..rounds {
        let mut order: Vec<Impl> = impls.iter().copied().filter(|i| only.contains(i)).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            let outcome = match server::start(which, scenario) {
                Ok(server) => run(server).await,
                Err(err) => Err(err),
            };
            match outcome {
                Ok(values) => {
                    let shown: Vec<String> =
                        values.iter().map(|(k, v)| format!("{k}={v:.2}")).collect();
                    eprintln!(
                        "[{label}] round {}/{rounds} {:<9} {}",
                        round + 1,
                        which.name(),
                        shown.join(" ")
                    );
                    runs.done.entry(which).or_default().push(values);
                }
                Err(err) => {
                    eprintln!(
                        "[{label}] round {}/{rounds} {}: FAILED: {err}",
                        round + 1,
                        which.name()
                    );
                    let why = format!("round {}: {err}", round + 1);
                    runs.failed.entry(which).or_default().push(why);
                }
            }
            // Let the kernel finish closing the last run's sockets.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    report::metrics_cost(label, &runs);
    runs
}

const fn metric(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    target: Option<Target>,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        higher_is_better,
        target,
    }
}

fn echo_metrics() -> Vec<Metric> {
    vec![
        metric(
            "msgs_per_s",
            "throughput",
            "msg/s",
            true,
            Some(Target::RatioAtLeast(0.97)),
        ),
        metric("p50_us", "p50 round trip", "µs", false, None),
        metric("p99_us", "p99 round trip", "µs", false, None),
        metric(
            "cpu_us_per_msg",
            "server CPU per message",
            "µs",
            false,
            Some(Target::RatioAtMost(1.05)),
        ),
    ]
}

fn size_name(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

async fn run_echo(
    options: &Options,
    name: &str,
    conns: usize,
    in_flight: usize,
    results: &mut Vec<ScenarioResult>,
) {
    for size in [32, 1024] {
        let shape = echo::Echo {
            conns,
            in_flight,
            size,
            warmup: options.warmup,
            measure: options.measure,
            requests: false,
        };
        let detail = format!("{conns} conns × {in_flight} in flight, {}", size_name(size));
        let label = format!("{name} {detail}");
        let runs = alternate(
            &options.impls,
            &label,
            "echo",
            &[],
            options.rounds,
            |server| echo::run(server, shape),
        )
        .await;
        results.push(ScenarioResult {
            name: name.to_owned(),
            detail,
            metrics: echo_metrics(),
            runs,
        });
    }
}

async fn run_broadcast(options: &Options, results: &mut Vec<ScenarioResult>) {
    let runs: Vec<(usize, usize)> = options
        .subscribers
        .iter()
        .map(|&n| (n, 256))
        .chain(options.subscribers.first().map(|&n| (n, 4096)))
        .collect();
    for (subscribers, size) in runs {
        let shape = broadcast::Broadcast {
            subscribers,
            size,
            window: broadcast::WINDOW,
            warmup: options.warmup,
            measure: options.measure,
            pace: None,
            chat: false,
            mixed: false,
            protocol: false,
            history: false,
        };
        let detail = format!("{subscribers} subscribers, {}", size_name(size));
        // Crimson's stretch goal (permessage-deflate issue): cheaper per delivery than a
        // hand-written axum fan-out, 0.85 at 256 B and 0.7 at 4 KiB; the engine's: parity.
        let cpu_target = if size >= 4096 { 0.7 } else { 1.0 };
        let label = format!("broadcast {detail}");
        let runs = alternate(
            &options.impls,
            &label,
            "broadcast",
            &[],
            options.rounds,
            |server| broadcast::run(server, shape),
        )
        .await;
        results.push(ScenarioResult {
            name: "broadcast".to_owned(),
            detail,
            metrics: vec![
                metric(
                    "delivered_per_s",
                    "delivered",
                    "msg/s",
                    true,
                    Some(Target::RatioAtLeast(1.0)),
                ),
                metric("p50_us", "p50 publish→deliver", "µs", false, None),
                metric("p99_us", "p99 publish→deliver", "µs", false, None),
                metric(
                    "cpu_us_per_delivery",
                    "server CPU per delivery",
                    "µs",
                    false,
                    Some(Target::RatioAtMost(cpu_target)),
                ),
            ],
            runs,
        });
    }
}

/// Requests over the Crimson protocol (`req id=N` answered by `res id=N`) against plain
/// echoes, on one Crimson server per round: 100 connections, one at a time each, 32 B.
/// Target (issue 16): at least 0.9 of echo's throughput; the request p99 is reported.
async fn run_requests(options: &Options, results: &mut Vec<ScenarioResult>) {
    let shape = echo::Echo {
        conns: 100,
        in_flight: 1,
        size: 32,
        warmup: options.warmup,
        measure: options.measure,
        requests: true,
    };
    let detail = "100 conns × 1 in flight, 32 B".to_owned();
    let rounds = std::sync::atomic::AtomicUsize::new(0);
    let runs = alternate(
        &[Impl::Crimson],
        &format!("requests {detail}"),
        "echo",
        &[],
        options.rounds,
        |server| {
            let round = rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            echo::run_requests(server, shape, round)
        },
    )
    .await;
    results.push(ScenarioResult {
        name: "requests".to_owned(),
        detail,
        metrics: vec![
            metric(
                "requests_over_echo",
                "throughput, requests / echo",
                "×",
                true,
                Some(Target::AtLeast(0.9)),
            ),
            metric("requests_per_s", "requests answered", "req/s", true, None),
            metric("echo_msgs_per_s", "echoes", "msg/s", true, None),
            metric(
                "request_p50_us",
                "p50 request round trip",
                "µs",
                false,
                None,
            ),
            metric(
                "request_p99_us",
                "p99 request round trip",
                "µs",
                false,
                None,
            ),
            metric("echo_p99_us", "p99 echo round trip", "µs", false, None),
            metric(
                "timeout_late_max_ms",
                "a request timeout's lateness, at most",
                "ms",
                false,
                Some(Target::AtMost(20.0)),
            ),
            metric(
                "request_cpu_us_per_msg",
                "server CPU per request",
                "µs",
                false,
                None,
            ),
            metric(
                "echo_cpu_us_per_msg",
                "server CPU per echo",
                "µs",
                false,
                None,
            ),
        ],
        runs,
    });
}

/// The room of the A/B scenarios run on one Crimson server per round (`mixed`, `history`):
/// the first subscriber count, 256 B; subscribers of the protocol when history is on.
fn one_server_room(options: &Options, mixed: bool, history: bool) -> (broadcast::Broadcast, usize) {
    let subscribers = options.subscribers.first().copied().unwrap_or(1000);
    let shape = broadcast::Broadcast {
        subscribers,
        size: 256,
        window: broadcast::WINDOW,
        warmup: options.warmup,
        measure: options.measure,
        pace: None,
        chat: false,
        mixed,
        protocol: history,
        history,
    };
    (shape, subscribers)
}

/// `options.rounds` rounds of Crimson's broadcast server, `run` given each round's number.
async fn alternate_rounds<F, Fut>(options: &Options, label: &str, run: F) -> Runs
where
    F: Fn(Server, usize) -> Fut,
    Fut: Future<Output = io::Result<Values>>,
{
    let rounds = std::sync::atomic::AtomicUsize::new(0);
    alternate(
        &[Impl::Crimson],
        label,
        "broadcast",
        &[],
        options.rounds,
        |server| {
            let round = rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run(server, round)
        },
    )
    .await
}

/// A broadcast room of two codecs (half JSON, half CBOR) against a room of one (JSON), on one
/// Crimson server per round: a broadcast is encoded once per codec in use, so the CPU per
/// delivery should stay within 1.1× (issue 20's target).
async fn run_mixed(options: &Options, results: &mut Vec<ScenarioResult>) {
    let (shape, subscribers) = one_server_room(options, true, false);
    let detail = format!("{subscribers} subscribers, 256 B, half JSON and half CBOR");
    let runs = alternate_rounds(
        options,
        &format!("broadcast mixed {detail}"),
        |server, round| broadcast::run_mixed(server, shape, round),
    )
    .await;
    results.push(ScenarioResult {
        name: "broadcast, two codecs".to_owned(),
        detail,
        metrics: vec![
            metric(
                "mixed_over_single",
                "CPU per delivery, two codecs / one",
                "×",
                false,
                Some(Target::AtMost(1.1)),
            ),
            metric(
                "single_cpu_us_per_delivery",
                "server CPU per delivery, one codec",
                "µs",
                false,
                None,
            ),
            metric(
                "mixed_cpu_us_per_delivery",
                "server CPU per delivery, two codecs",
                "µs",
                false,
                None,
            ),
            metric(
                "single_delivered_per_s",
                "delivered, one codec",
                "msg/s",
                true,
                None,
            ),
            metric(
                "mixed_delivered_per_s",
                "delivered, two codecs",
                "msg/s",
                true,
                None,
            ),
        ],
        runs,
    });
}

/// A broadcast with history on against off (issue 15), on one Crimson server per round,
/// subscribers of the Crimson protocol both times; then the recovery of 1,000 missed messages
/// of 256 B, timed from `resume` to the last.
/// Targets: throughput with history at least 0.9 of without, a recovery under 50 ms.
async fn run_history(options: &Options, results: &mut Vec<ScenarioResult>) {
    let (shape, subscribers) = one_server_room(options, false, true);
    let detail = format!("{subscribers} subscribers of crimson.v1, 256 B; recover 1,000");
    let runs = alternate_rounds(
        options,
        &format!("broadcast history {detail}"),
        |server, round| broadcast::run_history(server, shape, round),
    )
    .await;
    results.push(ScenarioResult {
        name: "broadcast, history in memory".to_owned(),
        detail,
        metrics: vec![
            metric(
                "on_over_off",
                "throughput, history on / off",
                "×",
                true,
                Some(Target::AtLeast(0.9)),
            ),
            metric(
                "cpu_on_over_off",
                "CPU per delivery, history on / off",
                "×",
                false,
                None,
            ),
            metric(
                "off_delivered_per_s",
                "delivered, history off",
                "msg/s",
                true,
                None,
            ),
            metric(
                "on_delivered_per_s",
                "delivered, history on",
                "msg/s",
                true,
                None,
            ),
            metric(
                "recover_ms",
                "recovery of 1,000 missed, resume → last",
                "ms",
                false,
                Some(Target::AtMost(50.0)),
            ),
        ],
        runs,
    });
}

async fn run_chat(options: &Options, results: &mut Vec<ScenarioResult>) {
    // Peers with a chat route of their own would be needed; the raw servers stand in.
    let unsupported = [(Impl::Ezsockets, "measured through the raw servers only")];
    let conns = options.idle_conns;
    let runs = alternate(
        &options.impls,
        &format!("chat idle {conns}"),
        "chat",
        &unsupported,
        options.rounds,
        |server| idle::run(server, conns, Some("/chat")),
    )
    .await;
    results.push(ScenarioResult {
        name: "chat-server idle".to_owned(),
        detail: format!("{conns} plain clients"),
        metrics: vec![
            metric(
                "kib_per_conn",
                "server RSS per idle connection",
                "KiB",
                false,
                Some(Target::AtMost(5.0)),
            ),
            metric("rss_mib", "server RSS", "MiB", false, None),
        ],
        runs,
    });
    let subscribers = *options.subscribers.last().unwrap_or(&5000);
    let runs = alternate(
        &options.impls,
        &format!("chat broadcast {subscribers}"),
        "chat",
        &unsupported,
        options.rounds,
        |server| {
            let shape = broadcast::Broadcast {
                subscribers,
                size: 128,
                window: broadcast::WINDOW,
                warmup: options.warmup,
                measure: options.measure,
                pace: Some(options.chat_pace),
                chat: true,
                mixed: false,
                protocol: false,
                history: false,
            };
            broadcast::run(server, shape)
        },
    )
    .await;
    results.push(ScenarioResult {
        name: "chat-server broadcast".to_owned(),
        detail: format!(
            "{subscribers} subscribers, a message every {} ms",
            options.chat_pace.as_millis()
        ),
        metrics: vec![
            metric(
                "delivered_per_s",
                "delivered",
                "msg/s",
                true,
                Some(Target::RatioAtLeast(1.0)),
            ),
            metric("p50_us", "p50 publish→deliver", "µs", false, None),
            metric(
                "p99_us",
                "p99 publish→deliver",
                "µs",
                false,
                Some(Target::RatioAtMost(1.2)),
            ),
            metric(
                "cpu_us_per_delivery",
                "server CPU per delivery",
                "µs",
                false,
                Some(Target::RatioAtMost(1.0)),
            ),
        ],
        runs,
    });
}

async fn run_idle(options: &Options, results: &mut Vec<ScenarioResult>) {
    let conns = options.idle_conns;
    let runs = alternate(
        &options.impls,
        &format!("idle {conns}"),
        "idle",
        &[],
        options.rounds,
        |server| idle::run(server, conns, None),
    )
    .await;
    results.push(ScenarioResult {
        name: "idle".to_owned(),
        detail: format!("{conns} connections"),
        metrics: vec![
            metric(
                "kib_per_conn",
                "server RSS per idle connection",
                "KiB",
                false,
                Some(Target::AtMost(5.0)),
            ),
            metric("rss_mib", "server RSS", "MiB", false, None),
        ],
        runs,
    });
}

async fn run_setup(options: &Options, results: &mut Vec<ScenarioResult>) {
    let conns = options.setup_conns;
    let runs = alternate(
        &options.impls,
        &format!("setup {conns}"),
        "echo",
        &[],
        options.rounds,
        |server| setup::run(server, conns, setup::CONCURRENCY),
    )
    .await;
    results.push(ScenarioResult {
        name: "setup".to_owned(),
        detail: format!("{conns} connects, {} at a time", setup::CONCURRENCY),
        metrics: vec![
            metric(
                "connects_per_s",
                "connects",
                "conn/s",
                true,
                Some(Target::RatioAtLeast(0.9)),
            ),
            metric("p50_us", "p50 connect", "µs", false, None),
            metric("p99_us", "p99 connect", "µs", false, None),
            metric(
                "cpu_us_per_conn",
                "server CPU per connect",
                "µs",
                false,
                Some(Target::RatioAtMost(1.05)),
            ),
        ],
        runs,
    });
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> io::Result<()> {
    if flag("help") || flag("h") {
        // The module docs say it all.
        println!(
            "bench [--quick] [--only {}] [--rounds N] [--measure SECS] [--warmup SECS] \
             [--out DIR] [--impls crimson,raw,raw-tuned,ezsockets] [--idle-conns N] [--subscribers N,N] [--setup-conns N]",
            SCENARIOS.join(",")
        );
        return Ok(());
    }
    let options = Options::parse()?;
    let command = std::env::args()
        .skip(1)
        .fold(String::from("bench"), |line, arg| line + " " + &arg);
    // Before the run: the binaries measure the tree as it was built.
    let source = crimson_bench::measure::source_state();
    eprintln!("bench: {options:?}");

    let mut results = Vec::new();
    if options.runs("echo") {
        run_echo(&options, "echo", 100, 1, &mut results).await;
    }
    if options.runs("requests") {
        run_requests(&options, &mut results).await;
    }
    if options.runs("pipelined") {
        run_echo(&options, "pipelined", 16, 16, &mut results).await;
    }
    if options.runs("broadcast") {
        run_broadcast(&options, &mut results).await;
    }
    if options.runs("mixed") {
        run_mixed(&options, &mut results).await;
    }
    if options.runs("history") {
        run_history(&options, &mut results).await;
    }
    if options.runs("idle") {
        run_idle(&options, &mut results).await;
    }
    if options.runs("setup") {
        run_setup(&options, &mut results).await;
    }
    if options.runs("chat") {
        run_chat(&options, &mut results).await;
    }

    std::fs::create_dir_all(&options.out)?;
    let table = report::table(&results);
    let heading = format!(
        "Crimson vs raw axum and {} {}: medians of {} alternating rounds{} (`{command}`)",
        PEER_CRATE.0,
        PEER_CRATE.1,
        options.rounds,
        if options.quick { ", --quick" } else { "" },
    );
    std::fs::write(
        options.out.join("results.md"),
        format!("{heading}\n\n{table}"),
    )?;
    let meta = serde_json::json!({
        "command": command,
        "quick": options.quick,
        "rounds": options.rounds,
        "warmup_s": options.warmup.as_secs_f64(),
        "measure_s": options.measure.as_secs_f64(),
        "unix_time": unix_time(),
        "source": source,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "ratio": "median(Crimson) / median(baseline); see each metric's higher_is_better",
        "peer": {
            "crate": PEER_CRATE.0,
            "version": PEER_CRATE.1,
            "column": "ezsockets",
            "ratio": "ratio_ezsockets_vs_raw = median(ezsockets) / median(raw)",
        },
    });
    let json = report::json(&results, meta);
    std::fs::write(
        options.out.join("bench-results.json"),
        serde_json::to_string_pretty(&json).map_err(io::Error::other)? + "\n",
    )?;
    report::chart(
        &results,
        &options.out.join("bench-ratios.svg"),
        &format!(
            "Crimson and {} {} vs raw axum ({} rounds)",
            PEER_CRATE.0, PEER_CRATE.1, options.rounds
        ),
    )?;
    println!("{heading}\n\n{table}");
    eprintln!(
        "bench: wrote {0}/results.md, {0}/bench-results.json, {0}/bench-ratios.svg",
        options.out.display()
    );
    Ok(())
}
