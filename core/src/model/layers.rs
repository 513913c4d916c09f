//! The small layers every transformer here is made of.

use super::bmm::bmm;
use super::fused::{bias_add, row_affine};
use super::ops::{gelu_tanh, layer_norm, scaled_softmax_last_dim};
use super::params::{Init, ParamStore};
use candle_core::{D, Result, Tensor};

/// `y = x W^T + b`, with `W` of shape `(out, in)` as in PyTorch.
#[derive(Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer `name.weight` / `name.bias`, Xavier-uniform weights and zero bias.
    pub fn new(p: &mut ParamStore, name: &str, inputs: usize, outputs: usize) -> Result<Self> {
        Self::with_init(p, name, inputs, outputs, Init::XavierUniform { fan_in: inputs, fan_out: outputs })
    }

    /// A linear layer with weights drawn from `init` and zero bias.
    pub fn with_init(p: &mut ParamStore, name: &str, inputs: usize, outputs: usize, init: Init) -> Result<Self> {
        let weight = p.get(&format!("{name}.weight"), &[outputs, inputs], init)?;
        let bias = Some(p.get(&format!("{name}.bias"), &[outputs], Init::Zeros)?);
        Ok(Linear { weight, bias })
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inputs = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, inputs))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => bias_add(&y, b)?,
            None => y,
        };
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
    /// `name.weight` (ones) and `name.bias` (zeros) over `dim` features.
    pub fn new(p: &mut ParamStore, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(AffineNorm {
            weight: p.get(&format!("{name}.weight"), &[dim], Init::Ones)?,
            bias: p.get(&format!("{name}.bias"), &[dim], Init::Zeros)?,
            eps,
        })
    }

    /// Normalises `x` and applies the affine map.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        row_affine(&layer_norm(x, self.eps)?, &self.weight, &self.bias)
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
        p: &mut ParamStore,
        name: &str,
        dim: usize,
        context_dim: usize,
        heads: usize,
        qk_norm: bool,
        zero_out: bool,
    ) -> Result<Self> {
        let head_dim = dim / heads;
        let out_init = if zero_out { Init::Zeros } else { Init::XavierUniform { fan_in: dim, fan_out: dim } };
        Ok(Attention {
            to_q: Linear::new(p, &format!("{name}.to_q"), dim, dim)?,
            to_k: Linear::new(p, &format!("{name}.to_k"), context_dim, dim)?,
            to_v: Linear::new(p, &format!("{name}.to_v"), context_dim, dim)?,
            to_out: Linear::with_init(p, &format!("{name}.to_out.0"), dim, dim, out_init)?,
            norm_q: if qk_norm { Some(AffineNorm::new(p, &format!("{name}.norm_q"), head_dim, 1e-6)?) } else { None },
            norm_k: if qk_norm { Some(AffineNorm::new(p, &format!("{name}.norm_k"), head_dim, 1e-6)?) } else { None },
            heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.heads, c / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// Attends from `x` (B, N, dim) over `context` (B, M, context_dim).
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
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
        let attn = scaled_softmax_last_dim(&bmm(&q, &k, false, true)?, scale)?;
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
    pub fn new(p: &mut ParamStore, name: &str, dim: usize, mult: usize) -> Result<Self> {
        Ok(FeedForward {
            proj_in: Linear::new(p, &format!("{name}.net.0.proj"), dim, dim * mult)?,
            proj_out: Linear::new(p, &format!("{name}.net.2"), dim * mult, dim)?,
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
