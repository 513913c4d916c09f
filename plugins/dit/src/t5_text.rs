//! PixArt-alpha's captions: a prompt tokenized by T5's tokenizer (`tokenizer.json`, read by the
//! `tokenizers` crate), padded or truncated to 120 tokens with an attention mask, encoded by the
//! frozen [`T5Encoder`], and cached per prompt (a prompt is encoded once however often it trains,
//! on disk in the run's cache folder across resumes).

use crate::cache::TensorCache;
use crate::pipeline::safetensors_files;
use crate::t5::{T5Config, T5Encoder};
use crate::text::{Caption, TextEncoder};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// PixArt-alpha's caption length in tokens.
pub const PIXART_TOKENS: usize = 120;

/// Bytes of encodings kept in memory (an XXL caption is 120 × 4096 floats, ~2 MB: about 250; the
/// disk keeps every one).
const CACHE_BYTES: usize = 512 << 20;

fn error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

/// The files of a T5 encoder folder: `config.json`, `model.safetensors` (or shards) and a
/// `tokenizer.json` in the folder or in `../tokenizer/` (a diffusers pipeline's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct T5Files {
    /// `config.json`.
    pub config: PathBuf,
    /// Every `*.safetensors` file of the folder, sorted.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl T5Files {
    /// Finds the files under `dir`, naming what is missing.
    pub fn find(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(error(format!("T5 folder {}: no config.json", dir.display())));
        }
        let weights = safetensors_files(dir).map_err(|e| error(format!("T5 folder: {e}")))?;
        if weights.is_empty() {
            return Err(error(format!("T5 folder {}: no *.safetensors weights", dir.display())));
        }
        let candidates = [dir.join("tokenizer.json"), dir.join("../tokenizer/tokenizer.json")];
        let tokenizer = candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
            error(format!(
                "T5 folder {}: no tokenizer.json there or in ../tokenizer/ (a slow `spiece.model` tokenizer can be \
                 converted with transformers: `T5TokenizerFast.from_pretrained(DIR).save_pretrained(DIR)`)",
                dir.display()
            ))
        })?;
        Ok(T5Files { config, weights, tokenizer })
    }
}

/// Reads `config.json` of a T5 encoder.
pub fn read_config(path: &Path) -> Result<T5Config> {
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// T5's tokenizer at a fixed length: ids and mask, padded right, truncated keeping `</s>`.
pub struct T5Tokenizer {
    tokenizer: Tokenizer,
    length: usize,
}

impl T5Tokenizer {
    /// The tokenizer in `path` (`tokenizer.json`), padding and truncating to `length` tokens.
    pub fn from_file(path: &Path, length: usize) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| error(format!("{}: {e}", path.display())))?;
        let pad_id = tokenizer.token_to_id("<pad>").unwrap_or(0);
        let truncation = TruncationParams { max_length: length, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| error(format!("{}: {e}", path.display())))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: PaddingDirection::Right,
            pad_id,
            pad_token: "<pad>".into(),
            ..Default::default()
        }));
        Ok(T5Tokenizer { tokenizer, length })
    }

    /// Token ids and attention mask (1 for tokens, 0 for padding) of `prompt`.
    pub fn encode(&self, prompt: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let encoding = self.tokenizer.encode(prompt, true).map_err(|e| error(format!("tokenizing {prompt:?}: {e}")))?;
        let (ids, mask) = (encoding.get_ids().to_vec(), encoding.get_attention_mask().to_vec());
        if ids.len() != self.length {
            return Err(error(format!("tokenizer gave {} tokens, expected {}", ids.len(), self.length)));
        }
        Ok((ids, mask))
    }
}

/// The frozen T5 caption encoder with its tokenizer and a per-prompt cache.
pub struct T5TextEncoder {
    tokenizer: T5Tokenizer,
    encoder: T5Encoder,
    /// Names the encoder in cache keys: config, tokenizer and the weight files' names and sizes
    /// (hashing 19 GB of T5-XXL weights at every start would cost more than it saves).
    identity: blake3::Hash,
    cache: TensorCache,
    device: Device,
    dtype: DType,
}

impl T5TextEncoder {
    /// Loads the encoder in `dir` (see [`T5Files`]) onto `device`, computing in `dtype`, keeping
    /// encodings under `cache_dir/captions/` when given.
    pub fn load(dir: &Path, length: usize, dtype: DType, device: &Device, cache_dir: Option<&Path>) -> Result<Self> {
        let files = T5Files::find(dir)?;
        let config = read_config(&files.config)?;
        // SAFETY: the weights are memory-mapped read-only; evolve never writes them while running.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device)? };
        let encoder = T5Encoder::new(&config, vb).map_err(|e| error(format!("T5 folder {}: {e}", dir.display())))?;
        let tokenizer = T5Tokenizer::from_file(&files.tokenizer, length)?;
        let mut identity = blake3::Hasher::new();
        for path in [&files.config, &files.tokenizer] {
            identity.update(&std::fs::read(path).map_err(|e| error(format!("{}: {e}", path.display())))?);
        }
        for file in &files.weights {
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            identity.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            identity.update(&size.to_le_bytes());
        }
        identity.update(&(length as u64).to_le_bytes());
        identity.update(format!("{dtype:?}").as_bytes());
        let identity = identity.finalize();
        let cache_dir = cache_dir.map(|d| d.join("captions").join(&identity.to_hex()[..16]));
        let cache = TensorCache::new(CACHE_BYTES, cache_dir, device);
        Ok(T5TextEncoder { tokenizer, encoder, identity, cache, device: device.clone(), dtype })
    }

    /// Width of the features.
    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    fn encode_one(&self, prompt: &str) -> Result<(Tensor, Tensor)> {
        let (ids, mask) = self.tokenizer.encode(prompt)?;
        let len = ids.len();
        let mask = Tensor::from_vec(mask, (1, len), &self.device)?.to_dtype(self.dtype)?;
        let key = blake3::keyed_hash(self.identity.as_bytes(), prompt.as_bytes());
        let features = self.cache.get_or_derive(key, || {
            let ids = Tensor::from_vec(ids, (1, len), &self.device)?;
            self.encoder.forward(&ids, &mask)
        })?;
        Ok((features, mask))
    }
}

impl TextEncoder for T5TextEncoder {
    fn encode(&self, prompts: &[String]) -> Result<Caption> {
        let (features, masks): (Vec<Tensor>, Vec<Tensor>) =
            prompts.iter().map(|p| self.encode_one(p)).collect::<Result<Vec<_>>>()?.into_iter().unzip();
        Ok(Caption { features: Tensor::cat(&features, 0)?, mask: Some(Tensor::cat(&masks, 0)?) })
    }
}
