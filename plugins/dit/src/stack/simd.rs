//! Row kernels written so the compiler vectorises them, compiled three times: for the baseline
//! CPU, for AVX2+FMA and for AVX-512, the widest the CPU has picked at run time (the release
//! build targets baseline x86-64, whose 4-lane SSE2 code ran these kernels at a third of AVX2
//! speed).
//!
//! Float reductions do not vectorise as written (`sum()` is one serial chain of additions),
//! so [`sum`] and [`dot`] keep 16 independent partial sums, added in a fixed order: results
//! depend on the data only, never on the machine's thread count or vector width.

use crate::ops::fast_tanh_f32;

/// Defines `fn $name(..)` that runs its body with AVX2+FMA where the CPU has them.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if $crate::stack::simd::has_avx512() {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Whether the CPU has the AVX-512 subsets the widest variant of [`multiversion`] uses.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

const LANES: usize = 16;

/// The lanes' total, added pairwise (8 + 8, 4 + 4, ...): four dependent additions instead of
/// fifteen, which dominated the sums of short rows (a 32-wide head's LayerNorm).
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `Σ x`, over 16 lanes.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    reduce(acc) + tail
}

/// `Σ a * b`, over 16 lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    reduce(acc) + tail
}

/// `Σ (x - mean)²`, over 16 lanes.
#[inline(always)]
pub fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += (c[i] - mean) * (c[i] - mean);
        }
    }
    reduce(acc) + tail
}

/// `max x` (the order does not matter for a maximum).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// `e^x` to about 2 ulp (Cephes' polynomial, range reduction by `ln 2`), branch-free so that
/// loops over it vectorise; inputs below -87 give ~0, as softmax wants.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits((k.wrapping_add(127) << 23) as u32)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// GELU with the tanh approximation: the f32 form of `ops`' generic kernel, written out so
/// that loops over it vectorise (the generic one converts through `Option`s).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + fast_tanh_f32(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)))
}

/// The derivative of [`gelu`].
#[inline(always)]
pub fn gelu_derivative(x: f32) -> f32 {
    let t = fast_tanh_f32(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_exp_is_within_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let (got, want) = (super::exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!(super::exp(-1000.0) < 1e-37 && super::exp(-1000.0) >= 0.0);
    }

    #[test]
    fn lane_sums_add_up() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        assert_eq!(super::sum(&x), x.iter().sum::<f32>());
        assert_eq!(super::dot(&x, &x), x.iter().map(|v| v * v).sum::<f32>());
        assert_eq!(super::max(&x), 18.0);
    }
}
