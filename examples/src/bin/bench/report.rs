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
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Self::RatioAtLeast(r) => format!("ratio ≥ {r:.2}"),
            Self::RatioAtMost(r) => format!("ratio ≤ {r:.2}"),
            Self::AtMost(v) => format!("≤ {v} {unit}"),
        }
    }

    fn met(self, crimson: f64, ratio: f64) -> bool {
        match self {
            Self::RatioAtLeast(r) => ratio >= r,
            Self::RatioAtMost(r) => ratio <= r,
            Self::AtMost(v) => crimson <= v,
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
    /// Judged on Crimson / raw axum (default settings), or on Crimson's own value.
    pub(crate) target: Option<Target>,
}

/// One scenario's runs, by implementation, in round order.
#[derive(Debug)]
pub(crate) struct ScenarioResult {
    pub(crate) name: String,
    pub(crate) detail: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) runs: BTreeMap<Impl, Vec<Values>>,
}

/// One implementation's values of a metric and their median.
struct Column {
    rounds: Vec<f64>,
    median: f64,
}

/// A metric summed up: medians, the ratios and the verdict.
struct Row<'a> {
    scenario: &'a ScenarioResult,
    metric: Metric,
    crimson: Column,
    raw: Column,
    tuned: Column,
    /// Crimson / raw axum with its defaults: what targets judge.
    ratio: f64,
    /// Crimson / raw axum with Crimson's buffer sizes.
    ratio_tuned: f64,
    met: Option<bool>,
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
        let column = |which: Impl, key: &str| -> Column {
            let rounds: Vec<f64> = scenario
                .runs
                .get(&which)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get(key).copied())
                .collect();
            Column {
                median: median(&rounds),
                rounds,
            }
        };
        for &metric in &scenario.metrics {
            let crimson = column(Impl::Crimson, metric.key);
            let raw = column(Impl::Raw, metric.key);
            let tuned = column(Impl::RawTuned, metric.key);
            let ratio = crimson.median / raw.median;
            let ratio_tuned = crimson.median / tuned.median;
            let met = metric
                .target
                .filter(|_| crimson.median.is_finite())
                .map(|t| t.met(crimson.median, ratio));
            rows.push(Row {
                scenario,
                metric,
                crimson,
                raw,
                tuned,
                ratio,
                ratio_tuned,
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
    let mut out = String::new();
    out.push_str(
        "| scenario | metric | Crimson | raw axum | raw axum, tuned | Crimson / raw | Crimson / tuned | target | met |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|---|\n");
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
            "| {} ({}) | {} {better} [{}] | {} | {} | {} | {} | {} | {target} | {met} |",
            row.scenario.name,
            row.scenario.detail,
            m.label,
            m.unit,
            number(row.crimson.median),
            number(row.raw.median),
            number(row.tuned.median),
            ratio_text(row.ratio),
            ratio_text(row.ratio_tuned),
        );
    }
    out
}

/// The results as JSON: every metric's per-round values, medians and Crimson/raw ratios.
pub(crate) fn json(results: &[ScenarioResult], meta: serde_json::Value) -> serde_json::Value {
    let finite = |v: f64| v.is_finite().then_some(v);
    let column = |c: &Column| json!({ "median": finite(c.median), "rounds": c.rounds });
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
                    "ratio": finite(row.ratio),
                    "ratio_vs_raw_tuned": finite(row.ratio_tuned),
                    "target": m.target.map(|t| t.text(m.unit)),
                    "met": row.met,
                })
            })
            .collect();
        scenarios.push(json!({
            "scenario": scenario.name,
            "detail": scenario.detail,
            "metrics": metrics,
        }));
    }
    json!({ "meta": meta, "scenarios": scenarios })
}

/// A horizontal bar chart of every metric's Crimson / raw axum ratio (coloured by its
/// target) and Crimson / raw axum with tuned buffers (grey), with 1.0 and each target marked.
pub(crate) fn chart(results: &[ScenarioResult], path: &Path, caption: &str) -> io::Result<()> {
    let rows: Vec<Row<'_>> = rows(results)
        .into_iter()
        .filter(|r| r.ratio.is_finite() || r.ratio_tuned.is_finite())
        .collect();
    let bar = 30i32;
    let top = 70i32;
    let left = 520i32;
    let width = 1250i32;
    let plot = width - left - 60;
    let height = top + bar * rows.len().max(1) as i32 + 50;
    let max = rows
        .iter()
        .flat_map(|r| [r.ratio, r.ratio_tuned])
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
    root.draw(&Text::new(
        "Upper bar: Crimson / raw axum (green: target met, red: missed, blue: no target). \
         Lower bar: Crimson / raw axum with Crimson's buffer sizes. Black tick: target; dashed: 1.0."
            .to_owned(),
        (20, 44),
        font(15),
    ))
    .map_err(err)?;
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
        root.draw(&Text::new(label, (10, y + 8), font(15)))
            .map_err(err)?;
        let color = match row.met {
            Some(true) => RGBColor(60, 160, 80),
            Some(false) => RGBColor(200, 60, 50),
            None => RGBColor(90, 120, 190),
        };
        let bars = [
            (row.ratio, color, y + 3, y + 16),
            (
                row.ratio_tuned,
                RGBColor(170, 170, 170),
                y + 17,
                y + bar - 4,
            ),
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
                vec![(x(t), y + 1), (x(t), y + 18)],
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
