//! What the terminal shows while a run goes: trainer steps, rounds, teacher calls.

use super::budget::Budget;
use super::trainer::TrainerStatus;
use crate::store::RoundSummary;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The run's progress bars (hidden with `--quiet`); clones share the bars.
#[derive(Clone)]
pub struct Progress {
    steps: ProgressBar,
    rounds: ProgressBar,
    calls: ProgressBar,
}

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl Progress {
    /// Bars for a run of `max_steps` steps (`None`: open-ended) and `max_calls` teacher calls.
    pub fn new(quiet: bool, max_steps: Option<u64>, max_calls: Option<u64>) -> Progress {
        let multi = MultiProgress::with_draw_target(if quiet {
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
        Progress { steps, rounds, calls }
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
    pub fn round(&self, number: u64, summary: &RoundSummary) {
        self.rounds.set_position(number);
        let win = 100.0 * summary.teacher_wins as f64 / summary.selected.max(1) as f64;
        self.rounds.set_message(format!(
            "judged {}  teacher won {win:.0}%  +{} added ({} mutated)  -{} mastered",
            summary.selected, summary.added, summary.mutated, summary.deactivated
        ));
    }

    /// Shows what the run is doing outside rounds.
    pub fn note(&self, message: &str) {
        self.rounds.set_message(message.to_string());
    }

    /// Leaves the bars on screen as they are.
    pub fn finish(&self) {
        self.steps.abandon();
        self.rounds.abandon();
        self.calls.abandon();
    }
}
