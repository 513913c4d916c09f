//! Why a benchmark stopped: one type for every `evolve bench`, each case saying what it was
//! doing and to which file or plugin.

use crate::director::DirectorError;
use crate::experiment::ExperimentError;
use crate::registry::BuildError;
use crate::run_model::RunModelError;
use crate::static_train::TrainError;
use evolve_sdk::PluginError;
use std::path::PathBuf;

/// Errors of the benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A results file kept from an earlier run does not read back.
    #[error("{}:{line}: {what} in `{text}`", path.display())]
    Results {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        what: &'static str,
        /// The line as written.
        text: String,
    },
    /// A folder's record of the settings its points were measured with does not read back.
    #[error("{}: {reason}; delete it to measure the folder anew, or give another --out", path.display())]
    Recorded {
        /// The record.
        path: PathBuf,
        /// Why it does not read.
        reason: String,
    },
    /// `--resume` was asked to keep points measured with other settings than these.
    #[error(
        "{}: the kept points were measured with {flag} {kept}, this run asks for {asked}; \
         give the same {flag} to resume them, or another --out to measure this setting apart",
        path.display()
    )]
    OtherSettings {
        /// The folder's record of its settings.
        path: PathBuf,
        /// The setting's flag.
        flag: &'static str,
        /// Its value for the kept points.
        kept: String,
        /// The value asked for now.
        asked: String,
    },
    /// A generated experiment was refused.
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    /// A director run failed.
    #[error(transparent)]
    Run(#[from] DirectorError),
    /// A static training run failed.
    #[error(transparent)]
    Static(#[from] TrainError),
    /// A run ended without its evaluation.
    #[error("the {0} run produced no evaluation")]
    NoEvaluation(String),
    /// A kept run's ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] crate::store::LedgerError),
    /// A run's model could not be opened.
    #[error(transparent)]
    RunModel(#[from] RunModelError),
    /// A finished run's model could not be scored again.
    #[error(transparent)]
    ScoreRun(#[from] crate::eval::ScoreRunError),
    /// A plugin could not be built.
    #[error("cannot build {plugin}: {source}")]
    Build {
        /// The plugin, as referred to.
        plugin: String,
        /// Why.
        source: BuildError,
    },
    /// A plugin or model call failed.
    #[error("{what}: {source}")]
    Plugin {
        /// What was being done.
        what: String,
        /// Why.
        source: PluginError,
    },
    /// A probe plugin answered differently from the built-in it mirrors.
    #[error("the {probe} probe decided {got}, the built-in {expected}: is it the probe?")]
    ProbeMismatch {
        /// Which probe.
        probe: &'static str,
        /// Its answer.
        got: String,
        /// The built-in's.
        expected: String,
    },
    /// A tensor operation of a measured step failed (out of device memory, say).
    #[error("{what}: {source}")]
    Tensor {
        /// What was being measured.
        what: String,
        /// candle's error.
        source: evolve_dit::candle_core::Error,
    },
    /// A generated input image has the wrong size (a bug in the benchmark).
    #[error(transparent)]
    Image(#[from] evolve_sdk::ImageError),
    /// The default config of a built-in does not parse (a bug in the plugin).
    #[error("the default config: {0}")]
    Config(#[from] serde_json::Error),
    /// An external reference (a PyTorch script) could not be run or did not answer.
    #[error("{command}: {reason}")]
    Reference {
        /// The command line.
        command: String,
        /// What went wrong, with the way to fix it where there is one.
        reason: String,
    },
}

impl BenchError {
    /// A `map_err` for I/O on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + use<> {
        let path = path.to_path_buf();
        move |source| BenchError::Io { path, source }
    }

    /// A `map_err` for a plugin call doing `what`.
    pub fn plugin(what: impl Into<String>) -> impl FnOnce(PluginError) -> BenchError {
        let what = what.into();
        move |source| BenchError::Plugin { what, source }
    }
}
