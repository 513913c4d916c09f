//! The benchmark's figure: ShapesEval against teacher calls (log scale), one line per arm, each
//! point with its 95% interval, as a standalone SVG (no chart library, opens anywhere).

use super::stats::Estimate;
use crate::report::svg::escape;
use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
const PALETTE: [&str; 8] = ["#111827", "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04"];

/// One arm's points: (mean teacher calls, score estimate), calls ascending.
pub struct Line {
    /// The arm's name.
    pub label: String,
    /// Its points.
    pub points: Vec<(f64, Estimate)>,
}

/// The SVG document.
pub fn svg(title: &str, lines: &[Line]) -> String {
    let finite = |v: f64| v.is_finite().then_some(v);
    let calls: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0.max(1.0))).collect();
    let (low_x, high_x) = calls.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let (low_x, high_x) = if low_x > high_x { (1.0, 10.0) } else { (low_x / 1.3, high_x * 1.3) };
    let top_y = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| finite(p.1.interval().1).or(finite(p.1.mean))))
        .fold(0.05f64, f64::max)
        .min(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |c: f64| LEFT + (c.max(1.0).ln() - low_x.ln()) / (high_x.ln() - low_x.ln()) * plot_w;
    let y = |s: f64| TOP + plot_h - (s.clamp(0.0, top_y) / top_y) * plot_h;

    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"##
    );
    let _ = write!(out, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##);
    let _ = write!(out, r##"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"##, escape(title));
    // Axes, y grid at tenths of the range, x ticks at each distinct budget.
    for i in 0..=5 {
        let value = top_y * i as f64 / 5.0;
        let at = y(value);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            100.0 * value
        );
    }
    let mut ticks = calls.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup_by(|a, b| (*a / *b - 1.0).abs() < 0.15);
    for c in ticks {
        let _ =
            write!(out, r##"<text x="{:.1}" y="{}" text-anchor="middle">{c:.0}</text>"##, x(c), TOP + plot_h + 16.0);
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">teacher calls (log scale)</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">ShapesEval overall</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = line.points.iter().map(|(c, e)| format!("{:.1},{:.1}", x(*c), y(e.mean))).collect();
        let _ =
            write!(out, r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##, path.join(" "));
        for (c, e) in &line.points {
            let (low, high) = e.interval();
            let (px, low, high) =
                (x(*c) + (i as f64 - 2.5) * 2.0, y(finite(low).unwrap_or(0.0)), y(finite(high).unwrap_or(top_y)));
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{low:.1}" y2="{high:.1}" stroke="{color}"/><circle cx="{px:.1}" cy="{:.1}" r="3" fill="{color}"/>"##,
                y(e.mean)
            );
        }
        let legend_y = TOP + 14.0 + 18.0 * i as f64;
        let legend_x = WIDTH - RIGHT + 12.0;
        let _ = write!(
            out,
            r##"<line x1="{legend_x}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"##,
            legend_x + 18.0,
            legend_x + 24.0,
            legend_y + 4.0,
            escape(&line.label)
        );
    }
    out.push_str("</svg>\n");
    out
}
