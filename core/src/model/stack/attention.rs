//! Multi-head scaled dot-product attention over raw buffers, forward and backward.
//!
//! Heads are column ranges of the projected `(rows, width)` buffers, addressed by strides, so
//! nothing is split or transposed in memory. Each (sample, head) pair is one task with
//! single-threaded products: attention's matrices are small (64 x 32 here), where a
//! multi-threaded product spends more on hand-offs than on arithmetic.

use super::kernels::{Mat, MatMut, SharedPtr, matmul, threads};
use super::simd::{self, multiversion};
use rayon::prelude::*;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Samples.
    pub batch: usize,
    /// Queries per sample.
    pub queries: usize,
    /// Keys (and values) per sample.
    pub keys: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttnShape {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of the attention probabilities kept for the backward pass.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.queries * self.keys
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// Where head `h` of sample `b` starts in a `(batch * n, width)` buffer.
    fn head(&self, b: usize, h: usize, n: usize) -> usize {
        b * n * self.width() + h * self.head_dim
    }
}

multiversion! {
    /// `softmax(scale * s)` of each row of width `n`, in place.
    pub fn softmax_rows(s: &mut [f32], n: usize, scale: f32) {
        for row in s.chunks_mut(n) {
            let max = simd::max(row);
            row.iter_mut().for_each(|v| *v = simd::exp((*v - max) * scale));
            let inv = 1.0 / simd::sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

multiversion! {
    /// Softmax's backward in place: `ds = scale * p * (dp - Σ dp * p)` per row of width `n`.
    pub fn softmax_backward_rows(ds: &mut [f32], p: &[f32], n: usize, scale: f32) {
        for (dsr, pr) in ds.chunks_mut(n).zip(p.chunks(n)) {
            let dot = simd::dot(dsr, pr);
            dsr.iter_mut().zip(pr).for_each(|(g, &p)| *g = scale * p * (*g - dot));
        }
    }
}

/// `out = softmax(q k^T / sqrt(d)) v` per head; keeps the probabilities in `probs`.
pub fn forward(s: AttnShape, q: &[f32], k: &[f32], v: &[f32], probs: &mut [f32], out: &mut [f32]) {
    let (n, m, d, w) = (s.queries, s.keys, s.head_dim, s.width());
    assert!(out.len() >= s.batch * n * w && probs.len() >= s.probs_len(), "attention buffers too small");
    let out_ptr = SharedPtr::of(out);
    probs[..s.probs_len()].par_chunks_mut(n * m).enumerate().for_each(|(task, p)| {
        let (b, h) = (task / s.heads, task % s.heads);
        let qh = Mat::strided(q, s.head(b, h, n), n, d, w);
        let kh = Mat::strided(k, s.head(b, h, m), m, d, w);
        let vh = Mat::strided(v, s.head(b, h, m), m, d, w);
        matmul(MatMut::new(p, n, m), qh, kh.t(), false, threads(false));
        softmax_rows(p, m, s.scale());
        // SAFETY: task (b, h) writes rows b*n..(b+1)*n, columns h*d..(h+1)*d of `out`, which
        // the assert above bounds; no two tasks share a (b, h).
        let dst = unsafe { MatMut::shared(out_ptr, s.head(b, h, n), n, d, w) };
        matmul(dst, Mat::new(p, n, m), vh, false, threads(false));
    });
}

/// Gradients of [`forward`] with respect to `q`, `k` and `v` (all overwritten).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (n, m, d, w) = (s.queries, s.keys, s.head_dim, s.width());
    assert!(
        dq.len() >= s.batch * n * w && dk.len() >= s.batch * m * w && dv.len() >= s.batch * m * w,
        "attention gradient buffers too small"
    );
    let (dq_ptr, dk_ptr, dv_ptr) = (SharedPtr::of(dq), SharedPtr::of(dk), SharedPtr::of(dv));
    let scale = s.scale();
    probs[..s.probs_len()].par_chunks(n * m).enumerate().for_each(|(task, p)| {
        let (b, h) = (task / s.heads, task % s.heads);
        let qh = Mat::strided(q, s.head(b, h, n), n, d, w);
        let kh = Mat::strided(k, s.head(b, h, m), m, d, w);
        let vh = Mat::strided(v, s.head(b, h, m), m, d, w);
        let doh = Mat::strided(dout, s.head(b, h, n), n, d, w);
        let pm = Mat::new(p, n, m);
        // dV = P^T dO
        // SAFETY (all three views): task (b, h) owns rows of sample b and columns of head h of
        // each gradient buffer, bounded by the assert above; tasks never share a (b, h).
        let dvh = unsafe { MatMut::shared(dv_ptr, s.head(b, h, m), m, d, w) };
        matmul(dvh, pm.t(), doh, false, threads(false));
        // dP = dO V^T, then dS = scale * P * (dP - rowsum(dP * P))
        let mut ds = vec![0.0f32; n * m];
        matmul(MatMut::new(&mut ds, n, m), doh, vh.t(), false, threads(false));
        softmax_backward_rows(&mut ds, p, m, scale);
        let dsm = Mat::new(&ds, n, m);
        let dqh = unsafe { MatMut::shared(dq_ptr, s.head(b, h, n), n, d, w) };
        matmul(dqh, dsm, kh, false, threads(false));
        let dkh = unsafe { MatMut::shared(dk_ptr, s.head(b, h, m), m, d, w) };
        matmul(dkh, dsm.t(), qh, false, threads(false));
    });
}
