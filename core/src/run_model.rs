//! A run's base model: built from the run's own experiment file and restored from its latest
//! checkpoint, for sampling, evaluation and resuming.

use crate::experiment::{self, Experiment};
use crate::registry::Registry;
use crate::store::atomic_write;
use evolve_sdk::{BaseModel, DataParallel, PluginContext, PluginError};
use std::path::{Path, PathBuf};

/// Why a run's model could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum RunModelError {
    /// The run's experiment file is missing or invalid.
    #[error(transparent)]
    Experiment(#[from] experiment::ExperimentError),
    /// The base model could not be built.
    #[error("cannot build base model `{plugin}`: {source}")]
    Build {
        /// The plugin.
        plugin: String,
        /// Why.
        source: crate::registry::BuildError,
    },
    /// The run has no checkpoint yet.
    #[error("{} has no checkpoint yet (train it first)", .0.display())]
    NoCheckpoint(PathBuf),
    /// Saving or loading failed.
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// Why.
        source: PluginError,
    },
    /// A file-system operation failed.
    #[error("{0}")]
    Io(String),
}

/// What the host keeps in each checkpoint beside the model: where the training stream is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostState {
    /// Optimiser steps taken.
    pub step: u64,
    /// State of the batch-drawing generator.
    pub data_rng: u64,
}

impl HostState {
    /// The state of a run that has not trained yet.
    pub fn fresh(experiment: &Experiment) -> HostState {
        HostState { step: 0, data_rng: evolve_sdk::SplitMix64::from_parts(&[experiment.run.seed, 0xDA7A]).state() }
    }
}

/// Restores `model` from the run's latest checkpoint, if it has one, and returns the host state
/// saved beside it.
pub fn restore(model: &mut dyn BaseModel, run: &Path) -> Result<Option<HostState>, RunModelError> {
    latest_checkpoint(run).map(|dir| restore_from(model, &dir)).transpose()
}

/// Restores `model` from the checkpoint folder `dir` and returns the host state saved beside it.
pub fn restore_from(model: &mut dyn BaseModel, dir: &Path) -> Result<HostState, RunModelError> {
    model.load(dir).map_err(|source| RunModelError::Checkpoint { path: dir.to_path_buf(), source })?;
    let host = dir.join("host.json");
    let bytes = std::fs::read(&host).map_err(|e| RunModelError::Io(format!("{}: {e}", host.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| RunModelError::Io(format!("{}: {e}", host.display())))
}

/// The context every plugin of `experiment` is built with, for plugin instance `instance`.
pub fn context(experiment: &Experiment, instance: &str) -> PluginContext {
    let seed = evolve_sdk::SplitMix64::from_parts(&[
        experiment.run.seed,
        instance.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    ])
    .next_u64();
    PluginContext::new(instance, seed).with_run(experiment.run.image_size, &experiment.run.device)
}

/// Builds the experiment's base model for the run at `run`, freshly initialised; it may cache
/// what it derives (e.g. VAE latents) in `run/cache/`.
pub fn build(experiment: &Experiment, registry: &Registry, run: &Path) -> Result<Box<dyn BaseModel>, RunModelError> {
    build_as(experiment, registry, run, None)
}

/// [`build`] as one rank of a data-parallel run (on the rank's own GPU), or alone (`None`).
pub fn build_as(
    experiment: &Experiment,
    registry: &Registry,
    run: &Path,
    group: Option<&DataParallel>,
) -> Result<Box<dyn BaseModel>, RunModelError> {
    let section = &experiment.base_model;
    let mut ctx = context(experiment, "base_model").with_cache_dir(run.join("cache"));
    if let Some(group) = group {
        ctx = ctx
            .with_run(experiment.run.image_size, &crate::ranks::rank_device(&experiment.run.device, group.rank))
            .with_data_parallel(group.clone());
    }
    registry
        .base_model(&section.plugin, section.config.clone(), &ctx)
        .map_err(|source| RunModelError::Build { plugin: section.plugin.to_string(), source })
}

/// The latest complete checkpoint folder of the run at `run`, if any: the one `LATEST` names, or,
/// if that one is gone or incomplete, the newest complete one.
pub fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    let root = run.join("checkpoints");
    if let Ok(name) = std::fs::read_to_string(root.join("LATEST")) {
        let dir = root.join(name.trim());
        if is_checkpoint(&dir) {
            return Some(dir);
        }
        tracing::warn!(latest = %name.trim(), "the checkpoint LATEST names is missing or incomplete; using the newest complete one");
    }
    checkpoint_dirs(&root).into_iter().rev().find(|dir| is_checkpoint(dir))
}

/// Whether `dir` is a complete checkpoint folder: [`save_checkpoint`] writes `host.json` into
/// it last, before the folder is renamed into place, whatever the base model stores.
pub fn is_checkpoint(dir: &Path) -> bool {
    dir.join("host.json").is_file()
}

/// The checkpoint folders under `root`, oldest first: `step-N`, then its re-saves `step-N-K`.
fn checkpoint_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    // Zero-padded step and re-save numbers: the names sort in the order they were written.
    dirs.sort();
    dirs
}

/// Saves `model` (and `host_state`, the caller's own JSON) as checkpoint `step`, atomically:
/// written into a temporary folder, renamed into place, then named in `LATEST`. Keeps the two
/// newest checkpoints.
pub fn save_checkpoint(
    run: &Path,
    step: u64,
    model: &dyn BaseModel,
    host_state: &serde_json::Value,
) -> Result<PathBuf, RunModelError> {
    let root = run.join("checkpoints");
    // A re-save at the same step (a stop or a resume with no step between) gets a name of its
    // own, after every earlier save of that step: deleting the folder LATEST names before its
    // replacement is in place would leave a crash in between with no checkpoint, and a name
    // sorting before a kept one would be pruned at once.
    let base = format!("step-{step:09}");
    let resaves = checkpoint_dirs(&root)
        .iter()
        .filter_map(|dir| dir.file_name().and_then(|n| n.to_str()).map(String::from))
        .filter_map(|n| if n == base { Some(0) } else { n.strip_prefix(&format!("{base}-"))?.parse::<u64>().ok() })
        .max();
    let name = match resaves {
        None => base,
        Some(last) => format!("{base}-{:06}", last + 1),
    };
    let tmp = root.join(format!(".{name}.partial"));
    let io = |e: std::io::Error| RunModelError::Io(format!("{}: {e}", root.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io)?;
    model.save(&tmp).map_err(|source| RunModelError::Checkpoint { path: tmp.clone(), source })?;
    let state = serde_json::to_vec_pretty(host_state).map_err(|e| RunModelError::Io(e.to_string()))?;
    atomic_write(&tmp.join("host.json"), &state).map_err(|e| RunModelError::Io(e.to_string()))?;
    let dir = root.join(&name);
    std::fs::rename(&tmp, &dir).map_err(io)?;
    atomic_write(&root.join("LATEST"), name.as_bytes()).map_err(|e| RunModelError::Io(e.to_string()))?;
    for stale in checkpoint_dirs(&root).iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(stale);
    }
    Ok(dir)
}

/// Opens the run at `run`: its experiment, and its base model restored from the latest
/// checkpoint, with the host state saved beside it.
pub fn open(
    run: &Path,
    registry: &Registry,
) -> Result<(Experiment, Box<dyn BaseModel>, serde_json::Value), RunModelError> {
    let experiment = experiment::load(&run.join("experiment.toml"), registry)?;
    let mut model = build(&experiment, registry, run)?;
    let dir = latest_checkpoint(run).ok_or_else(|| RunModelError::NoCheckpoint(run.to_path_buf()))?;
    model.load(&dir).map_err(|source| RunModelError::Checkpoint { path: dir.clone(), source })?;
    let host = std::fs::read(dir.join("host.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((experiment, model, host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_sdk::{Image, PluginError, SampleRequest, StepStats, TrainBatch};

    /// A model whose checkpoint is one file holding its `version`.
    struct Versioned(u32);

    impl BaseModel for Versioned {
        fn train_step(&mut self, _: &TrainBatch) -> Result<StepStats, PluginError> {
            unreachable!("not trained here")
        }
        fn generate(&mut self, _: &SampleRequest) -> Result<Vec<Image>, PluginError> {
            Ok(vec![])
        }
        fn save(&self, dir: &Path) -> Result<(), PluginError> {
            std::fs::write(dir.join("version"), self.0.to_string()).map_err(|e| PluginError::Failed(e.to_string()))
        }
        fn load(&mut self, _: &Path) -> Result<(), PluginError> {
            Ok(())
        }
    }

    #[test]
    fn a_resave_at_the_same_step_never_deletes_the_checkpoint_latest_names() {
        let run = tempfile::tempdir().unwrap();
        let first = save_checkpoint(run.path(), 5, &Versioned(1), &serde_json::Value::Null).unwrap();
        let second = save_checkpoint(run.path(), 5, &Versioned(2), &serde_json::Value::Null).unwrap();
        assert_ne!(first, second, "the re-save went into the folder LATEST named");
        assert!(first.join("version").is_file(), "the previous checkpoint is kept until the next prune");
        assert_eq!(latest_checkpoint(run.path()), Some(second.clone()));
        let third = save_checkpoint(run.path(), 6, &Versioned(3), &serde_json::Value::Null).unwrap();
        assert_eq!(latest_checkpoint(run.path()), Some(third));
        assert!(!first.exists() && second.exists(), "the two newest are kept, in the order written");
    }

    #[test]
    fn many_resaves_at_one_step_keep_what_latest_names() {
        // Found by the kill -9 soak: after `step-5` was pruned, a fourth save at step 5 took the
        // free name `step-5`, which sorts before the kept re-saves and was pruned at once.
        let run = tempfile::tempdir().unwrap();
        for version in 0..6 {
            let saved = save_checkpoint(run.path(), 5, &Versioned(version), &serde_json::Value::Null).unwrap();
            assert_eq!(latest_checkpoint(run.path()), Some(saved.clone()), "save {version}");
            assert!(saved.join("version").is_file(), "save {version} was pruned");
        }
    }

    #[test]
    fn a_missing_latest_falls_back_to_the_newest_complete_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        let kept = save_checkpoint(run.path(), 5, &Versioned(1), &serde_json::Value::Null).unwrap();
        let broken = save_checkpoint(run.path(), 6, &Versioned(2), &serde_json::Value::Null).unwrap();
        std::fs::remove_file(broken.join("host.json")).unwrap();
        assert_eq!(latest_checkpoint(run.path()), Some(kept));
    }
}
