//! The scenarios, each against a fresh release `chat-server` (or `chat-client`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crimson_bench::measure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::raw::{self, FrameReader, Read};
use crate::Outcome;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) async fn run(name: &str) -> Result<Outcome> {
    match name {
        "ping-flood" => ping_flood().await,
        "ping-flood-client" => ping_flood_client().await,
        "flood-client" => flood_client().await,
        "slowloris" => slowloris().await,
        "silent" => silent().await,
        "room-flood" => room_flood().await,
        "partial" => partial().await,
        "shutdown" => shutdown().await,
        other => Err(format!("no scenario {other}").into()),
    }
}

/// A release example program, built beside this one.
struct Program {
    child: Child,
}

impl Program {
    fn binary(name: &str) -> Result<std::path::PathBuf> {
        let dir = std::env::current_exe()?
            .parent()
            .ok_or("no directory")?
            .to_path_buf();
        let path = dir.join(name);
        if !path.exists() {
            return Err(format!(
                "{} is missing: cargo build --release -p crimson-examples --bin {name}",
                path.display()
            )
            .into());
        }
        Ok(path)
    }

    /// Starts `chat-server` on a free loopback port with `args`; returns it and its address.
    fn chat_server(args: &[&str]) -> Result<(Self, String)> {
        let mut child = Command::new(Self::binary("chat-server")?)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("chat server on ws://")
            .and_then(|rest| rest.strip_suffix("/chat"))
            .ok_or_else(|| format!("chat-server said {line:?}"))?
            .to_owned();
        Ok((Self { child }, addr))
    }

    fn rss_mib(&self) -> f64 {
        measure::rss_kib(self.child.id()).unwrap_or(0) as f64 / 1024.0
    }

    fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The highest of `sample` every 50 ms while `work` runs.
async fn peak_while<F: std::future::Future>(sample: impl Fn() -> f64, work: F) -> (f64, F::Output) {
    tokio::pin!(work);
    let mut peak = sample();
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut work => return (peak.max(sample()), out),
            _ = ticks.tick() => peak = peak.max(sample()),
        }
    }
}

/// 200,000 pings with 125-byte payloads, never reading the pongs.
async fn ping_flood() -> Result<Outcome> {
    let (server, addr) = Program::chat_server(&[])?;
    let mut tcp = raw::connect(&addr, "/chat").await?;
    let before = server.rss_mib();
    let ping = raw::frame(true, 0x9, &[0x55; 125], true);
    let batch: Vec<u8> = ping.repeat(1000);
    let (peak, sent) = peak_while(|| server.rss_mib(), async {
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(8);
        while sent < 200_000 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&batch)).await {
                Ok(Ok(())) => sent += 1000,
                _ => break,
            }
        }
        sent
    })
    .await;
    let growth = peak - before;
    Ok(Outcome::check(
        format!("{sent} pings sent; server RSS {before:.1} -> peak {peak:.1} MiB (+{growth:.1})"),
        growth < 16.0,
        || "the server's memory grew with the pings (bound: +16 MiB)".into(),
    ))
}

/// A server that floods `chat-client` with pings and never reads.
async fn ping_flood_client() -> Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/chat", listener.local_addr()?);
    let mut client = Command::new(Program::binary("chat-client")?)
        .args(["--url", &url])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client_pid = client.id();
    let rss = move || measure::rss_kib(client_pid).unwrap_or(0) as f64 / 1024.0;
    let result = async {
        let (mut tcp, _) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await??;
        raw::accept(&mut tcp).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss();
        let ping = raw::frame(true, 0x9, &[0x55; 125], false);
        let batch: Vec<u8> = ping.repeat(1000);
        let (peak, sent) = peak_while(&rss, async {
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(8);
            while sent < 200_000 && Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&batch)).await {
                    Ok(Ok(())) => sent += 1000,
                    _ => break,
                }
            }
            sent
        })
        .await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((before, peak, sent))
    }
    .await;
    let _ = client.kill();
    let _ = client.wait();
    let (before, peak, sent) = result?;
    let growth = peak - before;
    Ok(Outcome::check(
        format!(
            "{sent} pings sent; chat-client RSS {before:.1} -> peak {peak:.1} MiB (+{growth:.1})"
        ),
        growth < 16.0,
        || "the client's memory grew with the pings (bound: +16 MiB)".into(),
    ))
}

/// A server floods `chat-client` with chat messages (~100,000 a second for 4 s) while the client's output is read slowly,
/// so its printing falls behind and its subscription lags many times a second: it must say
/// what it missed at most once a second (it once printed a line per lag: ~300k lines).
async fn flood_client() -> Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/chat", listener.local_addr()?);
    let mut client = Command::new(Program::binary("chat-client")?)
        .args(["--url", &url])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Its output read 4 KiB every 10 ms (~400 KB/s, a few thousand lines a second).
    let stdout = client.stdout.take().ok_or("no stdout")?;
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdout = stdout;
        let mut buf = [0u8; 4096];
        while matches!(stdout.read(&mut buf), Ok(n) if n > 0) {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let stderr = client.stderr.take().ok_or("no stderr")?;
    let missed_lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
            .filter_map(|line| {
                // "missed N message(s): …"
                let rest = line.strip_prefix("missed ")?;
                rest.split(' ').next()?.parse::<u64>().ok()
            })
            .fold((0usize, 0u64), |(lines, missed), n| (lines + 1, missed + n))
    });
    let started = Instant::now();
    let result = async {
        let (mut tcp, _) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await??;
        raw::accept(&mut tcp).await?;
        let message = raw::frame(true, 0x1, br#"{"text":"flood","from":"s1","at":1}"#, false);
        let batch: Vec<u8> = message.repeat(1000);
        // ~100,000 messages a second for 4 s: the client lags again and again.
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(4);
        while sent < 400_000 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&batch)).await {
                Ok(Ok(())) => sent += 1000,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(sent)
    }
    .await;
    let _ = client.kill();
    let _ = client.wait();
    let elapsed = started.elapsed().as_secs_f64();
    let sent = result?;
    let (lines, missed) = missed_lines.join().map_err(|_| "stderr reader panicked")?;
    let bound = elapsed.ceil() as usize + 2;
    Ok(Outcome::check(
        format!(
            "{sent} messages sent in a flood; {missed} reported missed in {lines} line(s) in {elapsed:.1} s"
        ),
        (1..=bound).contains(&lines),
        || {
            if lines == 0 {
                "the client never reported missing a message: it did not fall behind, or it \
                 hid what it missed"
                    .into()
            } else {
                format!("one line per lag, not per second (bound: {bound})")
            }
        },
    ))
}

/// A handshake sent one byte every 100 ms.
async fn slowloris() -> Result<Outcome> {
    let (_server, addr) = Program::chat_server(&["--handshake-timeout", "2"])?;
    let mut tcp = TcpStream::connect(&addr).await?;
    let request = raw::upgrade_request("/chat");
    let started = Instant::now();
    let mut sent = 0;
    for byte in request.as_bytes() {
        if tcp.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    // Closed by the server: the next read ends.
    let mut buf = [0u8; 256];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    );
    let took = started.elapsed().as_secs_f64();
    Ok(Outcome::check(
        format!(
            "{sent} of {} bytes sent before the server cut it after {took:.1} s (timeout 2 s)",
            request.len()
        ),
        closed && sent < request.len() && took < 5.0,
        || "the slow handshake was not cut by the handshake timeout".into(),
    ))
}

/// 500 connections that never send a byte.
async fn silent() -> Result<Outcome> {
    let (_server, addr) = Program::chat_server(&["--handshake-timeout", "2"])?;
    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..500 {
        conns.push(TcpStream::connect(&addr).await?);
    }
    let waits = conns.into_iter().map(|mut tcp| async move {
        let mut buf = [0u8; 16];
        let ended = tokio::time::timeout(Duration::from_secs(8), tcp.read(&mut buf)).await;
        matches!(ended, Ok(Ok(0) | Err(_)))
    });
    let closed = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
    let took = started.elapsed().as_secs_f64();
    Ok(Outcome::check(
        format!("{closed} of 500 silent connections closed by the server within {took:.1} s (timeout 2 s)"),
        closed == 500 && took < 6.0,
        || "silent connections were left open".into(),
    ))
}

/// One flooder, three probing observers, one room.
async fn room_flood() -> Result<Outcome> {
    let (_server, addr) = Program::chat_server(&[])?;
    let mut observers = Vec::new();
    for n in 0..3 {
        let tcp = raw::connect(&addr, "/chat").await?;
        observers.push((n, tcp));
    }
    let flooder = raw::connect(&addr, "/chat").await?;
    // The flooder reads what comes back (so it is not cut as a slow consumer): what limits it
    // is the server's inbound rate.
    let (mut from_server, mut flooder) = flooder.into_split();
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 << 10];
        while let Ok(n) = from_server.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    let flood_for = Duration::from_secs(4);
    let flood = tokio::spawn(async move {
        let message = raw::text(r#"{"text":"flood"}"#);
        let batch: Vec<u8> = message.repeat(500);
        let deadline = Instant::now() + flood_for;
        let mut sent = 0u64;
        while sent < 100_000 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), flooder.write_all(&batch)).await {
                Ok(Ok(())) => sent += 500,
                Ok(Err(_)) => break,
                // TCP pushes back: the server reads this sender slowly.
                Err(_) => {}
            }
        }
        sent
    });
    let probes = observers.into_iter().map(|(n, mut tcp)| async move {
        let mut reader = FrameReader::new();
        let mut latencies = Vec::new();
        let mut floods = 0u64;
        let mut closed: Option<(u16, String)> = None;
        let end = Instant::now() + flood_for;
        let mut seq = 0;
        'probing: while Instant::now() < end {
            seq += 1;
            let probe = format!("probe-{n}-{seq}");
            let sent_at = Instant::now();
            if tcp
                .write_all(&raw::text(&format!(r#"{{"text":"{probe}"}}"#)))
                .await
                .is_err()
            {
                break;
            }
            loop {
                match reader.next(&mut tcp, Duration::from_secs(3)).await {
                    Read::Text(text) if text.contains(&probe) => {
                        latencies.push(sent_at.elapsed());
                        break;
                    }
                    Read::Text(_) => floods += 1,
                    Read::Close(code, reason) => {
                        closed = Some((code, reason));
                        break 'probing;
                    }
                    Read::Gone => {
                        closed = Some((1006, "no answer within 3 s".into()));
                        break 'probing;
                    }
                }
            }
            let next = sent_at + Duration::from_millis(100);
            while Instant::now() < next {
                match reader.next(&mut tcp, next - Instant::now()).await {
                    Read::Text(_) => floods += 1,
                    Read::Close(code, reason) => {
                        closed = Some((code, reason));
                        break 'probing;
                    }
                    // Nothing more before `next` (or the connection ended: the probe finds out).
                    Read::Gone => {}
                }
            }
        }
        (latencies, floods, closed)
    });
    let results = futures_util::future::join_all(probes).await;
    let flooded = flood.await.unwrap_or(0);
    let mut all: Vec<Duration> = results.iter().flat_map(|(l, _, _)| l.clone()).collect();
    all.sort();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(Duration::MAX);
    let relayed = results.iter().map(|(_, f, _)| *f).max().unwrap_or(0);
    let cut: Vec<String> = results
        .iter()
        .filter_map(|(_, _, c)| c.as_ref().map(|(code, reason)| format!("{code} {reason}")))
        .collect();
    Ok(Outcome::check(
        format!(
            "flooder wrote {flooded} messages, an observer saw {relayed} of them broadcast ({:.0}/s); \
             observers' probe p99 {:.1} ms over {} probes; observers cut: {}",
            relayed as f64 / flood_for.as_secs_f64(),
            p99.as_secs_f64() * 1000.0,
            all.len(),
            cut.len()
        ),
        cut.is_empty() && p99 < Duration::from_millis(500) && all.len() >= 30,
        || format!("the observers paid for the flooder: cut {cut:?}, p99 {p99:?}"),
    ))
}

/// 100 connections, each holding a 63 KiB unfinished message, against a 4 MiB budget.
async fn partial() -> Result<Outcome> {
    let budget = 4 << 20;
    let (server, addr) = Program::chat_server(&["--max-unfinished-bytes", &budget.to_string()])?;
    let before = server.rss_mib();
    let fragment = raw::frame(false, 0x1, &vec![b'a'; 63 << 10], true);
    let mut conns = Vec::new();
    for _ in 0..100 {
        let mut tcp = raw::connect(&addr, "/chat").await?;
        tcp.write_all(&fragment).await?;
        conns.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = server.rss_mib();
    let ping = raw::frame(true, 0x9, b"alive", true);
    let answers = conns.iter_mut().map(|tcp| async {
        let _ = tcp.write_all(&ping).await;
        let mut reader = FrameReader::new();
        matches!(
            reader.next(tcp, Duration::from_millis(500)).await,
            Read::Close(1013, _)
        )
    });
    let refused = futures_util::future::join_all(answers)
        .await
        .into_iter()
        .filter(|refused| *refused)
        .count();
    let held = conns.len() - refused;
    let growth = peak - before;
    Ok(Outcome::check(
        format!(
            "{held} connections hold 63 KiB each, {refused} refused with 1013 (budget 4 MiB); \
             server RSS {before:.1} -> {peak:.1} MiB (+{growth:.1})"
        ),
        refused > 0 && held > 0 && growth < 24.0,
        || "unfinished messages were not bounded".into(),
    ))
}

/// SIGINT with a half-sent handshake, a silent session and a good one open.
async fn shutdown() -> Result<Outcome> {
    let (mut server, addr) = Program::chat_server(&["--grace", "2", "--handshake-timeout", "30"])?;
    let mut good = raw::connect(&addr, "/chat").await?;
    let mut half = TcpStream::connect(&addr).await?;
    half.write_all(&raw::upgrade_request("/chat").as_bytes()[..60])
        .await?;
    let _silent = raw::connect(&addr, "/chat").await?;
    let mut reader = FrameReader::new();
    // Our own greeting is not needed: wait until the session is surely live.
    good.write_all(&raw::text(r#"{"text":"before shutdown"}"#))
        .await?;
    let _ = reader.next(&mut good, Duration::from_secs(2)).await;
    let started = Instant::now();
    server.interrupt();
    let close = loop {
        match reader.next(&mut good, Duration::from_secs(5)).await {
            Read::Text(_) => {}
            other => break other,
        }
    };
    let exited = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed().as_secs_f64();
    let got_1001 = matches!(close, Read::Close(1001, _));
    Ok(Outcome::check(
        format!(
            "{} after {took:.1} s (grace 2 s) with a half-sent handshake and a silent session open; the good client got {close:?}",
            if exited.is_some() { "exited" } else { "still running" }
        ),
        exited.is_some() && took < 4.0 && got_1001,
        || "the shutdown was held up".into(),
    ))
}
