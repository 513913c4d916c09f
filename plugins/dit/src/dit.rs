//! PixArt-alpha's diffusion transformer (Chen et al., 2023), as EvolveDirector trains it.
//!
//! ```text
//! x (B,3,H,W) --patchify+proj--> tokens + 2-D sin-cos positions
//! t --sinusoid--> timestep_embedder (MLP) = e_t --t_block (SiLU, Linear)--> 6 modulations
//! caption (B,L,C_txt) --caption_projection (MLP)--> y (a learned null caption when dropped)
//! for each block:  x += gate_msa * SelfAttn(LN(x) * (1 + scale_msa) + shift_msa)
//!                  x += CrossAttn(x, y)            (LayerNorm on Q and K: EvolveDirector)
//!                  x += gate_mlp * MLP(LN(x) * (1 + scale_mlp) + shift_mlp)
//!   where (shift, scale, gate)_{msa,mlp} = block.scale_shift_table + t_block(e_t)   (adaLN-single)
//! final:  LN(x) * (1 + scale) + shift  with  (shift, scale) = scale_shift_table + e_t;  Linear; unpatchify
//! ```
//!
//! Parameter names follow diffusers' `PixArtTransformer2DModel`, so PixArt-alpha checkpoints can
//! be mapped in.

use super::fused::{bias_add, gated_add, ln_modulate};
use super::layers::{Attention, FeedForward, Linear, at_precision_of, chunk_last};
use super::ops::gelu_tanh;
use super::params::{normal, xavier_uniform};
use super::recompute::{BlockGrads, Recompute};
use super::stack::{TransformerStack, block::BlockParams};
use super::text::Caption;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sizes of a DiT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DitShape {
    /// Side of the (square) input in pixels (or latent cells).
    pub image_size: usize,
    /// Input channels (3 for pixels).
    pub in_channels: usize,
    /// Side of a patch.
    pub patch: usize,
    /// Transformer width.
    pub hidden: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the caption features the text encoder produces.
    pub caption_channels: usize,
    /// Caption length in tokens.
    pub caption_len: usize,
    /// LayerNorm on the cross-attention's queries and keys per head (EvolveDirector's PixArtLN,
    /// for stability); published PixArt-alpha weights have none.
    #[serde(default = "yes")]
    pub qk_norm: bool,
    /// A learned null caption for classifier-free guidance (EvolveDirector's PixArt); without
    /// one, as diffusers' PixArt, guidance's unconditional branch encodes the empty prompt.
    #[serde(default = "yes")]
    pub null_caption: bool,
    /// PixArt-alpha's learned sigma: the output has twice the input channels, the second half a
    /// variance. Only the first half (the prediction) is used and trained: DDIM and
    /// DPM-Solver++ never read the variance, and it matters only to ancestral DDPM sampling.
    /// The variance half's weights get no gradient (only AdamW's weight decay) and stay in
    /// the model, so an exported model keeps PixArt's shape.
    #[serde(default)]
    pub learned_sigma: bool,
    /// Positions are divided by this (diffusers' `interpolation_scale`: PixArt-alpha's 1024 px
    /// model places its 64×64 latent grid at the 512 px model's positions, scale 2).
    #[serde(default = "one")]
    pub interpolation_scale: u32,
    /// The pixel resolution the model is conditioned on, for PixArt-alpha's 1024 px model's
    /// resolution and aspect-ratio micro-conditions (`adaln_single.emb.resolution_embedder`,
    /// `aspect_ratio_embedder`); `None` without them. An image's own height and width (in
    /// pixels, at this many pixels per `image_size` latent cells) and height / width are given.
    #[serde(default)]
    pub resolution_condition: Option<usize>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl DitShape {
    /// Channels of the transformer's output.
    pub fn out_channels(&self) -> usize {
        if self.learned_sigma { 2 * self.in_channels } else { self.in_channels }
    }

    /// Tokens per image.
    pub fn tokens(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// Checks that the sizes fit together; a misfit is an invalid config, saying which sizes.
    pub fn validate(&self) -> std::result::Result<(), evolve_sdk::PluginError> {
        let bad = |why: String| Err(evolve_sdk::PluginError::InvalidConfig(why));
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return bad(format!("image_size {} is not a multiple of patch {}", self.image_size, self.patch));
        }
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad(format!("hidden {} is not a multiple of heads {}", self.hidden, self.heads));
        }
        if !self.hidden.is_multiple_of(4) {
            return bad(format!("hidden {} must be a multiple of 4 (2-D sin-cos positions)", self.hidden));
        }
        if self.resolution_condition.is_some() && !self.hidden.is_multiple_of(3) {
            return bad(format!("hidden {} must be a multiple of 3 (micro-condition embeddings)", self.hidden));
        }
        if self.interpolation_scale == 0 {
            return bad("interpolation_scale must be positive".into());
        }
        if self.depth == 0 || self.in_channels == 0 || self.caption_channels == 0 || self.caption_len == 0 {
            return bad("depth, in_channels, caption_channels and caption_len must be positive".into());
        }
        Ok(())
    }
}

#[derive(Clone)]
pub(crate) struct Block {
    attn1: Attention,
    attn2: Attention,
    ff: FeedForward,
    scale_shift_table: Tensor,
}

impl Block {
    /// One PixArt block on `x` (B, N, C): adaLN-modulated self-attention from `t6` (B, 6, C)
    /// and the block's table, cross-attention to the caption `y`, the modulated MLP.
    pub(crate) fn forward(&self, x: &Tensor, t6: &Tensor, y: &Caption) -> Result<Tensor> {
        let (b, _, h) = t6.dims3()?;
        let m = t6.broadcast_add(&at_precision_of(&self.scale_shift_table, t6)?.unsqueeze(0)?)?;
        let m = chunk_last(&m.reshape((b, 1, 6 * h))?, 6)?;
        let (shift_msa, scale_msa, gate_msa) = (&m[0], &m[1], &m[2]);
        let (shift_mlp, scale_mlp, gate_mlp) = (&m[3], &m[4], &m[5]);
        let normed = ln_modulate(x, shift_msa, scale_msa, 1e-6)?;
        let x = gated_add(x, &self.attn1.forward(&normed, &normed, None)?, gate_msa)?;
        let x = (&x + self.attn2.forward(&x, &y.features, y.mask.as_ref())?)?;
        let normed = ln_modulate(&x, shift_mlp, scale_mlp, 1e-6)?;
        gated_add(&x, &self.ff.forward(&normed)?, gate_mlp)
    }
}

/// The diffusion transformer.
pub struct Dit {
    shape: DitShape,
    patch_proj: Tensor,
    patch_bias: Tensor,
    pos: Tensor,
    time_1: Linear,
    time_2: Linear,
    size_embedder: Option<SizeEmbedder>,
    t_block: Linear,
    caption_1: Linear,
    caption_2: Linear,
    null_caption: Option<Tensor>,
    blocks: Vec<Block>,
    /// The fused trunk; absent without QK norm, which it always applies.
    stack: Option<TransformerStack>,
    final_table: Tensor,
    proj_out: Linear,
    /// The dtype activations are computed in, when not the parameters' (mixed precision).
    compute: Option<DType>,
}

/// PixArt-alpha 1024's micro-conditions: the image's resolution `(h, w)` and aspect ratio
/// `h / w`, each through the timestep sinusoid and an MLP to `hidden / 3` features, added to
/// the timestep embedding as `[res_h, res_w, aspect]`.
struct SizeEmbedder {
    resolution: [Linear; 2],
    aspect_ratio: [Linear; 2],
    pixels: usize,
}

impl SizeEmbedder {
    fn new(vb: VarBuilder, hidden: usize, pixels: usize) -> Result<Self> {
        let mlp = |name: &str| -> Result<[Linear; 2]> {
            let vb = vb.pp(name);
            let third = hidden / 3;
            Ok([
                Linear::with_init(vb.pp("linear_1"), 256, third, normal(0.02))?,
                Linear::with_init(vb.pp("linear_2"), third, third, normal(0.02))?,
            ])
        };
        Ok(SizeEmbedder {
            resolution: mlp("resolution_embedder")?,
            aspect_ratio: mlp("aspect_ratio_embedder")?,
            pixels,
        })
    }

    /// The `(1, hidden)` conditioning of images of `(height, width)` pixels, as diffusers'
    /// pipeline passes it: `resolution = [height, width]`, `aspect_ratio = height / width`.
    fn forward(&self, (height, width): (f64, f64), dtype: candle_core::DType, device: &Device) -> Result<Tensor> {
        let embed = |values: &[f64], mlp: &[Linear; 2]| -> Result<Tensor> {
            let freq = timestep_embedding(values, 256, device)?.to_dtype(dtype)?;
            mlp[1].forward(&mlp[0].forward(&freq)?.silu()?)
        };
        let resolution = embed(&[height, width], &self.resolution)?.reshape((1, ()))?;
        let aspect = embed(&[height / width], &self.aspect_ratio)?;
        Tensor::cat(&[resolution, aspect], 1)
    }
}

/// How [`Dit::forward_with`] runs the transformer blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPath {
    /// Composed candle ops, differentiated by candle's autograd (any device).
    Candle,
    /// Candle's ops with gradient checkpointing ([`Recompute`]): each block's activations are
    /// recomputed in the backward pass instead of kept.
    Recompute,
    /// Candle's ops with each block's activations kept, but differentiated one block at a time
    /// as [`Recompute`] does: a block's gradients are whole before the blocks below it start,
    /// which lets data-parallel training average them during the backward pass.
    Segmented,
    /// The fused CPU stack ([`TransformerStack`]); `train` keeps activations for backward.
    Stack {
        /// Whether a backward pass follows.
        train: bool,
    },
}

/// Sinusoidal embedding of `timesteps` into `dim` features (cos first, as PixArt).
pub fn timestep_embedding(timesteps: &[f64], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let freqs = (0..half).map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() * t);
        let args: Vec<f64> = freqs.collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    Tensor::from_vec(out, (timesteps.len(), dim), device)
}

/// Fixed 2-D sin-cos position embedding of a `rows` x `cols` token grid into `dim` features,
/// as diffusers' `get_2d_sincos_pos_embed`: each axis spans the model's square `base` grid
/// (a row's position is `row * base / rows`), divided by `scale`.
pub fn pos_embedding(
    (rows, cols): (usize, usize),
    base: usize,
    dim: usize,
    scale: f64,
    device: &Device,
) -> Result<Tensor> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10_000f64.powf(i as f64 / quarter as f64)).collect();
    let mut out = Vec::with_capacity(rows * cols * dim);
    let (row_step, col_step) = (base as f64 / rows as f64 / scale, base as f64 / cols as f64 / scale);
    for row in 0..rows {
        for col in 0..cols {
            // First half encodes the column (w), second half the row (h), as MAE/PixArt.
            for pos in [col as f64 * col_step, row as f64 * row_step] {
                out.extend(omega.iter().map(|w| (pos * w).sin()));
                out.extend(omega.iter().map(|w| (pos * w).cos()));
            }
        }
    }
    Tensor::from_vec(out, (1, rows * cols, dim), device)
}

impl Dit {
    /// A DiT whose parameters come from `vb`, at diffusers' key names; fresh ones get PixArt's
    /// initialisation (Xavier linears, zeroed output projections, N(0, 0.02) embedders).
    pub fn new(vb: VarBuilder, shape: DitShape) -> Result<Self> {
        let (h, c_in, patch) = (shape.hidden, shape.in_channels, shape.patch);
        let patch_in = c_in * patch * patch;
        let patch_proj =
            vb.get_with_hints((h, c_in, patch, patch), "pos_embed.proj.weight", xavier_uniform(patch_in, h))?;
        let patch_bias = vb.get_with_hints(h, "pos_embed.proj.bias", Init::Const(0.0))?;
        let time = vb.pp("adaln_single.emb.timestep_embedder");
        let time_1 = Linear::with_init(time.pp("linear_1"), 256, h, normal(0.02))?;
        let time_2 = Linear::with_init(time.pp("linear_2"), h, h, normal(0.02))?;
        let t_block = Linear::with_init(vb.pp("adaln_single.linear"), h, 6 * h, normal(0.02))?;
        // Xavier rather than PixArt's N(0, 0.02): PixArt projects T5 features of large magnitude,
        // ours come layer-normalised, and a 0.02 projection of unit features starves the
        // cross-attention of signal (the model then learns to ignore the caption).
        let caption = vb.pp("caption_projection");
        let caption_1 = Linear::new(caption.pp("linear_1"), shape.caption_channels, h)?;
        let caption_2 = Linear::new(caption.pp("linear_2"), h, h)?;
        let null_caption = shape
            .null_caption
            .then(|| {
                let init = normal(1.0 / (shape.caption_channels as f64).sqrt());
                caption.get_with_hints((shape.caption_len, shape.caption_channels), "y_embedding", init)
            })
            .transpose()?;
        let table_init = normal(1.0 / (h as f64).sqrt());
        let mut blocks = Vec::with_capacity(shape.depth);
        for i in 0..shape.depth {
            let vb = vb.pp(format!("transformer_blocks.{i}"));
            blocks.push(Block {
                attn1: Attention::new(vb.pp("attn1"), h, h, shape.heads, false, false)?,
                attn2: Attention::new(vb.pp("attn2"), h, h, shape.heads, shape.qk_norm, true)?,
                ff: FeedForward::new(vb.pp("ff"), h, 4)?,
                scale_shift_table: vb.get_with_hints((6, h), "scale_shift_table", table_init)?,
            });
        }
        let final_table = vb.get_with_hints((2, h), "scale_shift_table", table_init)?;
        let proj_out = Linear::with_init(vb.pp("proj_out"), h, patch * patch * shape.out_channels(), Init::Const(0.0))?;
        // The fused trunk shares the very tensors the reference path holds (looked up by name).
        let stack = if shape.qk_norm {
            let blocks = (0..shape.depth)
                .map(|i| {
                    let block = vb.pp(format!("transformer_blocks.{i}"));
                    BlockParams::try_from_fn(|name| block.get_unchecked(name))
                })
                .collect::<Result<_>>()?;
            let output = [final_table.clone(), proj_out.weight().clone(), proj_out.bias().clone()];
            Some(TransformerStack::new(blocks, output, shape.heads))
        } else {
            None
        };
        let scale = f64::from(shape.interpolation_scale);
        let grid = shape.image_size / patch;
        let pos = pos_embedding((grid, grid), grid, h, scale, vb.device())?.to_dtype(vb.dtype())?;
        let size_embedder = shape
            .resolution_condition
            .map(|pixels| SizeEmbedder::new(vb.pp("adaln_single.emb"), h, pixels))
            .transpose()?;
        Ok(Dit {
            shape,
            patch_proj,
            patch_bias,
            pos,
            time_1,
            time_2,
            size_embedder,
            t_block,
            caption_1,
            caption_2,
            null_caption,
            blocks,
            stack,
            final_table,
            proj_out,
            compute: None,
        })
    }

    /// The same model computing in `dtype` (bf16 over f32 master weights: mixed precision;
    /// `None`: the parameters' own): [`Dit::forward_with`] casts its inputs to it and its output
    /// back, weights are cast at use, and the fused CPU kernels (f32 only) give way to candle's
    /// composed ops.
    pub fn computing_in(self, dtype: Option<DType>) -> Self {
        Dit { compute: dtype, ..self }
    }

    /// The model's sizes.
    pub fn shape(&self) -> &DitShape {
        &self.shape
    }

    /// `(B, C, H, W)` to `(B, N, C * p * p)` in the order of a conv kernel `(c, ky, kx)`.
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, hgt, wid) = x.dims4()?;
        let p = self.shape.patch;
        let (gh, gw) = (hgt / p, wid / p);
        x.reshape((b, c, gh, p, gw, p))?.permute((0, 2, 4, 1, 3, 5))?.reshape((b, gh * gw, c * p * p))
    }

    /// `(B, N, p * p * C)` in diffusers' `(p, q, c)` order back to `(B, C, H, W)` for a grid of
    /// `rows` x `cols` tokens.
    fn unpatchify(&self, x: &Tensor, (rows, cols): (usize, usize)) -> Result<Tensor> {
        let (b, _, _) = x.dims3()?;
        let (p, c) = (self.shape.patch, self.shape.out_channels());
        x.reshape((b, rows, cols, p, p, c))?.permute((0, 5, 1, 3, 2, 4))?.reshape((b, c, rows * p, cols * p))
    }

    /// The position embedding of a `rows` x `cols` token grid (computed once for the square).
    fn positions(&self, grid: (usize, usize), dtype: candle_core::DType, device: &Device) -> Result<Tensor> {
        let base = self.shape.image_size / self.shape.patch;
        if grid == (base, base) {
            return self.pos.to_dtype(dtype);
        }
        let scale = f64::from(self.shape.interpolation_scale);
        pos_embedding(grid, base, self.shape.hidden, scale, device)?.to_dtype(dtype)
    }

    /// The prediction part of the transformer's output `(B, out_channels, H, W)`: all of it,
    /// or the first half when the model has a learned sigma.
    pub fn prediction_part(&self, output: &Tensor) -> Result<Tensor> {
        if self.shape.learned_sigma { output.narrow(1, 0, self.shape.in_channels) } else { Ok(output.clone()) }
    }

    /// Whether the model has a learned null caption (`caption_projection.y_embedding`, as
    /// EvolveDirector's PixArt); without one (diffusers' PixArt) the unconditional branch is
    /// the text encoder's encoding of the empty prompt.
    pub fn has_null_caption(&self) -> bool {
        self.null_caption.is_some()
    }

    /// Caption features for the transformer: `caption` (B, L, C_txt) where `keep[i]`, the learned
    /// null caption elsewhere (classifier-free guidance's unconditional branch); the mask
    /// passes through.
    pub fn project_caption(&self, caption: &Caption, keep: &[bool]) -> Result<Caption> {
        let (b, l, c) = caption.features.dims3()?;
        let features = if keep.iter().all(|k| *k) {
            caption.features.clone()
        } else {
            let Some(null_caption) = &self.null_caption else {
                return Err(candle_core::Error::Msg(
                    "this model has no learned null caption: encode the empty prompt instead".into(),
                ));
            };
            let caption = &caption.features;
            let mask: Vec<f64> = keep.iter().map(|k| if *k { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::from_vec(mask, (b, 1, 1), caption.device())?.to_dtype(caption.dtype())?;
            let null = null_caption.unsqueeze(0)?.broadcast_as((b, l, c))?;
            (caption.broadcast_mul(&mask)? + null.broadcast_mul(&(1.0 - &mask)?)?)?
        };
        let features = self.caption_2.forward(&gelu_tanh(&self.caption_1.forward(&features)?)?)?;
        Ok(Caption { features, mask: caption.mask.clone() })
    }

    /// The fastest block path for `x` and captions `y`: the fused stack on CPU in f32 for
    /// unmasked captions and QK-normed cross-attention (unless the crate is built without its
    /// default feature `fused-cpu`), candle's ops elsewhere.
    pub fn fast_path(&self, x: &Tensor, y: &Caption, train: bool) -> BlockPath {
        let mixed = self.compute.is_some_and(|c| c != x.dtype());
        let fits = self.stack.is_some() && y.mask.is_none() && !mixed && TransformerStack::supports(x);
        if cfg!(feature = "fused-cpu") && fits { BlockPath::Stack { train } } else { BlockPath::Candle }
    }

    /// The transformer's output for `x` (B, C, H, W) at `timesteps` given projected captions
    /// `y` — the noise or the clean image, as the model's `prediction` says — through candle's
    /// ops (the reference path).
    pub fn forward(&self, x: &Tensor, timesteps: &[f64], y: &Caption) -> Result<Tensor> {
        Ok(self.forward_with(x, timesteps, y, BlockPath::Candle)?.0)
    }

    /// [`Dit::forward`] with the blocks run as `path` says; after a backward pass through the
    /// result, the returned [`BlockGrads`] adds what candle's autograd did not reach (nothing
    /// for `Candle`).
    pub fn forward_with(
        &self,
        x: &Tensor,
        timesteps: &[f64],
        y: &Caption,
        path: BlockPath,
    ) -> Result<(Tensor, BlockGrads)> {
        let given = x.dtype();
        if let Some(compute) = self.compute.filter(|&c| c != given) {
            let mask = y.mask.as_ref().map(|m| m.to_dtype(compute)).transpose()?;
            let y = Caption { features: y.features.to_dtype(compute)?, mask };
            // The fused trunk is f32 only.
            let path = if matches!(path, BlockPath::Stack { .. }) { BlockPath::Candle } else { path };
            let (out, grads) = self.forward_with(&x.to_dtype(compute)?, timesteps, &y, path)?;
            return Ok((out.to_dtype(given)?, grads));
        }
        let (b, _, rows, cols) = x.dims4()?;
        let grid = (rows / self.shape.patch, cols / self.shape.patch);
        let h = self.shape.hidden;
        let w = at_precision_of(&self.patch_proj, x)?.reshape((h, ()))?;
        let tokens = self.patchify(x)?;
        let (n, k) = (tokens.dim(1)?, tokens.dim(2)?);
        let bias = at_precision_of(&self.patch_bias, x)?;
        let mut x = bias_add(&tokens.reshape((b * n, k))?.matmul(&w.t()?)?, &bias)?.reshape((b, n, h))?;
        x = x.broadcast_add(&self.positions(grid, x.dtype(), x.device())?)?;

        let t_freq = timestep_embedding(timesteps, 256, x.device())?.to_dtype(x.dtype())?;
        let mut e_t = self.time_2.forward(&self.time_1.forward(&t_freq)?.silu()?)?;
        if let Some(size) = &self.size_embedder {
            let per_cell = size.pixels as f64 / self.shape.image_size as f64;
            let pixels = (rows as f64 * per_cell, cols as f64 * per_cell);
            e_t = e_t.broadcast_add(&size.forward(pixels, x.dtype(), x.device())?)?;
        }
        let t6 = self.t_block.forward(&e_t.silu()?)?;
        let (out, grads) = match path {
            BlockPath::Candle => {
                let x = self.blocks_candle(x, &t6.reshape((b, 6, h))?, y)?;
                (self.final_layer(&x, &e_t)?, BlockGrads::None)
            }
            BlockPath::Recompute | BlockPath::Segmented => {
                let keep = path == BlockPath::Segmented;
                let (x, recompute) = Recompute::forward(&self.blocks, x, t6.reshape((b, 6, h))?, y.clone(), keep)?;
                (self.final_layer(&x, &e_t)?, BlockGrads::Recompute(Box::new(recompute)))
            }
            BlockPath::Stack { train } => {
                let stack = match &self.stack {
                    Some(stack) if y.mask.is_none() => stack,
                    _ => {
                        let why = "the fused trunk needs QK norm and takes no caption mask";
                        return Err(candle_core::Error::Msg(why.into()));
                    }
                };
                let (out, grads) = stack.forward(&x, &Tensor::cat(&[&t6, &e_t], 1)?, &y.features, train)?;
                (out, BlockGrads::Stack(grads))
            }
        };
        Ok((self.unpatchify(&out, grid)?, grads))
    }

    /// PixArt's final layer: adaLN from the learned table and `e_t`, then the output projection.
    fn final_layer(&self, x: &Tensor, e_t: &Tensor) -> Result<Tensor> {
        let m = at_precision_of(&self.final_table, e_t)?.unsqueeze(0)?.broadcast_add(&e_t.unsqueeze(1)?)?;
        let (shift, scale) = (m.narrow(1, 0, 1)?, m.narrow(1, 1, 1)?);
        self.proj_out.forward(&ln_modulate(x, &shift, &scale, 1e-6)?)
    }

    /// The blocks through candle's ops; `t6` is (B, 6, C).
    fn blocks_candle(&self, mut x: Tensor, t6: &Tensor, y: &Caption) -> Result<Tensor> {
        for block in &self.blocks {
            x = block.forward(&x, t6, y)?;
        }
        Ok(x)
    }
}
