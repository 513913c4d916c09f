//! PixArt-alpha's latent space: a frozen [`Vae`] from a diffusers `AutoencoderKL` folder, each
//! training image encoded once and its latents cached by content (image hash and VAE identity),
//! on disk in the run's cache folder across rounds and resumes.

use crate::cache::TensorCache;
use crate::pipeline::safetensors_files;
use crate::pixels;
use crate::vae::{Vae, VaeConfig};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use evolve_sdk::Image;
use std::path::Path;

/// Bytes of latents kept in memory (about 2000 at 1024 px; the disk keeps every one).
const CACHE_BYTES: usize = 512 << 20;

fn error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

/// The VAE with its latent cache.
pub struct LatentSpace {
    vae: Vae,
    /// blake3 of the VAE's config and weight files: latents of one image under another VAE differ.
    identity: blake3::Hash,
    cache: TensorCache,
    device: Device,
    dtype: DType,
}

impl LatentSpace {
    /// Loads the `AutoencoderKL` in `dir` (`config.json` and `*.safetensors`), keeping latents
    /// under `cache_dir/latents/` when given.
    pub fn load(dir: &Path, dtype: DType, device: &Device, cache_dir: Option<&Path>) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| error(format!("VAE folder {}: config.json: {e}", dir.display())))?;
        let config: VaeConfig =
            serde_json::from_str(&config_text).map_err(|e| error(format!("{}: {e}", config_path.display())))?;
        let weights = safetensors_files(dir).map_err(|e| error(format!("VAE folder: {e}")))?;
        if weights.is_empty() {
            return Err(error(format!("VAE folder {}: no *.safetensors weights", dir.display())));
        }
        let mut identity = blake3::Hasher::new();
        identity.update(config_text.as_bytes());
        for file in &weights {
            let bytes = std::fs::read(file).map_err(|e| error(format!("{}: {e}", file.display())))?;
            identity.update(&bytes);
        }
        // SAFETY: the weights are memory-mapped read-only; evolve never writes them while running.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, dtype, device)? };
        let vae = Vae::new(&config, vb).map_err(|e| error(format!("VAE folder {}: {e}", dir.display())))?;
        let identity = identity.finalize();
        let cache_dir = cache_dir.map(|d| d.join("latents").join(&identity.to_hex()[..16]));
        Ok(LatentSpace {
            vae,
            identity,
            cache: TensorCache::new(CACHE_BYTES, cache_dir, device),
            device: device.clone(),
            dtype,
        })
    }

    /// The autoencoder.
    pub fn vae(&self) -> &Vae {
        &self.vae
    }

    /// Latent channels.
    pub fn channels(&self) -> usize {
        self.vae.config().latent_channels
    }

    /// Pixels per latent cell along a side.
    pub fn downscale(&self) -> usize {
        self.vae.downscale()
    }

    fn key(&self, image: &Image) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.identity.as_bytes());
        hasher.update(&image.width().to_le_bytes());
        hasher.update(&image.height().to_le_bytes());
        hasher.update(image.pixels());
        hasher.finalize()
    }

    /// The scaled latents `(B, C, height / 8, width / 8)` of `images`, each `height`×`width`.
    pub fn encode(&self, images: &[Image], size: (usize, usize)) -> Result<Tensor> {
        let mut latents = Vec::with_capacity(images.len());
        for image in images {
            latents.push(self.cache.get_or_derive(self.key(image), || {
                let x = pixels::to_tensor(std::slice::from_ref(image), size, &self.device, self.dtype)?;
                self.vae.to_latents(&x)
            })?);
        }
        Tensor::cat(&latents, 0)
    }

    /// Images (in [-1, 1]) of scaled latents.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.vae.from_latents(&latents.detach())
    }
}
