//! The transformer's training step alone, at PixArt's shapes, on any device: what a real-scale
//! run spends its time on (latents and T5 encodings are computed once and cached, so a step is
//! the DiT forward, backward, AdamW and EMA). Reported as images/s, achieved TFLOP/s, and MFU
//! against the device's bf16 matrix-product rate measured in the same process.
//!
//! `bench/device/train-throughput.sh` runs it beside PyTorch references of the same shapes.

use super::BenchError;
use evolve_dit::candle_core::{DType, Device, Tensor};
use evolve_dit::dit::{Dit, DitShape};
use evolve_dit::optim::{AdamW, OptimConfig};
use evolve_dit::params::ParamBuilder;
use evolve_dit::text::Caption;
use evolve_dit::{Precision, Preset, dit::BlockPath};
use std::time::Instant;

/// One configuration: a preset over `latent` × `latent` VAE latents (4 channels, 8× down).
#[derive(Debug, Clone, Copy)]
pub struct TransformerCase {
    /// Label in the output (and `--case`).
    pub name: &'static str,
    /// Model preset.
    pub preset: Preset,
    /// Latent side (the image side over 8).
    pub latent: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed steps (after two untimed ones).
    pub steps: usize,
}

/// PixArt-XL/2 at 256 and 512 px (the anchors of issue #19 are at 512 px, batch 16), and a tiny
/// case the CPU tests run.
pub const CASES: [TransformerCase; 3] = [
    TransformerCase { name: "pixart-xl-256", preset: Preset::Xl, latent: 32, batch: 64, steps: 10 },
    TransformerCase { name: "pixart-xl-512", preset: Preset::Xl, latent: 64, batch: 16, steps: 10 },
    TransformerCase { name: "tiny-latent", preset: Preset::Tiny, latent: 8, batch: 4, steps: 2 },
];

/// How the step runs.
#[derive(Debug, Clone, Copy)]
pub struct StepSettings {
    /// Compute precision.
    pub precision: Precision,
    /// Gradient checkpointing of the blocks.
    pub checkpointing: bool,
}

/// The transformer's sizes for `case`: PixArt-alpha's latent input (4 channels in, 8 out with
/// the learned variance) and T5-XXL captions.
pub fn shape(case: &TransformerCase) -> DitShape {
    DitShape { in_channels: 4, learned_sigma: true, ..case.preset.shape(case.latent) }
}

/// Floating-point operations of one image's training step (forward, and backward at twice the
/// forward), counting matrix products only: per block the self-attention's four projections
/// and its scores and weighted sum, the cross-attention's, and the 4x MLP; then the caption
/// projection. The convention MFU figures use (recomputation is not counted).
pub fn flops_per_image(shape: &DitShape) -> f64 {
    let n = ((shape.image_size / shape.patch) * (shape.image_size / shape.patch)) as f64;
    let (c, l) = (shape.hidden as f64, shape.caption_len as f64);
    let block = 2.0 * (4.0 * n * c * c + 2.0 * n * n * c)
        + 2.0 * (2.0 * n * c * c + 2.0 * l * c * c + 2.0 * n * l * c)
        + 2.0 * (8.0 * n * c * c);
    let caption = 2.0 * l * (shape.caption_channels as f64 * c + c * c);
    3.0 * (shape.depth as f64 * block + caption)
}

/// Images per second of `case`'s training step on `device`.
pub fn measure(case: &TransformerCase, device: &Device, settings: StepSettings) -> Result<f64, BenchError> {
    let model = |source| BenchError::Tensor { what: format!("{} training step", case.name), source };
    let shape = shape(case);
    let params = ParamBuilder::new(0, DType::F32, device);
    let dit = Dit::new(params.var_builder(), shape).map_err(model)?;
    let dit = dit.computing_in(settings.precision.compute_dtype());
    let store = params.finish();
    let mut optim = AdamW::new(OptimConfig::default(), store.vars()).map_err(model)?;
    let b = case.batch;
    let x = Tensor::randn(0f32, 1.0, (b, shape.in_channels, case.latent, case.latent), device).map_err(model)?;
    let features = Tensor::randn(0f32, 1.0, (b, shape.caption_len, shape.caption_channels), device).map_err(model)?;
    let caption = Caption { features, mask: None };
    let timesteps: Vec<f64> = (0..b).map(|i| ((i * 397) % 1000) as f64).collect();
    let keep = vec![true; b];
    let mut step = || -> evolve_dit::candle_core::Result<f32> {
        let y = dit.project_caption(&caption, &keep)?;
        let path = if settings.checkpointing { BlockPath::Recompute } else { dit.fast_path(&x, &y, true) };
        let (out, block_grads) = dit.forward_with(&x, &timesteps, &y, path)?;
        let loss = (dit.prediction_part(&out)? - &x)?.sqr()?.mean_all()?;
        let mut grads = loss.backward()?;
        block_grads.add_to(&mut grads, None)?;
        optim.step(store.vars(), &grads)?;
        // Reading the loss waits for the device.
        loss.to_scalar::<f32>()
    };
    for _ in 0..2 {
        step().map_err(model)?;
    }
    let started = Instant::now();
    for _ in 0..case.steps {
        step().map_err(model)?;
    }
    Ok((b * case.steps) as f64 / started.elapsed().as_secs_f64())
}

/// The device's dense bf16 matrix-product rate in TFLOP/s: `side`³ products, two untimed, then
/// the mean of `repeats` (on random data: zeros run faster than real data).
pub fn matmul_peak(device: &Device, side: usize, repeats: usize) -> Result<f64, BenchError> {
    let model = |source| BenchError::Tensor { what: "bf16 matrix product".into(), source };
    let a = Tensor::randn(0f32, 1.0, (side, side), device).and_then(|t| t.to_dtype(DType::BF16)).map_err(model)?;
    let b = Tensor::randn(0f32, 1.0, (side, side), device).and_then(|t| t.to_dtype(DType::BF16)).map_err(model)?;
    let run = || a.matmul(&b).and_then(|c| device.synchronize().map(|()| c));
    for _ in 0..2 {
        run().map_err(model)?;
    }
    let started = Instant::now();
    for _ in 0..repeats {
        run().map_err(model)?;
    }
    let seconds = started.elapsed().as_secs_f64() / repeats as f64;
    Ok(2.0 * (side as f64).powi(3) / seconds / 1e12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pixart_xl_512_as_the_anchors_do() {
        // 64.1 img/s at 31.0% MFU (issue #19) implies about 3.7 TFLOP per image against a
        // ~765 TFLOP/s peak.
        let per_image = flops_per_image(&shape(&CASES[1]));
        assert!((3.5e12..3.9e12).contains(&per_image), "{per_image:e}");
    }

    #[test]
    fn the_step_runs_on_the_cpu_in_every_mode() {
        let case = CASES[2];
        for (precision, checkpointing) in [(Precision::F32, false), (Precision::Bf16, true)] {
            let rate = measure(&case, &Device::Cpu, StepSettings { precision, checkpointing }).unwrap();
            assert!(rate > 0.0 && rate.is_finite());
        }
        assert!(matmul_peak(&Device::Cpu, 64, 2).unwrap() > 0.0);
    }
}
