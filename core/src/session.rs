//! What both training modes start from: `evolve run` (the director) and `evolve train
//! --static` (the baseline) each open a [`Session`] — the experiment's plugins built, its run
//! directory created or reopened, an async runtime — and end by [recording](record_eval) the
//! final evaluation the same way. What they do in between is theirs.

use crate::eval::EvalReport;
use crate::experiment::{Experiment, ResolveError};
use crate::purchase::TeacherSlot;
use crate::registry::{BuildError, Registry};
use crate::run_model;
use crate::store::{RunDir, StoreError};
use evolve_sdk::{Evaluator, Judge, Operator};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The curation chain: each operator with its instance label, in the experiment's order.
pub type OperatorChain = Arc<Vec<(String, Box<dyn Operator>)>>;

/// The experiment's plugins, built.
pub struct Plugins {
    /// The teachers, in the experiment's order.
    pub teachers: Vec<TeacherSlot>,
    /// The judge.
    pub judge: Arc<dyn Judge>,
    /// The curation operators.
    pub operators: OperatorChain,
    /// The evaluator, if the experiment has one.
    pub evaluator: Option<Arc<dyn Evaluator>>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A plugin could not be built.
    #[error("cannot build {what}: {source}")]
    Build {
        /// Which plugin.
        what: String,
        /// Why.
        source: BuildError,
    },
    /// The experiment could not be written down, resolved, in a new run directory.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The run directory could not be created or opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A run directory with the experiment's plugins and a runtime to drive them.
pub struct Session {
    /// The plugins.
    pub plugins: Plugins,
    /// The run directory, created for a new run or opened to resume one.
    pub run: RunDir,
    /// The async runtime purchases and plugin calls run on.
    pub runtime: tokio::runtime::Runtime,
    /// The experiment file's folder, which its relative paths are relative to.
    pub experiment_dir: PathBuf,
}

impl Session {
    /// Builds the plugins of `experiment` (read from `experiment_path`), then creates the run
    /// directory `run_dir` with the resolved experiment in it, or opens it when `resume`.
    /// The plugins come first: a configuration one of them refuses leaves no directory behind.
    pub fn open(
        experiment: &Experiment,
        experiment_path: &Path,
        registry: &Registry,
        run_dir: &Path,
        resume: bool,
    ) -> Result<Session, SessionError> {
        let plugins = build_plugins(experiment, registry)?;
        let run = if resume {
            RunDir::open(run_dir)?
        } else {
            RunDir::create(run_dir, &crate::experiment::resolved_toml(experiment, experiment_path)?)?
        };
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(SessionError::Runtime)?;
        let experiment_dir = experiment_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Session { plugins, run, runtime, experiment_dir })
    }
}

/// Builds every plugin of `experiment`: each runs its own configuration step, which is what
/// `evolve check` relies on to report what a plugin would refuse at `run`.
pub fn build_plugins(experiment: &Experiment, registry: &Registry) -> Result<Plugins, SessionError> {
    let registry = registry.clone().with_settings(&experiment.plugins);
    let build = |what: String| move |source| SessionError::Build { what, source };
    let ctx = |instance: &str| run_model::context(experiment, instance);
    let mut teachers = vec![];
    for section in &experiment.teachers {
        let label = section.label().to_string();
        let teacher = registry
            .teacher(&section.plugin, section.config.clone(), &ctx(&label))
            .map_err(build(format!("teacher {label}")))?;
        teachers.push(TeacherSlot::new(label, Arc::from(teacher)));
    }
    let judge = registry
        .judge(&experiment.judge.plugin, experiment.judge.config.clone(), &ctx("judge"))
        .map_err(build("judge".into()))?;
    let mut operators = vec![];
    for (i, section) in experiment.operators.iter().enumerate() {
        let instance = format!("operator.{i}.{}", section.plugin.label());
        let operator = registry
            .operator(&section.plugin, section.config.clone(), &ctx(&instance))
            .map_err(build(format!("operator {}", section.plugin)))?;
        operators.push((instance, operator));
    }
    let evaluator = match &experiment.eval {
        Some(section) => Some(crate::eval::ImagesPerPrompt::wrap(
            Arc::from(
                registry
                    .evaluator(&section.plugin, section.config.clone(), &ctx("eval"))
                    .map_err(build("evaluator".into()))?,
            ),
            experiment.director.eval_images_per_prompt as usize,
        )),
        None => None,
    };
    Ok(Plugins { teachers, judge: Arc::from(judge), operators: Arc::new(operators), evaluator })
}

/// Records `report`, the evaluation at trainer step `step`, as `eval/…` metrics.
pub fn record_eval(run: &RunDir, step: u64, report: &EvalReport) -> Result<(), StoreError> {
    for c in &report.categories {
        run.ledger.record_metric(step, &format!("eval/{}", c.category), c.score)?;
    }
    run.ledger.record_metric(step, "eval/overall", report.overall)?;
    Ok(())
}
