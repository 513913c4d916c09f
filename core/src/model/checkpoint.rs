//! Writing tensors so that a crash never leaves a torn checkpoint file.

use crate::store::atomic_write;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Serialises `tensors` as safetensors and writes them atomically to `path`.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension("safetensors.partial");
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let bytes = std::fs::read(&tmp).map_err(|e| format!("cannot read back {}: {e}", tmp.display()))?;
    let _ = std::fs::remove_file(&tmp);
    atomic_write(path, &bytes).map_err(|e| e.to_string())
}

/// Reads a safetensors file onto the CPU.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>, String> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}
