//! `evolve sample`: images from a run's model, as a PNG grid.

use anyhow::{Context, bail};
use evolve_core::experiment::PluginRef;
use evolve_core::registry::Registry;
use evolve_core::run_model;
use evolve_sdk::{Image, InitialNoise, PluginContext, SampleRequest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Lays `images` (all the same size) out in a near-square grid with 2-pixel white gutters.
pub fn grid(images: &[Image]) -> Image {
    let Some(first) = images.first() else { return Image::filled(1, 1, [255, 255, 255]) };
    let (w, h) = (first.width(), first.height());
    let cols = (images.len() as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (images.len() as u32).div_ceil(cols);
    let gap = 2;
    let mut out = Image::filled(cols * (w + gap) + gap, rows * (h + gap) + gap, [255, 255, 255]);
    for (i, image) in images.iter().enumerate() {
        let (ox, oy) = (gap + (i as u32 % cols) * (w + gap), gap + (i as u32 / cols) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                if let Some(p) = image.get(x, y) {
                    out.put(ox + x, oy + y, p);
                }
            }
        }
    }
    out
}

/// Where the model comes from.
pub enum Source {
    /// A run directory's latest checkpoint.
    Run(PathBuf),
    /// A pretrained folder read by a base-model plugin (`{"pretrained": DIR}`).
    Pretrained {
        /// The plugin.
        plugin: String,
        /// The folder.
        dir: PathBuf,
    },
}

/// How to render.
pub struct Options {
    /// Images.
    pub n: u32,
    /// Seed of the noise.
    pub seed: u64,
    /// Sampler steps.
    pub steps: Option<u32>,
    /// Guidance scale.
    pub guidance: Option<f32>,
    /// Sampler name.
    pub sampler: Option<String>,
    /// A safetensors file holding the starting noise as `latents`.
    pub init_noise: Option<PathBuf>,
}

/// Reads tensor `latents` (f32) from a safetensors file, repeated to `n` images if it has one.
pub fn read_noise(path: &Path, n: usize) -> anyhow::Result<InitialNoise> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}", path.display()))?;
    let latents = tensors.tensor("latents").with_context(|| format!("{}: no tensor `latents`", path.display()))?;
    if latents.dtype() != safetensors::Dtype::F32 {
        bail!("{}: `latents` is {:?}; it must be F32", path.display(), latents.dtype());
    }
    let mut shape = latents.shape().to_vec();
    let values: Vec<f32> =
        latents.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    match shape.first().copied() {
        Some(batch) if batch == n => Ok(InitialNoise { shape, values }),
        Some(1) => {
            shape[0] = n;
            Ok(InitialNoise { shape, values: values.repeat(n) })
        }
        _ => bail!("{}: `latents` has shape {shape:?}; its first dimension must be 1 or n ({n})", path.display()),
    }
}

/// Renders `options.n` images of `prompt` from `source` into `out`.
pub fn run(source: &Source, prompt: &str, options: &Options, out: &Path) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let mut model = match source {
        Source::Run(run) => run_model::open(run, &registry)?.1,
        Source::Pretrained { plugin, dir } => {
            let config = serde_json::json!({ "pretrained": dir });
            // Image size 0: the pretrained model's own.
            let ctx = PluginContext::new("base_model", options.seed).with_run(0, "cpu");
            registry
                .base_model(&PluginRef::from(plugin.as_str()), config, &ctx)
                .with_context(|| format!("cannot load {}", dir.display()))?
        }
    };
    let n = options.n as usize;
    let initial_noise = options.init_noise.as_deref().map(|path| read_noise(path, n)).transpose()?;
    let request = SampleRequest {
        prompts: vec![prompt.to_string(); n],
        seed: options.seed,
        steps: options.steps,
        guidance: options.guidance,
        sampler: options.sampler.clone(),
        initial_noise,
    };
    let images = model.generate(&request).map_err(anyhow::Error::msg).context("sampling failed")?;
    let png = evolve_core::store::encode_png(&grid(&images))?;
    evolve_core::store::atomic_write(out, &png)?;
    println!("wrote {} ({n} images of {prompt:?})", out.display());
    Ok(ExitCode::SUCCESS)
}
