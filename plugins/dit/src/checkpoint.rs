//! Checkpoint files. The host hands [`BaseModel::save`](evolve_sdk::BaseModel::save) a fresh
//! folder that it renames into place once complete, so a crash never exposes a torn checkpoint;
//! the files here only have to be durable (fsynced) before that rename.

use candle_core::Tensor;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a checkpoint file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Writing or syncing failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tensors do not serialise.
    #[error("cannot serialise {}: {source}", path.display())]
    Serialise {
        /// The file.
        path: PathBuf,
        /// Why.
        source: safetensors::SafeTensorError,
    },
    /// The file is missing or not safetensors.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: candle_core::Error,
    },
}

impl From<CheckpointError> for evolve_sdk::PluginError {
    fn from(error: CheckpointError) -> Self {
        evolve_sdk::PluginError::Failed(error.to_string())
    }
}

/// Writes `bytes` to `path` and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| CheckpointError::Write { path: path.to_path_buf(), source })
}

/// Serialises `tensors` as safetensors into `path`, fsynced.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), CheckpointError> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|source| CheckpointError::Serialise { path: path.to_path_buf(), source })?;
    write_synced(path, &bytes)
}

/// Reads a safetensors file onto the CPU.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>, CheckpointError> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|source| CheckpointError::Read { path: path.to_path_buf(), source })
}
