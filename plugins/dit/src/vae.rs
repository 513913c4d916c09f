//! The KL autoencoder of Stable Diffusion (Rombach et al., 2022) as diffusers' `AutoencoderKL`:
//! PixArt-alpha's latent space (8× smaller per side, 4 channels, scaled by `scaling_factor`).
//!
//! ```text
//! encode: conv_in → down_blocks[i] (resnets, then a stride-2 conv but in the last) → mid_block
//!         (resnet, single-head attention, resnet) → GroupNorm, SiLU, conv_out → quant_conv
//!         → (mean, log-variance); the latent is the mean (the posterior's mode)
//! decode: post_quant_conv → conv_in → mid_block → up_blocks[i] (resnets, then nearest ×2 and
//!         a conv but in the last) → GroupNorm, SiLU, conv_out
//! ```
//!
//! Frozen, so candle-nn's fused ops serve; parameter paths are diffusers' key names.
//! candle-transformers has an `AutoEncoderKL` too, but its posterior keeps the mean private and
//! samples from an unseeded generator: a run would not replay, and the mode is what a latent
//! cache wants.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a diffusers `AutoencoderKL` `config.json` the model reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (the decoder has one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Latent channels.
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// Groups of the group norms.
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this before the transformer sees them (SD's 0.18215).
    #[serde(default = "scaling")]
    pub scaling_factor: f64,
    /// Subtracted before scaling (SD3's VAE has one; PixArt's has none).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// A 1×1 conv after the encoder.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    /// A 1×1 conv before the decoder.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Attention in the middle blocks.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn four() -> usize {
    4
}
fn groups() -> usize {
    32
}
fn scaling() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}

const EPS: f64 = 1e-6;

fn conv(vb: VarBuilder, inputs: usize, outputs: usize, kernel: usize, padding: usize, stride: usize) -> Result<Conv2d> {
    let config = Conv2dConfig { padding, stride, ..Default::default() };
    candle_nn::conv2d(inputs, outputs, kernel, config, vb)
}

fn group_norm(vb: VarBuilder, groups: usize, channels: usize) -> Result<GroupNorm> {
    candle_nn::group_norm(groups, channels, EPS, vb)
}

/// `x + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))`, with a 1×1 shortcut when widths differ.
struct Resnet {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Resnet {
    fn new(vb: VarBuilder, inputs: usize, outputs: usize, groups: usize) -> Result<Self> {
        Ok(Resnet {
            norm1: group_norm(vb.pp("norm1"), groups, inputs)?,
            conv1: conv(vb.pp("conv1"), inputs, outputs, 3, 1, 1)?,
            norm2: group_norm(vb.pp("norm2"), groups, outputs)?,
            conv2: conv(vb.pp("conv2"), outputs, outputs, 3, 1, 1)?,
            shortcut: (inputs != outputs)
                .then(|| conv(vb.pp("conv_shortcut"), inputs, outputs, 1, 0, 1))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        match &self.shortcut {
            Some(shortcut) => shortcut.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Single-head self-attention over the pixels, with a residual connection.
struct Attention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl Attention {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Attention {
            group_norm: group_norm(vb.pp("group_norm"), groups, channels)?,
            to_q: candle_nn::linear(channels, channels, vb.pp("to_q"))?,
            to_k: candle_nn::linear(channels, channels, vb.pp("to_k"))?,
            to_v: candle_nn::linear(channels, channels, vb.pp("to_v"))?,
            to_out: candle_nn::linear(channels, channels, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        // Contiguous before the linear layers: candle-nn's `Linear` on a transposed 3-D input
        // gave wrong products (measured against diffusers: 73% error in this block).
        let tokens = self.group_norm.forward(x)?.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let (q, k, v) = (self.to_q.forward(&tokens)?, self.to_k.forward(&tokens)?, self.to_v.forward(&tokens)?);
        let scores = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let out = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let out = self.to_out.forward(&out)?.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + x
    }
}

/// resnet → attention → resnet at the lowest resolution.
struct MidBlock {
    resnets: [Resnet; 2],
    attention: Option<Attention>,
}

impl MidBlock {
    fn new(vb: VarBuilder, channels: usize, config: &VaeConfig) -> Result<Self> {
        let groups = config.norm_num_groups;
        let resnet = |i: usize| Resnet::new(vb.pp(format!("resnets.{i}")), channels, channels, groups);
        Ok(MidBlock {
            resnets: [resnet(0)?, resnet(1)?],
            attention: config
                .mid_block_add_attention
                .then(|| Attention::new(vb.pp("attentions.0"), channels, groups))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.resnets[0].forward(x)?;
        if let Some(attention) = &self.attention {
            x = attention.forward(&x)?;
        }
        self.resnets[1].forward(&x)
    }
}

/// How a level changes the resolution after its resnets.
#[derive(Clone, Copy, PartialEq)]
enum Resample {
    /// The last level: no change.
    Keep,
    /// Encoder: a stride-2 conv.
    Down,
    /// Decoder: nearest ×2, then a conv.
    Up,
}

/// Resnets at one resolution, then a change of resolution.
struct Level {
    resnets: Vec<Resnet>,
    resample: Option<(Resample, Conv2d)>,
}

impl Level {
    fn new(
        vb: VarBuilder,
        inputs: usize,
        outputs: usize,
        layers: usize,
        groups: usize,
        resample: Resample,
    ) -> Result<Self> {
        let resnets = (0..layers)
            .map(|j| Resnet::new(vb.pp(format!("resnets.{j}")), if j == 0 { inputs } else { outputs }, outputs, groups))
            .collect::<Result<_>>()?;
        let resampler = match resample {
            Resample::Keep => None,
            Resample::Down => Some(conv(vb.pp("downsamplers.0.conv"), outputs, outputs, 3, 0, 2)?),
            Resample::Up => Some(conv(vb.pp("upsamplers.0.conv"), outputs, outputs, 3, 1, 1)?),
        };
        Ok(Level { resnets, resample: resampler.map(|c| (resample, c)) })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for resnet in &self.resnets {
            x = resnet.forward(&x)?;
        }
        match &self.resample {
            None => Ok(x),
            // diffusers pads right and bottom by one before the stride-2 conv.
            Some((Resample::Down, conv)) => conv.forward(&x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?),
            Some((_, conv)) => {
                let (_, _, h, w) = x.dims4()?;
                conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)
            }
        }
    }
}

/// The autoencoder, frozen.
pub struct Vae {
    encoder_in: Conv2d,
    encoder_levels: Vec<Level>,
    encoder_mid: MidBlock,
    encoder_norm: GroupNorm,
    encoder_out: Conv2d,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    decoder_in: Conv2d,
    decoder_mid: MidBlock,
    decoder_levels: Vec<Level>,
    decoder_norm: GroupNorm,
    decoder_out: Conv2d,
    config: VaeConfig,
}

impl Vae {
    /// The autoencoder of `config` with weights from `vb` (an `AutoencoderKL` checkpoint's root).
    pub fn new(config: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let channels = &config.block_out_channels;
        let (first, last) = match (channels.first(), channels.last()) {
            (Some(first), Some(last)) => (*first, *last),
            _ => return Err(candle_core::Error::Msg("VAE config: block_out_channels is empty".into())),
        };
        let (groups, layers, latent) = (config.norm_num_groups, config.layers_per_block, config.latent_channels);
        let levels = channels.len();
        let encoder = vb.pp("encoder");
        let encoder_levels = (0..levels)
            .map(|i| {
                let inputs = channels[i.saturating_sub(1)];
                let down = if i + 1 < levels { Resample::Down } else { Resample::Keep };
                Level::new(encoder.pp(format!("down_blocks.{i}")), inputs, channels[i], layers, groups, down)
            })
            .collect::<Result<_>>()?;
        let decoder = vb.pp("decoder");
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let decoder_levels = (0..levels)
            .map(|i| {
                let inputs = reversed[i.saturating_sub(1)];
                let up = if i + 1 < levels { Resample::Up } else { Resample::Keep };
                Level::new(decoder.pp(format!("up_blocks.{i}")), inputs, reversed[i], layers + 1, groups, up)
            })
            .collect::<Result<_>>()?;
        let one_by_one = |name: &str, c: usize| conv(vb.pp(name), c, c, 1, 0, 1);
        Ok(Vae {
            encoder_in: conv(encoder.pp("conv_in"), config.in_channels, first, 3, 1, 1)?,
            encoder_levels,
            encoder_mid: MidBlock::new(encoder.pp("mid_block"), last, config)?,
            encoder_norm: group_norm(encoder.pp("conv_norm_out"), groups, last)?,
            encoder_out: conv(encoder.pp("conv_out"), last, 2 * latent, 3, 1, 1)?,
            quant_conv: config.use_quant_conv.then(|| one_by_one("quant_conv", 2 * latent)).transpose()?,
            post_quant_conv: config.use_post_quant_conv.then(|| one_by_one("post_quant_conv", latent)).transpose()?,
            decoder_in: conv(decoder.pp("conv_in"), latent, last, 3, 1, 1)?,
            decoder_mid: MidBlock::new(decoder.pp("mid_block"), last, config)?,
            decoder_levels,
            decoder_norm: group_norm(decoder.pp("conv_norm_out"), groups, first)?,
            decoder_out: conv(decoder.pp("conv_out"), first, config.out_channels, 3, 1, 1)?,
            config: config.clone(),
        })
    }

    /// The config it was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Pixels per latent cell along a side.
    pub fn downscale(&self) -> usize {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// The posterior's mean of images `x` (B, C, H, W) in [-1, 1], unscaled.
    pub fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.encoder_in.forward(x)?;
        for level in &self.encoder_levels {
            h = level.forward(&h)?;
        }
        h = self.encoder_mid.forward(&h)?;
        h = self.encoder_out.forward(&self.encoder_norm.forward(&h)?.silu()?)?;
        if let Some(quant_conv) = &self.quant_conv {
            h = quant_conv.forward(&h)?;
        }
        h.narrow(1, 0, self.config.latent_channels)
    }

    /// Images in [-1, 1] (not clamped) of unscaled latents `z`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = match &self.post_quant_conv {
            Some(post_quant_conv) => post_quant_conv.forward(z)?,
            None => z.clone(),
        };
        h = self.decoder_mid.forward(&self.decoder_in.forward(&h)?)?;
        for level in &self.decoder_levels {
            h = level.forward(&h)?;
        }
        self.decoder_out.forward(&self.decoder_norm.forward(&h)?.silu()?)
    }

    /// The transformer's latents of images `x`: `(mean − shift) × scaling_factor`.
    pub fn to_latents(&self, x: &Tensor) -> Result<Tensor> {
        let mean = self.encode_mean(x)?;
        let shifted = match self.config.shift_factor {
            Some(shift) => (mean - shift)?,
            None => mean,
        };
        shifted * self.config.scaling_factor
    }

    /// Images of the transformer's latents: the inverse of [`Vae::to_latents`], decoded.
    pub fn from_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let z = (latents / self.config.scaling_factor)?;
        let z = match self.config.shift_factor {
            Some(shift) => (z + shift)?,
            None => z,
        };
        self.decode(&z)
    }
}
