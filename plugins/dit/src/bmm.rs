//! Batched matrix products for attention, parallel over the batch.
//!
//! candle runs a batched matmul as one multi-threaded GEMM per batch element; attention has
//! hundreds of tiny ones (64 x 32 by 32 x 64 per head), where thread hand-offs cost more than
//! the arithmetic. Here each element is one single-threaded GEMM and the batch is split across
//! threads; transposes are expressed as strides, never copied.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// `C[b] = op(A[b]) op(B[b])` for rank-3 contiguous `A` and `B`, `op` optionally transposing.
#[derive(Debug, Clone, Copy)]
struct Bmm {
    ta: bool,
    tb: bool,
}

/// The logical (rows, cols) of a stored (r, c) matrix, and its (row, col) strides.
fn view(rows: usize, cols: usize, transposed: bool) -> (usize, usize, isize, isize) {
    if transposed { (cols, rows, 1, cols as isize) } else { (rows, cols, cols as isize, 1) }
}

fn dims3(layout: &Layout) -> Result<(usize, usize, usize)> {
    match layout.dims() {
        &[b, r, c] => Ok((b, r, c)),
        other => bail!("evolve bmm: expected rank 3, got {other:?}"),
    }
}

fn run<T: num_traits::Zero + num_traits::One + Copy + Send + Sync + 'static>(
    a: &[T],
    b: &[T],
    (batch, ar, ac): (usize, usize, usize),
    (br, bc): (usize, usize),
    op: Bmm,
) -> Result<(Vec<T>, (usize, usize, usize))> {
    let (m, k, a_rs, a_cs) = view(ar, ac, op.ta);
    let (k2, n, b_rs, b_cs) = view(br, bc, op.tb);
    if k != k2 {
        bail!("evolve bmm: inner dimensions {k} and {k2} differ");
    }
    let mut out = vec![T::zero(); batch * m * n];
    out.par_chunks_mut((m * n).max(1)).enumerate().for_each(|(i, c)| {
        let (a, b) = (&a[i * ar * ac..(i + 1) * ar * ac], &b[i * br * bc..(i + 1) * br * bc]);
        // SAFETY: `c` holds m x n elements written with row stride n; `a` and `b` hold the
        // ar x ac and br x bc elements the strides above address, all in bounds.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    Ok((out, (batch, m, n)))
}

impl CustomOp2 for Bmm {
    fn name(&self) -> &'static str {
        "evolve-bmm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a_dims, (bb, br, bc)) = (dims3(l1)?, dims3(l2)?);
        if a_dims.0 != bb {
            bail!("evolve bmm: batch sizes {} and {bb} differ", a_dims.0);
        }
        let contiguous = |l: &Layout| {
            l.contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("evolve bmm: inputs must be contiguous".into()))
        };
        let ((a0, a1), (b0, b1)) = (contiguous(l1)?, contiguous(l2)?);
        let (storage, dims) = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                let (v, d) = run(&a[a0..a1], &b[b0..b1], a_dims, (br, bc), *self)?;
                (CpuStorage::F32(v), d)
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                let (v, d) = run(&a[a0..a1], &b[b0..b1], a_dims, (br, bc), *self)?;
                (CpuStorage::F64(v), d)
            }
            _ => bail!("evolve bmm: only f32 and f64 (both alike) are supported"),
        };
        Ok((storage, Shape::from(dims)))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, dc: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dc = dc.contiguous()?;
        let (a, b) = (a.detach(), b.detach());
        // C = op(A) op(B): d op(A) = dC op(B)^T, d op(B) = op(A)^T dC; transposing op(X) back
        // to X swaps the operands' roles.
        let da = if self.ta { bmm_raw(&b, &dc, self.tb, true)? } else { bmm_raw(&dc, &b, false, !self.tb)? };
        let db = if self.tb { bmm_raw(&dc, &a, true, self.ta)? } else { bmm_raw(&a, &dc, !self.ta, false)? };
        Ok((Some(da), Some(db)))
    }
}

fn bmm_raw(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
    a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &Bmm { ta, tb })
}

/// `op(a) @ op(b)` over a leading batch dimension (`a`, `b` of rank 3), differentiable;
/// `ta`/`tb` transpose the operands' last two dimensions. Composed from candle's matmul off
/// the CPU.
pub fn bmm(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
    if super::ops::fusable(a) {
        a.contiguous()?.apply_op2(&b.contiguous()?, Bmm { ta, tb })
    } else {
        let a = if ta { a.t()? } else { a.clone() };
        let b = if tb { b.t()? } else { b.clone() };
        a.matmul(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_param_gradients, random_var as var};

    #[test]
    fn matches_matmul_in_every_transpose_combination() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = var(if ta { &[3, 4, 2] } else { &[3, 2, 4] }, 1);
            let b = var(if tb { &[3, 5, 4] } else { &[3, 4, 5] }, 2);
            let reference = {
                let a = if ta { a.as_tensor().t().unwrap() } else { a.as_tensor().clone() };
                let b = if tb { b.as_tensor().t().unwrap() } else { b.as_tensor().clone() };
                a.matmul(&b).unwrap()
            };
            let got = bmm(a.as_tensor(), b.as_tensor(), ta, tb).unwrap();
            let diff = (got - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(diff < 1e-12, "{ta} {tb}: {diff}");
            let r = var(&[3, 2, 5], 3);
            let vars = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
            check_param_gradients(&vars, || (bmm(a.as_tensor(), b.as_tensor(), ta, tb)? * r.as_tensor())?.sum_all());
        }
    }
}
