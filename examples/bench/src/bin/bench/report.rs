//! Results: medians of the A/B rounds, the markdown table, `bench-results.json`, the chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::prelude::*;
use serde_json::json;

use crate::server::Impl;

/// One run's measurements, by metric key.
pub(crate) type Values = BTreeMap<&'static str, f64>;

/// What a metric must reach.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Crimson / baseline at least this.
    RatioAtLeast(f64),
    /// Crimson / baseline at most this.
    RatioAtMost(f64),
    /// Crimson's own value at most this (in the metric's unit).
    AtMost(f64),
    /// Crimson's own value at least this (in the metric's unit).
    AtLeast(f64),
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Self::RatioAtLeast(r) => format!("ratio ≥ {r:.2}"),
            Self::RatioAtMost(r) => format!("ratio ≤ {r:.2}"),
            Self::AtMost(v) => format!("≤ {v} {unit}"),
            Self::AtLeast(v) => format!("≥ {v} {unit}"),
        }
    }

    fn met(self, crimson: f64, ratio: f64) -> bool {
        match self {
            Self::RatioAtLeast(r) => ratio >= r,
            Self::RatioAtMost(r) => ratio <= r,
            Self::AtMost(v) => crimson <= v,
            Self::AtLeast(v) => crimson >= v,
        }
    }
}

/// How one metric is read from the runs and judged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) higher_is_better: bool,
    /// Judged on Crimson / raw axum with Crimson's buffer sizes (`raw-tuned`: what the
    /// framework costs), or on Crimson's own value.
    pub(crate) target: Option<Target>,
}

/// One scenario's runs, by implementation, in round order.
#[derive(Debug)]
pub(crate) struct ScenarioResult {
    pub(crate) name: String,
    pub(crate) detail: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) runs: Runs,
}

/// What the rounds of one scenario gave, by implementation.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    /// The values of each run that finished, in round order.
    pub(crate) done: BTreeMap<Impl, Vec<Values>>,
    /// Why each failed run failed, in round order.
    pub(crate) failed: BTreeMap<Impl, Vec<String>>,
    /// Implementations that cannot run this scenario, and why (shown as "n/a: why").
    pub(crate) unsupported: BTreeMap<Impl, &'static str>,
}

/// One implementation's values of a metric and their median.
struct Column {
    rounds: Vec<f64>,
    median: f64,
    /// Why there is no median: "n/a: …", "failed", "not run".
    missing: Option<String>,
}

impl Column {
    /// The median as a table cell, or why there is none.
    fn cell(&self) -> String {
        match &self.missing {
            Some(why) if !self.median.is_finite() => why.clone(),
            _ => number(self.median),
        }
    }
}

/// A metric summed up: medians, the ratios and the verdict.
struct Row<'a> {
    scenario: &'a ScenarioResult,
    metric: Metric,
    crimson: Column,
    raw: Column,
    tuned: Column,
    /// The peer framework (`PEER`).
    peer: Column,
    /// Crimson / raw axum with its defaults.
    ratio: f64,
    /// Crimson / raw axum with Crimson's buffer sizes: what ratio targets judge (issue 13).
    ratio_tuned: f64,
    /// The peer framework / raw axum with its defaults, to set beside `ratio`.
    ratio_peer: f64,
    met: Option<bool>,
}

/// What recording metrics costs: each of the scenario's figures with a Prometheus recorder
/// installed (`crimson-metrics`) against Crimson without one, medians of the same run, on
/// stderr. Nothing when `--impls` did not name `crimson-metrics`.
pub(crate) fn metrics_cost(label: &str, runs: &Runs) {
    let (Some(with), Some(without)) = (
        runs.done.get(&Impl::CrimsonMetrics),
        runs.done.get(&Impl::Crimson),
    ) else {
        return;
    };
    let keys: Vec<&'static str> = with
        .iter()
        .flat_map(|values| values.keys().copied())
        .collect();
    let mut shown = Vec::new();
    for key in keys.into_iter().collect::<std::collections::BTreeSet<_>>() {
        let of = |runs: &[Values]| -> f64 {
            median(
                &runs
                    .iter()
                    .filter_map(|v| v.get(key).copied())
                    .collect::<Vec<_>>(),
            )
        };
        let (with, without) = (of(with), of(without));
        shown.push(format!(
            "{key}={with:.2}/{without:.2} ({:+.1}%)",
            (with / without - 1.0) * 100.0
        ));
    }
    eprintln!(
        "[{label}] crimson-metrics vs crimson (medians): {}",
        shown.join(" ")
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn rows(results: &[ScenarioResult]) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for scenario in results {
        let runs = &scenario.runs;
        let column = |which: Impl, key: &str| -> Column {
            let rounds: Vec<f64> = runs
                .done
                .get(&which)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get(key).copied())
                .collect();
            let missing = if let Some(why) = runs.unsupported.get(&which) {
                Some(format!("n/a: {why}"))
            } else if runs.failed.contains_key(&which) && rounds.is_empty() {
                Some("failed".to_owned())
            } else if rounds.is_empty() {
                Some("not run".to_owned())
            } else {
                None
            };
            Column {
                median: median(&rounds),
                rounds,
                missing,
            }
        };
        for &metric in &scenario.metrics {
            let crimson = column(Impl::Crimson, metric.key);
            let raw = column(Impl::Raw, metric.key);
            let tuned = column(Impl::RawTuned, metric.key);
            let peer = column(Impl::Ezsockets, metric.key);
            let ratio = crimson.median / raw.median;
            let ratio_tuned = crimson.median / tuned.median;
            let ratio_peer = peer.median / raw.median;
            let met = metric
                .target
                .filter(|_| crimson.median.is_finite())
                .map(|t| t.met(crimson.median, ratio_tuned));
            rows.push(Row {
                scenario,
                metric,
                crimson,
                raw,
                tuned,
                peer,
                ratio,
                ratio_tuned,
                ratio_peer,
                met,
            });
        }
    }
    rows
}

fn number(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v.abs() >= 1000.0 {
        // Thousands separated by commas, no decimals.
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio_text(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}")
    } else {
        "–".to_owned()
    }
}

/// The results as a markdown table.
pub(crate) fn table(results: &[ScenarioResult]) -> String {
    let peer = Impl::Ezsockets.name();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | metric | Crimson | raw axum | raw axum, tuned | {peer} | Crimson / raw | Crimson / tuned | {peer} / raw | target | met |",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for row in rows(results) {
        let m = row.metric;
        let better = if m.higher_is_better { "↑" } else { "↓" };
        let target = m.target.map_or_else(|| "–".to_owned(), |t| t.text(m.unit));
        let met = match row.met {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} ({}) | {} {better} [{}] | {} | {} | {} | {} | {} | {} | {} | {target} | {met} |",
            row.scenario.name,
            row.scenario.detail,
            m.label,
            m.unit,
            row.crimson.cell(),
            row.raw.cell(),
            row.tuned.cell(),
            row.peer.cell(),
            ratio_text(row.ratio),
            ratio_text(row.ratio_tuned),
            ratio_text(row.ratio_peer),
        );
    }
    out
}

/// The results as JSON: every metric's per-round values, medians, Crimson/raw ratios and the
/// peer framework's ratios to raw axum.
pub(crate) fn json(results: &[ScenarioResult], meta: serde_json::Value) -> serde_json::Value {
    let finite = |v: f64| v.is_finite().then_some(v);
    let column = |c: &Column| json!({ "median": finite(c.median), "rounds": c.rounds, "missing": c.missing });
    let mut scenarios = Vec::new();
    for scenario in results {
        let metrics: Vec<_> = rows(std::slice::from_ref(scenario))
            .into_iter()
            .map(|row| {
                let m = row.metric;
                json!({
                    "metric": m.key,
                    "label": m.label,
                    "unit": m.unit,
                    "higher_is_better": m.higher_is_better,
                    "crimson": column(&row.crimson),
                    "raw": column(&row.raw),
                    "raw_tuned": column(&row.tuned),
                    "ezsockets": column(&row.peer),
                    "ratio": finite(row.ratio),
                    "ratio_vs_raw_tuned": finite(row.ratio_tuned),
                    "ratio_ezsockets_vs_raw": finite(row.ratio_peer),
                    "target": m.target.map(|t| t.text(m.unit)),
                    "met": row.met,
                })
            })
            .collect();
        let failed: BTreeMap<&str, &Vec<String>> = scenario
            .runs
            .failed
            .iter()
            .map(|(which, why)| (which.name(), why))
            .collect();
        let unsupported: BTreeMap<&str, &str> = scenario
            .runs
            .unsupported
            .iter()
            .map(|(which, why)| (which.name(), *why))
            .collect();
        scenarios.push(json!({
            "scenario": scenario.name,
            "detail": scenario.detail,
            "ran": scenario.runs.done.keys().map(|which| which.name()).collect::<Vec<_>>(),
            "failed_runs": failed,
            "unsupported": unsupported,
            "metrics": metrics,
        }));
    }
    json!({ "meta": meta, "scenarios": scenarios })
}

/// A horizontal bar chart of every metric's Crimson / raw axum ratio (coloured by its
/// target), Crimson / raw axum with tuned buffers (grey) and the peer framework / raw axum
/// (orange), with 1.0 and each target marked.
pub(crate) fn chart(results: &[ScenarioResult], path: &Path, caption: &str) -> io::Result<()> {
    let rows: Vec<Row<'_>> = rows(results)
        .into_iter()
        .filter(|r| {
            [r.ratio, r.ratio_tuned, r.ratio_peer]
                .iter()
                .any(|v| v.is_finite())
        })
        .collect();
    let bar = 42i32;
    let top = 90i32;
    let left = 520i32;
    let width = 1250i32;
    let plot = width - left - 60;
    let height = top + bar * rows.len().max(1) as i32 + 50;
    let max = rows
        .iter()
        .flat_map(|r| [r.ratio, r.ratio_tuned, r.ratio_peer])
        .filter(|r| r.is_finite())
        .fold(1.5f64, f64::max)
        .min(25.0)
        * 1.1;
    let x = |ratio: f64| left + (ratio.clamp(0.0, max) / max * plot as f64) as i32;
    let err = |e: DrawingAreaErrorKind<_>| io::Error::other(e.to_string());

    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let font = |size: i32| ("sans-serif", size).into_font();
    root.draw(&Text::new(caption.to_owned(), (20, 12), font(24)))
        .map_err(err)?;
    let legend = [
        "Top bar: Crimson / raw axum, coloured by the verdict (green: met, red: missed, blue: \
         no target); ratio targets judge Crimson / tuned, the black tick marks them. Dashed: 1.0."
            .to_owned(),
        format!(
            "Middle (grey): Crimson / raw axum with Crimson's buffer sizes. \
             Bottom (orange): {} / raw axum.",
            Impl::Ezsockets.name()
        ),
    ];
    for (i, line) in legend.into_iter().enumerate() {
        root.draw(&Text::new(line, (20, 42 + 20 * i as i32), font(15)))
            .map_err(err)?;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + bar * i as i32;
        let m = row.metric;
        let better = if m.higher_is_better { "↑" } else { "↓" };
        let mut label = format!(
            "{} {}: {} {better}",
            row.scenario.name, row.scenario.detail, m.label
        );
        if let Some(Target::AtMost(limit)) = m.target {
            // The colour judges Crimson's own value here, not the ratio.
            label.push_str(&format!(
                " (Crimson {} {}, target ≤ {limit})",
                number(row.crimson.median),
                m.unit
            ));
        }
        root.draw(&Text::new(label, (10, y + 14), font(15)))
            .map_err(err)?;
        let color = match row.met {
            Some(true) => RGBColor(60, 160, 80),
            Some(false) => RGBColor(200, 60, 50),
            None => RGBColor(90, 120, 190),
        };
        let bars = [
            (row.ratio, color, y + 3, y + 15),
            (row.ratio_tuned, RGBColor(170, 170, 170), y + 16, y + 27),
            (row.ratio_peer, RGBColor(235, 150, 50), y + 28, y + bar - 3),
        ];
        for (ratio, color, y0, y1) in bars {
            if !ratio.is_finite() {
                continue;
            }
            root.draw(&Rectangle::new(
                [(left, y0), (x(ratio), y1)],
                color.filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                format!("{ratio:.2}"),
                (x(ratio) + 4, y0),
                font(13),
            ))
            .map_err(err)?;
        }
        if let Some(Target::RatioAtLeast(t) | Target::RatioAtMost(t)) = m.target {
            root.draw(&PathElement::new(
                vec![(x(t), y + 1), (x(t), y + 17)],
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
        }
    }
    // The 1.0 line, dashed, and the axis.
    let bottom = top + bar * rows.len() as i32;
    let one = x(1.0);
    let mut y = top;
    while y < bottom {
        root.draw(&PathElement::new(
            vec![(one, y), (one, (y + 4).min(bottom))],
            BLACK,
        ))
        .map_err(err)?;
        y += 8;
    }
    root.draw(&PathElement::new(
        vec![(left, bottom), (left + plot, bottom)],
        BLACK,
    ))
    .map_err(err)?;
    let step = if max > 10.0 {
        2.0
    } else if max > 4.0 {
        1.0
    } else {
        0.5
    };
    let mut tick = 0.0;
    while tick <= max {
        root.draw(&Text::new(
            format!("{tick:.1}"),
            (x(tick) - 8, bottom + 8),
            font(14),
        ))
        .map_err(err)?;
        tick += step;
    }
    root.present().map_err(err)
}
