//! The small layers every transformer here is made of.

use super::bmm::bmm;
use super::fused::{bias_add, row_affine};
use super::ops::{gelu_tanh, layer_norm, scaled_softmax_last_dim};
use super::params::xavier_uniform;
use candle_core::{D, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `w` in the dtype of the activations `like`: itself in one precision; under mixed precision
/// the bf16 copy of an f32 master weight, through which the gradient flows back to it in f32.
pub fn at_precision_of(w: &Tensor, like: &Tensor) -> Result<Tensor> {
    if w.dtype() == like.dtype() { Ok(w.clone()) } else { w.to_dtype(like.dtype()) }
}

/// `y = x W^T + b`, with `W` of shape `(out, in)` as in PyTorch.
#[derive(Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// A linear layer `weight` / `bias` under `vb`, Xavier-uniform weights and zero bias.
    pub fn new(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        Self::with_init(vb, inputs, outputs, xavier_uniform(inputs, outputs))
    }

    /// A linear layer with weights drawn from `init` and zero bias.
    pub fn with_init(vb: VarBuilder, inputs: usize, outputs: usize, init: Init) -> Result<Self> {
        let weight = vb.get_with_hints((outputs, inputs), "weight", init)?;
        let bias = vb.get_with_hints(outputs, "bias", Init::Const(0.0))?;
        Ok(Linear { weight, bias })
    }

    /// The `(out, in)` weight matrix.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias (every linear layer here has one).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inputs = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, inputs))?.matmul(&at_precision_of(&self.weight, x)?.t()?)?;
        let y = bias_add(&y, &at_precision_of(&self.bias, x)?)?;
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.weight.dim(0)?;
        y.reshape(out)
    }
}

/// Layer norm over the last dimension with a learned scale and bias.
#[derive(Clone)]
pub struct AffineNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl AffineNorm {
    /// `weight` (ones) and `bias` (zeros) under `vb` over `dim` features.
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(AffineNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    /// Normalises `x` and applies the affine map.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        row_affine(&layer_norm(x, self.eps)?, &at_precision_of(&self.weight, x)?, &at_precision_of(&self.bias, x)?)
    }
}

/// Multi-head attention in the diffusers layout (`to_q`, `to_k`, `to_v`, `to_out.0`), with
/// optional LayerNorm on queries and keys per head (`norm_q`, `norm_k`), which EvolveDirector
/// adds to PixArt's cross-attention for stability.
#[derive(Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Option<AffineNorm>,
    norm_k: Option<AffineNorm>,
    heads: usize,
}

impl Attention {
    /// Attention from `dim` queries over `context_dim` keys/values with `heads` heads.
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        context_dim: usize,
        heads: usize,
        qk_norm: bool,
        zero_out: bool,
    ) -> Result<Self> {
        let head_dim = dim / heads;
        let out_init = if zero_out { Init::Const(0.0) } else { xavier_uniform(dim, dim) };
        let norm = |name: &str| qk_norm.then(|| AffineNorm::new(vb.pp(name), head_dim, 1e-6)).transpose();
        Ok(Attention {
            to_q: Linear::new(vb.pp("to_q"), dim, dim)?,
            to_k: Linear::new(vb.pp("to_k"), context_dim, dim)?,
            to_v: Linear::new(vb.pp("to_v"), context_dim, dim)?,
            to_out: Linear::with_init(vb.pp("to_out.0"), dim, dim, out_init)?,
            norm_q: norm("norm_q")?,
            norm_k: norm("norm_k")?,
            heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.heads, c / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// Attends from `x` (B, N, dim) over `context` (B, M, context_dim), only to the context
    /// tokens where `mask` (B, M) is 1 when there is one.
    pub fn forward(&self, x: &Tensor, context: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let mut q = self.split_heads(&self.to_q.forward(x)?)?;
        let mut k = self.split_heads(&self.to_k.forward(context)?)?;
        let v = self.split_heads(&self.to_v.forward(context)?)?;
        if let (Some(nq), Some(nk)) = (&self.norm_q, &self.norm_k) {
            q = nq.forward(&q)?;
            k = nk.forward(&k)?;
        }
        let scale = 1.0 / ((c / self.heads) as f64).sqrt();
        let heads = b * self.heads;
        let (m, d) = (k.dim(2)?, c / self.heads);
        let (q, k, v) = (q.reshape((heads, n, d))?, k.reshape((heads, m, d))?, v.reshape((heads, m, d))?);
        let scores = bmm(&q, &k, false, true)?;
        let attn = match mask {
            None => scaled_softmax_last_dim(&scores, scale)?,
            Some(mask) => {
                // diffusers' bias for masked tokens: (1 - mask) * -10000, per batch row and head.
                let bias = ((1.0 - mask.to_dtype(scores.dtype())?)? * -10_000.0)?;
                let bias = bias.reshape((b, 1, 1, m))?.broadcast_as((b, self.heads, 1, m))?.reshape((heads, 1, m))?;
                scaled_softmax_last_dim(&(scores * scale)?.broadcast_add(&bias)?, 1.0)?
            }
        };
        let out = bmm(&attn, &v, false, false)?.reshape((b, self.heads, n, d))?.transpose(1, 2)?.reshape((b, n, c))?;
        self.to_out.forward(&out)
    }
}

/// Feed-forward `Linear -> GELU(tanh) -> Linear` (diffusers `ff.net.0.proj`, `ff.net.2`).
#[derive(Clone)]
pub struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    /// A feed-forward block widening `dim` by `mult`.
    pub fn new(vb: VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        Ok(FeedForward {
            proj_in: Linear::new(vb.pp("net.0.proj"), dim, dim * mult)?,
            proj_out: Linear::new(vb.pp("net.2"), dim * mult, dim)?,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out.forward(&gelu_tanh(&self.proj_in.forward(x)?)?)
    }
}

/// Splits the last dimension of `x` into `n` equal chunks.
pub fn chunk_last(x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
    x.chunk(n, D::Minus1)
}
