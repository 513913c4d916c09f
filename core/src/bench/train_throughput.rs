//! Training throughput of the `dit` base model against a PyTorch eager reference of the same
//! architecture and shapes (`bench/dit_torch.py`), measured side by side.

use super::BenchError;
use evolve_dit::candle_core::{DType, Device};
use evolve_dit::{DitConfig, DitModel, Preset};
use evolve_sdk::{BaseModel, Image, SplitMix64, TrainBatch};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One configuration to measure.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Label in the output.
    pub name: &'static str,
    /// Model preset.
    pub preset: Preset,
    /// Image side.
    pub image: u32,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
}

/// The default cases: the embedded default's preset and a PixArt-shaped mid size.
pub const CASES: [Case; 2] = [
    Case { name: "tiny", preset: Preset::Tiny, image: 32, batch: 64, steps: 20 },
    Case { name: "mid", preset: Preset::Mid, image: 32, batch: 16, steps: 4 },
];

/// Alternating rounds of both sides per case; the figures are the medians.
pub const ROUNDS: usize = 3;

/// The median of `values` (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Images per second of `case` in candle.
pub fn measure_candle(case: &Case) -> Result<f64, BenchError> {
    let config = DitConfig { preset: case.preset, ..serde_json::from_str("{}")? };
    let mut model = DitModel::new(config, case.image, &Device::Cpu, 0, DType::F32)
        .map_err(BenchError::plugin("building the model"))?;
    let mut rng = SplitMix64::new(1);
    let side = case.image;
    let images: Vec<Image> = (0..case.batch)
        .map(|_| {
            let px = (0..side * side * 3).map(|_| rng.next_u64() as u8).collect();
            Image::from_rgb(side, side, px)
        })
        .collect::<Result<_, _>>()?;
    let prompts = (0..case.batch).map(|i| format!("prompt number {i} with some words")).collect();
    let batch = TrainBatch { prompts, images };
    for _ in 0..2 {
        model.train_step(&batch).map_err(BenchError::plugin("a training step"))?;
    }
    let start = Instant::now();
    for _ in 0..case.steps {
        model.train_step(&batch).map_err(BenchError::plugin("a training step"))?;
    }
    Ok((case.batch * case.steps) as f64 / start.elapsed().as_secs_f64())
}

/// Images per second of `case` in PyTorch eager, by running `bench/dit_torch.py` with `python`.
pub fn measure_torch(case: &Case, python: &Path, script: &Path) -> Result<f64, BenchError> {
    let command = format!("{} {}", python.display(), script.display());
    let failed = |reason: String| BenchError::Reference { command: command.clone(), reason };
    let shape = case.preset.shape(case.image as usize);
    let out = Command::new(python)
        .arg(script)
        .args(["--hidden", &shape.hidden.to_string(), "--depth", &shape.depth.to_string()])
        .args(["--heads", &shape.heads.to_string(), "--patch", &shape.patch.to_string()])
        .args(["--image", &case.image.to_string(), "--batch", &case.batch.to_string()])
        .args(["--caption-channels", &shape.caption_channels.to_string()])
        .args(["--caption-len", &shape.caption_len.to_string(), "--steps", &case.steps.to_string()])
        .output()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(failed(format!(
            "failed: {}\n(install PyTorch with bench/setup-torch.sh)",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("torch img/s: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| failed(format!("no `torch img/s:` line in its output: {stdout}")))
}
