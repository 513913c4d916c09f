//! The director: `evolve run`. Trains the base model without pause while evolution rounds run
//! beside it (EvolveDirector, arXiv 2410.07133, §3).
//!
//! ```text
//!  trainer thread   step step step [render] step step [render] step ...      (trainer.rs)
//!  async director   ... round: select -> render -> judge -> operators -> buy  (round.rs, shop.rs)
//! ```
//!
//! Everything the run decides or pays for is in the ledger before anything depends on it: a new
//! prompt is written down before a teacher is paid for it, a paid image is durable before its
//! row commits, and a judgment is recorded with the render it judged. So `kill -9` at any moment
//! and `evolve run --resume` continue the same run: unfinished purchases are completed from the
//! ledger (nothing is paid twice), an unfinished round is closed as interrupted, and training
//! resumes from the latest checkpoint.
//!
//! Two settings trade that design for a benchmark's needs: `director.lockstep` holds the trainer
//! while a round runs (trainer.rs), so what the set holds at each step does not depend on the
//! machine's load — with purchases and judgments recorded in the order they were asked for
//! (shop.rs, round.rs), a run in lockstep replays from its seed — and `director.spend = "paced"`
//! spreads the call budget over the rounds (pacing.rs).
//!
//! The judge is paid for out of the same budget as the teachers (judge_meter.rs): each call is
//! reserved at its quote against `max_cost_usd` and settled at the tokens it used.

mod judge_meter;
mod pacing;
mod progress;
mod round;
mod routing;
mod shop;
mod trainer;

pub use crate::budget::Budget;
pub use trainer::TrainerStatus;

use crate::acquire::{self, AcquireError};
use crate::audit;
use crate::eval::{EvalError, EvalReport, eval_model};
use crate::experiment::{Experiment, OnAuditFail};
use crate::ranks::{Ranks, RanksError};
use crate::registry::Registry;
use crate::run_model::{self, HostState, RunModelError};
use crate::session::{self, Plugins, Session, SessionError, record_eval};
use crate::store::{NewPending, RoundSummary, RunDir, StoreError, TeacherRecord};
use crate::training_set::TrainingSet;
use evolve_sdk::{Cost, Origin, PluginError};
use judge_meter::MeteredJudge;
use progress::Progress;
use round::{RoundContext, run_round};
use shop::{Purchase, Shop};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use trainer::{Trainer, TrainerSettings};

use crate::lock;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    /// The session (plugins, run directory, runtime) could not start.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A plugin call failed for good where the run cannot go on without it.
    #[error("{what}: {source}")]
    Plugin {
        /// Which call.
        what: String,
        /// Why.
        source: PluginError,
    },
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Initial data could not be acquired.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// The model could not be saved or restored.
    #[error(transparent)]
    Model(#[from] RunModelError),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The trainer thread failed.
    #[error(transparent)]
    Trainer(#[from] trainer::TrainerError),
    /// A data-parallel rank could not start or failed.
    #[error(transparent)]
    Ranks(#[from] RanksError),
    /// A purchase task ended without its result (it panicked).
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// Nothing to train on after buying the initial set.
    #[error("no training samples: every initial prompt failed or was refused")]
    NoSamples,
    /// A new run failed; its directory was removed if nothing in it was paid for or trained.
    #[error("{source}\n{}", if *removed {
        format!("nothing was paid for or trained: {} was removed, so the same command starts afresh", dir.display())
    } else {
        format!("{} keeps what was paid for: fix the cause, then continue it with --resume --run-dir {}", dir.display(), dir.display())
    })]
    Abandoned {
        /// Why it failed.
        source: Box<DirectorError>,
        /// The run directory.
        dir: PathBuf,
        /// Whether it was removed.
        removed: bool,
    },
    /// The experiment's `from_dataset` could not be read.
    #[error("cannot import prompts.from_dataset {}: {source}", path.display())]
    Import {
        /// The dataset.
        path: PathBuf,
        /// Why.
        source: crate::dataset::DatasetError,
    },
}

/// A ledger error is a store error: `?` on a ledger call needs no conversion at each site.
impl From<crate::store::LedgerError> for DirectorError {
    fn from(error: crate::store::LedgerError) -> Self {
        DirectorError::Store(error.into())
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Continue the run there.
    pub resume: bool,
    /// No progress bars.
    pub quiet: bool,
    /// JSON events on stdout instead of progress bars.
    pub json: bool,
    /// Processes that train data-parallel, one per GPU (1: this process alone).
    pub gpus: usize,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Where the run lives.
    pub run_dir: PathBuf,
    /// Trainer steps taken in total.
    pub steps: u64,
    /// Rounds run in total.
    pub rounds: u64,
    /// Teacher calls paid in total.
    pub calls: u64,
    /// Money spent on teacher calls in total.
    pub cost: Cost,
    /// What the judge used and spent in total (its calls that cost money).
    pub judge: crate::store::JudgeTotals,
    /// Samples in the active set at the end.
    pub active: u64,
    /// Fraction of wall time the trainer was busy (this session).
    pub busy: f64,
    /// Per-teacher tournament records.
    pub teachers: Vec<TeacherRecord>,
    /// Final evaluation (absent when interrupted or without an evaluator).
    pub eval: Option<EvalReport>,
    /// Whether the run was interrupted (Ctrl-C) rather than finished.
    pub interrupted: bool,
    /// What the judge audit found wrong at the end (`None`: nothing, or too few probes yet);
    /// with `audit.on_fail = "stop"`, why the run stopped.
    pub audit_failed: Option<String>,
    /// Plugin instances quarantined during the run, and why.
    pub quarantined: Vec<(String, String)>,
}

/// Builds every plugin of `experiment` (teachers, judge, operators, evaluator) and drops them:
/// each runs its own configuration step, so that `evolve check` reports what a plugin would
/// refuse at `run` (a missing price, a bad URL), without buying or training anything.
pub fn check_plugins(experiment: &Experiment, registry: &Registry) -> Result<(), SessionError> {
    session::build_plugins(experiment, registry).map(drop)
}

/// Runs `experiment` (read from `experiment_path`): buys the initial set, then trains while
/// rounds evolve it, until a budget stops the run; ends with the evaluation.
pub fn run(
    experiment: &Experiment,
    experiment_path: &Path,
    registry: &Registry,
    options: &RunOptions,
) -> Result<RunOutcome, DirectorError> {
    let Session { plugins, run, runtime, experiment_dir } =
        Session::open(experiment, experiment_path, registry, &options.run_dir, options.resume)?;
    if options.resume {
        run.ledger.close_interrupted_rounds()?;
    }
    let evaluator = plugins.evaluator.clone();
    let director = Director::new(experiment, experiment_path, run, plugins, options)?;
    let run = Arc::clone(&director.run);
    let (mut model, mut outcome) = match runtime.block_on(director.run(&experiment_dir, registry)) {
        Ok(done) => done,
        Err(error) if !options.resume => return Err(abandon(run, &options.run_dir, error)),
        Err(error) => return Err(error),
    };
    if let (Some(evaluator), false) = (evaluator, outcome.interrupted) {
        let report = eval_model(model.as_mut(), evaluator.as_ref(), &options.run_dir.display().to_string(), |_, _| {})?;
        record_eval(&lock(&run), outcome.steps, &report)?;
        outcome.eval = Some(report);
        if let Err(error) = crate::report::write(&options.run_dir) {
            tracing::warn!(%error, "report not written");
        }
    }
    Ok(outcome)
}

/// A new run that failed: removed when nothing in it was paid for or trained, so that the same
/// command starts afresh once the cause is fixed; kept otherwise (what was paid for is worth a
/// `--resume`). The error says which.
fn abandon(run: Arc<Mutex<RunDir>>, dir: &Path, error: DirectorError) -> DirectorError {
    // Every part of the run has let go of it by now; if not, it is kept.
    let Ok(run) = Arc::try_unwrap(run) else { return error };
    let run = run.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    let spent = |run: &RunDir| -> Result<bool, StoreError> {
        let (calls, cost) = run.ledger.call_totals()?;
        let judge = run.ledger.judge_totals()?;
        Ok(calls > 0 || cost > Cost::ZERO || judge.calls > 0 || !run.ledger.metric("loss")?.is_empty())
    };
    let keep = spent(&run).unwrap_or(true);
    drop(run);
    let removed = !keep && std::fs::remove_dir_all(dir).is_ok();
    DirectorError::Abandoned { source: Box::new(error), dir: dir.to_path_buf(), removed }
}

/// How the rounds ended.
struct Ended {
    /// Rounds run in total.
    rounds: u64,
    /// Stopped by Ctrl-C.
    interrupted: bool,
    /// What the judge audit found wrong at the last round.
    audit_failed: Option<String>,
}

/// Shows the trainer's progress and the budget while the run goes (a JSON status event every
/// 25 updates), until aborted.
fn spawn_ticker(trainer: &Trainer, budget: Arc<Mutex<Budget>>, progress: Progress) -> tokio::task::JoinHandle<()> {
    let mut status = trainer.status();
    tokio::spawn(async move {
        let mut ticks = 0u64;
        while status.changed().await.is_ok() {
            let now = *status.borrow_and_update();
            let budget = lock(&budget).clone();
            progress.trainer(&now);
            progress.budget(&budget);
            if ticks.is_multiple_of(25) {
                progress.status_event(&now, &budget);
            }
            ticks += 1;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

struct Director {
    experiment: Arc<Experiment>,
    /// The experiment file (data-parallel workers load it too).
    experiment_path: PathBuf,
    run: Arc<Mutex<RunDir>>,
    shop: Arc<Shop>,
    plugins: Plugins,
    options: RunOptions,
}

impl Director {
    fn new(
        experiment: &Experiment,
        experiment_path: &Path,
        run: RunDir,
        mut plugins: Plugins,
        options: &RunOptions,
    ) -> Result<Director, DirectorError> {
        let (calls, teacher_cost) = run.ledger.call_totals()?;
        let cost = teacher_cost + run.ledger.judge_totals()?.cost;
        let max_cost = experiment.budget.max_cost_usd.map(Cost::from_usd);
        let budget = Arc::new(Mutex::new(Budget::new(experiment.budget.max_teacher_calls, max_cost, calls, cost)));
        let experiment = Arc::new(experiment.clone());
        let run = Arc::new(Mutex::new(run));
        plugins.judge = Arc::new(MeteredJudge::new(Arc::clone(&plugins.judge), Arc::clone(&budget), Arc::clone(&run)));
        let teachers = std::mem::take(&mut plugins.teachers);
        let shop = Arc::new(Shop::new(
            teachers,
            Arc::clone(&plugins.judge),
            Arc::clone(&run),
            budget,
            Arc::clone(&experiment),
        ));
        let experiment_path = experiment_path.to_path_buf();
        Ok(Director { experiment, experiment_path, run, shop, plugins, options: options.clone() })
    }

    /// The run's three phases: the initial set bought, the trainer started, rounds until a stop.
    async fn run(
        self,
        experiment_dir: &Path,
        registry: &Registry,
    ) -> Result<(Box<dyn evolve_sdk::BaseModel>, RunOutcome), DirectorError> {
        let budget = &self.experiment.budget;
        let progress = Progress::new(self.options.quiet, self.options.json, budget.max_steps, budget.max_teacher_calls);
        let data = self.initial_set(experiment_dir, &progress).await?;
        let (trainer, first_step) = self.start_trainer(registry, data)?;
        let ticker = spawn_ticker(&trainer, self.shop.budget(), progress.clone());
        let ended = self.rounds(&trainer, first_step, &progress).await;
        ticker.abort();
        self.refresh_report().await;
        let last = *trainer.status().borrow();
        progress.trainer(&last);
        progress.finish();
        let ended = ended?;
        let model = trainer.stop()?;
        let run = lock(&self.run);
        let (calls, cost) = run.ledger.call_totals()?;
        let outcome = RunOutcome {
            run_dir: self.options.run_dir.clone(),
            steps: last.step,
            rounds: ended.rounds,
            calls,
            cost,
            judge: run.ledger.judge_totals()?,
            active: run.ledger.active_count()?,
            busy: last.busy,
            teachers: run.ledger.teacher_records()?,
            quarantined: run.ledger.faults()?,
            eval: None,
            interrupted: ended.interrupted,
            audit_failed: ended.audit_failed,
        };
        Ok((model, outcome))
    }

    /// Phase 1: a dataset brought in and the prompts written down once, bought (or finished
    /// buying) on every start; the active set to train on.
    async fn initial_set(&self, experiment_dir: &Path, progress: &Progress) -> Result<TrainingSet, DirectorError> {
        self.import_dataset(experiment_dir, progress)?;
        self.write_down_seeds(experiment_dir).await?;
        progress.note("buying the initial set");
        let pending = lock(&self.run).ledger.open_pending()?;
        let shop_budget = self.shop.budget();
        self.shop.buy_all(pending, |_: &Purchase| progress.budget(&lock(&shop_budget))).await?;
        let data = self.active_set()?;
        if data.is_empty() {
            return Err(DirectorError::NoSamples);
        }
        Ok(data)
    }

    /// Phase 2: the trainer on its thread, restored from the latest checkpoint when resuming;
    /// with the step it starts from.
    fn start_trainer(&self, registry: &Registry, data: TrainingSet) -> Result<(Trainer, u64), DirectorError> {
        let run_dir = &self.options.run_dir;
        let (mut ranks, group) = match self.options.gpus {
            0 | 1 => (None, None),
            gpus => {
                let (ranks, group) = Ranks::launch(&self.experiment_path, run_dir, gpus)?;
                (Some(ranks), Some(group))
            }
        };
        let mut model = match (&mut ranks, group) {
            (Some(ranks), Some(group)) => {
                let (experiment, registry, run) = (Arc::clone(&self.experiment), registry.clone(), run_dir.clone());
                ranks.while_watching(move || run_model::build_as(&experiment, &registry, &run, Some(&group)))??
            }
            _ => run_model::build(&self.experiment, registry, run_dir)?,
        };
        if ranks.is_some() && !model.data_parallel() {
            return Err(RanksError::Unsupported(self.experiment.base_model.plugin.to_string()).into());
        }
        let restored = match (&mut ranks, self.options.resume) {
            (_, false) => None,
            (None, true) => run_model::restore(model.as_mut(), run_dir)?,
            (Some(ranks), true) => match run_model::latest_checkpoint(run_dir) {
                None => None,
                // Every rank loads this checkpoint at once: the model checks they agree.
                Some(dir) => {
                    ranks.load(&dir)?;
                    let restored = run_model::restore_from(model.as_mut(), &dir)?;
                    ranks.wait()?;
                    Some(restored)
                }
            },
        };
        let state = restored.unwrap_or_else(|| HostState::fresh(&self.experiment));
        let director = &self.experiment.director;
        let settings = TrainerSettings {
            run_dir: self.options.run_dir.clone(),
            batch_size: self.experiment.training.batch_size as usize,
            max_steps: self.experiment.budget.max_steps,
            checkpoint_every: self.experiment.training.checkpoint_every,
            hold_every: director.lockstep.then_some(director.every_steps.max(1)),
        };
        Ok((Trainer::start(model, state, data, settings, ranks)?, state.step))
    }

    /// Phase 3: a round every `every_steps` trainer steps, until training ends, a budget or the
    /// target stops it, the audit stops it, or Ctrl-C.
    async fn rounds(&self, trainer: &Trainer, first_step: u64, progress: &Progress) -> Result<Ended, DirectorError> {
        let budget = &self.experiment.budget;
        let mut status = trainer.status();
        let ctx = RoundContext {
            run: Arc::clone(&self.run),
            experiment: Arc::clone(&self.experiment),
            judge: Arc::clone(&self.plugins.judge),
            operators: Arc::clone(&self.plugins.operators),
            evaluator: self.plugins.evaluator.clone(),
            shop: Arc::clone(&self.shop),
        };
        let every = self.experiment.director.every_steps.max(1);
        let mut next_round = (first_step / every + 1) * every;
        let mut ended = Ended { rounds: lock(&self.run).ledger.round_count()?, interrupted: false, audit_failed: None };
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                reached = status.wait_for(|s| s.step >= next_round || s.finished || s.active == 0) => {
                    if reached.is_err() { break }
                }
                _ = &mut ctrl_c => { ended.interrupted = true; break }
            }
            let now = *status.borrow();
            if now.active == 0 {
                // Every sample was mastered and nothing new could be bought: nothing left to learn.
                progress.note("the active set is empty: every sample was mastered");
                break;
            }
            let done = now.finished || budget.max_steps.is_some_and(|max| now.step >= max);
            if done || now.step < next_round {
                break; // training finished: a round now would buy images nothing trains on
            }
            let id = crate::blocking(|| lock(&self.run).ledger.begin_round(now.step))?;
            ended.rounds += 1;
            let summary: RoundSummary = tokio::select! {
                summary = run_round(&ctx, trainer, id, now.step) => summary?,
                _ = &mut ctrl_c => { ended.interrupted = true; break }
            };
            progress.round(ended.rounds, now.step, &summary);
            self.record_teacher_rates(now.step)?;
            let failed = self.audit_judge(now.step)?;
            if let Some(failed) = failed.as_ref().filter(|&f| ended.audit_failed.as_ref() != Some(f)) {
                tracing::warn!("the judge audit failed: {failed}");
                progress.note(&format!("judge audit failed: {failed}"));
            }
            ended.audit_failed = failed;
            self.refresh_report().await;
            if ended.audit_failed.is_some() && self.experiment.audit.on_fail == OnAuditFail::Stop {
                break;
            }
            next_round += every;
            if self.target_reached(trainer, ended.rounds, now.step).await? {
                break;
            }
            let spent = lock(&self.shop.budget()).exhausted();
            if spent && budget.max_steps.is_none() {
                break;
            }
            // In lockstep the trainer waited for this round; otherwise this does nothing.
            trainer.resume();
        }
        Ok(ended)
    }

    /// Rewrites the HTML report off the async workers; a failure is logged, never fatal.
    async fn refresh_report(&self) {
        let dir = self.options.run_dir.clone();
        match tokio::task::spawn_blocking(move || crate::report::write(&dir)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "report not refreshed"),
            Err(error) => tracing::warn!(%error, "report task failed"),
        }
    }

    /// Brings the experiment's `from_dataset` in as already-paid samples, once per run (before
    /// anything else is in the ledger); every entry left out is reported with its path.
    fn import_dataset(&self, experiment_dir: &Path, progress: &Progress) -> Result<(), DirectorError> {
        let Some(dataset) = &self.experiment.prompts.from_dataset else { return Ok(()) };
        let path = experiment_dir.join(dataset);
        let mut run = lock(&self.run);
        if run.ledger.has_samples()? || run.ledger.has_pending_history()? {
            return Ok(());
        }
        progress.note(&format!("importing {}", path.display()));
        let evaluator = self.plugins.evaluator.as_deref();
        let held_out = |caption: &str| evaluator.is_some_and(|e| e.holds_out(caption));
        let imported = crate::blocking(|| crate::dataset::import_into(&mut run, &path, &held_out))
            .map_err(|source| DirectorError::Import { path: path.clone(), source })?;
        for skipped in &imported.skipped {
            tracing::warn!("from_dataset: skipped {skipped}");
        }
        progress.note(&format!(
            "imported {} image-caption pairs from {} ({} skipped{}; {} more images of prompts already in, left out)",
            imported.added,
            path.display(),
            imported.skipped.len(),
            if imported.skipped.is_empty() { "" } else { ", each named above" },
            imported.repeats,
        ));
        Ok(())
    }

    /// Writes the initial prompts down as pending, once per run.
    async fn write_down_seeds(&self, experiment_dir: &Path) -> Result<(), DirectorError> {
        if lock(&self.run).ledger.has_pending_history()? {
            return Ok(());
        }
        let teachers = self.experiment.teachers.len().max(1) as u64;
        let limit = (self.experiment.budget.max_teacher_calls.unwrap_or(u64::MAX) / teachers).min(1_000_000) as usize;
        let prompts = acquire::seed_prompts(
            &self.experiment,
            experiment_dir,
            self.plugins.judge.as_ref(),
            self.plugins.evaluator.as_deref(),
            limit,
        )
        .await?;
        let wanted: Vec<NewPending> = prompts
            .into_iter()
            .map(|prompt| NewPending { prompt, origin: Origin::Seed, parent: None, round: None })
            .collect();
        crate::blocking(|| lock(&self.run).ledger.add_pending(&wanted))?;
        Ok(())
    }

    /// The active set; its images are read from the store as batches draw them.
    fn active_set(&self) -> Result<TrainingSet, DirectorError> {
        Ok(TrainingSet::active(&lock(&self.run), self.experiment.run.image_size)?)
    }

    fn record_teacher_rates(&self, step: u64) -> Result<(), DirectorError> {
        if self.experiment.teachers.len() < 2 {
            return Ok(());
        }
        let run = lock(&self.run);
        for record in run.ledger.teacher_records()? {
            let rate = record.wins as f64 / record.entered.max(1) as f64;
            run.ledger.record_metric(step, &format!("teacher_win_rate/{}", record.teacher), rate)?;
        }
        Ok(())
    }

    /// Estimates the judge's flaws from every audit probe so far, records them as metrics
    /// (`audit/<figure>`, `_low`, `_high`), and says what fails the experiment's limits.
    fn audit_judge(&self, step: u64) -> Result<Option<String>, DirectorError> {
        let run = lock(&self.run);
        let tally = run.ledger.audit_tally()?;
        let found = audit::estimate(&tally, self.experiment.run.seed ^ step);
        let figures = [
            ("position_bias", found.position_bias),
            ("error_rate", found.error_rate),
            ("consistency", found.consistency),
        ];
        for (name, interval) in figures {
            let Some(i) = interval else { continue };
            for (suffix, value) in [("", i.estimate), ("_low", i.low), ("_high", i.high)] {
                run.ledger.record_metric(step, &format!("audit/{name}{suffix}"), value)?;
            }
        }
        let failed = audit::failures(&found, &self.experiment.audit);
        Ok((!failed.is_empty()).then(|| failed.join("; ")))
    }

    /// Evaluates every `eval_every_rounds` rounds (every 5 by default when the experiment has a
    /// target score); whether the target is reached.
    async fn target_reached(&self, trainer: &Trainer, rounds: u64, step: u64) -> Result<bool, DirectorError> {
        let Some(evaluator) = &self.plugins.evaluator else { return Ok(false) };
        let target = self.experiment.budget.target_eval;
        let every = match (self.experiment.director.eval_every_rounds, target) {
            (Some(every), _) => every.max(1),
            (None, Some(_)) => 5,
            (None, None) => return Ok(false),
        };
        if !rounds.is_multiple_of(every) {
            return Ok(false);
        }
        let report = trainer.evaluate(Arc::clone(evaluator)).await?;
        crate::blocking(|| record_eval(&lock(&self.run), step, &report))?;
        Ok(target.is_some_and(|t| report.overall >= t))
    }
}
