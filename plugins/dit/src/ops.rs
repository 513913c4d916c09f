//! Differentiable building blocks that candle 0.11 lacks or gets wrong.
//!
//! `candle_nn::ops::{softmax_last_dim, layer_norm}` have no backward pass: gradients silently
//! stop at them. These are custom ops with hand-written forward and backward kernels (fused, so
//! also faster than composing primitives), checked against finite differences in the tests.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Result, Shape, Tensor, bail};
use num_traits::Float;
use rayon::prelude::*;

/// Rows per parallel task: below this, threading costs more than it saves.
const ROWS_PER_TASK: usize = 64;

/// The contiguous elements a layout addresses.
pub(crate) fn slice<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("evolve op: input must be contiguous"),
    }
}

/// The length of the last dimension (a row), which must be non-empty.
pub(crate) fn row_len(layout: &Layout) -> Result<usize> {
    match layout.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("evolve op: needs a non-empty last dimension"),
    }
}

/// Applies `kernel` to each row of `n` values of `x`, writing into a new buffer.
fn map_rows<T: Float + Send + Sync>(x: &[T], n: usize, kernel: impl Fn(&[T], &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(n * ROWS_PER_TASK).zip(x.par_chunks(n * ROWS_PER_TASK)).for_each(|(o, x)| {
        for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            kernel(x, o);
        }
    });
    out
}

/// Like [`map_rows`] over two inputs of the same shape.
fn map_rows2<T: Float + Send + Sync>(
    a: &[T],
    b: &[T],
    n: usize,
    kernel: impl Fn(&[T], &[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    out.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(a.par_chunks(n * ROWS_PER_TASK))
        .zip(b.par_chunks(n * ROWS_PER_TASK))
        .for_each(|((o, a), b)| {
            for ((o, a), b) in o.chunks_exact_mut(n).zip(a.chunks_exact(n)).zip(b.chunks_exact(n)) {
                kernel(a, b, o);
            }
        });
    out
}

fn softmax_row<T: Float>(x: &[T], out: &mut [T], scale: T) {
    let max = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    let mut sum = T::zero();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = ((v - max) * scale).exp();
        sum = sum + *o;
    }
    let inv = T::one() / sum;
    out.iter_mut().for_each(|o| *o = *o * inv);
}

/// dx = scale * y * (dy - sum(dy * y)).
fn softmax_grad_row<T: Float>(y: &[T], dy: &[T], out: &mut [T], scale: T) {
    let dot = y.iter().zip(dy).fold(T::zero(), |s, (&y, &g)| s + y * g);
    for ((o, &y), &g) in out.iter_mut().zip(y).zip(dy) {
        *o = scale * y * (g - dot);
    }
}

fn num<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::zero)
}

fn norm_stats<T: Float>(x: &[T], eps: f64) -> (T, T) {
    let n = T::from(x.len()).unwrap_or_else(T::one);
    let mean = x.iter().fold(T::zero(), |s, &v| s + v) / n;
    let var = x.iter().fold(T::zero(), |s, &v| s + (v - mean) * (v - mean)) / n;
    (mean, T::one() / (var + T::from(eps).unwrap_or_else(T::zero)).sqrt())
}

/// One row of layer norm (no affine).
pub(crate) fn layer_norm_row<T: Float>(x: &[T], out: &mut [T], eps: f64) {
    let (mean, rstd) = norm_stats(x, eps);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - mean) * rstd;
    }
}

/// dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
pub(crate) fn layer_norm_grad_row<T: Float>(x: &[T], dy: &[T], out: &mut [T], eps: f64) {
    let (mean, rstd) = norm_stats(x, eps);
    let n = T::from(x.len()).unwrap_or_else(T::one);
    let (mut sum_dy, mut sum_dy_xhat) = (T::zero(), T::zero());
    for (&v, &g) in x.iter().zip(dy) {
        sum_dy = sum_dy + g;
        sum_dy_xhat = sum_dy_xhat + g * (v - mean) * rstd;
    }
    let (mean_dy, mean_dy_xhat) = (sum_dy / n, sum_dy_xhat / n);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(dy) {
        *o = rstd * (g - mean_dy - (v - mean) * rstd * mean_dy_xhat);
    }
}

/// Runs `$body` with each storage viewed as a contiguous slice of its element type, for f32 and
/// f64 alike (all inputs must share the type), and wraps the returned `Vec` as storage.
macro_rules! typed {
    ($($s:expr, $l:expr => $v:ident),+ ; $body:expr) => {{
        #[allow(unused_parens)]
        match ($($s),+) {
            ($(candle_core::CpuStorage::F32($v)),+) => {
                $(let $v = $crate::ops::slice($v, $l)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($v)),+) => {
                $(let $v = $crate::ops::slice($v, $l)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("evolve op: only f32 and f64 (all inputs alike) are supported"),
        }
    }};
}
pub(crate) use typed;

/// Fails unless two inputs have the same shape.
fn same_shape(a: &Layout, b: &Layout) -> Result<()> {
    if a.shape() != b.shape() {
        bail!("evolve op: shape mismatch {:?} vs {:?}", a.shape(), b.shape());
    }
    Ok(())
}

struct Softmax {
    scale: f64,
}
struct SoftmaxGrad {
    scale: f64,
}
struct LayerNorm {
    eps: f64,
}
struct LayerNormGrad {
    eps: f64,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "evolve-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let scale = self.scale;
        let n = row_len(layout)?;
        let out = typed!(storage, layout => x; map_rows(x, n, |x, o| softmax_row(x, o, num(scale))));
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxGrad { scale: self.scale })?))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "evolve-softmax-grad"
    }

    fn cpu_fwd(&self, y: &CpuStorage, ly: &Layout, dy: &CpuStorage, ldy: &Layout) -> Result<(CpuStorage, Shape)> {
        let scale = self.scale;
        let n = row_len(ly)?;
        same_shape(ly, ldy)?;
        let out =
            typed!(y, ly => y, dy, ldy => dy; map_rows2(y, dy, n, |y, g, o| softmax_grad_row(y, g, o, num(scale))));
        Ok((out, ly.shape().clone()))
    }
}

impl CustomOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "evolve-layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let eps = self.eps;
        let n = row_len(layout)?;
        let out = typed!(storage, layout => x; map_rows(x, n, |x, o| layer_norm_row(x, o, eps)));
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &LayerNormGrad { eps: self.eps })?))
    }
}

impl CustomOp2 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "evolve-layer-norm-grad"
    }

    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout, dy: &CpuStorage, ldy: &Layout) -> Result<(CpuStorage, Shape)> {
        let eps = self.eps;
        let n = row_len(lx)?;
        same_shape(lx, ldy)?;
        let out = typed!(x, lx => x, dy, ldy => dy; map_rows2(x, dy, n, |x, g, o| layer_norm_grad_row(x, g, o, eps)));
        Ok((out, lx.shape().clone()))
    }
}

/// Elements per parallel task of the elementwise kernels.
const ELEMS_PER_TASK: usize = 16 * 1024;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

/// tanh for the GELU kernels: a rational approximation for f32 (libm's `tanhf` dominated the
/// profile), the exact function otherwise (f64 is what the gradient checks use).
fn tanh<T: Float>(x: T) -> T {
    if std::mem::size_of::<T>() == 4 {
        let Some(x32) = x.to_f32() else { return x.tanh() };
        T::from(fast_tanh_f32(x32)).unwrap_or_else(|| x.tanh())
    } else {
        x.tanh()
    }
}

/// Rational minimax approximation of tanh on [-7.9, 7.9] (the form Eigen uses for floats);
/// within a few ulp of `tanhf`, tested.
#[inline]
pub fn fast_tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    let p = x2 * p + -8.604_672e-11;
    let p = x2 * p + 5.122_297e-8;
    let p = x2 * p + 1.485_722_4e-5;
    let p = x2 * p + 6.372_619_3e-4;
    let p = x2 * p + 4.893_524_6e-3;
    let p = x * p;
    let q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    let q = x2 * q + 2.268_434_6e-3;
    let q = x2 * q + 4.893_525e-3;
    p / q
}

fn gelu_value<T: Float>(x: T) -> T {
    let (c, k, half) = (
        T::from(SQRT_2_OVER_PI).unwrap_or_else(T::zero),
        T::from(GELU_C).unwrap_or_else(T::zero),
        T::from(0.5).unwrap_or_else(T::zero),
    );
    half * x * (T::one() + tanh(c * (x + k * x * x * x)))
}

fn gelu_derivative<T: Float>(x: T) -> T {
    let (c, k, half) = (
        T::from(SQRT_2_OVER_PI).unwrap_or_else(T::zero),
        T::from(GELU_C).unwrap_or_else(T::zero),
        T::from(0.5).unwrap_or_else(T::zero),
    );
    let three = T::from(3.0).unwrap_or_else(T::zero);
    let t = tanh(c * (x + k * x * x * x));
    half * (T::one() + t) + half * x * (T::one() - t * t) * c * (T::one() + three * k * x * x)
}

/// Applies `f` to every element, in parallel.
fn map_elems<T: Float + Send + Sync>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(ELEMS_PER_TASK).zip(x.par_chunks(ELEMS_PER_TASK)).for_each(|(o, x)| {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    });
    out
}

/// Applies `f` to every pair of elements, in parallel.
fn map_elems2<T: Float + Send + Sync>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    out.par_chunks_mut(ELEMS_PER_TASK).zip(a.par_chunks(ELEMS_PER_TASK)).zip(b.par_chunks(ELEMS_PER_TASK)).for_each(
        |((o, a), b)| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        },
    );
    out
}

struct Gelu;
struct GeluGrad;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "evolve-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = typed!(storage, layout => x; map_elems(x, gelu_value));
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &GeluGrad)?))
    }
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "evolve-gelu-tanh-grad"
    }

    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout, dy: &CpuStorage, ldy: &Layout) -> Result<(CpuStorage, Shape)> {
        same_shape(lx, ldy)?;
        let out = typed!(x, lx => x, dy, ldy => dy; map_elems2(x, dy, |x, g| g * gelu_derivative(x)));
        Ok((out, lx.shape().clone()))
    }
}

/// Whether the fused CPU kernels take `x`: on the CPU in f32 or f64. Elsewhere (a GPU, or bf16
/// under mixed precision) the ops are composed from candle's differentiable primitives.
pub fn fusable(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// GELU with the tanh approximation (PixArt's MLP), forward and backward fused. candle's own
/// `gelu` differentiates through a dozen separate tensor operations.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if fusable(x) { x.contiguous()?.apply_op1(Gelu) } else { x.gelu() }
}

/// Softmax over the last dimension, with a backward pass. Fused kernels on the CPU; elsewhere
/// (CUDA) composed from differentiable primitives.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    scaled_softmax_last_dim(x, 1.0)
}

/// `softmax(scale * x)` over the last dimension (attention's `QK^T / sqrt(d)` folded in).
pub fn scaled_softmax_last_dim(x: &Tensor, scale: f64) -> Result<Tensor> {
    if fusable(x) { x.contiguous()?.apply_op1(Softmax { scale }) } else { softmax_composed(&(x * scale)?) }
}

/// Softmax from primitives (every one of which has a backward pass).
pub fn softmax_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Layer normalisation over the last dimension without affine parameters (PixArt's norms;
/// adaLN supplies scale and shift), with a backward pass. Fused kernels on the CPU; elsewhere
/// composed from differentiable primitives.
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    if fusable(x) { x.contiguous()?.apply_op1(LayerNorm { eps }) } else { layer_norm_composed(x, eps) }
}

/// Layer norm from primitives.
pub fn layer_norm_composed(x: &Tensor, eps: f64) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)
}

/// adaLN modulation: `x * (1 + scale) + shift`, with `shift` and `scale` broadcast over tokens.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// The mean over samples of `weights[i]` times sample `i`'s mean squared error (`a`, `b`:
/// `(B, ...)`, `weights`: `(B)`); the plain mean squared error for unit weights.
pub fn weighted_mse(a: &Tensor, b: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let per_sample = (a - b)?.sqr()?.flatten_from(1)?.mean(1)?;
    (per_sample * weights)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_input_gradient;
    use candle_core::{DType, Device};

    fn input(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut rng = evolve_sdk::SplitMix64::new(seed);
        let v: Vec<f64> = (0..n).map(|_| rng.next_f64() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The plain mean squared error, the reference for unit weights.
    fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        (a - b)?.sqr()?.mean_all()
    }

    #[test]
    fn weighted_mse_weighs_each_sample() -> Result<()> {
        let (a, b) = (input(&[2, 3, 4], 1), input(&[2, 3, 4], 2));
        let ones = Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?;
        let diff = (weighted_mse(&a, &b, &ones)? - mse(&a, &b)?)?.abs()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "unit weights {diff}");
        let first_only = Tensor::new(&[2.0f64, 0.0], &Device::Cpu)?;
        let expected = mse(&a.narrow(0, 0, 1)?, &b.narrow(0, 0, 1)?)?.to_scalar::<f64>()?;
        let got = weighted_mse(&a, &b, &first_only)?.to_scalar::<f64>()?;
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        Ok(())
    }

    #[test]
    fn fused_ops_match_the_composed_ones() -> Result<()> {
        let x = input(&[3, 5, 7], 1);
        let diff = (softmax_last_dim(&x)? - softmax_composed(&x)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "softmax {diff}");
        let diff = (layer_norm(&x, 1e-6)? - layer_norm_composed(&x, 1e-6)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-9, "layer norm {diff}");
        Ok(())
    }

    #[test]
    fn softmax_gradient_matches_finite_differences() {
        check_input_gradient(&input(&[2, 3, 6], 2), softmax_last_dim);
    }

    #[test]
    fn layer_norm_gradient_matches_finite_differences() {
        check_input_gradient(&input(&[4, 9], 3), |x| layer_norm(x, 1e-5));
    }

    #[test]
    fn gelu_matches_candle_and_finite_differences() -> Result<()> {
        let x = input(&[3, 11], 5);
        let diff = (gelu_tanh(&x)? - x.gelu()?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "gelu {diff}");
        check_input_gradient(&x, gelu_tanh);
        Ok(())
    }

    #[test]
    fn fast_tanh_is_accurate() {
        let worst = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| (fast_tanh_f32(x) - x.tanh()).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 2e-6, "max error {worst}");
        assert_eq!(fast_tanh_f32(100.0), 1.0);
    }

    #[test]
    fn scaled_softmax_gradient() -> Result<()> {
        let x = input(&[2, 5], 8);
        let diff = (scaled_softmax_last_dim(&x, 0.3)? - softmax_composed(&(&x * 0.3)?)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff < 1e-12);
        check_input_gradient(&x, |x| scaled_softmax_last_dim(x, 0.3));
        Ok(())
    }

    #[test]
    fn f32_kernels_work_too() -> Result<()> {
        let x = input(&[2, 8], 4).to_dtype(DType::F32)?;
        let y = layer_norm(&x, 1e-6)?;
        assert_eq!(y.dtype(), DType::F32);
        let sums = softmax_last_dim(&x)?.sum(D::Minus1)?.to_vec1::<f32>()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        Ok(())
    }
}
