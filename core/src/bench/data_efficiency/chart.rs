//! The benchmark's figure: ShapesEval against teacher calls (log scale), one line per arm, each
//! point with its 95% interval, as a standalone SVG (no chart library, opens anywhere).

use super::stats::Estimate;
use crate::report::svg::at;
use maud::html;

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
    let top_y = axis_top(
        lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| finite(p.1.interval().1).or(finite(p.1.mean))))
            .fold(0.0f64, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |c: f64| LEFT + (c.max(1.0).ln() - low_x.ln()) / (high_x.ln() - low_x.ln()) * plot_w;
    let y = |s: f64| TOP + plot_h - (s.clamp(0.0, top_y) / top_y) * plot_h;

    let mut ticks = calls.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup_by(|a, b| (*a / *b - 1.0).abs() < 0.15);
    let middle = TOP + plot_h / 2.0;
    // A standalone SVG file (XML): every element closed.
    let svg = html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) font-family="sans-serif" font-size="12" {
            rect width=(WIDTH) height=(HEIGHT) fill="white" {}
            text x=(LEFT) y="22" font-size="14" font-weight="bold" { (title) }
            // Axes, y grid at fifths of the range, x ticks at each distinct budget.
            @for i in 0..=5 {
                @let value = top_y * i as f64 / 5.0;
                line x1=(LEFT) x2=(LEFT + plot_w) y1=(at(y(value))) y2=(at(y(value))) stroke="#e5e7eb" {}
                text x=(LEFT - 6.0) y=(at(y(value) + 4.0)) text-anchor="end" { (format!("{:.0}%", 100.0 * value)) }
            }
            @for c in ticks {
                text x=(at(x(c))) y=(TOP + plot_h + 16.0) text-anchor="middle" { (format!("{c:.0}")) }
            }
            text x=(at(LEFT + plot_w / 2.0)) y=(HEIGHT - 8.0) text-anchor="middle" { "teacher calls (log scale)" }
            text x="14" y=(at(middle)) transform=(format!("rotate(-90 14 {})", at(middle))) text-anchor="middle" { "ShapesEval overall" }
            @for (i, line) in lines.iter().enumerate() {
                @let color = PALETTE[i % PALETTE.len()];
                @let path: Vec<String> = line.points.iter().map(|(c, e)| format!("{},{}", at(x(*c)), at(y(e.mean)))).collect();
                polyline points=(path.join(" ")) fill="none" stroke=(color) stroke-width="2" {}
                @for (c, e) in &line.points {
                    @let (low, high) = e.interval();
                    @let px = at(x(*c) + (i as f64 - 2.5) * 2.0);
                    line x1=(px) x2=(px) y1=(at(y(finite(low).unwrap_or(0.0)))) y2=(at(y(finite(high).unwrap_or(top_y)))) stroke=(color) {}
                    circle cx=(px) cy=(at(y(e.mean))) r="3" fill=(color) {}
                }
                @let legend_y = TOP + 14.0 + 18.0 * i as f64;
                @let legend_x = WIDTH - RIGHT + 12.0;
                line x1=(legend_x) x2=(legend_x + 18.0) y1=(legend_y) y2=(legend_y) stroke=(color) stroke-width="2" {}
                text x=(legend_x + 24.0) y=(legend_y + 4.0) { (line.label) }
            }
        }
    };
    svg.into_string() + "\n"
}

/// The y axis's top: five grid steps of 1, 2, 5, 10 or 20 points, the smallest that holds
/// `highest`, so that each grid line sits on the whole percentage its label shows.
fn axis_top(highest: f64) -> f64 {
    let step = [0.01, 0.02, 0.05, 0.1, 0.2].into_iter().find(|&step| 5.0 * step >= highest).unwrap_or(0.2);
    5.0 * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_on_a_round_step_above_the_highest_interval() {
        for (highest, top) in
            [(0.0, 0.05), (0.03, 0.05), (0.09, 0.1), (0.201, 0.25), (0.44, 0.5), (0.9, 1.0), (3.0, 1.0)]
        {
            assert!((axis_top(highest) - top).abs() < 1e-12, "{highest}: {}", axis_top(highest));
        }
    }

    #[test]
    fn the_chart_draws_each_arm_with_its_intervals_and_escapes_labels() {
        let estimate = |mean| super::super::stats::estimate(&[mean - 0.02, mean, mean + 0.02]);
        let lines = vec![
            Line { label: "uniform <baseline>".into(), points: vec![(1000.0, estimate(0.2)), (3000.0, estimate(0.4))] },
            Line { label: "director & co".into(), points: vec![(960.0, estimate(0.15)), (2900.0, estimate(0.35))] },
        ];
        let svg = svg("calls \"vs\" score", &lines);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4, "a point per arm and budget");
        assert!(svg.contains("uniform &lt;baseline&gt;") && svg.contains("director &amp; co"), "{svg}");
        assert!(svg.contains("calls &quot;vs&quot; score"), "{svg}");
        // Well-formed XML: every element closed (no `<line ...>` left open).
        assert_eq!(svg.matches("<line ").count(), svg.matches("</line>").count());
    }
}
