//! diffusers pipeline folders, PixArt-alpha's published layout: `transformer/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/` and `model_index.json`. Read to start from
//! published weights ([`PipelineFolder`]); written by `evolve export` ([`export`]).

use crate::diffusion::{Prediction, Spacing};
use crate::dit::DitShape;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What went wrong with a pipeline folder.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file or folder is missing.
    #[error("pipeline folder {dir}: {what} is missing")]
    Missing {
        /// The pipeline folder.
        dir: PathBuf,
        /// The missing part.
        what: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// The folder holds a model this trainer cannot be.
    #[error("pipeline folder {dir}: {message}")]
    Unsupported {
        /// The pipeline folder.
        dir: PathBuf,
        /// Why.
        message: String,
    },
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::File { path: path.to_path_buf(), message: e.to_string() }
}

/// The fields of a diffusers `PixArtTransformer2DModel` config evolve reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of one head.
    pub attention_head_dim: usize,
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out (twice `in_channels` with a learned sigma).
    pub out_channels: Option<usize>,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Latent side the model was trained at.
    pub sample_size: usize,
    /// Side of a patch.
    pub patch_size: usize,
    /// Width of the text encoder's features.
    pub caption_channels: usize,
    /// Position-embedding interpolation (`null`: `max(sample_size / 64, 1)`).
    #[serde(default)]
    pub interpolation_scale: Option<f64>,
    /// The 1024 px model's resolution and aspect-ratio micro-conditions (`null`: when
    /// `sample_size` is 128).
    #[serde(default)]
    pub use_additional_conditions: Option<bool>,
}

impl TransformerConfig {
    /// The diffusers config of a model of `shape` (square latents of `shape.image_size`).
    pub fn of(shape: &DitShape) -> Self {
        TransformerConfig {
            num_attention_heads: shape.heads,
            attention_head_dim: shape.hidden / shape.heads,
            in_channels: shape.in_channels,
            out_channels: Some(shape.out_channels()),
            num_layers: shape.depth,
            sample_size: shape.image_size,
            patch_size: shape.patch,
            caption_channels: shape.caption_channels,
            interpolation_scale: Some(f64::from(shape.interpolation_scale)),
            use_additional_conditions: Some(shape.resolution_condition.is_some()),
        }
    }

    /// Reads `config.json` in `dir`.
    pub fn read(dir: &Path) -> Result<Self, PipelineError> {
        read_json(&dir.join("config.json"))
    }

    /// Whether the transformer takes resolution and aspect-ratio micro-conditions (diffusers'
    /// `use_additional_conditions`, by default when `sample_size` is 128: the 1024 px model).
    pub fn micro_conditions(&self) -> bool {
        self.use_additional_conditions.unwrap_or(self.sample_size == 128)
    }

    /// The position interpolation scale (by default `max(sample_size / 64, 1)`), when it is a
    /// whole number from 1.
    pub fn interpolation_scale(&self) -> Option<u32> {
        let scale = self.interpolation_scale.unwrap_or((self.sample_size / 64).max(1) as f64);
        (scale >= 1.0 && scale.fract() == 0.0).then_some(scale as u32)
    }

    /// The transformer's sizes at its own sample size, with `interpolation_scale`: diffusers'
    /// PixArt has neither QK norm nor a learned null caption. The micro-conditions' resolution
    /// is the caller's to set (it is in pixels, which the VAE decides).
    pub fn shape(&self, interpolation_scale: u32) -> DitShape {
        DitShape {
            image_size: self.sample_size,
            in_channels: self.in_channels,
            patch: self.patch_size,
            hidden: self.num_attention_heads * self.attention_head_dim,
            depth: self.num_layers,
            heads: self.num_attention_heads,
            caption_channels: self.caption_channels,
            caption_len: crate::t5_text::PIXART_TOKENS,
            qk_norm: false,
            null_caption: false,
            learned_sigma: self.out_channels.is_some_and(|c| c == 2 * self.in_channels),
            interpolation_scale,
            resolution_condition: None,
        }
    }

    /// The config.json diffusers writes, with the fields evolve does not vary.
    pub fn to_json(&self) -> serde_json::Value {
        let hidden = self.num_attention_heads * self.attention_head_dim;
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            let fixed = json!({
                "_class_name": "PixArtTransformer2DModel",
                "activation_fn": "gelu-approximate",
                "attention_bias": true,
                "attention_type": "default",
                "cross_attention_dim": hidden,
                "dropout": 0.0,
                "norm_elementwise_affine": false,
                "norm_eps": 1e-6,
                "norm_num_groups": 32,
                "norm_type": "ada_norm_single",
                "num_embeds_ada_norm": 1000,
                "upcast_attention": false,
            });
            map.extend(fixed.as_object().cloned().unwrap_or_default());
        }
        value
    }
}

/// The scheduler settings evolve can train and sample with.
#[derive(Debug, Clone, Deserialize)]
struct SchedulerConfig {
    #[serde(default = "linear")]
    beta_schedule: String,
    #[serde(default = "beta_start")]
    beta_start: f64,
    #[serde(default = "beta_end")]
    beta_end: f64,
    #[serde(default = "train_steps")]
    num_train_timesteps: usize,
    #[serde(default = "epsilon")]
    prediction_type: String,
    #[serde(default)]
    timestep_spacing: Spacing,
    #[serde(default)]
    steps_offset: usize,
}

fn linear() -> String {
    "linear".into()
}
fn beta_start() -> f64 {
    1e-4
}
fn beta_end() -> f64 {
    0.02
}
fn train_steps() -> usize {
    1000
}
fn epsilon() -> String {
    "epsilon".into()
}

/// A diffusers PixArt pipeline folder, opened.
#[derive(Debug, Clone)]
pub struct PipelineFolder {
    dir: PathBuf,
    /// The transformer's config.
    pub transformer: TransformerConfig,
    /// What the transformer predicts (from the scheduler's config).
    pub prediction: Prediction,
    /// Whether the transformer takes resolution and aspect-ratio micro-conditions (diffusers'
    /// `use_additional_conditions`, by default when `sample_size` is 128: the 1024 px model).
    pub micro_conditions: bool,
    /// Its position interpolation scale.
    pub interpolation_scale: u32,
    /// The scheduler's timestep spacing.
    pub spacing: Spacing,
    /// The scheduler's `steps_offset`.
    pub steps_offset: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error(path, e))
}

/// Every `*.safetensors` file in `dir`, sorted.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, PipelineError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

impl PipelineFolder {
    /// Opens `dir`, naming the first missing part and refusing what evolve cannot train.
    pub fn open(dir: &Path) -> Result<Self, PipelineError> {
        let missing = |what: &str| PipelineError::Missing { dir: dir.to_path_buf(), what: what.to_string() };
        let unsupported = |message: String| PipelineError::Unsupported { dir: dir.to_path_buf(), message };
        for part in ["transformer/config.json", "vae/config.json", "text_encoder/config.json", "scheduler"] {
            if !dir.join(part).exists() {
                return Err(missing(part));
            }
        }
        let transformer = TransformerConfig::read(&dir.join("transformer"))?;
        if safetensors_files(&dir.join("transformer"))?.is_empty() {
            return Err(missing(
                "transformer/*.safetensors (a .bin checkpoint converts with diffusers' save_pretrained)",
            ));
        }
        let Some(interpolation_scale) = transformer.interpolation_scale() else {
            let scale = transformer.interpolation_scale;
            return Err(unsupported(format!("position interpolation scale {scale:?} (whole numbers from 1)")));
        };
        let scheduler_path = ["scheduler/scheduler_config.json", "scheduler/config.json"]
            .iter()
            .map(|p| dir.join(p))
            .find(|p| p.is_file())
            .ok_or_else(|| missing("scheduler/scheduler_config.json"))?;
        // Python's json writes -Infinity / NaN (e.g. `lambda_min_clipped`), which JSON lacks.
        let text = std::fs::read_to_string(&scheduler_path).map_err(|e| file_error(&scheduler_path, e))?;
        let text = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
        let scheduler: SchedulerConfig = serde_json::from_str(&text).map_err(|e| file_error(&scheduler_path, e))?;
        let linear = scheduler.beta_schedule == "linear"
            && (scheduler.beta_start - 1e-4).abs() < 1e-12
            && (scheduler.beta_end - 0.02).abs() < 1e-12
            && scheduler.num_train_timesteps == 1000;
        if !linear {
            return Err(unsupported(format!(
                "scheduler {}: evolve trains the linear 1e-4..0.02 schedule over 1000 steps (PixArt's), not {} {}..{} over {}",
                scheduler_path.display(),
                scheduler.beta_schedule,
                scheduler.beta_start,
                scheduler.beta_end,
                scheduler.num_train_timesteps
            )));
        }
        let prediction = match scheduler.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "sample" => Prediction::Sample,
            other => return Err(unsupported(format!("prediction_type {other:?} (epsilon or sample)"))),
        };
        let (spacing, steps_offset) = (scheduler.timestep_spacing, scheduler.steps_offset);
        Ok(PipelineFolder {
            dir: dir.to_path_buf(),
            micro_conditions: transformer.micro_conditions(),
            transformer,
            prediction,
            interpolation_scale,
            spacing,
            steps_offset,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The transformer's sizes (see [`TransformerConfig::shape`]).
    pub fn shape(&self) -> DitShape {
        self.transformer.shape(self.interpolation_scale)
    }

    /// The transformer's weights by diffusers key name, on the CPU.
    pub fn transformer_weights(&self) -> Result<HashMap<String, Tensor>, PipelineError> {
        let mut weights = HashMap::new();
        for file in safetensors_files(&self.dir.join("transformer"))? {
            weights.extend(candle_core::safetensors::load(&file, &Device::Cpu).map_err(|e| file_error(&file, e))?);
        }
        Ok(weights)
    }

    /// `vae/`.
    pub fn vae_dir(&self) -> PathBuf {
        self.dir.join("vae")
    }

    /// `text_encoder/` (its tokenizer is found in `../tokenizer/`).
    pub fn text_encoder_dir(&self) -> PathBuf {
        self.dir.join("text_encoder")
    }
}

/// What `export` writes a pipeline folder from.
pub struct ExportParts<'a> {
    /// The transformer's sizes (latent space, T5 captions, no QK norm, no null caption).
    pub shape: &'a DitShape,
    /// The transformer's weights by diffusers key name (the EMA weights).
    pub weights: &'a HashMap<String, Tensor>,
    /// What the transformer predicts.
    pub prediction: Prediction,
    /// How the sampler spreads its timesteps, and their offset.
    pub spacing: (Spacing, usize),
    /// The `AutoencoderKL` folder trained with.
    pub vae: &'a Path,
    /// The T5 encoder folder trained with.
    pub text_encoder: &'a Path,
    /// Its `tokenizer.json`.
    pub tokenizer: &'a Path,
}

/// Links `from` to `to` (the frozen parts are large: T5-XXL is ~19 GB), copying across devices.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), PipelineError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| file_error(to, e))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), PipelineError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_error(path, e))?;
    crate::checkpoint::write_synced(path, text.as_bytes()).map_err(|e| file_error(path, e))
}

/// Writes `parts` as a diffusers `PixArtAlphaPipeline` folder into `out` (existing, empty):
/// `transformer/` written, `vae/`, `text_encoder/` and `tokenizer/` linked or copied, a
/// `scheduler/` for PixArt's schedule and the model's prediction, and `model_index.json`.
pub fn export(parts: &ExportParts, out: &Path) -> Result<(), PipelineError> {
    let folder = |name: &str| -> Result<PathBuf, PipelineError> {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
        Ok(dir)
    };
    let transformer = folder("transformer")?;
    write_json(&transformer.join("config.json"), &TransformerConfig::of(parts.shape).to_json())?;
    let weights_path = transformer.join("diffusion_pytorch_model.safetensors");
    let bytes = safetensors::serialize(parts.weights.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| file_error(&weights_path, e))?;
    crate::checkpoint::write_synced(&weights_path, &bytes).map_err(|e| file_error(&weights_path, e))?;

    for (name, source) in [("vae", parts.vae), ("text_encoder", parts.text_encoder)] {
        let target = folder(name)?;
        link_or_copy(&source.join("config.json"), &target.join("config.json"))?;
        for file in safetensors_files(source)? {
            let Some(file_name) = file.file_name() else { continue };
            link_or_copy(&file, &target.join(file_name))?;
        }
    }
    let tokenizer = folder("tokenizer")?;
    link_or_copy(parts.tokenizer, &tokenizer.join("tokenizer.json"))?;
    let tokenizer_config = json!({
        "tokenizer_class": "T5TokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": crate::t5_text::PIXART_TOKENS,
    });
    write_json(&tokenizer.join("tokenizer_config.json"), &tokenizer_config)?;

    let scheduler = json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver++",
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "num_train_timesteps": 1000,
        "prediction_type": parts.prediction.name(),
        "solver_order": 2,
        "lower_order_final": true,
        "timestep_spacing": parts.spacing.0,
        "steps_offset": parts.spacing.1,
    });
    write_json(&folder("scheduler")?.join("scheduler_config.json"), &scheduler)?;
    let index = json!({
        "_class_name": "PixArtAlphaPipeline",
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "PixArtTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    });
    write_json(&out.join("model_index.json"), &index)
}
