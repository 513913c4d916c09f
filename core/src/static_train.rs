//! `evolve train --static`: the paper's baseline. Buy teacher images for a fixed set of prompts
//! once, then train on them uniformly — no judge in the loop, no curation.

use crate::acquire::{self, AcquireError};
use crate::eval::{EvalReport, eval_model};
use crate::experiment::Experiment;
use crate::purchase::TeacherSlot;
use crate::registry::Registry;
use crate::run_model::{self, HostState, RunModelError};
use crate::session::{Session, SessionError, record_eval};
use crate::step_means::{RECORD_EVERY, StepMeans};
use crate::store::StoreError;
use crate::training_set::TrainingSet;
use evolve_sdk::{BaseModel, SplitMix64};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Steps trained when the experiment sets no `budget.max_steps`.
pub const DEFAULT_STEPS: u64 = 2000;

/// Why static training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The session (plugins, run directory, runtime) could not start.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Data could not be acquired.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model could not be saved or restored.
    #[error(transparent)]
    Model(#[from] RunModelError),
    /// A training step failed.
    #[error("training step {step}: {source}")]
    Step {
        /// The step.
        step: u64,
        /// Why.
        source: evolve_sdk::PluginError,
    },
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// The experiment names no teacher (validation refuses such a file; a hand-built one may not).
    #[error("the experiment has no teacher to buy from")]
    NoTeacher,
    /// A purchase still held the run after buying ended (a task that did not finish).
    #[error("a purchase outlived the buying phase")]
    PurchaseOutlived,
    /// The prompt set is empty: nothing to train on.
    #[error("no training samples: the prompt set is empty")]
    NoSamples,
}

/// A ledger error is a store error: `?` on a ledger call needs no conversion at each site.
impl From<crate::store::LedgerError> for TrainError {
    fn from(error: crate::store::LedgerError) -> Self {
        TrainError::Store(error.into())
    }
}

/// Options of a static training run.
#[derive(Debug, Clone)]
pub struct StaticOptions {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Continue the run there.
    pub resume: bool,
    /// No progress bars.
    pub quiet: bool,
}

/// The outcome of a static run.
#[derive(Debug, Clone)]
pub struct StaticOutcome {
    /// Where the run lives.
    pub run_dir: PathBuf,
    /// Steps trained in total.
    pub steps: u64,
    /// Teacher images in the training set.
    pub samples: usize,
    /// Final evaluation, if the experiment has an evaluator.
    pub eval: Option<EvalReport>,
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs static training for `experiment` (read from `experiment_path`).
pub fn run(
    experiment: &Experiment,
    experiment_path: &Path,
    registry: &Registry,
    options: &StaticOptions,
) -> Result<StaticOutcome, TrainError> {
    let run_dir = &options.run_dir;
    let Session { plugins, run, runtime, experiment_dir } =
        Session::open(experiment, experiment_path, registry, run_dir, options.resume)?;
    // The baseline buys from the first teacher and trains on everything: no judging but the
    // judge's prompt writing, no curation.
    let Some(TeacherSlot { label, teacher, .. }) = plugins.teachers.into_iter().next() else {
        return Err(TrainError::NoTeacher);
    };
    let (judge, evaluator) = (plugins.judge, plugins.evaluator);

    // 1. Data: a fixed prompt set, bought once.
    let limit = experiment.budget.max_teacher_calls.unwrap_or(u64::MAX).min(1_000_000) as usize;
    let prompts = runtime.block_on(acquire::seed_prompts(
        experiment,
        &experiment_dir,
        judge.as_ref(),
        evaluator.as_deref(),
        limit,
    ))?;
    let buying = bar(options.quiet, prompts.len() as u64, "buying images {bar:30} {pos}/{len} {msg}");
    buying.set_message(format!("from teacher {label}"));
    let shared = Arc::new(std::sync::Mutex::new(run));
    runtime.block_on(acquire::buy_seed_samples(&shared, experiment, Arc::clone(&teacher), &label, &prompts, |n| {
        buying.set_position(n as u64)
    }))?;
    let run = Arc::into_inner(shared)
        .ok_or(TrainError::PurchaseOutlived)?
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    buying.finish();
    let mut data = TrainingSet::active(&run, experiment.run.image_size)?;
    if data.is_empty() {
        return Err(TrainError::NoSamples);
    }

    // 2. Model, restored when resuming.
    let mut model = run_model::build(experiment, registry, run_dir)?;
    let restored = if options.resume { run_model::restore(model.as_mut(), run_dir)? } else { None };
    let mut state = restored.unwrap_or_else(|| HostState::fresh(experiment));

    // 3. Uniform training.
    let total = experiment.budget.max_steps.unwrap_or(DEFAULT_STEPS);
    let batch_size = experiment.training.batch_size as usize;
    let training =
        bar(options.quiet, total, "training {bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]");
    training.set_position(state.step);
    let mut rng = SplitMix64::new(state.data_rng);
    let started = Instant::now();
    let first_step = state.step;
    let mut means = StepMeans::default();
    let checkpoint = |model: &dyn BaseModel, state: HostState| {
        run_model::save_checkpoint(run_dir, state.step, model, &serde_json::to_value(state).unwrap_or_default())
    };
    while state.step < total {
        let batch = data.batch(&mut rng, batch_size)?;
        let stats = model.train_step(&batch).map_err(|source| TrainError::Step { step: state.step + 1, source })?;
        state.step += 1;
        state.data_rng = rng.state();
        means.add(&stats);
        if (state.step.is_multiple_of(RECORD_EVERY) || state.step == total)
            && let Some(interval) = means.take()
        {
            run.ledger.record_metric(state.step, "loss", interval.loss)?;
            run.ledger.record_metric(state.step, "learning_rate", interval.learning_rate)?;
            let rate = (state.step - first_step) as f64 * batch_size as f64 / started.elapsed().as_secs_f64().max(1e-9);
            training.set_message(format!("loss {:.4}  {rate:.0} img/s", interval.loss));
        }
        training.set_position(state.step);
        if state.step.is_multiple_of(experiment.training.checkpoint_every) {
            checkpoint(model.as_ref(), state)?;
        }
    }
    training.finish();
    checkpoint(model.as_ref(), state)?;

    // 4. Final evaluation.
    let eval = match &evaluator {
        Some(evaluator) => {
            let scoring = bar(options.quiet, 0, "evaluating {bar:30} {pos}/{len} prompts");
            let report =
                eval_model(model.as_mut(), evaluator.as_ref(), &run_dir.display().to_string(), |done, all| {
                    scoring.set_length(all as u64);
                    scoring.set_position(done as u64);
                })?;
            scoring.finish_and_clear();
            record_eval(&run, state.step, &report)?;
            Some(report)
        }
        None => None,
    };
    Ok(StaticOutcome { run_dir: run_dir.clone(), steps: state.step, samples: data.len(), eval })
}
