//! Denoising diffusion: the 1000-step DDPM forward process for training (noise or clean-image
//! prediction, min-SNR-γ weighted) and two deterministic samplers for inference, DDIM (Song et
//! al., 2021) and DPM-Solver++(2M) (Lu et al., 2022), both with classifier-free guidance applied
//! by the caller.
//!
//! Works on any tensor of `(B, ...)`: pixels for the embedded world, VAE latents later.

use candle_core::{Result, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Training timesteps.
pub const TRAIN_STEPS: usize = 1000;

/// The noise schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Betas linear from 1e-4 to 0.02 (DDPM; PixArt).
    #[default]
    Linear,
    /// The cosine schedule of Nichol & Dhariwal (2021).
    Cosine,
}

/// What the denoiser predicts from a noisy image `x_t = √ᾱ x₀ + √(1-ᾱ) ε`.
///
/// In pixel space with patches of 4×4 pixels, predicting the clean image learns objects far
/// faster than predicting the noise (measured on the embedded world, 2000 steps of the tiny
/// preset: clean backgrounds and one coherent object in the prompted colour, where the noise
/// predictor still speckled and scattered its colour over patch-sized blocks) — clean images lie
/// on a low-dimensional set a small network can reach, noise does not (Li & He, 2025, "Back to
/// Basics: Let Denoising Generative Models Denoise"). The samplers take noise either way.
///
/// `Default` is `Epsilon`, what a checkpoint written before this choice existed predicts; the
/// `dit` model's config defaults to `Sample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The noise ε (DDPM; PixArt-alpha's checkpoints).
    #[default]
    Epsilon,
    /// The clean image x₀.
    Sample,
}

impl Prediction {
    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::Sample => "sample",
        }
    }
}

/// The sampler used at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// DDIM with eta = 0.
    Ddim,
    /// DPM-Solver++ multistep, second order (also accepted as `dpm`).
    #[default]
    #[serde(alias = "dpm")]
    DpmSolver2m,
}

/// How inference timesteps are spread over the 1000 training steps (diffusers'
/// `timestep_spacing`; a pretrained model's sampler settings come from its scheduler config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// `0, r, 2r, …` with `r = 1000 / steps`, descending (DDIM's; 20 steps start at 950).
    #[default]
    Leading,
    /// Evenly from 999 down to 0, rounded.
    Linspace,
    /// `999, 999 - r, …` (Lin et al., 2024: the first step sees pure noise).
    Trailing,
}

/// The forward process and samplers for one schedule.
#[derive(Debug, Clone)]
pub struct Diffusion {
    alphas_cumprod: Vec<f64>,
}

impl Diffusion {
    /// The process for `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        let alphas_cumprod = match schedule {
            Schedule::Linear => {
                let mut acc = 1.0;
                (0..TRAIN_STEPS)
                    .map(|i| {
                        let beta = 1e-4 + (0.02 - 1e-4) * i as f64 / (TRAIN_STEPS - 1) as f64;
                        acc *= 1.0 - beta;
                        acc
                    })
                    .collect()
            }
            Schedule::Cosine => {
                let f = |t: f64| ((t / TRAIN_STEPS as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                let mut acc = 1.0;
                (0..TRAIN_STEPS)
                    .map(|i| {
                        let beta = (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999);
                        acc *= 1.0 - beta;
                        acc
                    })
                    .collect()
            }
        };
        Diffusion { alphas_cumprod }
    }

    /// ᾱ_t.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t.min(TRAIN_STEPS - 1)]
    }

    /// The signal-to-noise ratio ᾱ_t / (1 - ᾱ_t).
    pub fn snr(&self, t: usize) -> f64 {
        let ab = self.alpha_bar(t);
        ab / (1.0 - ab)
    }

    /// The per-sample weight of the squared error of a `prediction` at `t`.
    ///
    /// As weights of the clean image's squared error, the plain noise loss weighs SNR_t and the
    /// v loss 1 + SNR_t, so nearly clean timesteps, whose corrections are tiny, dominate. Min-SNR-γ
    /// (Hang et al., 2023) clips SNR_t at γ, giving the noisy timesteps, where layout, colour and
    /// shape are decided, their share: noise predictions are weighted `min(SNR_t, γ) / SNR_t`,
    /// sample predictions `1 + min(SNR_t, γ)` (the clipped v loss). A γ above every SNR_t (both
    /// schedules stay below 10⁵) gives the plain losses.
    pub fn loss_weight(&self, t: usize, prediction: Prediction, gamma: f64) -> f64 {
        let snr = self.snr(t);
        match prediction {
            Prediction::Epsilon => snr.min(gamma) / snr,
            Prediction::Sample => 1.0 + snr.min(gamma),
        }
    }

    /// The noise ε that takes the clean image `x0` to `x` at `t`: `(x - √ᾱ x₀) / √(1-ᾱ)`.
    pub fn noise_from_sample(&self, x: &Tensor, t: usize, x0: &Tensor) -> Result<Tensor> {
        let ab = self.alpha_bar(t);
        (x - (x0 * ab.sqrt())?)? / (1.0 - ab).sqrt()
    }

    /// x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, per sample.
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, timesteps: &[usize]) -> Result<Tensor> {
        let b = x0.dim(0)?;
        let shape: Vec<usize> = std::iter::once(b).chain(std::iter::repeat_n(1, x0.rank() - 1)).collect();
        let coef = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
            let v: Vec<f64> = timesteps.iter().map(|&t| f(self.alpha_bar(t))).collect();
            Tensor::from_vec(v, shape.clone(), x0.device())?.to_dtype(x0.dtype())
        };
        let a = coef(&|ab| ab.sqrt())?;
        let s = coef(&|ab| (1.0 - ab).sqrt())?;
        x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?
    }

    /// `steps` inference timesteps, descending, spread as `spacing` says and shifted by
    /// `offset` (diffusers' `steps_offset`), as diffusers computes them.
    pub fn inference_timesteps(&self, steps: usize, spacing: Spacing, offset: usize) -> Vec<usize> {
        let steps = steps.clamp(1, TRAIN_STEPS);
        let ratio = TRAIN_STEPS / steps;
        let ts: Vec<usize> = match spacing {
            Spacing::Leading => (0..steps).rev().map(|i| i * ratio + offset).collect(),
            Spacing::Linspace => (0..steps)
                .rev()
                .map(|i| {
                    let t = if steps == 1 { 0.0 } else { i as f64 * (TRAIN_STEPS - 1) as f64 / (steps - 1) as f64 };
                    // numpy rounds halves to even.
                    t.round_ties_even() as usize
                })
                .collect(),
            Spacing::Trailing => {
                let ratio = TRAIN_STEPS as f64 / steps as f64;
                (0..steps)
                    .map(|i| ((TRAIN_STEPS as f64 - i as f64 * ratio).round() as usize).saturating_sub(1))
                    .collect()
            }
        };
        ts.into_iter().map(|t| t.min(TRAIN_STEPS - 1)).collect()
    }

    /// Denoises `x` (pure noise) in `steps` steps at timesteps spread as `spacing` says;
    /// `eps(x, t)` predicts the noise (guidance included). Predicted clean images are clipped to
    /// `[-1, 1]`. DDIM steps as diffusers' `DDIMScheduler` does (η = 0, `clip_sample`,
    /// `set_alpha_to_one`): from `t` to `t - 1000 / steps`, with the model's noise as the
    /// direction even where the clean estimate was clipped.
    pub fn sample(
        &self,
        sampler: Sampler,
        steps: usize,
        spacing: (Spacing, usize),
        mut x: Tensor,
        mut eps: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let ts = self.inference_timesteps(steps, spacing.0, spacing.1);
        let ratio = (TRAIN_STEPS / ts.len()) as i64;
        let mut previous_x0: Option<Tensor> = None;
        let mut previous_h: Option<f64> = None;
        for (i, &t) in ts.iter().enumerate() {
            let ab = self.alpha_bar(t);
            let (alpha, sigma) = (ab.sqrt(), (1.0 - ab).sqrt());
            let e = eps(&x, t)?;
            let x0 = ((&x - (&e * sigma)?)? / alpha)?.clamp(-1.0, 1.0)?;
            x = match sampler {
                Sampler::Ddim => {
                    // Past the first training step comes the clean image itself (ᾱ = 1).
                    let previous = t as i64 - ratio;
                    let ab_prev = if previous >= 0 { self.alpha_bar(previous as usize) } else { 1.0 };
                    ((&x0 * ab_prev.sqrt())? + (e * (1.0 - ab_prev).sqrt())?)?
                }
                Sampler::DpmSolver2m => {
                    let Some(&next) = ts.get(i + 1) else {
                        return Ok(x0);
                    };
                    let ab_next = self.alpha_bar(next);
                    let (alpha_next, sigma_next) = (ab_next.sqrt(), (1.0 - ab_next).sqrt());
                    let lambda = (alpha / sigma).ln();
                    let lambda_next = (alpha_next / sigma_next).ln();
                    let h = lambda_next - lambda;
                    let d = match (&previous_x0, previous_h) {
                        (Some(prev), Some(h_prev)) => {
                            let r = h_prev / h;
                            ((&x0 * (1.0 + 1.0 / (2.0 * r)))? - (prev * (1.0 / (2.0 * r)))?)?
                        }
                        _ => x0.clone(),
                    };
                    previous_h = Some(h);
                    previous_x0 = Some(x0);
                    ((&x * (sigma_next / sigma))? - (d * (alpha_next * ((-h).exp() - 1.0)))?)?
                }
            };
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedules_decay_from_one_towards_zero() {
        for s in [Schedule::Linear, Schedule::Cosine] {
            let d = Diffusion::new(s);
            assert!(d.alpha_bar(0) > 0.99 && d.alpha_bar(999) < 0.01, "{s:?}");
            assert!((1..1000).all(|t| d.alpha_bar(t) < d.alpha_bar(t - 1)));
        }
        let d = Diffusion::new(Schedule::Linear);
        assert_eq!(d.inference_timesteps(4, Spacing::Leading, 0), vec![750, 500, 250, 0]);
        assert_eq!(d.inference_timesteps(4, Spacing::Leading, 1), vec![751, 501, 251, 1]);
        // numpy: np.linspace(0, 999, 4).round()[::-1] and np.round(np.arange(1000, 0, -250)) - 1.
        assert_eq!(d.inference_timesteps(4, Spacing::Linspace, 0), vec![999, 666, 333, 0]);
        assert_eq!(d.inference_timesteps(4, Spacing::Trailing, 0), vec![999, 749, 499, 249]);
    }

    #[test]
    fn min_snr_weights_clip_only_the_nearly_clean_timesteps() {
        let d = Diffusion::new(Schedule::Linear);
        let (clean, noisy) = (0, 900);
        assert!(d.snr(clean) > 5.0 && d.snr(noisy) < 5.0);
        // Noise prediction: full weight where SNR < γ, less towards clean images, plain above 10⁵.
        assert_eq!(d.loss_weight(noisy, Prediction::Epsilon, 5.0), 1.0);
        assert!((d.loss_weight(clean, Prediction::Epsilon, 5.0) - 5.0 / d.snr(clean)).abs() < 1e-12);
        for schedule in [Schedule::Linear, Schedule::Cosine] {
            let d = Diffusion::new(schedule);
            assert!(d.snr(0) < 1e5, "{schedule:?}: {}", d.snr(0));
            assert_eq!(d.loss_weight(0, Prediction::Epsilon, 1e5), 1.0);
        }
        // Sample prediction: the v loss's 1 + SNR, its SNR clipped at γ.
        assert!((d.loss_weight(noisy, Prediction::Sample, 5.0) - (1.0 + d.snr(noisy))).abs() < 1e-12);
        assert_eq!(d.loss_weight(clean, Prediction::Sample, 5.0), 6.0);
    }

    #[test]
    fn noise_from_sample_inverts_add_noise() -> Result<()> {
        let dev = Device::Cpu;
        let d = Diffusion::new(Schedule::Cosine);
        let x0 = Tensor::new(&[[0.5f64, -0.25], [0.75, -0.9]], &dev)?.reshape((1, 1, 2, 2))?;
        let eps = Tensor::new(&[[1.0f64, -0.3], [0.2, 1.5]], &dev)?.reshape((1, 1, 2, 2))?;
        for t in [0, 300, 999] {
            let x = d.add_noise(&x0, &eps, &[t])?;
            let err = (d.noise_from_sample(&x, t, &x0)? - &eps)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-9, "t {t}: {err}");
        }
        Ok(())
    }

    /// With the exact noise predictor for a known clean image, both samplers recover it.
    #[test]
    fn samplers_recover_the_image_given_perfect_noise_predictions() -> Result<()> {
        let dev = Device::Cpu;
        let d = Diffusion::new(Schedule::Linear);
        let x0 = Tensor::new(&[[0.5f64, -0.25], [0.75, -0.9]], &dev)?.reshape((1, 1, 2, 2))?;
        for sampler in [Sampler::Ddim, Sampler::DpmSolver2m] {
            let x_t = Tensor::new(&[[1.0f64, -0.3], [0.2, 1.5]], &dev)?.reshape((1, 1, 2, 2))?;
            let out = d.sample(sampler, 10, (Spacing::Leading, 0), x_t, |x, t| {
                let ab = d.alpha_bar(t);
                (x - (&x0 * ab.sqrt())?)? / (1.0 - ab).sqrt()
            })?;
            let err = (out - &x0)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-6, "{sampler:?}: {err}");
        }
        Ok(())
    }
}
