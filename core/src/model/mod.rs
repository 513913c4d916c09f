//! The built-in base model `dit`: a PixArt-alpha diffusion transformer in candle with a small
//! trainable text encoder, trained on the 1000-step DDPM process (clean-image or noise
//! prediction, min-SNR-γ weighted) and sampled with DDIM or DPM-Solver++(2M) and
//! classifier-free guidance.
//!
//! | module | what |
//! |---|---|
//! | [`ops`] | custom ops with backward passes (softmax, layer norm, GELU) that candle lacks |
//! | [`bmm`] | batched matrix products for attention, parallel over the batch |
//! | [`fused`] | fused adaLN modulation, gated residual, affine and bias kernels |
//! | [`layers`] | linear, attention (with QK norm), feed-forward |
//! | [`dit`] | the transformer (reference path through candle's ops, any device) |
//! | [`stack`] | the transformer trunk (blocks, final layer) as one CPU op with a hand-written backward |
//! | [`text`] | tokenizer and text encoder |
//! | [`diffusion`] | noise schedules and samplers |
//! | [`optim`] | AdamW, warm-up, clipping, EMA |
//! | [`buffers`] | CPU tensors' elements as slices, written in place |

pub mod bmm;
pub mod buffers;
pub mod checkpoint;
pub mod diffusion;
pub mod dit;
pub mod fused;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod layers;
pub mod ops;
pub mod optim;
pub mod params;
pub mod stack;
#[cfg(test)]
mod tests;
pub mod text;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use diffusion::{Diffusion, Prediction, Sampler, Schedule};
use dit::{BlockPath, Dit, DitShape};
use evolve_sdk::{BaseModel, Image, PluginContext, PluginError, SampleRequest, SplitMix64, StepStats, TrainBatch};
use optim::{AdamW, OptimConfig};
use params::{ParamStore, normals};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stack::StackGrads;
use std::collections::HashMap;
use std::path::Path;
use text::{SmallTextEncoder, TextEncoder};

/// Named model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// ~1.1M parameters, patch 4: learns the embedded world in CPU minutes.
    #[default]
    Tiny,
    /// ~3.8M parameters, patch 4.
    Small,
    /// PixArt-shaped mid size: width 384, depth 12, 6 heads, patch 2 (~30M).
    Mid,
    /// PixArt-XL/2: width 1152, depth 28, 16 heads, patch 2, T5-XXL-sized captions (~600M).
    Xl,
}

impl Preset {
    /// The sizes of this preset at `image_size`.
    pub fn shape(self, image_size: usize) -> DitShape {
        let (hidden, depth, heads, patch, caption_channels, caption_len) = match self {
            Preset::Tiny => (128, 4, 4, 4, 64, 16),
            Preset::Small => (192, 6, 6, 4, 96, 16),
            Preset::Mid => (384, 12, 6, 2, 128, 16),
            Preset::Xl => (1152, 28, 16, 2, 4096, 120),
        };
        DitShape { image_size, in_channels: 3, patch, hidden, depth, heads, caption_channels, caption_len }
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
    /// γ of the min-SNR-γ loss weighting ([`Diffusion::loss_weight`]). 100000 or more, above
    /// every SNR of both schedules, gives the plain (unclipped) losses.
    #[serde(default = "min_snr_gamma")]
    #[schemars(extend("exclusiveMinimum" = 0.0))]
    pub min_snr_gamma: f64,
    /// Sampler for generation.
    #[serde(default)]
    pub sampler: Sampler,
    /// Sampler steps.
    #[serde(default = "sample_steps")]
    #[schemars(range(min = 1, max = 1000))]
    pub sample_steps: u32,
    /// Classifier-free guidance scale (1 = none).
    #[serde(default = "guidance")]
    #[schemars(range(min = 0.0, max = 50.0))]
    pub guidance: f64,
    /// Vocabulary buckets of the hashing tokenizer.
    #[serde(default = "vocab")]
    #[schemars(range(min = 16, max = 1_000_000))]
    pub vocab: usize,
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
    /// The model sizes at `image_size`, overrides applied.
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

fn failed(e: impl std::fmt::Display) -> PluginError {
    PluginError::Failed(e.to_string())
}

/// The `dit` base model: transformer, text encoder, optimiser and the state a resume needs.
pub struct DitModel {
    config: DitConfig,
    shape: DitShape,
    params: ParamStore,
    dit: Dit,
    text: SmallTextEncoder,
    diffusion: Diffusion,
    optim: AdamW,
    rng: SplitMix64,
}

/// What a checkpoint stores besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    format: u32,
    step: u64,
    rng: u64,
    shape: DitShape,
    /// Absent from checkpoints written before sample prediction existed: those predict noise.
    #[serde(default)]
    prediction: Prediction,
}

impl DitModel {
    /// A freshly initialised model for `config` at `image_size` on `device`, seeded by `seed`.
    pub fn new(
        config: DitConfig,
        image_size: u32,
        device: &Device,
        seed: u64,
        dtype: DType,
    ) -> Result<Self, PluginError> {
        let shape = config.shape(image_size as usize);
        shape.validate().map_err(PluginError::InvalidConfig)?;
        if config.min_snr_gamma.is_nan() || config.min_snr_gamma <= 0.0 {
            return Err(PluginError::InvalidConfig(format!(
                "min_snr_gamma is {}; it must be positive (100000 or more turns the clipping off)",
                config.min_snr_gamma
            )));
        }
        let mut params = ParamStore::new(seed, dtype, device);
        let dit = Dit::new(&mut params, shape).map_err(failed)?;
        let text_heads = (shape.caption_channels / 32).max(1);
        let text =
            SmallTextEncoder::new(&mut params, config.vocab, shape.caption_len, shape.caption_channels, text_heads)
                .map_err(failed)?;
        let optim = AdamW::new(config.optim, params.vars()).map_err(failed)?;
        Ok(DitModel {
            diffusion: Diffusion::new(config.schedule),
            config,
            shape,
            params,
            dit,
            text,
            optim,
            rng: SplitMix64::from_parts(&[seed, 0x0074_7261_696e]),
        })
    }

    /// The parameters by name.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The model's sizes.
    pub fn shape(&self) -> &DitShape {
        &self.shape
    }

    fn images_to_tensor(&self, images: &[Image]) -> Result<Tensor, PluginError> {
        let s = self.shape.image_size;
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for image in images {
            if image.width() as usize != s || image.height() as usize != s {
                return Err(PluginError::InvalidInput(format!(
                    "image is {}x{}, the model trains at {s}x{s}",
                    image.width(),
                    image.height()
                )));
            }
            for c in 0..3 {
                data.extend(image.pixels().iter().skip(c).step_by(3).map(|&v| v as f32 / 127.5 - 1.0));
            }
        }
        Tensor::from_vec(data, (images.len(), 3, s, s), self.params.device())
            .and_then(|t| t.to_dtype(self.params.dtype()))
            .map_err(failed)
    }

    fn tensor_to_images(&self, x: &Tensor) -> Result<Vec<Image>, PluginError> {
        let (b, _, h, w) = x.dims4().map_err(failed)?;
        let values: Vec<f32> =
            x.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).map_err(failed)?;
        let plane = h * w;
        (0..b)
            .map(|i| {
                let base = i * 3 * plane;
                let pixels = (0..plane)
                    .flat_map(|p| (0..3).map(move |c| base + c * plane + p))
                    .map(|j| ((values[j] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
                    .collect();
                Image::from_rgb(w as u32, h as u32, pixels).map_err(failed)
            })
            .collect()
    }

    fn noise(&self, rng: &mut SplitMix64, batch: usize) -> Result<Tensor, PluginError> {
        let s = self.shape.image_size;
        let values: Vec<f32> = normals(rng, batch * 3 * s * s).into_iter().map(|v| v as f32).collect();
        Tensor::from_vec(values, (batch, 3, s, s), self.params.device())
            .and_then(|t| t.to_dtype(self.params.dtype()))
            .map_err(failed)
    }

    /// The training loss on `batch` with this step's noise, timesteps and caption dropout, and
    /// its gradients for every parameter, advancing the model's random stream. `path` picks
    /// how the transformer blocks run (default: [`Dit::fast_path`]).
    pub fn gradients(&mut self, batch: &TrainBatch, path: Option<BlockPath>) -> Result<(f32, GradStore), PluginError> {
        let b = batch.images.len();
        if b == 0 || b != batch.prompts.len() {
            return Err(PluginError::InvalidInput(format!("{} images for {} prompts", b, batch.prompts.len())));
        }
        let x0 = self.images_to_tensor(&batch.images)?;
        let timesteps: Vec<usize> = (0..b).map(|_| self.rng.below(diffusion::TRAIN_STEPS as u64) as usize).collect();
        let keep: Vec<bool> = (0..b).map(|_| !self.rng.chance(self.config.caption_dropout)).collect();
        let mut rng = self.rng.clone();
        let noise = self.noise(&mut rng, b)?;
        self.rng = rng;
        let path = path.unwrap_or_else(|| Dit::fast_path(&x0, true));
        let run = || -> candle_core::Result<(Tensor, StackGrads)> {
            let caption = self.text.encode(&batch.prompts)?;
            let y = self.dit.project_caption(&caption, &keep)?;
            let x_t = self.diffusion.add_noise(&x0, &noise, &timesteps)?;
            let t: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
            let (predicted, stack_grads) = self.dit.forward_with(&x_t, &t, &y, path)?;
            let (prediction, gamma) = (self.config.prediction, self.config.min_snr_gamma);
            let target = match prediction {
                Prediction::Epsilon => &noise,
                Prediction::Sample => &x0,
            };
            let weights: Vec<f64> =
                timesteps.iter().map(|&t| self.diffusion.loss_weight(t, prediction, gamma)).collect();
            let weights = Tensor::from_vec(weights, b, x0.device())?.to_dtype(x0.dtype())?;
            let loss = ops::weighted_mse(&predicted, target, &weights)?;
            Ok((loss, stack_grads))
        };
        let (loss, stack_grads) = run().map_err(failed)?;
        let value = loss.to_dtype(DType::F32).and_then(|l| l.to_scalar::<f32>()).map_err(failed)?;
        if !value.is_finite() {
            return Err(PluginError::Failed(format!(
                "training diverged: loss {value} at step {}",
                self.optim.step + 1
            )));
        }
        let mut grads = loss.backward().map_err(failed)?;
        stack_grads.add_to(&mut grads);
        Ok((value, grads))
    }

    /// Swaps the training weights and the EMA weights (twice restores them).
    fn swap_ema(&mut self) -> Result<(), PluginError> {
        for (name, var) in self.params.vars() {
            if let Some(ema) = self.optim.ema.get_mut(name) {
                let current = var.as_tensor().copy().map_err(failed)?;
                var.set(ema).map_err(failed)?;
                *ema = current;
            }
        }
        Ok(())
    }

    /// The transformer's `output` for `x` at `t` as the noise prediction the samplers take,
    /// detached from the graph (sampling never backpropagates).
    fn to_noise(&self, x: &Tensor, t: usize, output: Tensor) -> candle_core::Result<Tensor> {
        let output = output.detach();
        match self.config.prediction {
            Prediction::Epsilon => Ok(output),
            Prediction::Sample => self.diffusion.noise_from_sample(x, t, &output),
        }
    }

    fn sample_with_current_weights(&self, request: &SampleRequest) -> Result<Vec<Image>, PluginError> {
        let b = request.prompts.len();
        if b == 0 {
            return Ok(vec![]);
        }
        // Each image's noise depends on the seed and its index only, not on the batch.
        let mut parts = vec![];
        for i in 0..b {
            let mut rng = SplitMix64::from_parts(&[request.seed, i as u64]);
            parts.push(self.noise(&mut rng, 1)?);
        }
        let x = Tensor::cat(&parts, 0).map_err(failed)?;
        let guidance = request.guidance.map(f64::from).unwrap_or(self.config.guidance);
        let steps = request.steps.unwrap_or(self.config.sample_steps) as usize;
        let guided = guidance != 1.0;
        let path = Dit::fast_path(&x, false);
        // The weights are trainable variables, so every op records its inputs for backprop.
        // Sampling never backpropagates: detaching each step's prediction lets that step's
        // activations go, instead of keeping the whole sampler trajectory's graph alive
        // (gigabytes for a batch of 64 at 20 steps).
        let run = || -> candle_core::Result<Tensor> {
            let caption = self.text.encode(&request.prompts)?;
            let y = if guided {
                let cond = self.dit.project_caption(&caption, &vec![true; b])?;
                let uncond = self.dit.project_caption(&caption, &vec![false; b])?;
                Tensor::cat(&[cond, uncond], 0)?
            } else {
                self.dit.project_caption(&caption, &vec![true; b])?
            }
            .detach();
            self.diffusion.sample(self.config.sampler, steps, x, |x, t| {
                let eps = if guided {
                    let both = Tensor::cat(&[x, x], 0)?;
                    let eps =
                        self.to_noise(&both, t, self.dit.forward_with(&both, &vec![t as f64; 2 * b], &y, path)?.0)?;
                    let (cond, uncond) = (eps.narrow(0, 0, b)?, eps.narrow(0, b, b)?);
                    (&uncond + ((&cond - &uncond)? * guidance)?)?
                } else {
                    self.to_noise(x, t, self.dit.forward_with(x, &vec![t as f64; b], &y, path)?.0)?
                };
                Ok(eps)
            })
        };
        let x = run().map_err(failed)?;
        self.tensor_to_images(&x)
    }
}

impl BaseModel for DitModel {
    fn train_step(&mut self, batch: &TrainBatch) -> Result<StepStats, PluginError> {
        let (value, grads) = self.gradients(batch, None)?;
        let info = self.optim.step(self.params.vars(), &grads).map_err(failed)?;
        Ok(StepStats {
            step: self.optim.step,
            loss: value,
            learning_rate: info.learning_rate as f32,
            grad_norm: info.grad_norm as f32,
        })
    }

    fn generate(&mut self, request: &SampleRequest) -> Result<Vec<Image>, PluginError> {
        self.swap_ema()?;
        let images = self.sample_with_current_weights(request);
        self.swap_ema()?;
        images
    }

    fn save(&self, dir: &Path) -> Result<(), PluginError> {
        let mut tensors = HashMap::new();
        for (name, var) in self.params.vars() {
            tensors.insert(format!("model.{name}"), var.as_tensor().clone());
        }
        for (prefix, map) in [("ema", &self.optim.ema), ("adam_m", &self.optim.m), ("adam_v", &self.optim.v)] {
            for (name, t) in map {
                tensors.insert(format!("{prefix}.{name}"), t.clone());
            }
        }
        checkpoint::save_tensors(&tensors, &dir.join("model.safetensors")).map_err(PluginError::Failed)?;
        let state = TrainerState {
            format: 1,
            step: self.optim.step,
            rng: self.rng.state(),
            shape: self.shape,
            prediction: self.config.prediction,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(failed)?;
        crate::store::atomic_write(&dir.join("trainer.json"), &json).map_err(failed)
    }

    fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
        let json = std::fs::read(dir.join("trainer.json")).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let state: TrainerState = serde_json::from_slice(&json).map_err(failed)?;
        if state.shape != self.shape {
            return Err(PluginError::InvalidConfig(format!(
                "checkpoint is for {:?}, the config builds {:?}",
                state.shape, self.shape
            )));
        }
        if state.prediction != self.config.prediction {
            return Err(PluginError::InvalidConfig(format!(
                "the checkpoint's model predicts {}, the config asks for {} (set `prediction` to match)",
                state.prediction.name(),
                self.config.prediction.name()
            )));
        }
        let tensors = checkpoint::load_tensors(&dir.join("model.safetensors")).map_err(PluginError::Failed)?;
        let device = self.params.device().clone();
        let dtype = self.params.dtype();
        let fetch = |key: String| -> Result<Tensor, PluginError> {
            tensors
                .get(&key)
                .ok_or_else(|| PluginError::Failed(format!("checkpoint lacks {key}")))?
                .to_device(&device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(failed)
        };
        for (name, var) in self.params.vars() {
            var.set(&fetch(format!("model.{name}"))?).map_err(failed)?;
        }
        for (prefix, map) in
            [("ema", &mut self.optim.ema), ("adam_m", &mut self.optim.m), ("adam_v", &mut self.optim.v)]
        {
            for (name, t) in map.iter_mut() {
                *t = fetch(format!("{prefix}.{name}"))?;
            }
        }
        self.optim.step = state.step;
        self.rng = SplitMix64::new(state.rng);
        Ok(())
    }
}

evolve_sdk::register_plugin! {
    kind: BaseModel,
    name: "dit",
    description: "PixArt-alpha diffusion transformer (candle) with a small text encoder; DDPM training, DDIM / DPM-Solver++ sampling.",
    config: DitConfig,
    build: |config: DitConfig, ctx: &PluginContext| {
        let device = device(&ctx.device)?;
        DitModel::new(config, ctx.image_size, &device, ctx.seed, DType::F32)
    },
}
