//! Fused kernels for the transformer's broadcast-heavy steps.
//!
//! Gradients of broadcasts are reductions over the broadcast axes, which candle computes with
//! slow strided loops; each op here computes its forward in one pass and its backward with
//! two small kernels: [`GroupSum`] (sum rows in groups) and [`RowMul`] (scale rows by a
//! per-group vector). Tensors are viewed as rows of `C` features; a "group" is the `n`
//! consecutive rows (tokens) of one batch element that share a modulation vector.

use super::ops::{layer_norm_grad_row, layer_norm_row, row_len as features, typed};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// Rows processed per parallel task.
const ROWS_PER_TASK: usize = 32;

/// Sums the rows of `x` (rows of `c`) in consecutive groups of `n`: `(G*n, c) -> (G, c)`.
fn group_sum<T: Float + Send + Sync>(x: &[T], c: usize, n: usize) -> Vec<T> {
    let groups = x.len() / (c * n);
    if groups >= 2 {
        let mut out = vec![T::zero(); groups * c];
        out.par_chunks_mut(c).zip(x.par_chunks(c * n)).for_each(|(o, rows)| {
            for row in rows.chunks_exact(c) {
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = *o + v;
                }
            }
        });
        out
    } else {
        // One big group (a bias gradient): split the rows across threads, then combine.
        x.par_chunks(c * ROWS_PER_TASK * 8)
            .map(|rows| {
                let mut acc = vec![T::zero(); c];
                for row in rows.chunks_exact(c) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a = *a + v;
                    }
                }
                acc
            })
            .reduce(
                || vec![T::zero(); c],
                |mut a, b| {
                    for (a, b) in a.iter_mut().zip(b) {
                        *a = *a + b;
                    }
                    a
                },
            )
    }
}

/// Calls `f(row_out, group_index, row_inputs...)` for every row, in parallel.
fn for_rows<T: Float + Send + Sync>(
    len: usize,
    c: usize,
    n: usize,
    f: impl Fn(&mut [T], usize, usize) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); len];
    out.par_chunks_mut(c * ROWS_PER_TASK).enumerate().for_each(|(chunk, rows)| {
        for (i, row) in rows.chunks_exact_mut(c).enumerate() {
            let r = chunk * ROWS_PER_TASK + i;
            f(row, r, r / n);
        }
    });
    out
}

/// Sum of rows in groups of `n` (no backward; used inside backward passes).
pub struct GroupSum {
    /// Rows per group.
    pub n: usize,
}

impl CustomOp1 for GroupSum {
    fn name(&self) -> &'static str {
        "evolve-group-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let c = features(l)?;
        let n = self.n;
        let out = typed!(s, l => x; group_sum(x, c, n));
        let groups = l.shape().elem_count() / (c * n);
        Ok((out, Shape::from((groups, c))))
    }
}

/// `a * (g + offset)` with `g` holding one row per group of `n` rows of `a` (no backward).
pub struct RowMul {
    /// Rows per group.
    pub n: usize,
    /// Added to `g` first (1 for adaLN's `1 + scale`).
    pub offset: f64,
}

impl CustomOp2 for RowMul {
    fn name(&self) -> &'static str {
        "evolve-row-mul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (c, n, offset) = (features(l1)?, self.n, self.offset);
        let out = typed!(s1, l1 => a, s2, l2 => g; {
            for_rows(a.len(), c, n, |o, r, grp| {
                let (row, gv) = (&a[r * c..(r + 1) * c], &g[grp * c..(grp + 1) * c]);
                for ((o, &x), &s) in o.iter_mut().zip(row).zip(gv) {
                    *o = x * plus(s, offset);
                }
            })
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `s + offset` in the element type of `s`.
fn plus<T: Float>(s: T, offset: f64) -> T {
    s + T::from(offset).unwrap_or_else(T::zero)
}

fn group_sum_as(x: &Tensor, n: usize, like: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&GroupSum { n })?.reshape(like.shape())
}

fn row_mul(a: &Tensor, g: &Tensor, n: usize, offset: f64) -> Result<Tensor> {
    a.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &RowMul { n, offset })
}

/// adaLN: `LayerNorm(x) * (1 + scale) + shift`, `x` of `(B, N, C)`, `shift`/`scale` of `(B, 1, C)`.
struct LnModulate {
    n: usize,
    eps: f64,
}

/// The input gradient of [`LnModulate`] from `(x, dy, scale)`.
struct LnModulateGrad {
    n: usize,
    eps: f64,
}

impl CustomOp3 for LnModulate {
    fn name(&self) -> &'static str {
        "evolve-ln-modulate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, n, eps) = (features(l1)?, self.n, self.eps);
        let out = typed!(s1, l1 => x, s2, l2 => shift, s3, l3 => scale; {
            for_rows(x.len(), c, n, |o, r, g| {
                layer_norm_row(&x[r * c..(r + 1) * c], o, eps);
                let (sh, sc) = (&shift[g * c..(g + 1) * c], &scale[g * c..(g + 1) * c]);
                for ((o, &b), &s) in o.iter_mut().zip(sh).zip(sc) {
                    *o = *o * plus(s, 1.0) + b;
                }
            })
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        shift: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x.apply_op3_no_bwd(&dy, &scale.contiguous()?, &LnModulateGrad { n: self.n, eps: self.eps })?;
        let d_shift = group_sum_as(&dy, self.n, shift)?;
        let xhat = super::ops::layer_norm(&x.detach(), self.eps)?;
        let d_scale = group_sum_as(&(&dy * xhat)?, self.n, scale)?;
        Ok((Some(dx), Some(d_shift), Some(d_scale)))
    }
}

impl CustomOp3 for LnModulateGrad {
    fn name(&self) -> &'static str {
        "evolve-ln-modulate-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, n, eps) = (features(l1)?, self.n, self.eps);
        let out = typed!(s1, l1 => x, s2, l2 => dy, s3, l3 => scale; {
            for_rows(x.len(), c, n, |o, r, g| {
                let sc = &scale[g * c..(g + 1) * c];
                let scaled: Vec<_> = dy[r * c..(r + 1) * c].iter().zip(sc).map(|(&d, &s)| d * plus(s, 1.0)).collect();
                layer_norm_grad_row(&x[r * c..(r + 1) * c], &scaled, o, eps);
            })
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `x + y * gate`, `x`/`y` of `(B, N, C)`, `gate` of `(B, 1, C)`.
struct GatedAdd {
    n: usize,
}

impl CustomOp3 for GatedAdd {
    fn name(&self) -> &'static str {
        "evolve-gated-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, n) = (features(l1)?, self.n);
        let out = typed!(s1, l1 => x, s2, l2 => y, s3, l3 => gate; {
            for_rows(x.len(), c, n, |o, r, g| {
                let (xr, yr, gr) = (&x[r * c..(r + 1) * c], &y[r * c..(r + 1) * c], &gate[g * c..(g + 1) * c]);
                for (((o, &a), &b), &s) in o.iter_mut().zip(xr).zip(yr).zip(gr) {
                    *o = a + b * s;
                }
            })
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        y: &Tensor,
        gate: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let d_y = row_mul(&dy, gate, self.n, 0.0)?;
        let d_gate = group_sum_as(&(&dy * y.detach())?, self.n, gate)?;
        Ok((Some(dy), Some(d_y), Some(d_gate)))
    }
}

/// `x * weight + bias` with `weight`/`bias` of `(C)` shared by every row of `x` (a linear
/// layer's bias when `weight` is `None`, a LayerNorm's affine part otherwise).
struct RowAffine;

impl CustomOp3 for RowAffine {
    fn name(&self) -> &'static str {
        "evolve-row-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = features(l1)?;
        let len = l1.shape().elem_count();
        let out = typed!(s1, l1 => x, s2, l2 => w, s3, l3 => b; {
            for_rows(len, c, usize::MAX, |o, r, _| {
                for (((o, &v), &w), &b) in o.iter_mut().zip(&x[r * c..(r + 1) * c]).zip(w).zip(b) {
                    *o = v * w + b;
                }
            })
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let rows = dy.elem_count() / w.elem_count();
        let dx = row_mul(&dy, w, usize::MAX, 0.0)?;
        let dw = group_sum_as(&(&dy * x.detach())?, rows, w)?;
        let db = group_sum_as(&dy, rows, b)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Bias add: `y + bias` over rows, bias gradient by a fast column sum.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "evolve-bias-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let c = features(l1)?;
        let len = l1.shape().elem_count();
        let out = typed!(s1, l1 => y, s2, l2 => b; {
            for_rows(len, c, usize::MAX, |o, r, _| {
                for ((o, &v), &b) in o.iter_mut().zip(&y[r * c..(r + 1) * c]).zip(b) {
                    *o = v + b;
                }
            })
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, b: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let rows = dy.elem_count() / b.elem_count();
        Ok((Some(dy.clone()), Some(group_sum_as(&dy, rows, b)?)))
    }
}

fn cpu(t: &Tensor) -> bool {
    super::ops::fusable(t)
}

/// `LayerNorm(x) * (1 + scale) + shift` (adaLN), fused on the CPU.
pub fn ln_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    if cpu(x) {
        let n = x.dim(1)?;
        x.contiguous()?.apply_op3(&shift.contiguous()?, &scale.contiguous()?, LnModulate { n, eps })
    } else {
        super::ops::modulate(&super::ops::layer_norm(x, eps)?, shift, scale)
    }
}

/// `x + y * gate` (adaLN's gated residual), fused on the CPU.
pub fn gated_add(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    if cpu(x) {
        let n = x.dim(1)?;
        x.contiguous()?.apply_op3(&y.contiguous()?, &gate.contiguous()?, GatedAdd { n })
    } else {
        x + y.broadcast_mul(gate)?
    }
}

/// `x * weight + bias` over the last dimension, fused on the CPU.
pub fn row_affine(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if cpu(x) {
        x.contiguous()?.apply_op3(weight, bias, RowAffine)
    } else {
        x.broadcast_mul(weight)?.broadcast_add(bias)
    }
}

/// `y + bias` over the last dimension, fused on the CPU.
pub fn bias_add(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if cpu(y) { y.contiguous()?.apply_op2(bias, BiasAdd) } else { y.broadcast_add(bias) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_param_gradients, random_var as var};
    use candle_core::Var;

    fn named(vars: &[(&str, &Var)]) -> Vec<(String, Var)> {
        vars.iter().map(|(n, v)| (n.to_string(), (*v).clone())).collect()
    }

    fn projected(t: &Tensor, seed: u64) -> Result<Tensor> {
        let r = var(t.dims(), seed);
        (t * r.as_tensor())?.sum_all()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn fused_ops_match_their_definitions() {
        let (x, y) = (var(&[2, 3, 4], 1), var(&[2, 3, 4], 2));
        let (a, b) = (var(&[2, 1, 4], 3), var(&[2, 1, 4], 4));
        let (w, c) = (var(&[4], 5), var(&[4], 6));
        let (x, y, a, b, w, c) =
            (x.as_tensor(), y.as_tensor(), a.as_tensor(), b.as_tensor(), w.as_tensor(), c.as_tensor());
        let reference = super::super::ops::modulate(&super::super::ops::layer_norm(x, 1e-6).unwrap(), a, b).unwrap();
        assert!(max_diff(&ln_modulate(x, a, b, 1e-6).unwrap(), &reference) < 1e-12);
        assert!(max_diff(&gated_add(x, y, a).unwrap(), &(x + y.broadcast_mul(a).unwrap()).unwrap()) < 1e-12);
        let affine = x.broadcast_mul(w).unwrap().broadcast_add(c).unwrap();
        assert!(max_diff(&row_affine(x, w, c).unwrap(), &affine) < 1e-12);
        assert!(max_diff(&bias_add(x, c).unwrap(), &x.broadcast_add(c).unwrap()) < 1e-12);
    }

    #[test]
    fn fused_gradients_match_finite_differences() {
        let (x, y) = (var(&[2, 3, 5], 7), var(&[2, 3, 5], 8));
        let (shift, scale, gate) = (var(&[2, 1, 5], 9), var(&[2, 1, 5], 10), var(&[2, 1, 5], 11));
        let (w, b) = (var(&[5], 12), var(&[5], 13));
        let vars =
            named(&[("x", &x), ("y", &y), ("shift", &shift), ("scale", &scale), ("gate", &gate), ("w", &w), ("b", &b)]);
        check_param_gradients(&vars, || {
            let h = ln_modulate(x.as_tensor(), shift.as_tensor(), scale.as_tensor(), 1e-5)?;
            let h = gated_add(&h, y.as_tensor(), gate.as_tensor())?;
            let h = row_affine(&h, w.as_tensor(), b.as_tensor())?;
            projected(&bias_add(&h, b.as_tensor())?, 14)
        });
    }
}
