//! Base models: the text-to-image model being trained.

use crate::{Image, PluginError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Images with their captions, already at the model's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBatch {
    /// One caption per image.
    pub prompts: Vec<String>,
    /// The teacher images.
    pub images: Vec<Image>,
}

impl TrainBatch {
    /// The batch cut into `n` shares of nearly equal size, in order (the later ones one image
    /// larger where it does not divide; empty ones when it has fewer images than `n`): a
    /// model's micro-batches, or the ranks' shares of a data-parallel step.
    pub fn shares(&self, n: usize) -> Vec<TrainBatch> {
        let (b, n) = (self.images.len().min(self.prompts.len()), n.max(1));
        (0..n)
            .map(|i| {
                let range = (i * b / n)..((i + 1) * b / n);
                TrainBatch { prompts: self.prompts[range.clone()].to_vec(), images: self.images[range].to_vec() }
            })
            .collect()
    }
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Steps taken so far, this one included.
    pub step: u64,
    /// The training loss of this step.
    pub loss: f32,
    /// The learning rate used.
    pub learning_rate: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// The starting noise of a sampler, given instead of drawn from the seed (e.g. to compare a
/// model's images with another implementation's on the same noise).
#[derive(Debug, Clone, PartialEq)]
pub struct InitialNoise {
    /// Its shape, batch first: for a latent diffusion model `(B, C, H, W)` latents.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Render images for prompts with the model's current (EMA) weights.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleRequest {
    /// One image per prompt.
    pub prompts: Vec<String>,
    /// Seed of the initial noise; the same seed gives the same images.
    pub seed: u64,
    /// Sampler steps; `None` for the model's default.
    pub steps: Option<u32>,
    /// Classifier-free guidance scale; `None` for the model's default.
    pub guidance: Option<f32>,
    /// A sampler by the model's name for it (`dit`: `ddim`, `dpm_solver2m`); `None` for the
    /// model's default.
    pub sampler: Option<String>,
    /// The starting noise, one entry per prompt; `None` to draw it from `seed`.
    pub initial_noise: Option<InitialNoise>,
}

/// A trainable text-to-image model. Compute-bound and stateful, so synchronous: the host runs
/// it on a thread of its own, never on the async runtime.
pub trait BaseModel: Send {
    /// One optimiser step on `batch`.
    fn train_step(&mut self, batch: &TrainBatch) -> Result<StepStats, PluginError>;

    /// Images for `request.prompts`, in order.
    fn generate(&mut self, request: &SampleRequest) -> Result<Vec<Image>, PluginError>;

    /// Writes weights, EMA, optimiser and step state under `dir` (which exists).
    fn save(&self, dir: &Path) -> Result<(), PluginError>;

    /// Restores what [`save`](BaseModel::save) wrote.
    fn load(&mut self, dir: &Path) -> Result<(), PluginError>;

    /// Whether this model trains data-parallel with the ranks its context's `data_parallel`
    /// names (averaging gradients with them). The host refuses `--gpus N` for a model that
    /// does not.
    fn data_parallel(&self) -> bool {
        false
    }

    /// Writes the model (its EMA weights) in the format its ecosystem loads — for the built-in
    /// `dit`, a diffusers pipeline folder — into `dir`, which exists and is empty. `evolve
    /// export` writes into a temporary folder and renames it, so a failure leaves nothing half.
    fn export(&self, dir: &Path) -> Result<(), PluginError> {
        let _ = dir;
        Err(PluginError::Unsupported("this base model has no export format".into()))
    }
}
