//! What the terminal shows while a run goes: trainer steps, rounds, teacher calls — as progress
//! bars, or (`--json`) as one JSON event per line on stdout for scripts. Without a terminal (a
//! log file, CI, `nohup`), where bars would not show, each round and note is one plain line on
//! stderr instead.

use super::trainer::TrainerStatus;
use crate::budget::Budget;
use crate::store::RoundSummary;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The run's progress bars (hidden with `--quiet` and `--json`); clones share the bars.
#[derive(Clone)]
pub struct Progress {
    steps: ProgressBar,
    rounds: ProgressBar,
    calls: ProgressBar,
    json: bool,
    /// Plain lines instead of bars: stderr is not a terminal.
    lines: bool,
}

/// Prints one JSON event line on stdout.
pub fn emit(event: serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl Progress {
    /// Bars for a run of `max_steps` steps (`None`: open-ended) and `max_calls` teacher calls.
    pub fn new(quiet: bool, json: bool, max_steps: Option<u64>, max_calls: Option<u64>) -> Progress {
        let multi = MultiProgress::with_draw_target(if quiet || json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let steps = multi.add(styled(
            ProgressBar::new(max_steps.unwrap_or(0)),
            "train  {bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        ));
        let rounds = multi.add(styled(ProgressBar::new(0), "rounds {pos:>3}  {msg}"));
        let calls =
            multi.add(styled(ProgressBar::new(max_calls.unwrap_or(0)), "buy    {bar:30} {pos}/{len} calls  {msg}"));
        rounds.set_message("first round after director.every_steps steps");
        let lines = !quiet && !json && !std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress { steps, rounds, calls, json, lines }
    }

    /// Emits a status event (JSON mode only; the bars update continuously).
    pub fn status_event(&self, status: &TrainerStatus, budget: &Budget) {
        if self.json {
            emit(serde_json::json!({
                "event": "status", "step": status.step, "loss": status.loss, "busy": status.busy,
                "images_per_second": status.images_per_second, "active": status.active,
                "teacher_calls": budget.calls(), "cost_usd": budget.cost().usd(),
            }));
        }
    }

    /// Shows the trainer's latest figures.
    pub fn trainer(&self, status: &TrainerStatus) {
        self.steps.set_position(status.step);
        self.steps.set_message(format!(
            "loss {:.4}  {:.0} img/s  busy {:.0}%  set {}",
            status.loss,
            status.images_per_second,
            status.busy * 100.0,
            status.active
        ));
    }

    /// Shows the budget's spending.
    pub fn budget(&self, budget: &Budget) {
        self.calls.set_position(budget.calls());
        self.calls.set_message(format!("{}", budget.cost()));
    }

    /// Shows a finished round.
    pub fn round(&self, number: u64, step: u64, summary: &RoundSummary) {
        if self.json {
            emit(serde_json::json!({
                "event": "round", "round": number, "step": step, "selected": summary.selected,
                "teacher_wins": summary.teacher_wins, "added": summary.added, "mutated": summary.mutated,
                "deactivated": summary.deactivated, "rejudged": summary.rejudged,
            }));
        }
        self.rounds.set_position(number);
        let win = 100.0 * summary.teacher_wins as f64 / summary.selected.max(1) as f64;
        let line = format!(
            "judged {}  teacher won {win:.0}%  +{} added ({} mutated)  -{} mastered",
            summary.selected, summary.added, summary.mutated, summary.deactivated
        );
        if self.lines {
            eprintln!("round {number} at step {step}: {line}; {} teacher calls", self.calls.position());
        }
        self.rounds.set_message(line);
    }

    /// Shows what the run is doing outside rounds.
    pub fn note(&self, message: &str) {
        if self.json {
            emit(serde_json::json!({ "event": "note", "message": message }));
        }
        if self.lines {
            eprintln!("{message}");
        }
        self.rounds.set_message(message.to_string());
    }

    /// Leaves the bars on screen as they are.
    pub fn finish(&self) {
        self.steps.abandon();
        self.rounds.abandon();
        self.calls.abandon();
    }
}
