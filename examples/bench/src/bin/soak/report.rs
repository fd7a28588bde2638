//! Judging a soak run and reporting it: the checks, the RSS rule, Markdown and JSON.

use std::fmt::Write as _;

use serde_json::json;

use crate::server::ServerStats;
use crate::Options;

/// What the clients saw, all together.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) bad: u64,
    /// Connections that ended: seconds after the window started, and why.
    pub(crate) failures: Vec<(f64, String)>,
    /// Every publish→deliver latency, µs, of the ticks in each third of the window, sorted.
    pub(crate) latencies_us: [Vec<u32>; 3],
    /// Clients that had every tick when the readers were stopped.
    pub(crate) complete: usize,
}

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) broadcasts: u64,
    pub(crate) connect_secs: f64,
    pub(crate) window_secs: f64,
    pub(crate) cpu_secs: f64,
    /// This process's (the clients') CPU time in the window.
    pub(crate) client_cpu_secs: f64,
    /// `/proc/loadavg` (1, 5, 15 min) before the run.
    pub(crate) load_before: String,
    /// Server RSS before any client, with every client connected (the window's start), when
    /// the clients had every tick, and once every session had left.
    pub(crate) rss_start_kib: u64,
    pub(crate) rss_connected_kib: u64,
    pub(crate) rss_end_kib: u64,
    pub(crate) rss_left_kib: u64,
    /// (seconds into the window, RSS KiB).
    pub(crate) samples: Vec<(f64, u64)>,
    /// (seconds into the window, server CPU seconds since the window started), sampled
    /// with RSS, and once more at the window's end.
    pub(crate) cpu_samples: Vec<(f64, f64)>,
    /// The server's counters right after its last broadcast, and once its writers settled.
    pub(crate) at_done: ServerStats,
    pub(crate) server: ServerStats,
    pub(crate) clients: Clients,
    pub(crate) sessions_left: usize,
    pub(crate) leave_secs: f64,
    pub(crate) closed_after_leaving: u64,
}

/// The RSS rule's allowance: this fraction of the middle third's mean, or [`MIN_ALLOWANCE_KIB`].
const ALLOWANCE: f64 = 0.02;
const MIN_ALLOWANCE_KIB: f64 = 1024.0;

/// The RSS verdict. The window's first third is warm-up; the mean of the last third may
/// exceed the mean of the middle third by the allowance at most, and so may the rise of the
/// least-squares line through the last two thirds.
#[derive(Debug)]
pub(crate) struct Rss {
    pub(crate) middle_mean_kib: f64,
    pub(crate) last_mean_kib: f64,
    pub(crate) growth_kib: f64,
    pub(crate) slope_kib_per_min: f64,
    /// The fitted line's rise over the last two thirds.
    pub(crate) rise_kib: f64,
    pub(crate) allowance_kib: f64,
    pub(crate) judged_samples: usize,
    pub(crate) stable: bool,
    /// Why it could not be judged, if so.
    pub(crate) problem: Option<String>,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Least-squares slope of `points`, per unit of x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (mx, my) = (mean(&xs), mean(&ys));
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

pub(crate) fn judge_rss(samples: &[(f64, u64)], window_secs: f64) -> Rss {
    let third = window_secs / 3.0;
    let judged: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= third)
        .map(|&(t, kib)| (t, kib as f64))
        .collect();
    let middle: Vec<f64> = judged
        .iter()
        .filter(|(t, _)| *t < 2.0 * third)
        .map(|p| p.1)
        .collect();
    let last: Vec<f64> = judged
        .iter()
        .filter(|(t, _)| *t >= 2.0 * third)
        .map(|p| p.1)
        .collect();
    let middle_mean_kib = mean(&middle);
    let last_mean_kib = mean(&last);
    let slope_kib_per_s = slope(&judged);
    let rise_kib = slope_kib_per_s * 2.0 * third;
    let allowance_kib = (middle_mean_kib * ALLOWANCE).max(MIN_ALLOWANCE_KIB);
    let growth_kib = last_mean_kib - middle_mean_kib;
    let problem = (middle.len() < 2 || last.len() < 2).then(|| {
        format!(
            "too few samples to judge: {} in the middle third, {} in the last",
            middle.len(),
            last.len()
        )
    });
    Rss {
        middle_mean_kib,
        last_mean_kib,
        growth_kib,
        slope_kib_per_min: slope_kib_per_s * 60.0,
        rise_kib,
        allowance_kib,
        judged_samples: judged.len(),
        stable: problem.is_none() && growth_kib <= allowance_kib && rise_kib <= allowance_kib,
        problem,
    }
}

/// The server's CPU use (% of one core) in each third of the window, from the samples
/// nearest to the thirds' bounds.
fn cpu_by_third(points: &[(f64, f64)], window_secs: f64) -> [f64; 3] {
    let nearest = |at: f64| {
        points
            .iter()
            .copied()
            .min_by(|a, b| (a.0 - at).abs().total_cmp(&(b.0 - at).abs()))
            .unwrap_or((at, 0.0))
    };
    std::array::from_fn(|k| {
        let (t0, cpu0) = nearest(window_secs * k as f64 / 3.0);
        let (t1, cpu1) = nearest(window_secs * (k + 1) as f64 / 3.0);
        if t1 > t0 {
            100.0 * (cpu1 - cpu0) / (t1 - t0)
        } else {
            f64::NAN
        }
    })
}

/// The `p`th percentile (0–100) of sorted samples, nearest rank; 0 when there are none.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn ms(us: u32) -> String {
    format!("{:.1} ms", f64::from(us) / 1000.0)
}

/// One line of the verdict.
#[derive(Debug)]
struct Check {
    name: &'static str,
    value: String,
    ok: bool,
}

/// A judged run.
#[derive(Debug)]
pub(crate) struct Report {
    options: Options,
    command: String,
    source: serde_json::Value,
    run: Run,
    rss: Rss,
    checks: Vec<Check>,
    /// Every latency sample, sorted.
    latencies_us: Vec<u32>,
}

impl Report {
    pub(crate) fn new(
        options: &Options,
        command: String,
        source: serde_json::Value,
        run: Run,
    ) -> Self {
        let rss = judge_rss(&run.samples, run.window_secs);
        let checks = checks(options, &run, &rss);
        let mut latencies_us = run.clients.latencies_us.concat();
        latencies_us.sort_unstable();
        Self {
            options: options.clone(),
            command,
            source,
            run,
            rss,
            checks,
            latencies_us,
        }
    }

    /// Whether every check passed.
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn expected(&self) -> u64 {
        self.run.broadcasts * self.options.conns as u64
    }

    pub(crate) fn markdown(&self) -> String {
        let (o, r, rss) = (&self.options, &self.run, &self.rss);
        let lat = &self.latencies_us;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Soak: {} connections, {} broadcasts, one every {} ms\n",
            thousands(o.conns as u64),
            thousands(r.broadcasts),
            o.period.as_millis()
        );
        let _ = writeln!(md, "Command: `{}`\n", self.command);
        let head = self.source["head"].as_str().unwrap_or("?");
        let changed = self.source["uncommitted_crimson_changes"]
            .as_array()
            .map_or(0, Vec::len);
        let _ = writeln!(
            md,
            "Commit `{head}`{}; {} CPUs, load average {} before the run.\n",
            if changed == 0 {
                ", no uncommitted Crimson changes".to_owned()
            } else {
                format!(", {changed} uncommitted change(s) in crimson-core/crimson-axum")
            },
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            r.load_before,
        );
        let _ = writeln!(
            md,
            "**{}**\n",
            if self.passed() { "PASSED" } else { "FAILED" }
        );
        md.push_str("| check | result | ok |\n|---|---|---|\n");
        for check in &self.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                check.name,
                check.value,
                if check.ok { "✅" } else { "❌" }
            );
        }
        md.push_str("\n| figure | value |\n|---|---|\n");
        let mut figure = |name: &str, value: String| {
            let _ = writeln!(md, "| {name} | {value} |");
        };
        figure(
            "connect",
            format!(
                "{} connections in {:.1} s ({}/s, {} at a time)",
                thousands(o.conns as u64),
                r.connect_secs,
                thousands((o.conns as f64 / r.connect_secs.max(1e-9)) as u64),
                o.concurrency
            ),
        );
        figure(
            "window",
            format!(
                "{:.1} s: {} broadcasts, {} deliveries ({}/s)",
                r.window_secs,
                thousands(r.server.broadcasts),
                thousands(r.clients.received),
                thousands((r.clients.received as f64 / r.window_secs.max(1e-9)) as u64)
            ),
        );
        figure(
            "publish→deliver latency",
            format!(
                "p50 {}, p99 {}, p99.9 {}, max {}",
                ms(percentile(lat, 50.0)),
                ms(percentile(lat, 99.0)),
                ms(percentile(lat, 99.9)),
                ms(lat.last().copied().unwrap_or(0)),
            ),
        );
        let thirds: Vec<String> = r
            .clients
            .latencies_us
            .iter()
            .map(|third| {
                format!(
                    "{} / {}",
                    ms(percentile(third, 50.0)),
                    ms(percentile(third, 99.0))
                )
            })
            .collect();
        figure(
            "latency p50 / p99 in each third of the window",
            thirds.join(" · "),
        );
        figure(
            "slowest broadcast call (queueing for every session)",
            ms(r.server.slowest_broadcast_us.min(u64::from(u32::MAX)) as u32),
        );
        figure(
            "server CPU in the window",
            format!(
                "{:.2} s ({:.1} % of one core), {:.2} µs per delivery",
                r.cpu_secs,
                100.0 * r.cpu_secs / r.window_secs.max(1e-9),
                r.cpu_secs * 1e6 / r.clients.received.max(1) as f64
            ),
        );
        let cpu_thirds = cpu_by_third(&r.cpu_samples, r.window_secs);
        figure(
            "server CPU in each third of the window",
            cpu_thirds
                .iter()
                .map(|pct| format!("{pct:.1} %"))
                .collect::<Vec<_>>()
                .join(" · "),
        );
        figure(
            "client process CPU in the window",
            format!(
                "{:.2} s ({:.1} % of one core)",
                r.client_cpu_secs,
                100.0 * r.client_cpu_secs / r.window_secs.max(1e-9)
            ),
        );
        let per_conn = |kib: f64| (kib - r.rss_start_kib as f64) / o.conns as f64;
        figure(
            "server RSS: no clients → all connected",
            format!(
                "{} → {} ({:.1} KiB per connection)",
                mib(r.rss_start_kib as f64),
                mib(r.rss_connected_kib as f64),
                per_conn(r.rss_connected_kib as f64)
            ),
        );
        figure(
            "server RSS: middle third → last third (means)",
            format!(
                "{} → {} ({:+.0} KiB, {:+.2} %; {:.1} KiB per connection)",
                mib(rss.middle_mean_kib),
                mib(rss.last_mean_kib),
                rss.growth_kib,
                100.0 * rss.growth_kib / rss.middle_mean_kib.max(1.0),
                per_conn(rss.last_mean_kib)
            ),
        );
        figure(
            "server RSS slope over the last two thirds",
            format!(
                "{:+.0} KiB/min ({} samples; rise {:+.0} KiB, allowed {:.0})",
                rss.slope_kib_per_min, rss.judged_samples, rss.rise_kib, rss.allowance_kib
            ),
        );
        figure(
            "server RSS: end of run → every session gone",
            format!(
                "{} → {} ({:.1} s after the clients reset)",
                mib(r.rss_end_kib as f64),
                mib(r.rss_left_kib as f64),
                r.leave_secs
            ),
        );
        if !r.clients.failures.is_empty() {
            md.push_str("\nConnections that failed (first 20):\n\n");
            for (at, why) in r.clients.failures.iter().take(20) {
                let _ = writeln!(md, "- at {at:.2} s: {why}");
            }
        }
        if !r.server.first_errors.is_empty() {
            md.push_str("\nServer session errors (first 10):\n\n");
            for err in &r.server.first_errors {
                let _ = writeln!(md, "- {err}");
            }
        }
        md.push_str(
            "\nServer samples (seconds into the window; CPU seconds since it started):\n\n\
             | t [s] | RSS [KiB] | CPU [s] |\n|---:|---:|---:|\n",
        );
        for (i, (t, kib)) in r.samples.iter().enumerate() {
            let cpu = r.cpu_samples.get(i).map_or(f64::NAN, |c| c.1);
            let _ = writeln!(md, "| {t:.1} | {} | {cpu:.2} |", thousands(*kib));
        }
        md
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let (o, r, rss) = (&self.options, &self.run, &self.rss);
        let lat = &self.latencies_us;
        let by_third: Vec<_> = r
            .clients
            .latencies_us
            .iter()
            .map(|third| {
                json!({
                    "samples": third.len(),
                    "p50": percentile(third, 50.0),
                    "p99": percentile(third, 99.0),
                    "max": third.last().copied().unwrap_or(0),
                })
            })
            .collect();
        json!({
            "command": self.command,
            "source": self.source,
            "passed": self.passed(),
            "settings": {
                "conns": o.conns,
                "secs": o.secs,
                "period_ms": o.period.as_millis() as u64,
                "broadcasts": r.broadcasts,
                "connect_concurrency": o.concurrency,
                "sample_ms": o.sample.as_millis() as u64,
                "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            },
            "checks": self.checks.iter().map(|c| json!({
                "check": c.name, "result": c.value, "ok": c.ok,
            })).collect::<Vec<_>>(),
            "clients": {
                "expected": self.expected(),
                "received": r.clients.received,
                "lost": r.clients.lost,
                "duplicated_or_reordered": r.clients.bad,
                "complete": r.clients.complete,
                "failures": r.clients.failures.iter()
                    .map(|(at, why)| json!({ "at_s": at, "why": why }))
                    .collect::<Vec<_>>(),
            },
            "server_at_last_broadcast": r.at_done,
            "server": r.server,
            "latency_us": {
                "samples": lat.len(),
                "p50": percentile(lat, 50.0),
                "p90": percentile(lat, 90.0),
                "p99": percentile(lat, 99.0),
                "p99_9": percentile(lat, 99.9),
                "max": lat.last().copied().unwrap_or(0),
                "by_third_of_the_window": by_third,
            },
            "connect_s": r.connect_secs,
            "window_s": r.window_secs,
            "server_cpu_s": r.cpu_secs,
            "server_cpu_pct_by_third": cpu_by_third(&r.cpu_samples, r.window_secs),
            "server_cpu_samples": r.cpu_samples.iter()
                .map(|(t, cpu)| json!({ "t_s": t, "cpu_s": cpu }))
                .collect::<Vec<_>>(),
            "client_cpu_s": r.client_cpu_secs,
            "load_average_before": r.load_before,
            "rss_kib": {
                "start": r.rss_start_kib,
                "connected": r.rss_connected_kib,
                "end": r.rss_end_kib,
                "after_sessions_left": r.rss_left_kib,
                "middle_third_mean": rss.middle_mean_kib,
                "last_third_mean": rss.last_mean_kib,
                "growth": rss.growth_kib,
                "slope_per_min": rss.slope_kib_per_min,
                "rise": rss.rise_kib,
                "allowance": rss.allowance_kib,
                "stable": rss.stable,
                "rule": "first third of the window is warm-up; stable when mean(last third) − \
                         mean(middle third) and the least-squares rise over the last two thirds \
                         are both ≤ max(2 % of mean(middle third), 1024 KiB)",
                "samples": r.samples.iter()
                    .map(|(t, kib)| json!({ "t_s": t, "kib": kib }))
                    .collect::<Vec<_>>(),
            },
            "leak_check": {
                "sessions_left": r.sessions_left,
                "seconds": r.leave_secs,
                "closed_total": r.closed_after_leaving,
            },
        })
    }
}

fn checks(options: &Options, run: &Run, rss: &Rss) -> Vec<Check> {
    let conns = options.conns as u64;
    let expected = run.broadcasts * conns;
    let (s, c) = (&run.server, &run.clients);
    let server_losses = s.dropped_oldest + s.failed + s.outbox_dropped + s.broadcast_errors;
    vec![
        Check {
            name: "messages lost (gaps, or missing at the end)",
            value: thousands(c.lost),
            ok: c.lost == 0,
        },
        Check {
            name: "messages duplicated or out of order",
            value: thousands(c.bad),
            ok: c.bad == 0,
        },
        Check {
            name: "broadcasts made by the server",
            value: format!(
                "{} of {}",
                thousands(s.broadcasts),
                thousands(run.broadcasts)
            ),
            ok: s.broadcasts == run.broadcasts,
        },
        Check {
            name: "queued by the server = broadcasts × connections",
            value: format!("{} = {}", thousands(s.queued), thousands(expected)),
            ok: s.queued == expected,
        },
        Check {
            name: "sent by the server = received by the clients",
            value: format!(
                "{} sent, {} received",
                thousands(s.outbox_sent),
                thousands(c.received)
            ),
            ok: s.outbox_sent == expected && c.received == expected,
        },
        Check {
            name: "dropped or refused by the server",
            value: format!(
                "{} (dropped oldest {}, failed {}, dropped by writers {}, broadcast errors {})",
                server_losses, s.dropped_oldest, s.failed, s.outbox_dropped, s.broadcast_errors
            ),
            ok: server_losses == 0,
        },
        Check {
            name: "connections that failed during the run",
            value: format!(
                "{} seen by clients, {} closed on the server, {} session errors",
                c.failures.len(),
                s.closed_total(),
                s.errors
            ),
            ok: c.failures.is_empty() && s.closed_total() == 0 && s.errors == 0,
        },
        Check {
            name: "sessions in the cluster at the end",
            value: format!("{} of {}", thousands(s.sessions as u64), thousands(conns)),
            ok: s.sessions == options.conns,
        },
        Check {
            name: "server RSS stable",
            value: match &rss.problem {
                Some(problem) => problem.clone(),
                None => format!(
                    "last third {:+.2} % over the middle third, slope {:+.0} KiB/min \
                     (allowed: {:.0} KiB either way)",
                    100.0 * rss.growth_kib / rss.middle_mean_kib.max(1.0),
                    rss.slope_kib_per_min,
                    rss.allowance_kib
                ),
            },
            ok: rss.stable,
        },
        Check {
            name: "sessions left after the clients reset their connections",
            value: format!("{} after {:.1} s", run.sessions_left, run.leave_secs),
            ok: run.sessions_left == 0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_memory_is_stable_and_growing_memory_is_not() {
        let flat: Vec<(f64, u64)> = (0..=30).map(|i| (i as f64 * 2.0, 150_000)).collect();
        let rss = judge_rss(&flat, 60.0);
        assert!(rss.stable, "{rss:?}");
        assert_eq!(rss.growth_kib, 0.0);
        // 100 KiB/s for a minute: 2 MB between the thirds' means, past the 3 MB allowance
        // in the fitted line's rise (4 MB over 40 s).
        let growing: Vec<(f64, u64)> = (0..=30)
            .map(|i| (i as f64 * 2.0, 150_000 + i * 200))
            .collect();
        let rss = judge_rss(&growing, 60.0);
        assert!(!rss.stable, "{rss:?}");
        assert!((rss.slope_kib_per_min - 6000.0).abs() < 1.0, "{rss:?}");
    }

    #[test]
    fn too_few_samples_is_not_stable() {
        let rss = judge_rss(&[(0.0, 1), (50.0, 1)], 60.0);
        assert!(!rss.stable && rss.problem.is_some());
    }

    #[test]
    fn cpu_by_third_reads_the_slope_of_each_third() {
        // Half a core, then a whole one, then none.
        let points = [(0.0, 0.0), (10.0, 5.0), (20.0, 15.0), (30.0, 15.0)];
        assert_eq!(cpu_by_third(&points, 30.0), [50.0, 100.0, 0.0]);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(6_000_000), "6,000,000");
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
