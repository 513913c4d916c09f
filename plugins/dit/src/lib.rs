//! # evolve-dit
//!
//! evolve's training core, the built-in base model `dit`: a PixArt-alpha diffusion transformer
//! on candle and candle-nn (parameters built through [`VarBuilder`](candle_nn::VarBuilder) at
//! diffusers' key names) with a small trainable text encoder, trained on the 1000-step DDPM process (clean-image or noise
//! prediction, min-SNR-γ weighted) and sampled with DDIM or DPM-Solver++(2M) and
//! classifier-free guidance.
//!
//! | module | what |
//! |---|---|
//! | [`ops`] | custom ops with backward passes (softmax, layer norm, GELU) that candle lacks |
//! | [`bmm`] | batched matrix products for attention, parallel over the batch |
//! | [`fused`] | fused adaLN modulation, gated residual, affine and bias kernels |
//! | [`config`] | the `[base_model] config` table: sizes, recipe, T5, VAE, pretrained |
//! | [`params`] | seeded trainable parameters behind candle-nn's `VarBuilder` |
//! | [`layers`] | linear, attention (with QK norm), feed-forward |
//! | [`dit`] | the transformer (reference path through candle's ops, any device) |
//! | [`stack`] | the transformer trunk (blocks, final layer) as one CPU op with a hand-written backward |
//! | [`recompute`] | gradient checkpointing: blocks recomputed in the backward pass, not kept |
//! | [`parallel`] | data-parallel training: gradients averaged over processes (NCCL or TCP) during the backward pass |
//! | [`vae`] | the frozen KL autoencoder (PixArt-alpha's latent space), diffusers' key names |
//! | [`latent`] | training in a VAE's latent space: latents cached by image and VAE |
//! | [`cache`] | latents and caption encodings kept by content, in memory and in the run |
//! | [`pipeline`] | diffusers pipeline folders: published weights in, `evolve export` out |
//! | [`pixels`] | images ↔ tensors in [-1, 1] |
//! | [`buckets`] | aspect-ratio buckets: non-square images trained at their own token grid |
//! | [`text`] | captions, the hashing tokenizer and the small trainable text encoder |
//! | [`t5`] | the frozen T5 encoder (PixArt-alpha's), transformers' key names |
//! | [`t5_text`] | T5's tokenizer (`tokenizer.json`), 120 tokens with a mask, per-prompt cache |
//! | [`diffusion`] | noise schedules and samplers |
//! | [`optim`] | AdamW, warm-up, clipping, EMA (fused on the CPU, tensor ops on a GPU) |
//! | [`buffers`] | CPU tensors' elements as slices, written in place |
//! | [`checkpoint`] | checkpoint files (safetensors, fsynced) |
//!
//! The fused CPU trunk ([`stack`]) is the fast path on CPU in f32 and is tested against the
//! reference path ([`dit::Dit::forward`]) for outputs and gradients.

/// candle, as this crate uses it (hosts and benchmarks build tensors and devices with it).
pub use candle_core;

pub mod bmm;
pub mod buckets;
pub mod buffers;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod diffusion;
pub mod dit;
pub mod fused;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod latent;
pub mod layers;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod pipeline;
pub mod pixels;
pub mod recompute;
pub mod stack;
pub mod t5;
pub mod t5_text;
#[cfg(test)]
mod tests;
pub mod text;
pub mod vae;

use buckets::{Bucket, Buckets};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
pub use config::{DitConfig, Precision, Preset, TextEncoderChoice, device};
use diffusion::{Diffusion, Prediction};
use dit::{BlockPath, Dit, DitShape};
use evolve_sdk::{BaseModel, Image, PluginContext, PluginError, SampleRequest, SplitMix64, StepStats, TrainBatch};
use latent::LatentSpace;
use optim::AdamW;
use params::{ParamBuilder, ParamStore, normals};
use pipeline::PipelineFolder;
use recompute::{BlockDone, BlockGrads};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use t5_text::{PIXART_TOKENS, T5TextEncoder};
use text::{Caption, SmallTextEncoder, TextEncoder};

/// `batch` cut into `n` micro-batches of nearly equal size, in order (fewer when it has fewer
/// images).
fn micro_batches(batch: &TrainBatch, n: usize) -> Vec<TrainBatch> {
    let b = batch.images.len();
    if b != batch.prompts.len() {
        // Not a batch: `gradients` says why.
        return vec![batch.clone()];
    }
    batch.shares(n.clamp(1, b.max(1)))
}

fn failed(e: impl std::fmt::Display) -> PluginError {
    PluginError::Failed(e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> PluginError {
    PluginError::InvalidConfig(e.to_string())
}

/// `config` with a pretrained pipeline's parts filled in where it names none, the sizes it
/// builds at `image_size` pixels (before the text encoder and VAE adjust them), and the pipeline.
fn resolve(
    mut config: DitConfig,
    image_size: usize,
) -> Result<(DitConfig, DitShape, Option<PipelineFolder>), PluginError> {
    let pipeline = config.pretrained.as_deref().map(PipelineFolder::open).transpose().map_err(invalid)?;
    let mut shape = match &pipeline {
        Some(pipeline) => {
            if config.text_encoder == TextEncoderChoice::Small {
                config.text_encoder = TextEncoderChoice::T5(pipeline.text_encoder_dir());
            }
            config.vae = config.vae.or_else(|| Some(pipeline.vae_dir()));
            config.prediction = pipeline.prediction;
            (config.timestep_spacing, config.steps_offset) = (pipeline.spacing, pipeline.steps_offset);
            DitShape { image_size, ..pipeline.shape() }
        }
        None => config.shape(image_size),
    };
    shape.qk_norm = config.qk_norm.unwrap_or(shape.qk_norm);
    Ok((config, shape, pipeline))
}

/// The frozen T5 encoder the config names, if any, with `shape`'s captions set to its own.
fn load_text_encoder(
    config: &DitConfig,
    shape: &mut DitShape,
    (dtype, device): (DType, &Device),
    cache_dir: Option<&Path>,
) -> Result<Option<T5TextEncoder>, PluginError> {
    let TextEncoderChoice::T5(dir) = &config.text_encoder else { return Ok(None) };
    let t5 = T5TextEncoder::load(dir, PIXART_TOKENS, dtype, device, cache_dir).map_err(invalid)?;
    (shape.caption_channels, shape.caption_len, shape.null_caption) = (t5.hidden_size(), PIXART_TOKENS, false);
    Ok(Some(t5))
}

/// The VAE the config names, if any, with `shape` turned from pixels to its latents (image size
/// 0: a pretrained pipeline's own), checked against what a pretrained transformer was trained on.
fn load_latent_space(
    config: &DitConfig,
    pipeline: Option<&PipelineFolder>,
    shape: &mut DitShape,
    (dtype, device): (DType, &Device),
    cache_dir: Option<&Path>,
) -> Result<Option<LatentSpace>, PluginError> {
    let Some(dir) = &config.vae else { return Ok(None) };
    let latent = LatentSpace::load(dir, dtype, device, cache_dir).map_err(invalid)?;
    let downscale = latent.downscale();
    if let (Some(pipeline), 0) = (pipeline, shape.image_size) {
        shape.image_size = pipeline.transformer.sample_size * downscale;
    }
    if !shape.image_size.is_multiple_of(downscale) {
        return Err(invalid(format!(
            "image_size {} is not a multiple of the VAE's downscale {downscale}",
            shape.image_size
        )));
    }
    (shape.image_size, shape.in_channels) = (shape.image_size / downscale, latent.channels());
    if let Some(pipeline) = pipeline {
        let trained = pipeline.transformer.sample_size;
        if shape.image_size != trained {
            return Err(invalid(format!(
                "{}: the transformer was trained on {trained}x{trained} latents; set run.image_size = {}",
                pipeline.dir().display(),
                trained * downscale
            )));
        }
        if pipeline.micro_conditions {
            shape.resolution_condition = Some(trained * downscale);
        }
    }
    Ok(Some(latent))
}

/// The `dit` base model: transformer, text encoder, optimiser and the state a resume needs.
pub struct DitModel {
    config: DitConfig,
    shape: DitShape,
    params: ParamStore,
    dit: Dit,
    text: Box<dyn TextEncoder>,
    /// The VAE whose latents the transformer models; `None` in pixel space.
    latent: Option<LatentSpace>,
    /// Side of the images trained on and rendered, in pixels.
    pixel_size: usize,
    /// The pixel sizes training images are cropped into.
    buckets: Buckets,
    diffusion: Diffusion,
    optim: AdamW,
    rng: SplitMix64,
    /// Its place in a data-parallel group, if it trains in one.
    replica: Option<parallel::replica::Replica>,
}

/// The layout of checkpoints this build writes and reads (`trainer.json`'s `format`).
const CHECKPOINT_FORMAT: u32 = 1;

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
    /// The model `config` describes at `image_size` pixels on `device`: initialised from `seed`,
    /// or from a pretrained pipeline's weights (`config.pretrained`; image size 0: its own).
    pub fn new(
        config: DitConfig,
        image_size: u32,
        device: &Device,
        seed: u64,
        dtype: DType,
    ) -> Result<Self, PluginError> {
        Self::new_in(config, image_size, (device, dtype), seed, None)
    }

    /// [`DitModel::new`] keeping VAE latents and T5 encodings under `cache_dir` (a run's
    /// cache folder), where a resumed run finds them.
    pub fn new_in(
        config: DitConfig,
        image_size: u32,
        (device, dtype): (&Device, DType),
        seed: u64,
        cache_dir: Option<&Path>,
    ) -> Result<Self, PluginError> {
        if config.pretrained.is_some() && config.start_from.is_some() {
            return Err(PluginError::InvalidConfig(
                "`pretrained` and `start_from` both name starting weights; set one".into(),
            ));
        }
        let (config, mut shape, pipeline) = resolve(config, image_size as usize)?;
        let t5 = load_text_encoder(&config, &mut shape, (dtype, device), cache_dir)?;
        let latent = load_latent_space(&config, pipeline.as_ref(), &mut shape, (dtype, device), cache_dir)?;
        let downscale = latent.as_ref().map_or(1, LatentSpace::downscale);
        let pixel_size = shape.image_size * downscale;
        let buckets = if config.aspect_buckets {
            Buckets::new(pixel_size, shape.patch * downscale)
        } else {
            Buckets::square_only(pixel_size)
        };
        shape.validate()?;
        if config.min_snr_gamma.is_nan() || config.min_snr_gamma <= 0.0 {
            return Err(PluginError::InvalidConfig(format!(
                "min_snr_gamma is {}; it must be positive (100000 or more turns the clipping off)",
                config.min_snr_gamma
            )));
        }
        let builder = match &pipeline {
            Some(pipeline) => ParamBuilder::pretrained(pipeline.transformer_weights().map_err(invalid)?, dtype, device),
            None => ParamBuilder::new(seed, dtype, device),
        };
        let vb = builder.var_builder();
        let dit = Dit::new(vb.clone(), shape).map_err(invalid)?;
        let dit = dit.computing_in(config.precision.compute_dtype());
        let text: Box<dyn TextEncoder> = match t5 {
            Some(t5) => Box::new(t5),
            None => {
                let heads = (shape.caption_channels / 32).max(1);
                let (vocab, len, channels) = (config.vocab, shape.caption_len, shape.caption_channels);
                Box::new(SmallTextEncoder::new(vb.pp("text_encoder"), vocab, len, channels, heads).map_err(failed)?)
            }
        };
        let unused = builder.unused_pretrained();
        if !unused.is_empty() {
            return Err(PluginError::InvalidConfig(format!(
                "the pretrained transformer has {} tensors this model does not use: {}",
                unused.len(),
                unused.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let params = builder.finish();
        let optim = AdamW::new(config.optim, params.vars()).map_err(failed)?;
        let start_from = config.start_from.clone();
        let mut model = DitModel {
            diffusion: Diffusion::new(config.schedule),
            config,
            shape,
            params,
            dit,
            text,
            latent,
            pixel_size,
            buckets,
            optim,
            rng: SplitMix64::from_parts(&[seed, 0x0074_7261_696e]),
            replica: None,
        };
        if let Some(dir) = start_from {
            // This run's seed still draws its noise: only the model and its optimiser carry over.
            model.restore(&dir, Restore::ModelOnly).map_err(|e| {
                PluginError::InvalidConfig(format!("start_from = {:?}: {e}", dir.display().to_string()))
            })?;
        }
        Ok(model)
    }

    /// The parameters by name.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The model's sizes.
    pub fn shape(&self) -> &DitShape {
        &self.shape
    }

    /// What the transformer sees of `images`, each cropped into `bucket`: pixels in [-1, 1], or
    /// their VAE latents.
    fn images_to_tensor(&self, images: &[&Image], bucket: Bucket) -> Result<Tensor, PluginError> {
        let (device, dtype) = (self.params.device(), self.params.dtype());
        let images: Vec<Image> = images.iter().map(|image| buckets::crop_into(image, bucket)).collect();
        let size = (bucket.height, bucket.width);
        let result = match &self.latent {
            Some(latent) => latent.encode(&images, size),
            None => pixels::to_tensor(&images, size, device, dtype),
        };
        result.map_err(|e| PluginError::InvalidInput(e.to_string()))
    }

    /// Images of what the transformer produced (decoded by the VAE in latent space).
    fn tensor_to_images(&self, x: &Tensor) -> Result<Vec<Image>, PluginError> {
        let x = match &self.latent {
            Some(latent) => latent.decode(x).map_err(failed)?,
            None => x.clone(),
        };
        pixels::to_images(&x).map_err(failed)
    }

    /// Standard normal noise `(batch, C, rows, cols)`; square at the model's size by default.
    fn noise(&self, rng: &mut SplitMix64, batch: usize, grid: Option<(usize, usize)>) -> Result<Tensor, PluginError> {
        let c = self.shape.in_channels;
        let (rows, cols) = grid.unwrap_or((self.shape.image_size, self.shape.image_size));
        let values: Vec<f32> = normals(rng, batch * c * rows * cols).into_iter().map(|v| v as f32).collect();
        Tensor::from_vec(values, (batch, c, rows, cols), self.params.device())
            .and_then(|t| t.to_dtype(self.params.dtype()))
            .map_err(failed)
    }

    /// The training loss on `batch` with this step's noise, timesteps and caption dropout, and
    /// its gradients for every parameter, advancing the model's random stream. `path` picks
    /// how the transformer blocks run (default: [`Dit::fast_path`]).
    ///
    /// Images train in their aspect-ratio buckets: each bucket's images go through the
    /// transformer at their own token grid, and the loss is the mean over the whole batch.
    pub fn gradients(&mut self, batch: &TrainBatch, path: Option<BlockPath>) -> Result<(f32, GradStore), PluginError> {
        self.gradients_reporting(batch, path, None)
    }

    /// [`DitModel::gradients`], calling `block_done` as each transformer block's gradients
    /// become whole during the backward pass (only on paths that differentiate the blocks one
    /// at a time: [`BlockPath::Segmented`] and [`BlockPath::Recompute`]).
    pub fn gradients_reporting(
        &mut self,
        batch: &TrainBatch,
        path: Option<BlockPath>,
        mut block_done: Option<BlockDone<'_>>,
    ) -> Result<(f32, GradStore), PluginError> {
        let b = batch.images.len();
        if b == 0 || b != batch.prompts.len() {
            return Err(PluginError::InvalidInput(format!("{} images for {} prompts", b, batch.prompts.len())));
        }
        let timesteps: Vec<usize> = (0..b).map(|_| self.rng.below(diffusion::TRAIN_STEPS as u64) as usize).collect();
        let keep: Vec<bool> = (0..b).map(|_| !self.rng.chance(self.config.caption_dropout)).collect();
        let mut groups: BTreeMap<Bucket, Vec<usize>> = BTreeMap::new();
        for (i, image) in batch.images.iter().enumerate() {
            groups.entry(self.buckets.nearest(image.width(), image.height())).or_default().push(i);
        }
        let mut rng = self.rng.clone();
        let mut parts = Vec::with_capacity(groups.len());
        let downscale = self.pixel_size / self.shape.image_size;
        for (bucket, members) in groups {
            let grid = (bucket.height / downscale, bucket.width / downscale);
            let images: Vec<&Image> = members.iter().map(|&i| &batch.images[i]).collect();
            let x0 = self.images_to_tensor(&images, bucket)?;
            let noise = self.noise(&mut rng, members.len(), Some(grid))?;
            parts.push((members, x0, noise));
        }
        self.rng = rng;
        let run = || -> candle_core::Result<(Tensor, Vec<BlockGrads>)> {
            let (mut total, mut all_grads) = (None, vec![]);
            for (members, x0, noise) in &parts {
                let prompts: Vec<String> = members.iter().map(|&i| batch.prompts[i].clone()).collect();
                let keep: Vec<bool> = members.iter().map(|&i| keep[i]).collect();
                let timesteps: Vec<usize> = members.iter().map(|&i| timesteps[i]).collect();
                let (loss, grads) = self.bucket_loss(x0, noise, &prompts, &keep, &timesteps, path)?;
                // Each bucket's mean loss, weighted by its share of the batch.
                let loss = if members.len() == b { loss } else { (loss * (members.len() as f64 / b as f64))? };
                total = Some(match total {
                    None => loss,
                    Some(sum) => (sum + loss)?,
                });
                all_grads.push(grads);
            }
            let total = total.ok_or_else(|| candle_core::Error::Msg("empty batch".into()))?;
            Ok((total, all_grads))
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
        let last = stack_grads.len().saturating_sub(1);
        for (i, stack) in stack_grads.iter().enumerate() {
            // A block's gradient is whole only once the last bucket's backward reached it.
            let done = if i == last { block_done.take() } else { None };
            stack.add_to(&mut grads, done).map_err(failed)?;
        }
        Ok((value, grads))
    }

    /// [`DitModel::gradients`] of `batch` in `config.accumulate` micro-batches, one after the
    /// other: their losses and gradients are summed, each weighted by its share of the batch,
    /// so only one micro-batch's activations are held at a time.
    pub fn accumulated_gradients(&mut self, batch: &TrainBatch) -> Result<(f32, GradStore), PluginError> {
        let parts = micro_batches(batch, self.config.accumulate);
        if parts.len() < 2 {
            return self.gradients(batch, None);
        }
        let b = batch.images.len() as f64;
        let (mut loss, mut total) = (0.0, GradStore::default());
        for part in &parts {
            let share = part.images.len() as f64 / b;
            let (value, mut grads) = self.gradients(part, None)?;
            loss += share * f64::from(value);
            for var in self.params.vars().values() {
                if let Some(g) = grads.remove(var) {
                    grads.insert(var, g.affine(share, 0.0).map_err(failed)?);
                }
            }
            // Adds to what earlier micro-batches gave each parameter.
            total.extend(grads).map_err(failed)?;
        }
        Ok((loss as f32, total))
    }

    /// The weighted diffusion loss of clean images `x0` (one bucket) noised with `noise`.
    fn bucket_loss(
        &self,
        x0: &Tensor,
        noise: &Tensor,
        prompts: &[String],
        keep: &[bool],
        timesteps: &[usize],
        path: Option<BlockPath>,
    ) -> candle_core::Result<(Tensor, BlockGrads)> {
        let y = self.captions(prompts, keep)?;
        let path = match path {
            Some(path) => path,
            None if self.config.gradient_checkpointing => BlockPath::Recompute,
            None => self.dit.fast_path(x0, &y, true),
        };
        let x_t = self.diffusion.add_noise(x0, noise, timesteps)?;
        let t: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
        let (output, stack_grads) = self.dit.forward_with(&x_t, &t, &y, path)?;
        let predicted = self.dit.prediction_part(&output)?;
        let (prediction, gamma) = (self.config.prediction, self.config.min_snr_gamma);
        let target = match prediction {
            Prediction::Epsilon => noise,
            Prediction::Sample => x0,
        };
        let weights: Vec<f64> = timesteps.iter().map(|&t| self.diffusion.loss_weight(t, prediction, gamma)).collect();
        let weights = Tensor::from_vec(weights, timesteps.len(), x0.device())?.to_dtype(x0.dtype())?;
        Ok((ops::weighted_mse(&predicted, target, &weights)?, stack_grads))
    }

    /// Projected captions of `prompts`, the unconditional caption where `keep[i]` is false: the
    /// learned null caption if the model has one, else the encoding of the empty prompt.
    fn captions(&self, prompts: &[String], keep: &[bool]) -> candle_core::Result<Caption> {
        if self.dit.has_null_caption() {
            return self.dit.project_caption(&self.text.encode(prompts)?, keep);
        }
        let prompts: Vec<String> =
            prompts.iter().zip(keep).map(|(p, k)| if *k { p.clone() } else { String::new() }).collect();
        self.dit.project_caption(&self.text.encode(&prompts)?, &vec![true; prompts.len()])
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
        let output = self.dit.prediction_part(&output.detach())?;
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
        let x = match &request.initial_noise {
            Some(noise) => {
                let (c, s) = (self.shape.in_channels, self.shape.image_size);
                if noise.shape != [b, c, s, s] || noise.values.len() != b * c * s * s {
                    return Err(PluginError::InvalidInput(format!(
                        "initial noise of shape {:?} for {b} prompts; this model starts from {:?}",
                        noise.shape,
                        [b, c, s, s]
                    )));
                }
                Tensor::from_vec(noise.values.clone(), (b, c, s, s), self.params.device())
                    .and_then(|t| t.to_dtype(self.params.dtype()))
                    .map_err(failed)?
            }
            None => {
                // Each image's noise depends on the seed and its index only, not on the batch.
                let mut parts = vec![];
                for i in 0..b {
                    let mut rng = SplitMix64::from_parts(&[request.seed, i as u64]);
                    parts.push(self.noise(&mut rng, 1, None)?);
                }
                Tensor::cat(&parts, 0).map_err(failed)?
            }
        };
        let sampler = match &request.sampler {
            None => self.config.sampler,
            Some(name) => serde_json::from_value(serde_json::Value::String(name.clone())).map_err(|_| {
                PluginError::InvalidInput(format!("unknown sampler {name:?}; use ddim or dpm (dpm_solver2m)"))
            })?,
        };
        let spacing = (self.config.timestep_spacing, self.config.steps_offset);
        let guidance = request.guidance.map(f64::from).unwrap_or(self.config.guidance);
        let steps = request.steps.unwrap_or(self.config.sample_steps) as usize;
        let guided = guidance != 1.0;
        // The weights are trainable variables, so every op records its inputs for backprop.
        // Sampling never backpropagates: detaching each step's prediction lets that step's
        // activations go, instead of keeping the whole sampler trajectory's graph alive
        // (gigabytes for a batch of 64 at 20 steps).
        let run = || -> candle_core::Result<Tensor> {
            let keep = if guided { [vec![true; b], vec![false; b]].concat() } else { vec![true; b] };
            let prompts = if guided {
                [request.prompts.clone(), request.prompts.clone()].concat()
            } else {
                request.prompts.clone()
            };
            let y = self.captions(&prompts, &keep)?.detach();
            let path = self.dit.fast_path(&x, &y, false);
            self.diffusion.sample(sampler, steps, spacing, x, |x, t| {
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
        let (value, grads) = match self.replica {
            Some(_) => self.averaged_gradients(batch)?,
            None => self.accumulated_gradients(batch)?,
        };
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
        checkpoint::save_tensors(&tensors, &dir.join("model.safetensors"))?;
        let state = TrainerState {
            format: CHECKPOINT_FORMAT,
            step: self.optim.step,
            rng: self.rng.state(),
            shape: self.shape,
            prediction: self.config.prediction,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(failed)?;
        Ok(checkpoint::write_synced(&dir.join("trainer.json"), &json)?)
    }

    fn export(&self, dir: &Path) -> Result<(), PluginError> {
        if let Some(why) = self.export_blocker() {
            return Err(PluginError::Unsupported(format!("cannot export a diffusers pipeline: {why}")));
        }
        let (Some(vae), TextEncoderChoice::T5(text_encoder)) = (&self.config.vae, &self.config.text_encoder) else {
            return Err(PluginError::Unsupported("cannot export a diffusers pipeline without a VAE and T5".into()));
        };
        let tokenizer = t5_text::T5Files::find(text_encoder).map_err(failed)?.tokenizer;
        // The EMA weights are the model a user keeps; a parameter without one exports as trained.
        let weights: HashMap<String, Tensor> = self
            .params
            .vars()
            .iter()
            .map(|(name, var)| (name.clone(), self.optim.ema.get(name).unwrap_or(var.as_tensor()).clone()))
            .collect();
        let parts = pipeline::ExportParts {
            shape: &self.shape,
            weights: &weights,
            prediction: self.config.prediction,
            spacing: (self.config.timestep_spacing, self.config.steps_offset),
            vae,
            text_encoder,
            tokenizer: &tokenizer,
        };
        pipeline::export(&parts, dir).map_err(failed)
    }

    fn load(&mut self, dir: &Path) -> Result<(), PluginError> {
        self.restore(dir, Restore::Everything)
    }

    fn data_parallel(&self) -> bool {
        self.replica.is_some()
    }
}

/// What [`DitModel::restore`] takes from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restore {
    /// All of it: the run resumes.
    Everything,
    /// The weights, EMA and optimiser state, not the trainer's random stream: another run
    /// starts from this model (`start_from`).
    ModelOnly,
}

impl DitModel {
    /// Reads the checkpoint in `dir` (as [`BaseModel::save`] wrote it) into this model.
    fn restore(&mut self, dir: &Path, what: Restore) -> Result<(), PluginError> {
        let json = std::fs::read(dir.join("trainer.json")).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let state: TrainerState = serde_json::from_slice(&json).map_err(failed)?;
        if state.format != CHECKPOINT_FORMAT {
            return Err(PluginError::InvalidConfig(format!(
                "{} is checkpoint format {}; this evolve reads format {CHECKPOINT_FORMAT}",
                dir.display(),
                state.format
            )));
        }
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
        let tensors = checkpoint::load_tensors(&dir.join("model.safetensors"))?;
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
        if what == Restore::Everything {
            self.rng = SplitMix64::new(state.rng);
        }
        self.rejoin_after_load()
    }
}

impl DitModel {
    /// Why this model cannot be written as a diffusers PixArt pipeline, if it cannot.
    fn export_blocker(&self) -> Option<&'static str> {
        if self.config.vae.is_none() {
            Some("it trains in pixel space; diffusers' PixArt pipeline needs a VAE (set `vae` or `pretrained`)")
        } else if !matches!(self.config.text_encoder, TextEncoderChoice::T5(_)) {
            Some(
                "its text encoder is the small trainable one; the pipeline needs T5 (set `text_encoder = { t5 = \"DIR\" }`)",
            )
        } else if self.shape.qk_norm {
            Some("its cross-attention has QK norm, which diffusers' PixArt lacks (set `qk_norm = false`)")
        } else {
            None
        }
    }
}

evolve_sdk::register_plugin! {
    kind: BaseModel,
    name: "dit",
    description: "PixArt-alpha diffusion transformer (candle) with a small text encoder; DDPM training, DDIM / DPM-Solver++ sampling.",
    config: DitConfig,
    build: |config: DitConfig, ctx: &PluginContext| {
        let device = device(&ctx.device)?;
        let model = DitModel::new_in(config, ctx.image_size, (&device, DType::F32), ctx.seed, ctx.cache_dir.as_deref())?;
        match &ctx.data_parallel {
            Some(group) => model.join_group(group),
            None => Ok(model),
        }
    },
}

/// Forces the linker to keep this crate, and with it the plugin it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
