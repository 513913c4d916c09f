//! The T5 encoder (Raffel et al., 2020) as transformers' `T5EncoderModel`: PixArt-alpha's frozen
//! text encoder (T5 v1.1 XXL, gated GELU), here any size a `config.json` describes.
//!
//! ```text
//! ids (B, L) --shared--> h
//! bias = relative_attention_bias(bucket(k - q))  (block 0 owns it; every block reuses it)
//!        + (1 - mask) * -inf                      (padding never attended)
//! for each block:  h += o(softmax(q kᵀ + bias) v)   with q, k, v = RMSNorm(h) W   (no 1/√d scaling)
//!                  h += wo(gelu_new(wi_0 x) ⊙ wi_1 x)  with x = RMSNorm(h)      (or relu(wi x) ungated)
//! out = RMSNorm(h)
//! ```
//!
//! Parameter paths are transformers' key names (`encoder.block.0.layer.0.SelfAttention.q.weight`).
//! It is frozen: the forward pass uses candle-nn's fused ops, which have no backward pass.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder};
use serde::Deserialize;

/// The fields of a transformers `T5Config` (`config.json`) the encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct T5Config {
    /// Width of the hidden states.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward layer.
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Token vocabulary.
    pub vocab_size: usize,
    /// Relative-position buckets.
    #[serde(default = "buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance beyond which relative positions share a bucket.
    #[serde(default = "max_distance")]
    pub relative_attention_max_distance: usize,
    /// Epsilon of the RMS norms.
    #[serde(default = "epsilon")]
    pub layer_norm_epsilon: f64,
    /// `gated-gelu` (T5 v1.1, PixArt's) or `relu` (the original T5).
    #[serde(default = "feed_forward")]
    pub feed_forward_proj: String,
}

fn buckets() -> usize {
    32
}
fn max_distance() -> usize {
    128
}
fn epsilon() -> f64 {
    1e-6
}
fn feed_forward() -> String {
    "relu".into()
}

/// `x / √(mean(x²) + ε) · w`: T5's layer norm, without mean or bias.
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm { weight: vb.get(dim, "weight")?, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

fn linear(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
    candle_nn::linear_no_bias(inputs, outputs, vb)
}

struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    d_kv: usize,
}

impl SelfAttention {
    fn new(vb: VarBuilder, cfg: &T5Config) -> Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        Ok(SelfAttention {
            q: linear(vb.pp("q"), cfg.d_model, inner)?,
            k: linear(vb.pp("k"), cfg.d_model, inner)?,
            v: linear(vb.pp("v"), cfg.d_model, inner)?,
            o: linear(vb.pp("o"), inner, cfg.d_model)?,
            heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// Attention over `x` (B, L, d_model) with `bias` (B, heads, L, L) added to the scores.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let heads = |t: Tensor| t.reshape((b, l, self.heads, self.d_kv))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (heads(self.q.forward(x)?)?, heads(self.k.forward(x)?)?, heads(self.v.forward(x)?)?);
        let scores = (q.matmul(&k.t()?)? + bias)?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, l, self.heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

enum FeedForward {
    Gated { wi_0: Linear, wi_1: Linear, wo: Linear },
    Relu { wi: Linear, wo: Linear },
}

impl FeedForward {
    fn new(vb: VarBuilder, cfg: &T5Config) -> Result<Self> {
        let (d, ff) = (cfg.d_model, cfg.d_ff);
        match cfg.feed_forward_proj.as_str() {
            "gated-gelu" => Ok(FeedForward::Gated {
                wi_0: linear(vb.pp("wi_0"), d, ff)?,
                wi_1: linear(vb.pp("wi_1"), d, ff)?,
                wo: linear(vb.pp("wo"), ff, d)?,
            }),
            "relu" => Ok(FeedForward::Relu { wi: linear(vb.pp("wi"), d, ff)?, wo: linear(vb.pp("wo"), ff, d)? }),
            other => Err(candle_core::Error::Msg(format!(
                "T5 feed_forward_proj {other:?} is not supported (gated-gelu or relu)"
            ))),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            // transformers' `gelu_new` is the tanh approximation, candle's `gelu`.
            FeedForward::Gated { wi_0, wi_1, wo } => wo.forward(&(wi_0.forward(x)?.gelu()? * wi_1.forward(x)?)?),
            FeedForward::Relu { wi, wo } => wo.forward(&wi.forward(x)?.relu()?),
        }
    }
}

struct Block {
    attention_norm: RmsNorm,
    attention: SelfAttention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

/// A frozen T5 encoder.
pub struct T5Encoder {
    shared: Embedding,
    relative_attention_bias: Embedding,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    config: T5Config,
}

impl T5Encoder {
    /// The encoder of `config` with weights from `vb` (a `T5EncoderModel` checkpoint's root).
    pub fn new(config: &T5Config, vb: VarBuilder) -> Result<Self> {
        let shared = candle_nn::embedding(config.vocab_size, config.d_model, vb.pp("shared"))?;
        let encoder = vb.pp("encoder");
        let relative_attention_bias = candle_nn::embedding(
            config.relative_attention_num_buckets,
            config.num_heads,
            encoder.pp("block.0.layer.0.SelfAttention.relative_attention_bias"),
        )?;
        let blocks = (0..config.num_layers)
            .map(|i| {
                let layer = encoder.pp(format!("block.{i}.layer"));
                Ok(Block {
                    attention_norm: RmsNorm::new(layer.pp("0.layer_norm"), config.d_model, config.layer_norm_epsilon)?,
                    attention: SelfAttention::new(layer.pp("0.SelfAttention"), config)?,
                    ff_norm: RmsNorm::new(layer.pp("1.layer_norm"), config.d_model, config.layer_norm_epsilon)?,
                    ff: FeedForward::new(layer.pp("1.DenseReluDense"), config)?,
                })
            })
            .collect::<Result<_>>()?;
        let final_norm = RmsNorm::new(encoder.pp("final_layer_norm"), config.d_model, config.layer_norm_epsilon)?;
        Ok(T5Encoder { shared, relative_attention_bias, blocks, final_norm, config: config.clone() })
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.config.d_model
    }

    /// The last hidden states `(B, L, d_model)` of token `ids` (B, L) where `mask` (B, L) is 1,
    /// attending only to positions where `mask` is 1.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let mut h = self.shared.forward(ids)?;
        let buckets = relative_buckets(l, &self.config, ids.device())?;
        let position = self.relative_attention_bias.forward(&buckets)?.permute((2, 0, 1))?.unsqueeze(0)?;
        // A large finite negative rather than -inf: a row that is all padding stays finite.
        let padding = ((1.0 - mask.to_dtype(DType::F32)?)? * -1e30)?.reshape((b, 1, 1, l))?;
        let bias = position.broadcast_add(&padding.to_dtype(h.dtype())?)?;
        for block in &self.blocks {
            h = (&h + block.attention.forward(&block.attention_norm.forward(&h)?, &bias)?)?;
            h = (&h + block.ff.forward(&block.ff_norm.forward(&h)?)?)?;
        }
        self.final_norm.forward(&h)
    }
}

/// T5's bidirectional relative-position bucket of `relative` (key position − query position):
/// half the buckets per direction, exact below `buckets / 4`, logarithmic up to `max_distance`.
pub fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> u32 {
    let half = (buckets / 2) as i64;
    let offset = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let max_exact = half / 2;
    if distance < max_exact {
        return (offset + distance) as u32;
    }
    // As transformers computes it: in f32, truncated towards zero.
    let log_ratio = (distance as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln();
    let large = max_exact + (log_ratio * (half - max_exact) as f32) as i64;
    (offset + large.min(half - 1)) as u32
}

fn relative_buckets(len: usize, config: &T5Config, device: &Device) -> Result<Tensor> {
    let (buckets, max_distance) = (config.relative_attention_num_buckets, config.relative_attention_max_distance);
    let values: Vec<u32> = (0..len as i64)
        .flat_map(|q| (0..len as i64).map(move |k| relative_bucket(k - q, buckets, max_distance)))
        .collect();
    Tensor::from_vec(values, (len, len), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_transformers_at_known_distances() {
        // Values of transformers' `_relative_position_bucket(bidirectional=True, 32, 128)`.
        let expected =
            [(0, 0), (1, 17), (-1, 1), (7, 23), (-7, 7), (8, 24), (-8, 8), (12, 25), (-20, 10), (127, 31), (-500, 15)];
        for (relative, bucket) in expected {
            assert_eq!(relative_bucket(relative, 32, 128), bucket, "relative position {relative}");
        }
    }
}
