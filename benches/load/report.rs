//! Results: percentiles, the summary table, the JSON file and the latency plot (SVG).
//!
//! Every scenario fills one [`Run`] per system it measured (the hub, the raw-stack baseline)
//! and hands them to [`Report::finish`], which prints the table with the ratio of each figure
//! to the baseline, writes `<out>/<scenario>.json` and `<out>/<scenario>-latency.svg`, and
//! tells whether nothing was lost, duplicated or out of order.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Map, Value};

/// One figure of a run.
#[derive(Clone, Debug)]
pub struct Metric {
    /// The key in the JSON file.
    pub key: String,
    /// The unit shown in the table (may be empty).
    pub unit: &'static str,
    /// The value.
    pub value: f64,
}

/// What one system (the hub or the baseline) did in a scenario.
#[derive(Debug, Default)]
pub struct Run {
    /// `hub` or `baseline`.
    pub label: String,
    /// The figures, in table order.
    pub metrics: Vec<Metric>,
    /// Latencies in milliseconds, for the plot and the percentiles.
    pub latencies_ms: Vec<f64>,
    /// Expected notifications that never arrived.
    pub lost: u64,
    /// Notifications that arrived more than once.
    pub duplicated: u64,
    /// Notifications that arrived after one with a larger seq, or that nobody expected.
    pub out_of_order: u64,
    /// Notifications nobody expected (a recipient the routing table does not name).
    pub unexpected: u64,
    /// Other reasons the run failed (a bound broken, a call refused).
    pub failures: Vec<String>,
    /// Anything else worth keeping in the JSON file (per-step tables and the like).
    pub extra: Value,
}

impl Run {
    /// An empty run for one system.
    pub fn new(label: &str) -> Self {
        Run {
            label: label.to_owned(),
            extra: Value::Null,
            ..Default::default()
        }
    }

    /// Adds a figure.
    pub fn metric(&mut self, key: &str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            key: key.to_owned(),
            unit,
            value,
        });
    }

    /// Adds p50, p90, p99 and max of the run's latencies, in milliseconds.
    pub fn latency_metrics(&mut self, prefix: &str) {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
            self.metric(&format!("{prefix}{name}_ms"), percentile(&sorted, p), "ms");
        }
        self.metric(
            &format!("{prefix}max_ms"),
            sorted.last().copied().unwrap_or(0.0),
            "ms",
        );
    }

    /// A figure by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    /// Whether every notification arrived once and in order.
    pub fn clean(&self) -> bool {
        self.lost + self.duplicated + self.out_of_order + self.unexpected == 0
            && self.failures.is_empty()
    }
}

/// The nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The percentile of unsorted values.
pub fn percentile_of(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, p)
}

/// Everything a scenario measured.
pub struct Report {
    /// The scenario's name, which also names the files.
    pub scenario: &'static str,
    /// The scenario's parameters.
    pub params: Value,
    /// One run per system, the hub first.
    pub runs: Vec<Run>,
    /// Lines printed under the table and kept in the JSON file.
    pub notes: Vec<String>,
    /// What the plotted latency is.
    pub plot_caption: String,
    /// Curves to plot instead of each run's latencies, when a scenario has several per run.
    pub series: Vec<(String, Vec<f64>)>,
}

impl Report {
    /// A report with no runs yet.
    pub fn new(scenario: &'static str, params: Value, plot_caption: &str) -> Self {
        Report {
            scenario,
            params,
            runs: Vec::new(),
            notes: Vec::new(),
            plot_caption: plot_caption.to_owned(),
            series: Vec::new(),
        }
    }

    /// Prints the table, writes the JSON and SVG files, and returns whether every run was clean.
    pub fn finish(self, out: &Path) -> bool {
        let hub = self.runs.iter().find(|r| r.label != "baseline");
        let baseline = self.runs.iter().find(|r| r.label == "baseline");
        println!();
        println!("{} — {}", self.scenario, self.params);
        self.print_table(hub, baseline);
        for note in &self.notes {
            println!("  {note}");
        }
        std::fs::create_dir_all(out).expect("create the output folder");
        let json_path = out.join(format!("{}.json", self.scenario));
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&self.to_json(hub, baseline)).unwrap(),
        )
        .expect("write the JSON result");
        let svg_path = out.join(format!("{}-latency.svg", self.scenario));
        let series: Vec<(&str, &[f64])> = if self.series.is_empty() {
            self.runs
                .iter()
                .filter(|r| !r.latencies_ms.is_empty())
                .map(|r| (r.label.as_str(), r.latencies_ms.as_slice()))
                .collect()
        } else {
            self.series
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(l, v)| (l.as_str(), v.as_slice()))
                .collect()
        };
        if !series.is_empty() {
            let title = format!("{}: {}", self.scenario, self.plot_caption);
            std::fs::write(&svg_path, cdf_svg(&title, &series)).expect("write the plot");
            println!("  wrote {} and {}", json_path.display(), svg_path.display());
        } else {
            println!("  wrote {}", json_path.display());
        }
        let clean = self.runs.iter().all(Run::clean);
        for run in &self.runs {
            if run.lost + run.duplicated + run.out_of_order + run.unexpected > 0 {
                println!(
                    "  FAILED ({}): notifications were lost, duplicated, out of order or unexpected",
                    run.label
                );
            }
            for f in &run.failures {
                println!("  FAILED ({}): {f}", run.label);
            }
        }
        clean
    }

    fn print_table(&self, hub: Option<&Run>, baseline: Option<&Run>) {
        let mut keys: Vec<(String, String)> = Vec::new();
        for run in &self.runs {
            for m in &run.metrics {
                if !keys.iter().any(|(k, _)| *k == m.key) {
                    let label = if m.unit.is_empty() {
                        m.key.clone()
                    } else {
                        format!("{} ({})", m.key, m.unit)
                    };
                    keys.push((m.key.clone(), label));
                }
            }
        }
        let cell = |run: Option<&Run>, key: &str| -> String {
            run.and_then(|r| r.get(key))
                .map(fmt_value)
                .unwrap_or_else(|| "—".into())
        };
        let w = keys
            .iter()
            .map(|(_, l)| l.chars().count())
            .max()
            .unwrap_or(6)
            .max(16);
        let first = hub.or(baseline).map(|r| r.label.as_str()).unwrap_or("hub");
        // With both systems: figure, hub, baseline, ratio; with one: figure, value.
        let both = hub.is_some() && baseline.is_some();
        let row = |name: &str, a: String, b: String, r: String| {
            let pad = w.saturating_sub(name.chars().count());
            if both {
                println!("  {name}{:pad$}  {a:>14}  {b:>14}  {r:>10}", "");
            } else {
                println!("  {name}{:pad$}  {a:>14}", "");
            }
        };
        row(
            "figure",
            first.to_owned(),
            "baseline".into(),
            "ratio".into(),
        );
        let primary = hub.or(baseline);
        for (key, label) in &keys {
            let ratio = ratio(hub, baseline, key)
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "—".into());
            row(label, cell(primary, key), cell(baseline, key), ratio);
        }
        for (name, f) in [
            ("lost", (|r: &Run| r.lost) as fn(&Run) -> u64),
            ("duplicated", |r: &Run| r.duplicated),
            ("out_of_order", |r: &Run| r.out_of_order),
            ("unexpected", |r: &Run| r.unexpected),
        ] {
            let show = |r: Option<&Run>| r.map(|r| f(r).to_string()).unwrap_or_else(|| "—".into());
            row(name, show(primary), show(baseline), String::new());
        }
    }

    fn to_json(&self, hub: Option<&Run>, baseline: Option<&Run>) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                let metrics: Map<String, Value> = r
                    .metrics
                    .iter()
                    .map(|m| (m.key.clone(), json!(round(m.value))))
                    .collect();
                json!({
                    "label": r.label,
                    "metrics": metrics,
                    "lost": r.lost,
                    "duplicated": r.duplicated,
                    "out_of_order": r.out_of_order,
                    "unexpected": r.unexpected,
                    "failures": r.failures,
                    "samples": r.latencies_ms.len(),
                    "extra": r.extra,
                })
            })
            .collect();
        let ratios: Map<String, Value> = hub
            .map(|h| {
                h.metrics
                    .iter()
                    .filter_map(|m| {
                        ratio(Some(h), baseline, &m.key).map(|r| (m.key.clone(), json!(round(r))))
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "scenario": self.scenario,
            "date": chrono::Local::now().format("%Y-%m-%d").to_string(),
            "command": std::env::args().skip(1).filter(|a| a != "--bench").collect::<Vec<_>>().join(" "),
            "params": self.params,
            "runs": runs,
            "ratio_to_baseline": ratios,
            "notes": self.notes,
        })
    }
}

/// The hub's figure divided by the baseline's, when both exist and the baseline's is not 0.
fn ratio(hub: Option<&Run>, baseline: Option<&Run>, key: &str) -> Option<f64> {
    let h = hub?.get(key)?;
    let b = baseline?.get(key)?;
    (b != 0.0 && hub?.label != baseline?.label).then(|| h / b)
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 || (v.fract() == 0.0 && v.abs() < 1e15) {
        let s = format!("{:.0}", v.round());
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A round step for axis ticks: 1, 2 or 5 times a power of ten, giving about `n` ticks.
pub fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Draws the cumulative distribution of each series' latencies, with axes, ticks and a legend.
/// The x axis stops at the largest p99.9, so that one outlier does not flatten the curves; the
/// legend gives each series' p50, p99 and max.
pub fn cdf_svg(title: &str, series: &[(&str, &[f64])]) -> String {
    const W: f64 = 860.0;
    const H: f64 = 500.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 60.0;
    const COLOURS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let sorted: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, v)| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s
        })
        .collect();
    let x_max_raw = sorted
        .iter()
        .map(|s| percentile(s, 0.999))
        .fold(0.0f64, f64::max)
        .max(0.001);
    let step = nice_step(x_max_raw, 8.0);
    let x_max = (x_max_raw / step).ceil() * step;
    let x = |v: f64| LEFT + (v.min(x_max) / x_max) * plot_w;
    let y = |share: f64| TOP + plot_h - share * plot_h;
    let mut svg = svg_start(W, H, title);
    // Grid and ticks.
    let mut t = 0.0;
    while t <= x_max + step / 2.0 {
        let px = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            fmt_tick(t, step)
        );
        t += step;
    }
    for pct in (0..=100).step_by(10) {
        let py = y(pct as f64 / 100.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{pct}%</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency (ms)</text>"#,
        LEFT + plot_w / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">share of deliveries at or below (%)</text>"#,
        TOP + plot_h / 2.0
    );
    // One curve per series, sampled at up to 1,000 quantiles; the legend goes on top of them.
    let mut legend = String::new();
    let n_series = series
        .iter()
        .zip(&sorted)
        .filter(|(_, s)| !s.is_empty())
        .count();
    let _ = writeln!(
        legend,
        r##"<rect x="{:.1}" y="{:.1}" width="490" height="{:.1}" fill="white" fill-opacity="0.9" stroke="#999"/>"##,
        LEFT + plot_w - 505.0,
        TOP + plot_h - 34.0 - 18.0 * (n_series.max(1) - 1) as f64,
        18.0 * n_series as f64 + 6.0
    );
    for (i, ((label, _), s)) in series.iter().zip(&sorted).enumerate() {
        if s.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let n = s.len();
        let samples = n.min(1000);
        let mut points = String::new();
        let _ = write!(points, "{:.1},{:.1} ", x(s[0]), y(0.0));
        for k in 1..=samples {
            let idx = (k * n).div_ceil(samples).clamp(1, n) - 1;
            let share = (idx + 1) as f64 / n as f64;
            let _ = write!(points, "{:.1},{:.1} ", x(s[idx]), y(share));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        let ly = TOP + plot_h - 20.0 - 18.0 * (series.len() - 1 - i) as f64;
        let _ = writeln!(
            legend,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}: n={} p50={} ms p99={} ms max={} ms</text>"#,
            LEFT + plot_w - 500.0,
            LEFT + plot_w - 475.0,
            LEFT + plot_w - 470.0,
            ly + 4.0,
            escape(label),
            n,
            fmt_value(percentile(s, 0.5)),
            fmt_value(percentile(s, 0.99)),
            fmt_value(s[n - 1])
        );
    }
    svg.push_str(&legend);
    svg.push_str("</svg>\n");
    svg
}

pub fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10()).ceil() as usize;
        format!("{v:.decimals$}")
    }
}

/// An SVG picture's opening: its size, a white ground and its title, centred at the top.
pub fn svg_start(w: f64, h: f64, title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    svg
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
