//! Charts as inline SVG: the report must open anywhere with no network and no chart library.
//! Drawn with maud, which escapes every text and attribute it is given (labels come from
//! plugins and experiment files).

use maud::{Markup, html};

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;
const PALETTE: [&str; 8] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

/// One line of a chart.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// (x, y) points, x ascending.
    pub points: &'a [(f64, f64)],
}

/// A horizontal reference line (a budget, a target).
pub struct Limit<'a> {
    /// Its y value.
    pub y: f64,
    /// Its label.
    pub label: &'a str,
}

/// A tick step near `span / 5` from the 1-2-5 sequence.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn label(value: f64) -> String {
    if value == 0.0 || (value.abs() >= 0.01 && value.abs() < 1e5) {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value:.1e}")
    }
}

/// A line chart of `series` with optional horizontal `limits`; `percent` formats y as %.
pub fn line_chart(title: &str, x_label: &str, series: &[Series<'_>], limits: &[Limit<'_>], percent: bool) -> Markup {
    let finite = |(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(finite);
    if all().next().is_none() {
        return figure(
            WIDTH,
            HEIGHT,
            title,
            html! {
                text class="empty" x=(WIDTH / 2.0) y=(HEIGHT / 2.0) { "no data yet" }
            },
        );
    }
    let (mut x0, mut x1) = all().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let limit_ys = limits.iter().map(|l| l.y);
    let (mut y0, mut y1) =
        all().map(|(_, y)| *y).chain(limit_ys).fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    y0 = y0.min(0.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
        x0 -= 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let step = tick_step(y1 - y0);
    y1 = (y1 / step).ceil() * step;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
    let py = |y: f64| HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM);
    let fmt_y = |y: f64| if percent { format!("{}%", label(y * 100.0)) } else { label(y) };
    let y_ticks = ticks((y0 / step).floor() * step, y1, step);
    let xstep = tick_step(x1 - x0);
    let x_ticks = ticks((x0 / xstep).ceil() * xstep, x1, xstep);
    figure(
        WIDTH,
        HEIGHT,
        title,
        html! {
            @for y in y_ticks {
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(at(py(y))) y2=(at(py(y))) {}
                text class="tick" x=(LEFT - 4.0) y=(at(py(y) + 4.0)) text-anchor="end" { (fmt_y(y)) }
            }
            @for x in x_ticks {
                text class="tick" x=(at(px(x))) y=(HEIGHT - BOTTOM + 14.0) text-anchor="middle" { (label(x)) }
            }
            text class="axis" x=(WIDTH - RIGHT) y=(HEIGHT - 4.0) text-anchor="end" { (x_label) }
            @for limit in limits {
                line class="limit" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(at(py(limit.y))) y2=(at(py(limit.y))) {}
                text class="limit-label" x=(WIDTH - RIGHT) y=(at(py(limit.y) - 3.0)) text-anchor="end" { (limit.label) }
            }
            @for (i, s) in series.iter().enumerate() {
                @let colour = PALETTE[i % PALETTE.len()];
                @let points: Vec<String> = s.points.iter().filter(finite).map(|(x, y)| format!("{},{}", at(px(*x)), at(py(*y)))).collect();
                polyline class="series" stroke=(colour) points=(points.join(" ")) { title { (s.label) } }
                @if s.points.len() <= 60 {
                    @for (x, y) in s.points.iter().filter(finite) {
                        circle cx=(at(px(*x))) cy=(at(py(*y))) r="2.5" fill=(colour) {
                            title { (s.label) ": " (fmt_y(*y)) " at " (label(*x)) }
                        }
                    }
                }
                rect x=(LEFT + 8.0 + 130.0 * (i % 4) as f64) y=(TOP + 2.0 + 12.0 * (i / 4) as f64) width="10" height="3" fill=(colour) {}
                text class="legend" x=(LEFT + 22.0 + 130.0 * (i % 4) as f64) y=(TOP + 6.0 + 12.0 * (i / 4) as f64) { (s.label) }
            }
        },
    )
}

/// A horizontal bar chart of fractions in `[0, 1]`, labelled with `detail`.
pub fn bar_chart(title: &str, bars: &[(String, f64, String)]) -> Markup {
    let row = 22.0;
    let height = TOP + row * bars.len().max(1) as f64 + 8.0;
    let span = WIDTH - 2.0 * LEFT - 120.0;
    figure(
        WIDTH,
        height,
        title,
        html! {
            @if bars.is_empty() {
                text class="empty" x=(WIDTH / 2.0) y=(TOP + 12.0) { "no data yet" }
            }
            @for (i, (name, fraction, detail)) in bars.iter().enumerate() {
                @let y = TOP + row * i as f64;
                @let width = span * fraction.clamp(0.0, 1.0);
                text class="tick" x=(2.0 * LEFT - 4.0) y=(at(y + 11.0)) text-anchor="end" { (name) }
                rect x=(2.0 * LEFT) y=(at(y)) width=(at(width)) height="14" fill=(PALETTE[i % PALETTE.len()]) { title { (detail) } }
                text class="tick" x=(at(2.0 * LEFT + width + 4.0)) y=(at(y + 11.0)) { (format!("{:.0}% ", fraction * 100.0)) (detail) }
            }
        },
    )
}

/// A chart's frame: the figure, the SVG canvas and the title; `body` draws inside.
fn figure(width: f64, height: f64, title: &str, body: Markup) -> Markup {
    // SVG elements are written with explicit end tags (`{}`): inside `<svg>` an HTML parser
    // does not know `<line>` or `<rect>` as void, so an unclosed one would swallow the rest.
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(title) {
                text class="title" x=(LEFT) y="16" { (title) }
                (body)
            }
        }
    }
}

/// The values from `start` to `end` (inclusive, with rounding slack) `step` apart.
fn ticks(start: f64, end: f64, step: f64) -> Vec<f64> {
    let mut out = vec![];
    let mut v = start;
    while v <= end + step * 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

/// A coordinate with one decimal, as the charts draw them.
pub(crate) fn at(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_one_two_five() {
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(7.0), 2.0);
        assert_eq!(tick_step(300.0), 100.0);
    }

    #[test]
    fn charts_escape_labels_and_survive_empty_and_flat_data() {
        let flat = [(1.0, 0.5), (2.0, 0.5)];
        let svg = line_chart("<loss>", "step", &[Series { label: "a&b\"", points: &flat }], &[], false).into_string();
        assert!(svg.contains("&lt;loss&gt;") && svg.contains("a&amp;b&quot;") && svg.contains("<polyline"));
        assert!(!svg.contains("<loss>"), "{svg}");
        assert!(line_chart("t", "x", &[], &[], false).into_string().contains("no data yet"));
        let one = [(3.0, f64::NAN), (4.0, 1.0)];
        assert!(!line_chart("t", "x", &[Series { label: "s", points: &one }], &[], true).into_string().contains("NaN"));
        let bars = bar_chart("<b>", &[("x<y".into(), 0.5, "won 1 of 2".into())]).into_string();
        assert!(bars.contains("&lt;b&gt;") && bars.contains("x&lt;y") && bars.contains("50% won 1 of 2"), "{bars}");
    }
}
