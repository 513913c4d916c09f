//! Charts as inline SVG: the report must open anywhere with no network and no chart library.

use std::fmt::Write;

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

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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
pub fn line_chart(title: &str, x_label: &str, series: &[Series<'_>], limits: &[Limit<'_>], percent: bool) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><text class="title" x="{LEFT}" y="16">{t}</text>"#,
        t = escape(title)
    );
    if all().next().is_none() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{}" y="{}">no data yet</text></svg></figure>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
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
    let mut y = (y0 / step).floor() * step;
    while y <= y1 + step * 1e-9 {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 4.0,
            py(y) + 4.0,
            fmt_y(y),
            py = py(y)
        );
        y += step;
    }
    let xstep = tick_step(x1 - x0);
    let mut x = (x0 / xstep).ceil() * xstep;
    while x <= x1 + xstep * 1e-9 {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            HEIGHT - BOTTOM + 14.0,
            label(x)
        );
        x += xstep;
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>"#,
        WIDTH - RIGHT,
        HEIGHT - 4.0,
        escape(x_label)
    );
    for limit in limits {
        let _ = write!(
            svg,
            r#"<line class="limit" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="limit-label" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            py(limit.y) - 3.0,
            escape(limit.label),
            y = py(limit.y)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" stroke="{colour}" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(s.label)
        );
        if s.points.len() <= 60 {
            for (x, y) in s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}: {} at {}</title></circle>"#,
                    px(*x),
                    py(*y),
                    escape(s.label),
                    fmt_y(*y),
                    label(*x)
                );
            }
        }
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="3" fill="{colour}"/><text class="legend" x="{}" y="{}">{}</text>"#,
            LEFT + 8.0 + 130.0 * (i % 4) as f64,
            TOP + 2.0 + 12.0 * (i / 4) as f64,
            LEFT + 22.0 + 130.0 * (i % 4) as f64,
            TOP + 6.0 + 12.0 * (i / 4) as f64,
            escape(s.label)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A horizontal bar chart of fractions in `[0, 1]`, labelled with `detail`.
pub fn bar_chart(title: &str, bars: &[(String, f64, String)]) -> String {
    let row = 22.0;
    let height = TOP + row * bars.len().max(1) as f64 + 8.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure class="chart"><svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{t}"><text class="title" x="{LEFT}" y="16">{t}</text>"#,
        t = escape(title)
    );
    if bars.is_empty() {
        let _ = write!(svg, r#"<text class="empty" x="{}" y="{}">no data yet</text>"#, WIDTH / 2.0, TOP + 12.0);
    }
    let span = WIDTH - 2.0 * LEFT - 120.0;
    for (i, (name, fraction, detail)) in bars.iter().enumerate() {
        let y = TOP + row * i as f64;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text><rect x="{}" y="{y:.1}" width="{:.1}" height="14" fill="{}"><title>{}</title></rect><text class="tick" x="{:.1}" y="{:.1}">{:.0}% {}</text>"#,
            2.0 * LEFT - 4.0,
            y + 11.0,
            escape(name),
            2.0 * LEFT,
            span * fraction.clamp(0.0, 1.0),
            PALETTE[i % PALETTE.len()],
            escape(detail),
            2.0 * LEFT + span * fraction.clamp(0.0, 1.0) + 4.0,
            y + 11.0,
            fraction * 100.0,
            escape(detail)
        );
    }
    svg.push_str("</svg></figure>");
    svg
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
        let svg = line_chart("<loss>", "step", &[Series { label: "a&b", points: &flat }], &[], false);
        assert!(svg.contains("&lt;loss&gt;") && svg.contains("a&amp;b") && svg.contains("<polyline"));
        assert!(line_chart("t", "x", &[], &[], false).contains("no data yet"));
        let one = [(3.0, f64::NAN), (4.0, 1.0)];
        assert!(!line_chart("t", "x", &[Series { label: "s", points: &one }], &[], true).contains("NaN"));
    }
}
