//! The compression benchmark: what permessage-deflate costs and saves, Crimson with it off
//! against Crimson with it on, in the same run (raw axum cannot negotiate it).
//!
//! ```text
//! cargo build --release -p crimson-bench --bin compression --bin bench-server
//! ./target/release/compression [--rounds N] [--measure SECS] [--out FILE.json]
//! ./target/release/compression --chart-from FILE.json --rounds N   # the chart again, from a run's figures
//! ```
//!
//! It writes the table to stdout, the figures to `--out` and a chart beside it (`.svg`).
//!
//! Scenarios, each against a fresh `bench-server` per run, `off`/`on` alternating for
//! `--rounds` rounds (3 by default), medians reported:
//! - `echo chat`: 50 connections, one round trip at a time, a chat message of ~90 bytes;
//! - `echo doc`: the same with a 4 KiB JSON document (rows of a dashboard table);
//!   both give messages/s, server CPU per message, and bytes on the wire per message each way.
//! - `idle`: server memory per idle connection at 2,000 connections that each did one round
//!   trip with the 4 KiB document: off, on (no context takeover, Crimson's default), and on
//!   with context takeover (each connection then keeps a compressor and an inflater).
//! - `broadcast`: 1,000 subscribers, a 4 KiB document broadcast 200 times a second: server
//!   CPU per delivery, off and on (compressed once per broadcast, not per subscriber).
//!
//! Only loopback addresses are used; every loop is bounded in count and time.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crimson_axum::Deflate;
use crimson_bench::deflate_client::{self, Wire};
use crimson_bench::server::BenchServer;
use crimson_examples::arg;
use tokio::time::Instant;

/// A chat message, as `chat-server` relays them (~90 bytes of JSON).
fn chat(seq: u64) -> String {
    format!(
        r#"{{"seq":{},"pad":"hey, are we still on for lunch tomorrow? I can book the place near the office"}}"#,
        1_000_000_000 + seq
    )
}

/// A 4 KiB JSON document: rows of a dashboard table.
fn doc(seq: u64) -> String {
    let mut items = Vec::new();
    let mut n = 0;
    loop {
        // Written as serde_json writes it, so the echo (decoded, encoded again) is equal.
        let price = (1000 + n * 737 % 9000) as f64 / 100.0;
        let item = format!(
            r#"{{"id":{},"name":"sensor-{}-{}","price":{},"tags":["floor-{}","zone-{}","active"],"active":{}}}"#,
            1000 + n,
            ["north", "south", "east", "west"][n % 4],
            n,
            serde_json::to_string(&price).unwrap_or_default(),
            n % 5,
            n % 3,
            n % 2 == 0
        );
        items.push(item);
        n += 1;
        let len: usize = items.iter().map(|i| i.len() + 1).sum();
        if len >= 4000 {
            break;
        }
    }
    format!(
        r#"{{"seq":{},"items":[{}]}}"#,
        1_000_000_000 + seq,
        items.join(",")
    )
}

fn mode_deflate(mode: &str) -> Deflate {
    match mode {
        "off" => Deflate::disabled(),
        "takeover" => Deflate::new()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false),
        _ => Deflate::new(),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Echoed {
    msgs_per_s: f64,
    cpu_us_per_msg: f64,
    down_bytes_per_msg: f64,
    up_bytes_per_msg: f64,
}

/// `conns` connections doing round trips of `message(seq)` for `measure`.
async fn echo(
    mode: &str,
    path: &str,
    message: fn(u64) -> String,
    measure: Duration,
) -> io::Result<Echoed> {
    let server = BenchServer::start(&[
        "--impl",
        "crimson",
        "--scenario",
        "echo",
        "--compression",
        mode,
    ])?;
    let offer = mode_deflate(mode);
    let wire = Arc::new(Wire::default());
    let conns = 50;
    let mut clients = Vec::new();
    for _ in 0..conns {
        let (client, compressed) =
            deflate_client::connect(server.addr, path, &offer, wire.clone()).await?;
        if compressed != (mode != "off") {
            return Err(io::Error::other(format!(
                "compression {mode}: negotiated {compressed}"
            )));
        }
        clients.push(client);
    }
    let warm = Instant::now() + Duration::from_millis(300);
    let end = warm + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let text = message(i as u64);
        tasks.spawn(async move {
            let mut counted = 0u64;
            loop {
                deflate_client::send(&mut client, &text).await?;
                let back = tokio::time::timeout(
                    Duration::from_secs(5),
                    deflate_client::next_text(&mut client),
                )
                .await
                .map_err(|_| io::Error::other("no echo within 5 s"))??;
                if back != text {
                    return Err(io::Error::other("the echo differs"));
                }
                let now = Instant::now();
                if now >= end {
                    return Ok::<_, io::Error>((counted, client));
                }
                if now >= warm {
                    counted += 1;
                }
            }
        });
    }
    tokio::time::sleep_until(warm).await;
    let (cpu0, read0, written0) = (
        server.cpu()?,
        wire.read.load(Ordering::Relaxed),
        wire.written.load(Ordering::Relaxed),
    );
    tokio::time::sleep_until(end).await;
    let (cpu1, read1, written1) = (
        server.cpu()?,
        wire.read.load(Ordering::Relaxed),
        wire.written.load(Ordering::Relaxed),
    );
    let mut messages = 0;
    let mut keep = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (counted, client) = joined.map_err(io::Error::other)??;
        messages += counted;
        keep.push(client);
    }
    server.stop();
    let per = messages.max(1) as f64;
    Ok(Echoed {
        msgs_per_s: messages as f64 / measure.as_secs_f64(),
        cpu_us_per_msg: (cpu1 - cpu0).as_secs_f64() * 1e6 / per,
        down_bytes_per_msg: (read1 - read0) as f64 / per,
        up_bytes_per_msg: (written1 - written0) as f64 / per,
    })
}

/// Server memory per idle connection, in KiB, at `conns` connections that each did one round
/// trip with a 4 KiB document (compressed both ways when deflate is on, so a connection with
/// context takeover has made its compressor and inflater).
async fn idle(mode: &str, conns: usize) -> io::Result<f64> {
    let server = BenchServer::start(&[
        "--impl",
        "crimson",
        "--scenario",
        "echo",
        "--compression",
        mode,
    ])?;
    let offer = mode_deflate(mode);
    let wire = Arc::new(Wire::default());
    let mut keep = Vec::new();
    let round_trip = |mut client: deflate_client::Client, text: String| async move {
        deflate_client::send(&mut client, &text).await?;
        deflate_client::next_text(&mut client).await?;
        Ok::<_, io::Error>(client)
    };
    // Warm: the first connections pay for the runtime's and allocator's one-off costs.
    for i in 0..100 {
        let (client, _) =
            deflate_client::connect(server.addr, "/doc", &offer, wire.clone()).await?;
        keep.push(round_trip(client, doc(i)).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib()?;
    for i in 0..conns {
        let (client, _) =
            deflate_client::connect(server.addr, "/doc", &offer, wire.clone()).await?;
        keep.push(round_trip(client, doc(i as u64)).await?);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = server.rss_kib()?;
    server.stop();
    drop(keep);
    Ok(after.saturating_sub(before) as f64 / conns as f64)
}

/// Server CPU per delivery for a 4 KiB document broadcast `rate` times a second to
/// `subscribers`, for `measure`.
async fn broadcast(mode: &str, subscribers: usize, measure: Duration) -> io::Result<(f64, f64)> {
    let server = BenchServer::start(&[
        "--impl",
        "crimson",
        "--scenario",
        "broadcast",
        "--compression",
        mode,
    ])?;
    let offer = mode_deflate(mode);
    let wire = Arc::new(Wire::default());
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let (client, _) =
            deflate_client::connect(server.addr, "/sub", &offer, wire.clone()).await?;
        subs.push(client);
    }
    let (mut publisher, _) =
        deflate_client::connect(server.addr, "/pub", &Deflate::disabled(), wire.clone()).await?;
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let end = Instant::now() + measure + Duration::from_millis(300);
    let mut readers = tokio::task::JoinSet::new();
    for mut sub in subs {
        let received = received.clone();
        readers.spawn(async move {
            while Instant::now() < end {
                match tokio::time::timeout_at(end, deflate_client::next_text(&mut sub)).await {
                    Ok(Ok(_)) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(err)) => return Err(err),
                    Err(_) => break,
                }
            }
            Ok::<_, io::Error>(sub)
        });
    }
    // A tick carries the document in its pad.
    let body = doc(0);
    let tick = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"sent":0,"pad":{}}}"#,
            serde_json::to_string(&body).unwrap_or_default()
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = server.cpu()?;
    let got0 = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut seq = 0;
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    while started.elapsed() < measure {
        ticks.tick().await;
        seq += 1;
        deflate_client::send(&mut publisher, &tick(seq)).await?;
    }
    let cpu1 = server.cpu()?;
    let got1 = received.load(Ordering::Relaxed);
    while readers.join_next().await.is_some() {}
    server.stop();
    let deliveries = (got1 - got0).max(1) as f64;
    let bytes =
        wire.read.load(Ordering::Relaxed) as f64 / received.load(Ordering::Relaxed).max(1) as f64;
    Ok(((cpu1 - cpu0).as_secs_f64() * 1e6 / deliveries, bytes))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let rounds: usize = arg("rounds", "", "3").parse().unwrap_or(3).clamp(1, 20);
    let measure = Duration::from_secs_f64(arg("measure", "", "3").parse().unwrap_or(3.0));
    let out = arg("out", "", "bench-out/compression.json");
    let from = arg("chart-from", "", "");
    if !from.is_empty() {
        // Only the chart, again, from an earlier run's figures.
        let figures: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&from)?).map_err(io::Error::other)?;
        let svg = std::path::Path::new(&from).with_extension("svg");
        std::fs::write(&svg, chart(&bars_of(&figures), rounds))?;
        println!("compression: wrote {}", svg.display());
        return Ok(());
    }
    let mut report = Vec::new();
    let mut json = serde_json::Map::new();
    // (label, on / off) for the chart.
    let mut bars: Vec<(String, f64)> = Vec::new();

    for (name, path, message) in [
        ("echo chat (~90 B)", "/echo", chat as fn(u64) -> String),
        ("echo doc (4 KiB)", "/doc", doc as fn(u64) -> String),
    ] {
        let mut runs: [Vec<Echoed>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (i, mode) in if round % 2 == 0 {
                [(0, "off"), (1, "on")]
            } else {
                [(1, "on"), (0, "off")]
            } {
                runs[i].push(echo(mode, path, message, measure).await?);
            }
        }
        let pick = |i: usize, f: fn(&Echoed) -> f64| median(runs[i].iter().map(f).collect());
        for (metric, f) in [
            (
                "messages/s",
                (|e: &Echoed| e.msgs_per_s) as fn(&Echoed) -> f64,
            ),
            ("server CPU per message [µs]", |e| e.cpu_us_per_msg),
            ("bytes on the wire per message, server → client", |e| {
                e.down_bytes_per_msg
            }),
            ("bytes on the wire per message, client → server", |e| {
                e.up_bytes_per_msg
            }),
        ] {
            let (off, on) = (pick(0, f), pick(1, f));
            report.push(format!(
                "| {name} | {metric} | {off:.1} | {on:.1} | {:.2} |",
                on / off
            ));
            json.insert(
                format!("{name}: {metric}"),
                serde_json::json!({"off": off, "on": on, "ratio": on / off}),
            );
            let better = if metric == "messages/s" { "↑" } else { "↓" };
            bars.push((format!("{name}: {metric} {better}"), on / off));
        }
    }

    let mut idles: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order: [(usize, &str); 3] = if round % 2 == 0 {
            [(0, "off"), (1, "on"), (2, "takeover")]
        } else {
            [(2, "takeover"), (1, "on"), (0, "off")]
        };
        for (i, mode) in order {
            idles[i].push(idle(mode, 2000).await?);
        }
    }
    let [off, on, takeover] = idles.map(median);
    report.push(format!("| idle (2,000 connections) | server RSS per connection [KiB] | {off:.2} | {on:.2} | {:.2} |", on / off));
    report.push(format!("| idle (2,000 connections) | with context takeover [KiB] | {off:.2} | {takeover:.2} | {:.2} |", takeover / off));
    bars.push(("idle: RSS per connection ↓".into(), on / off));
    bars.push((
        "idle: RSS per connection, context takeover ↓".into(),
        takeover / off,
    ));
    json.insert(
        "idle KiB per connection".into(),
        serde_json::json!({"off": off, "on": on, "takeover": takeover}),
    );

    let mut casts: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, mode) in if round % 2 == 0 {
            [(0, "off"), (1, "on")]
        } else {
            [(1, "on"), (0, "off")]
        } {
            casts[i].push(broadcast(mode, 1000, measure).await?);
        }
    }
    let cpu = |i: usize| median(casts[i].iter().map(|c| c.0).collect());
    let bytes = |i: usize| median(casts[i].iter().map(|c| c.1).collect());
    report.push(format!(
        "| broadcast (1,000 subscribers, 4 KiB doc, every 5 ms) | server CPU per delivery [µs] | {:.2} | {:.2} | {:.2} |",
        cpu(0), cpu(1), cpu(1) / cpu(0)
    ));
    report.push(format!(
        "| broadcast (1,000 subscribers, 4 KiB doc, every 5 ms) | bytes on the wire per delivery | {:.0} | {:.0} | {:.2} |",
        bytes(0), bytes(1), bytes(1) / bytes(0)
    ));
    bars.push((
        "broadcast 4 KiB: server CPU per delivery".into(),
        cpu(1) / cpu(0),
    ));
    bars.push((
        "broadcast 4 KiB: bytes per delivery".into(),
        bytes(1) / bytes(0),
    ));
    json.insert(
        "broadcast CPU per delivery".into(),
        serde_json::json!({"off": cpu(0), "on": cpu(1), "ratio": cpu(1) / cpu(0)}),
    );
    json.insert(
        "broadcast bytes per delivery".into(),
        serde_json::json!({"off": bytes(0), "on": bytes(1)}),
    );

    println!(
        "Crimson with permessage-deflate off and on: medians of {rounds} alternating rounds, {:.0} s each (`compression --rounds {rounds}`)\n",
        measure.as_secs_f64()
    );
    println!("| scenario | metric | off | on | on / off |\n|---|---|---:|---:|---:|");
    for line in &report {
        println!("{line}");
    }
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    let svg = std::path::Path::new(&out).with_extension("svg");
    std::fs::write(&svg, chart(&bars, rounds))?;
    println!("\ncompression: wrote {out} and {}", svg.display());
    Ok(())
}

/// The chart's bars from the figures `main` writes (the same bars, in the figures' order).
fn bars_of(figures: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, f64)> {
    let get = |key: &str, field: &str| {
        figures
            .get(key)
            .and_then(|v| v.get(field))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let mut bars = Vec::new();
    for (key, value) in figures {
        if let Some(ratio) = value.get("ratio").and_then(serde_json::Value::as_f64) {
            if key.starts_with("echo") {
                let better = if key.ends_with("messages/s") {
                    "↑"
                } else {
                    "↓"
                };
                bars.push((format!("{key} {better}"), ratio));
            }
        }
    }
    let idle = "idle KiB per connection";
    bars.push((
        "idle: RSS per connection ↓".into(),
        get(idle, "on") / get(idle, "off"),
    ));
    bars.push((
        "idle: RSS per connection, context takeover ↓".into(),
        get(idle, "takeover") / get(idle, "off"),
    ));
    bars.push((
        "broadcast 4 KiB: server CPU per delivery ↓".into(),
        get("broadcast CPU per delivery", "ratio"),
    ));
    let bytes = "broadcast bytes per delivery";
    bars.push((
        "broadcast 4 KiB: bytes per delivery ↓".into(),
        get(bytes, "on") / get(bytes, "off"),
    ));
    bars
}

/// A bar chart of on / off for every metric, as SVG: a bar per metric, the 1.0 line dashed.
fn chart(bars: &[(String, f64)], rounds: usize) -> String {
    let (left, width, row, top) = (430.0, 420.0, 26.0, 60.0);
    let max = bars
        .iter()
        .map(|(_, r)| *r)
        .filter(|r| r.is_finite())
        .fold(1.5f64, f64::max)
        .min(4.0);
    let x = |r: f64| left + width * r.min(max) / max;
    let height = top + row * bars.len() as f64 + 40.0;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="17">permessage-deflate on / off (Crimson, medians of {rounds} alternating rounds)</text>
<text x="10" y="42">↑ higher is better, ↓ lower is better; green: compression helps, red: it costs; bars past {max:.1} are cut</text>
"##,
        w = left + width + 80.0
    );
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        // Green where compression helps (↑ above 1.0, ↓ below), red where it costs.
        let helps = if label.ends_with('↑') {
            *ratio >= 1.0
        } else {
            *ratio <= 1.0
        };
        let color = if helps { "#3c9f50" } else { "#c8503c" };
        svg += &format!(
            r##"<text x="10" y="{ty}">{label}</text>
<rect x="{left}" y="{y}" width="{bw:.1}" height="{bh}" fill="{color}"/>
<text x="{tx:.1}" y="{ty}">{ratio:.2}</text>
"##,
            ty = y + 15.0,
            bw = (x(*ratio) - left).max(0.0),
            bh = row - 6.0,
            tx = x(*ratio) + 4.0,
            label = label.replace('&', "&amp;").replace('<', "&lt;"),
        );
    }
    let bottom = top + row * bars.len() as f64;
    svg += &format!(
        r##"<line x1="{one:.1}" y1="{top}" x2="{one:.1}" y2="{bottom}" stroke="black" stroke-dasharray="4 4"/>
<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>
<text x="{one:.1}" y="{label_y}">1.0</text>
</svg>
"##,
        one = x(1.0),
        right = left + width,
        label_y = bottom + 18.0,
    );
    svg
}
