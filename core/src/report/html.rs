//! The report page: one self-contained HTML file (inline CSS, SVG charts, images as data URLs)
//! that opens anywhere without network. Written with maud, which escapes whatever it is given:
//! prompts, teacher names and judge replies come from LLMs and plugins, so no text on the page
//! is trusted; only the page's own CSS and scripts go in unescaped.

use super::data::{GridCell, ReportData, RoundRow, TreeNode};
use super::svg::{Limit, Series, bar_chart, line_chart};
use crate::store::ImageStore;
use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::collections::BTreeMap;

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 20px 40px;color:#1f2937}
h1{margin:20px 0 4px}h2{margin-top:32px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}.summary div{background:#f3f4f6;border-radius:6px;padding:6px 12px}
.summary b{display:block;font-size:18px}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
figure.chart{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:4px}
svg{width:100%;height:auto;font-size:10px}.title{font-size:12px;font-weight:600}.tick,.axis,.legend{fill:#4b5563}
.grid{stroke:#e5e7eb}.series{fill:none;stroke-width:1.6}.limit{stroke:#9ca3af;stroke-dasharray:4 3}.limit-label{fill:#6b7280}
.empty{fill:#9ca3af;text-anchor:middle}
table.grid-table{border-collapse:collapse;margin:8px 0 20px}table.grid-table td,table.grid-table th{border:1px solid #e5e7eb;padding:4px 8px;vertical-align:middle}
img.px{width:64px;height:64px;image-rendering:pixelated}.teacher{color:#b91c1c}.base{color:#15803d}
#tree ul{list-style:none;padding-left:18px;margin:0}#tree summary{cursor:pointer}.retired{color:#9ca3af;text-decoration:line-through}
.badge{font-size:11px;border-radius:4px;padding:0 4px;margin-right:4px;background:#e5e7eb}.badge.expansion{background:#dbeafe}.badge.mutation{background:#fce7f3}
button{margin-right:6px}
"#;

/// Records script errors on the page, so that a browser test can read them off the DOM.
const HEAD_SCRIPT: &str = r#"
window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-errors', (document.documentElement.getAttribute('data-errors') || '') + e.message + ';');
});
"#;

const BODY_SCRIPT: &str = r#"
document.querySelectorAll('[data-tree]').forEach(function (button) {
  button.addEventListener('click', function () {
    var open = button.getAttribute('data-tree') === 'open';
    document.querySelectorAll('#tree details').forEach(function (d) { d.open = open; });
  });
});
document.documentElement.setAttribute('data-ready', 'yes');
"#;

fn series<'a>(data: &'a ReportData, name: &str) -> &'a [(f64, f64)] {
    data.metrics.get(name).map(Vec::as_slice).unwrap_or(&[])
}

/// Renders the whole page.
pub fn render(data: &ReportData, images: &ImageStore) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "evolve — " (data.name) }
                style { (PreEscaped(STYLE)) }
                script { (PreEscaped(HEAD_SCRIPT)) }
            }
            body {
                h1 { "evolve run: " (data.name) }
                p { "Report written " (data.generated_at) "; it refreshes after every round while the run goes." }
                (summary(data))
                h2 { "Training" }
                div class="charts" { (training_charts(data)) }
                h2 { "Evolution of the training set" }
                div class="charts" { (rounds_charts(data)) }
                h2 { "Teachers and spending" }
                div class="charts" { (spending_charts(data)) }
                h2 { "Evaluation" }
                div class="charts" { (eval_chart(data)) }
                h2 { "Judge audit" }
                (audit(data))
                h2 { "Base model vs teacher, by round" }
                (grids(data, images))
                h2 { "Prompt family tree" }
                (tree(&data.tree))
                script { (PreEscaped(BODY_SCRIPT)) }
            }
        }
    };
    page.into_string()
}

fn summary(data: &ReportData) -> Markup {
    let last = |name: &str| series(data, name).last().map(|p| p.1);
    let steps = series(data, "loss").last().map(|p| p.0 as u64).unwrap_or(0);
    let (calls, cost) = data.spending.last().map(|s| (s.1 as u64, s.2)).unwrap_or((0, 0.0));
    let active = data.tree.iter().filter(|n| n.active).count();
    let budget = data.max_calls.map(|m| format!(" of {m}")).unwrap_or_default();
    let interrupted = data.rounds.iter().filter(|r| r.interrupted).count();
    let stat = |label: &str, value: String| html! { div { (label) b { (value) } } };
    html! {
        div class="summary" {
            (stat("trainer steps", steps.to_string()))
            (stat("rounds", data.rounds.len().to_string()))
            (stat("teacher calls", format!("{calls}{budget}")))
            @match data.judge_spending.last() {
                Some(&(_, judge_calls, tokens, judge_cost)) => {
                    (stat("teacher cost", format!("${cost:.4}")))
                    (stat("judge cost", format!("${judge_cost:.4} ({} calls, {} tokens)", judge_calls as u64, tokens as u64)))
                }
                None => (stat("cost", format!("${cost:.4}"))),
            }
            (stat("active samples", format!("{active} of {}", data.tree.len())))
            @if interrupted > 0 {
                (stat("rounds cut short by a restart", interrupted.to_string()))
            }
            @if let Some(busy) = last("trainer_busy") {
                (stat("trainer busy", format!("{:.1}%", busy * 100.0)))
            }
            @if let Some(score) = last("eval/overall") {
                (stat("latest eval", format!("{:.1}%", score * 100.0)))
            }
        }
    }
}

fn training_charts(data: &ReportData) -> Markup {
    html! {
        (line_chart("Loss", "step", &[Series { label: "loss", points: series(data, "loss") }], &[], false))
        (line_chart(
            "Learning rate",
            "step",
            &[Series { label: "learning rate", points: series(data, "learning_rate") }],
            &[],
            false,
        ))
        (line_chart(
            "Trainer busy (training or rendering for the judge)",
            "step",
            &[Series { label: "busy", points: series(data, "trainer_busy") }],
            &[Limit { y: 0.95, label: "target 95%" }],
            true,
        ))
    }
}

fn per_round(rounds: &[RoundRow], f: impl Fn(&RoundRow) -> f64) -> Vec<(f64, f64)> {
    rounds.iter().map(|r| (r.id as f64, f(r))).collect()
}

fn rounds_charts(data: &ReportData) -> Markup {
    let active: Vec<(f64, f64)> = {
        // round/active is recorded by step; show it by round number for a common x axis.
        let by_step: BTreeMap<u64, f64> = series(data, "round/active").iter().map(|(s, v)| (*s as u64, *v)).collect();
        data.rounds.iter().filter_map(|r| by_step.get(&r.step).map(|v| (r.id as f64, *v))).collect()
    };
    let expanded = per_round(&data.rounds, |r| r.expanded as f64);
    let mutated = per_round(&data.rounds, |r| r.mutated as f64);
    let deleted = per_round(&data.rounds, |r| r.deactivated as f64);
    let win = per_round(&data.rounds, |r| r.teacher_wins as f64 / r.selected.max(1) as f64);
    let base = per_round(&data.rounds, |r| 1.0 - r.teacher_wins as f64 / r.selected.max(1) as f64);
    html! {
        (line_chart("Active training set", "round", &[Series { label: "active samples", points: &active }], &[], false))
        (line_chart(
            "Changes per round",
            "round",
            &[
                Series { label: "added by expansion", points: &expanded },
                Series { label: "added by mutation", points: &mutated },
                Series { label: "deleted (mastered)", points: &deleted },
            ],
            &[],
            false,
        ))
        (line_chart(
            "Judge verdicts per round",
            "round",
            &[Series { label: "teacher better", points: &win }, Series { label: "base as good", points: &base }],
            &[],
            true,
        ))
    }
}

fn spending_charts(data: &ReportData) -> Markup {
    let calls: Vec<(f64, f64)> = data.spending.iter().map(|s| (s.0, s.1)).collect();
    let cost: Vec<(f64, f64)> = data.spending.iter().map(|s| (s.0, s.2)).collect();
    let call_limit: Vec<Limit<'_>> =
        data.max_calls.map(|m| Limit { y: m as f64, label: "budget" }).into_iter().collect();
    let cost_limit: Vec<Limit<'_>> = data.max_cost.map(|m| Limit { y: m, label: "budget" }).into_iter().collect();
    // The budget holds for teachers and judge together.
    let judge: Vec<(f64, f64)> = data.judge_spending.iter().map(|s| (s.0, s.3)).collect();
    let total = running_total(&cost, &judge);
    let cost_series = if judge.is_empty() {
        vec![Series { label: "cost", points: &cost }]
    } else {
        vec![
            Series { label: "teachers", points: &cost },
            Series { label: "judge", points: &judge },
            Series { label: "total", points: &total },
        ]
    };
    let bars: Vec<(String, f64, String)> = data
        .teachers
        .iter()
        .map(|(name, wins, entered)| {
            (name.clone(), *wins as f64 / (*entered).max(1) as f64, format!("won {wins} of {entered}"))
        })
        .collect();
    html! {
        (line_chart("Teacher calls", "minutes", &[Series { label: "calls", points: &calls }], &call_limit, false))
        (line_chart("Cost (USD)", "minutes", &cost_series, &cost_limit, false))
        (bar_chart("Per-teacher win rate (judge's tournament)", &bars))
    }
}

fn eval_chart(data: &ReportData) -> Markup {
    let categories: Vec<(&str, &[(f64, f64)])> = data
        .metrics
        .iter()
        .filter_map(|(name, points)| name.strip_prefix("eval/").map(|c| (c, points.as_slice())))
        .collect();
    let lines: Vec<Series<'_>> = categories.iter().map(|(label, points)| Series { label, points }).collect();
    line_chart("Evaluation score by category", "step", &lines, &[], true)
}

/// The judge audit's latest estimates with their intervals, and their course over the run.
fn audit(data: &ReportData) -> Markup {
    const FIGURES: [(&str, &str); 3] = [
        ("position_bias", "position bias (answers \"the first image\" whatever it sees)"),
        ("error_rate", "error rate (wrong on an image against pure noise)"),
        ("consistency", "self-consistency (same answer with the images swapped)"),
    ];
    let (known, swaps) = data.audit_probes;
    let last = |name: &str, suffix: &str| series(data, &format!("audit/{name}{suffix}")).last().map(|p| p.1);
    let lines: Vec<Series<'_>> = FIGURES
        .iter()
        .map(|(name, _)| Series { label: name, points: series(data, &format!("audit/{name}")) })
        .collect();
    html! {
        p {
            (known) " known-answer probes (the teacher's image against noise) and " (swaps) " swapped re-asks; \
             95% intervals. A figure fails the experiment's " code { "[audit]" } " limits only once its whole \
             interval is past them."
        }
        table class="grid-table" {
            tr { th { "figure" } th { "estimate" } th { "95% interval" } }
            @for (name, label) in FIGURES {
                tr {
                    td { (label) }
                    @match (last(name, ""), last(name, "_low"), last(name, "_high")) {
                        (Some(e), Some(low), Some(high)) => {
                            td { (format!("{e:.3}")) }
                            td { (format!("{low:.3} to {high:.3}")) }
                        }
                        _ => td colspan="2" { "no probes yet" },
                    }
                }
            }
        }
        div class="charts" { (line_chart("Judge audit estimates", "step", &lines, &[], true)) }
    }
}

fn data_url(images: &ImageStore, hash: &crate::store::ImageHash) -> String {
    match std::fs::read(images.path(hash)) {
        Ok(bytes) => format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
        Err(_) => String::new(),
    }
}

fn grids(data: &ReportData, images: &ImageStore) -> Markup {
    html! {
        @if data.grids.is_empty() {
            p { "No round has finished yet." }
        }
        @for (round, step, cells) in data.grids.iter().rev() {
            h3 { "Round " (round) " (step " (step) ")" }
            table class="grid-table" {
                tr { th { "prompt" } th { "base model" } th { "teacher" } th { "judge" } }
                @for GridCell { prompt, base, teacher, teacher_better } in cells {
                    @let (class, verdict) = if *teacher_better { ("teacher", "teacher better") } else { ("base", "base as good") };
                    tr {
                        td { (prompt) }
                        td { img class="px" alt="base" src=(data_url(images, base)); }
                        td { img class="px" alt="teacher" src=(data_url(images, teacher)); }
                        td class=(class) { (verdict) }
                    }
                }
            }
        }
    }
}

fn tree(nodes: &[TreeNode]) -> Markup {
    let mut children: BTreeMap<Option<i64>, Vec<&TreeNode>> = BTreeMap::new();
    for node in nodes {
        children.entry(node.parent).or_default().push(node);
    }
    html! {
        p {
            "Each prompt with the prompts the judge wrote from it (expansion: variations of a prompt the model \
             got wrong; mutation: something new after a prompt was mastered). Struck through: deleted from the \
             active set."
        }
        button data-tree="open" { "expand all" }
        button data-tree="close" { "collapse all" }
        div id="tree" { (branch(None, &children, 0)) }
    }
}

/// The children of `parent`, each with its own below it (64 levels at most).
fn branch(parent: Option<i64>, children: &BTreeMap<Option<i64>, Vec<&TreeNode>>, depth: usize) -> Markup {
    let Some(kids) = children.get(&parent) else { return html! {} };
    html! {
        ul {
            @for node in kids {
                @let label = html! {
                    span class={ "badge " (node.origin) } { (node.origin) }
                    span class=[(!node.active).then_some("retired")] title=(format!("sample {}, teacher {}", node.id, node.teacher)) {
                        (node.prompt)
                    }
                };
                @if children.contains_key(&Some(node.id)) && depth < 64 {
                    li { details { summary { (label) } (branch(Some(node.id), children, depth + 1)) } }
                } @else {
                    li { (label) }
                }
            }
        }
    }
}

/// The sum of two cumulative series ordered by time, at every point of either.
fn running_total(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let (mut from_a, mut from_b) = (0.0, 0.0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        let t = if j == b.len() || (i < a.len() && a[i].0 <= b[j].0) {
            from_a = a[i].1;
            i += 1;
            a[i - 1].0
        } else {
            from_b = b[j].1;
            j += 1;
            b[j - 1].0
        };
        out.push((t, from_a + from_b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_judge_or_a_plugin_cannot_write_markup() {
        let hostile = |id, parent| TreeNode {
            id,
            prompt: "<script>alert(1)</script> & \"quotes\"".into(),
            origin: "mutation\" onclick=\"x".into(),
            parent,
            active: id == 1,
            teacher: "<b>t</b>".into(),
        };
        let page = tree(&[hostile(1, None), hostile(2, Some(1))]).into_string();
        assert!(!page.contains("<script>") && !page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"), "{page}");
        assert!(page.contains("class=\"badge mutation&quot; onclick=&quot;x\""), "{page}");
        assert!(page.contains("<details><summary>") && page.contains("class=\"retired\""), "{page}");
    }

    #[test]
    fn the_total_spend_steps_at_every_point_of_either_series() {
        let teachers = [(0.0, 0.04), (2.0, 0.08)];
        let judge = [(1.0, 0.01), (3.0, 0.03)];
        let total = super::running_total(&teachers, &judge);
        let expected = [(0.0, 0.04), (1.0, 0.05), (2.0, 0.09), (3.0, 0.11)];
        for ((t, v), (et, ev)) in total.iter().zip(expected) {
            assert!(*t == et && (v - ev).abs() < 1e-12, "{total:?}");
        }
        assert_eq!(total.len(), 4);
    }
}
