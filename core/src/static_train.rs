//! `evolve train --static`: the paper's baseline. Buy teacher images for a fixed set of prompts
//! once, then train on them uniformly — no judge in the loop, no curation.

use crate::acquire::{self, AcquireError};
use crate::eval::{EvalReport, eval_model};
use crate::experiment::Experiment;
use crate::registry::Registry;
use crate::run_model::{self, HostState, RunModelError};
use crate::step_means::{RECORD_EVERY, StepMeans};
use crate::store::{RunDir, StoreError};
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
    /// A plugin could not be built.
    #[error("cannot build {what}: {source}")]
    Build {
        /// Which plugin.
        what: String,
        /// Why.
        source: crate::registry::BuildError,
    },
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
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
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
    let run = if options.resume {
        RunDir::open(run_dir)?
    } else {
        let resolved = crate::experiment::resolved_toml(experiment, experiment_path).map_err(TrainError::Other)?;
        RunDir::create(run_dir, &resolved)?
    };
    let build = |what: &str, e| TrainError::Build { what: what.to_string(), source: e };
    let registry = registry.clone().with_settings(&experiment.plugins);
    let teacher_section = &experiment.teachers[0];
    let label = teacher_section.label().to_string();
    let teacher: Arc<dyn evolve_sdk::Teacher> = Arc::from(
        registry
            .teacher(&teacher_section.plugin, teacher_section.config.clone(), &run_model::context(experiment, &label))
            .map_err(|e| build(&format!("teacher {label}"), e))?,
    );
    let judge = registry
        .judge(&experiment.judge.plugin, experiment.judge.config.clone(), &run_model::context(experiment, "judge"))
        .map_err(|e| build("judge", e))?;
    let evaluator = match &experiment.eval {
        Some(section) => Some(
            registry
                .evaluator(&section.plugin, section.config.clone(), &run_model::context(experiment, "eval"))
                .map_err(|e| build("evaluator", e))?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| TrainError::Other(format!("async runtime: {e}")))?;

    // 1. Data: a fixed prompt set, bought once.
    let limit = experiment.budget.max_teacher_calls.unwrap_or(u64::MAX).min(1_000_000) as usize;
    let base = experiment_path.parent().unwrap_or(Path::new("."));
    let prompts =
        runtime.block_on(acquire::seed_prompts(experiment, base, judge.as_ref(), evaluator.as_deref(), limit))?;
    let buying = bar(options.quiet, prompts.len() as u64, "buying images {bar:30} {pos}/{len} {msg}");
    buying.set_message(format!("from teacher {label}"));
    let shared = Arc::new(std::sync::Mutex::new(run));
    runtime.block_on(acquire::buy_seed_samples(&shared, experiment, Arc::clone(&teacher), &label, &prompts, |n| {
        buying.set_position(n as u64)
    }))?;
    let run = Arc::try_unwrap(shared)
        .map_err(|_| TrainError::Other("a purchase outlived the buying phase".into()))?
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    buying.finish();
    let mut data = TrainingSet::active(&run, experiment.run.image_size)?;
    if data.is_empty() {
        return Err(TrainError::Other("no training samples: the prompt set is empty".into()));
    }

    // 2. Model, restored when resuming.
    let mut model = run_model::build(experiment, &registry, run_dir)?;
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
            for c in &report.categories {
                run.ledger.record_metric(state.step, &format!("eval/{}", c.category), c.score)?;
            }
            run.ledger.record_metric(state.step, "eval/overall", report.overall)?;
            Some(report)
        }
        None => None,
    };
    Ok(StaticOutcome { run_dir: run_dir.clone(), steps: state.step, samples: data.len(), eval })
}
