//! Curves over a run's minutes, one panel per figure stacked over a shared time axis: how
//! `soak` shows whether memory, the database, its log and the latency level off.

use std::fmt::Write as _;

use crate::report::{escape, fmt_tick, nice_step, svg_start};

/// One panel: its title (with the unit) and its values, one per minute.
pub struct Panel<'a> {
    pub title: &'a str,
    pub values: &'a [f64],
}

/// Draws the panels one under the other, each with its own y axis starting at zero, the minutes
/// along the bottom; the last ten minutes and the ten before them are shaded when the run is
/// long enough to compare them.
pub fn curves_svg(title: &str, panels: &[Panel<'_>]) -> String {
    const W: f64 = 860.0;
    const PANEL_H: f64 = 150.0;
    const GAP: f64 = 40.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 50.0;
    const COLOURS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let h = TOP + BOTTOM + panels.len() as f64 * (PANEL_H + GAP) - GAP;
    let plot_w = W - LEFT - RIGHT;
    let minutes = panels.iter().map(|p| p.values.len()).max().unwrap_or(0);
    let x_max = minutes.max(1) as f64;
    let x = |minute: f64| LEFT + minute / x_max * plot_w;
    let mut svg = svg_start(W, h, title);
    let x_step = nice_step(x_max, 12.0).max(1.0);
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP);
        let colour = COLOURS[i % COLOURS.len()];
        let peak = panel.values.iter().copied().fold(0.0f64, f64::max);
        let y_step = nice_step(peak.max(1e-6), 4.0);
        let y_max = (peak / y_step).ceil().max(1.0) * y_step;
        let y = |v: f64| top + PANEL_H - (v / y_max).clamp(0.0, 1.0) * PANEL_H;
        if minutes >= 20 {
            // The two windows the level-off check compares.
            for (from, fill) in [(minutes - 20, "#f3f3f3"), (minutes - 10, "#e6eef8")] {
                let _ = writeln!(
                    svg,
                    r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL_H}" fill="{fill}"/>"#,
                    x(from as f64),
                    x(10.0) - LEFT
                );
            }
        }
        let mut t = 0.0;
        while t <= y_max + y_step / 2.0 {
            let py = y(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 8.0,
                py + 4.0,
                fmt_tick(t, y_step)
            );
            t += y_step;
        }
        let mut m = 0.0;
        while m <= x_max + x_step / 2.0 {
            let px = x(m);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/>"##,
                top + PANEL_H
            );
            if i + 1 == panels.len() {
                let _ = writeln!(
                    svg,
                    r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    top + PANEL_H + 18.0,
                    fmt_tick(m, x_step)
                );
            }
            m += x_step;
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{top:.1}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-weight="bold">{}</text>"#,
            LEFT + 6.0,
            top - 6.0,
            escape(panel.title)
        );
        // Each value at the end of its minute.
        let points: String = panel
            .values
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{:.1},{:.1}", x((k + 1) as f64), y(*v)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minute of the run</text>"#,
        LEFT + plot_w / 2.0,
        h - 12.0
    );
    svg.push_str("</svg>\n");
    svg
}
