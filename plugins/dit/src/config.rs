//! The `dit` base model's config: sizes, optimiser, diffusion, sampler, and the parts of a
//! real-scale PixArt-alpha (T5, VAE, a pretrained pipeline) — what an experiment's
//! `[base_model] config` table holds.

use crate::diffusion::{Prediction, Sampler, Schedule, Spacing};
use crate::dit::DitShape;
use crate::optim::OptimConfig;
use candle_core::Device;
use evolve_sdk::PluginError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Named model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// ~1.2M parameters, patch 8: learns the embedded world in CPU minutes (at 32 px a small
    /// object of the shapes world is one token; patch 4 costs four times as much per image and
    /// learned no shapes in the same time).
    #[default]
    Tiny,
    /// ~3.8M parameters, patch 4.
    Small,
    /// PixArt-shaped mid size: width 384, depth 12, 6 heads, patch 2 (~30M).
    Mid,
    /// PixArt-XL/2: width 1152, depth 28, 16 heads, patch 2, T5-XXL-sized captions (~600M).
    Xl,
}

/// The dtype the transformer computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// The parameters' own (f32 on the CPU): the fused CPU kernels apply.
    #[default]
    F32,
    /// Mixed precision: activations and matrix products in bf16, master weights, gradients,
    /// optimiser moments and EMA in f32 (no loss scale: bf16 has f32's exponent range). For
    /// GPUs with bf16 matrix units; on the CPU it runs candle's composed ops, slower than f32.
    Bf16,
}

impl Precision {
    /// The compute dtype, or `None` for the parameters' own.
    pub fn compute_dtype(self) -> Option<candle_core::DType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(candle_core::DType::BF16),
        }
    }
}

impl Preset {
    /// The sizes of this preset at `image_size`.
    pub fn shape(self, image_size: usize) -> DitShape {
        let (hidden, depth, heads, patch, caption_channels, caption_len) = match self {
            Preset::Tiny => (128, 4, 4, 8, 64, 16),
            Preset::Small => (192, 6, 6, 4, 96, 16),
            Preset::Mid => (384, 12, 6, 2, 128, 16),
            Preset::Xl => (1152, 28, 16, 2, 4096, 120),
        };
        DitShape {
            image_size,
            in_channels: 3,
            patch,
            hidden,
            depth,
            heads,
            caption_channels,
            caption_len,
            qk_norm: true,
            null_caption: true,
            learned_sigma: false,
            interpolation_scale: 1,
            resolution_condition: None,
        }
    }
}

/// Config of the `dit` base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DitConfig {
    /// Model size.
    #[serde(default)]
    pub preset: Preset,
    /// Override the preset's transformer blocks.
    #[serde(default)]
    pub depth: Option<usize>,
    /// Override the preset's width.
    #[serde(default)]
    pub hidden: Option<usize>,
    /// Override the preset's attention heads.
    #[serde(default)]
    pub heads: Option<usize>,
    /// Override the preset's patch size.
    #[serde(default)]
    pub patch: Option<usize>,
    /// Optimiser settings.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Micro-batches per optimiser step: each is run forward and backward on its own and their
    /// gradients summed, so a batch larger than the memory holds trains as one step (the same
    /// step, up to the noise each micro-batch draws). 1: the whole batch at once.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 4096))]
    pub accumulate: usize,
    /// Recompute each transformer block's activations in the backward pass instead of keeping
    /// them (gradient checkpointing): far less memory for about a third more compute. For
    /// large models on a GPU; it runs candle's composed ops, not the fused CPU trunk.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// The transformer's compute precision: `f32`, or `bf16` (mixed precision, for GPUs).
    #[serde(default)]
    pub precision: Precision,
    /// Probability of training a sample with the null caption (enables guidance).
    #[serde(default = "dropout")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub caption_dropout: f64,
    /// Noise schedule.
    #[serde(default)]
    pub schedule: Schedule,
    /// What the transformer predicts: `sample` (the clean image; the default, which learns
    /// pixel-space objects far faster) or `epsilon` (the noise; PixArt-alpha's checkpoints).
    /// See [`Prediction`].
    #[serde(default = "prediction")]
    pub prediction: Prediction,
    /// γ of the min-SNR-γ loss weighting ([`Diffusion::loss_weight`](crate::diffusion::Diffusion::loss_weight)). 100000 or more, above
    /// every SNR of both schedules, gives the plain (unclipped) losses.
    #[serde(default = "min_snr_gamma")]
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub min_snr_gamma: f64,
    /// Sampler for generation.
    #[serde(default)]
    pub sampler: Sampler,
    /// How the sampler's timesteps are spread (diffusers' `timestep_spacing`); with
    /// `pretrained`, the scheduler config's.
    #[serde(default)]
    pub timestep_spacing: Spacing,
    /// Shift of the `leading` timesteps (diffusers' `steps_offset`); with `pretrained`, the
    /// scheduler config's.
    #[serde(default)]
    #[schemars(range(max = 999))]
    pub steps_offset: usize,
    /// Sampler steps.
    #[serde(default = "sample_steps")]
    #[schemars(range(min = 1, max = 1000))]
    pub sample_steps: u32,
    /// Classifier-free guidance scale (1 = none).
    #[serde(default = "guidance")]
    #[schemars(range(min = 0.0, max = 50.0))]
    pub guidance: f64,
    /// Vocabulary buckets of the hashing tokenizer (the small text encoder's).
    #[serde(default = "vocab")]
    #[schemars(range(min = 16, max = 1_000_000))]
    pub vocab: usize,
    /// The text encoder: `"small"` (trainable, the embedded default) or `{ t5 = "DIR" }`.
    #[serde(default)]
    pub text_encoder: TextEncoderChoice,
    /// A diffusers PixArt pipeline folder (`transformer/`, `vae/`, `text_encoder/`, `tokenizer/`,
    /// `scheduler/`, as PixArt-alpha is published) to start from: its transformer's sizes and
    /// weights, its VAE and T5 unless `vae` / `text_encoder` name others, and its scheduler's
    /// prediction type and timestep spacing (the `prediction`, `timestep_spacing` and
    /// `steps_offset` settings are then ignored). A run image size of 0 means the model's own.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// A checkpoint folder evolve wrote for a model of these sizes (a run's
    /// `checkpoints/step-000004400`, the one its `checkpoints/LATEST` names) to start from: its
    /// weights, EMA and optimiser state, so training goes on from where that run stopped, on
    /// this run's data (a model trained on one run's images, fine-tuned on another's); this
    /// run's seed draws the noise and its own step count starts at 0. Not with `pretrained`.
    #[serde(default)]
    pub start_from: Option<PathBuf>,
    /// Override LayerNorm on the cross-attention's queries and keys (EvolveDirector's; on by
    /// default for fresh models, off for pretrained PixArt-alpha, and needed off for
    /// `evolve export` to write a model diffusers loads).
    #[serde(default)]
    pub qk_norm: Option<bool>,
    /// A diffusers `AutoencoderKL` folder (`config.json` + `*.safetensors`): train in its latent
    /// space (PixArt-alpha's) instead of on pixels. `run.image_size` stays the pixel size and
    /// must be a multiple of the VAE's downscale (8 for SD's VAE).
    #[serde(default)]
    pub vae: Option<PathBuf>,
    /// Train non-square images in aspect-ratio buckets of about `image_size`² pixels (PixArt's
    /// multi-aspect training; see [`crate::buckets`]); off, every image is centre-cropped to a
    /// square. Square images train the same either way.
    #[serde(default = "yes")]
    pub aspect_buckets: bool,
}

/// Which text encoder turns prompts into caption features.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoderChoice {
    /// A one-layer transformer over hashed words, trained with the model; its width and length
    /// are the preset's `caption_channels` / `caption_len`.
    #[default]
    Small,
    /// A frozen T5 encoder from a folder with `config.json`, `*.safetensors` and `tokenizer.json`
    /// (or a diffusers pipeline's `text_encoder/` beside `tokenizer/`): PixArt-alpha's captions,
    /// 120 tokens with a padding mask, the empty prompt as guidance's unconditional branch.
    T5(PathBuf),
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn dropout() -> f64 {
    0.1
}
fn prediction() -> Prediction {
    Prediction::Sample
}
fn min_snr_gamma() -> f64 {
    5.0
}
fn sample_steps() -> u32 {
    20
}
fn guidance() -> f64 {
    3.0
}
fn vocab() -> usize {
    4096
}

impl DitConfig {
    /// The model sizes at `image_size`, overrides applied (before the text encoder's own).
    pub fn shape(&self, image_size: usize) -> DitShape {
        let mut s = self.preset.shape(image_size);
        s.depth = self.depth.unwrap_or(s.depth);
        s.hidden = self.hidden.unwrap_or(s.hidden);
        s.heads = self.heads.unwrap_or(s.heads);
        s.patch = self.patch.unwrap_or(s.patch);
        s
    }
}

/// Parses `cpu` / `cuda:N`.
pub fn device(spec: &str) -> Result<Device, PluginError> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        cuda if cuda.starts_with("cuda") => {
            let index = cuda.strip_prefix("cuda").and_then(|r| r.strip_prefix(':')).unwrap_or("0");
            let index: usize = index
                .parse()
                .map_err(|_| PluginError::InvalidConfig(format!("bad device {spec:?}; use cpu or cuda:N")))?;
            Device::new_cuda(index).map_err(|e| {
                PluginError::InvalidConfig(format!(
                    "device {spec}: {e} (this evolve may be built without the `cuda` feature)"
                ))
            })
        }
        other => Err(PluginError::InvalidConfig(format!("unknown device {other:?}; use cpu or cuda:N"))),
    }
}
