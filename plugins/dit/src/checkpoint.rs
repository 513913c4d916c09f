//! Checkpoint files. The host hands [`BaseModel::save`](evolve_sdk::BaseModel::save) a fresh
//! folder that it renames into place once complete, so a crash never exposes a torn checkpoint;
//! the files here only have to be durable (fsynced) before that rename.

use candle_core::Tensor;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Serialises `tensors` as safetensors into `path`, fsynced.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), String> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| format!("cannot serialise {}: {e}", path.display()))?;
    write_synced(path, &bytes)
}

/// Reads a safetensors file onto the CPU.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>, String> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}
