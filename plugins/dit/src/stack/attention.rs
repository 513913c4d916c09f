//! Multi-head scaled dot-product attention over raw buffers, forward and backward.
//!
//! Heads are column ranges of the projected `(rows, width)` buffers, addressed by strides, so
//! nothing is split or transposed in memory. Each (sample, head) pair is one task with
//! single-threaded products: attention's matrices are small (64 x 32 here), where a
//! multi-threaded product spends more on hand-offs than on arithmetic.

use super::kernels::{Mat, MatMut, SharedPtr, matmul, threads};
use super::pool::Buf;
use super::simd::{self, multiversion};
use rayon::prelude::*;
use std::marker::PhantomData;

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
    /// Elements of the attention probabilities kept for the backward pass.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.queries * self.keys
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
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

/// Heads inside a `(batch * rows, stride)` buffer: head `h` of sample `b` is `head_dim` columns
/// from column `offset + h * head_dim` of that sample's rows. Q, K and V computed by one fused
/// projection are three such views of one buffer.
#[derive(Clone, Copy)]
pub struct Heads<'a> {
    data: &'a [f32],
    stride: usize,
    offset: usize,
}

impl<'a> Heads<'a> {
    /// Heads of a dense `(batch * rows, width)` buffer.
    pub fn dense(data: &'a [f32], width: usize) -> Self {
        Heads { data, stride: width, offset: 0 }
    }

    /// The `index`-th of `parts` column blocks of width `width` (e.g. K of a fused QKV buffer).
    pub fn part(data: &'a [f32], width: usize, parts: usize, index: usize) -> Self {
        Heads { data, stride: width * parts, offset: width * index }
    }

    fn get(&self, s: &AttnShape, b: usize, h: usize, rows: usize) -> Mat<'a> {
        let start = b * rows * self.stride + self.offset + h * s.head_dim;
        Mat::strided(self.data, start, rows, s.head_dim, self.stride)
    }
}

/// Writable heads (see [`Heads`]); parallel tasks each write their own (sample, head).
pub struct HeadsMut<'a> {
    ptr: SharedPtr,
    len: usize,
    stride: usize,
    offset: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

impl<'a> HeadsMut<'a> {
    /// Heads of a dense `(batch * rows, width)` buffer.
    pub fn dense(data: &'a mut [f32], width: usize) -> Self {
        HeadsMut { ptr: SharedPtr::of(data), len: data.len(), stride: width, offset: 0, _buffer: PhantomData }
    }

    /// The three column blocks of a `(batch * rows, 3 * width)` buffer (disjoint by construction).
    pub fn thirds(data: &'a mut [f32], width: usize) -> [Self; 3] {
        let (ptr, len) = (SharedPtr::of(data), data.len());
        std::array::from_fn(|i| HeadsMut { ptr, len, stride: 3 * width, offset: i * width, _buffer: PhantomData })
    }

    /// The view of head `h` of sample `b`.
    ///
    /// # Safety
    /// No other live view may cover the same (sample, head) of this buffer.
    unsafe fn get(&self, s: &AttnShape, b: usize, h: usize, rows: usize) -> MatMut {
        let start = b * rows * self.stride + self.offset + h * s.head_dim;
        assert!(rows == 0 || start + (rows - 1) * self.stride + s.head_dim <= self.len, "heads out of bounds");
        // SAFETY: bounded by the assert; exclusivity is the caller's contract.
        unsafe { MatMut::shared(self.ptr, start, rows, s.head_dim, self.stride) }
    }
}

/// A dense row-major copy of `a`'s transpose, in a pooled buffer. The products read a
/// transposed strided view (a head of K or V) slowly; packing it first measured faster.
fn transposed(a: Mat) -> Buf {
    let (rows, cols) = (a.rows(), a.cols());
    let mut out = Buf::scratch(rows * cols);
    if out.is_empty() {
        return out;
    }
    for r in 0..rows {
        for (dst, v) in out[r..].iter_mut().step_by(rows).zip(a.row(r)) {
            *dst = v;
        }
    }
    out
}

/// `out = softmax(q k^T / sqrt(d)) v` per head; keeps the probabilities in `probs`.
pub fn forward(s: AttnShape, q: Heads, k: Heads, v: Heads, probs: &mut [f32], out: HeadsMut) {
    let (n, m) = (s.queries, s.keys);
    probs[..s.probs_len()].par_chunks_mut(n * m).enumerate().for_each(|(task, p)| {
        let (b, h) = (task / s.heads, task % s.heads);
        let (qh, kh, vh) = (q.get(&s, b, h, n), k.get(&s, b, h, m), v.get(&s, b, h, m));
        // K^T packed row-major first: the product reads a transposed strided view slowly.
        let kt = transposed(kh);
        matmul(MatMut::new(p, n, m), qh, Mat::new(&kt, s.head_dim, m), false, threads(false));
        softmax_rows(p, m, s.scale());
        // SAFETY: only task (b, h) writes head h of sample b.
        let dst = unsafe { out.get(&s, b, h, n) };
        matmul(dst, Mat::new(p, n, m), vh, false, threads(false));
    });
}

/// The gradients of [`forward`] with respect to its inputs.
pub struct Grads<'a> {
    /// Of the queries.
    pub q: HeadsMut<'a>,
    /// Of the keys.
    pub k: HeadsMut<'a>,
    /// Of the values.
    pub v: HeadsMut<'a>,
}

/// Gradients of [`forward`] with respect to `q`, `k` and `v` (all overwritten).
#[allow(clippy::too_many_arguments)]
pub fn backward(s: AttnShape, q: Heads, k: Heads, v: Heads, probs: &[f32], dout: Heads, grads: Grads) {
    let (n, m) = (s.queries, s.keys);
    let scale = s.scale();
    probs[..s.probs_len()].par_chunks(n * m).enumerate().for_each(|(task, p)| {
        let (b, h) = (task / s.heads, task % s.heads);
        let (qh, kh, vh) = (q.get(&s, b, h, n), k.get(&s, b, h, m), v.get(&s, b, h, m));
        let doh = dout.get(&s, b, h, n);
        let pm = Mat::new(p, n, m);
        // SAFETY (all three views): only task (b, h) writes head h of sample b.
        let (dqh, dkh, dvh) = unsafe { (grads.q.get(&s, b, h, n), grads.k.get(&s, b, h, m), grads.v.get(&s, b, h, m)) };
        // dV = P^T dO
        matmul(dvh, pm.t(), doh, false, threads(false));
        // dP = dO V^T, then dS = scale * P * (dP - rowsum(dP * P))
        let vt = transposed(vh);
        let mut ds = Buf::scratch(n * m);
        matmul(MatMut::new(&mut ds, n, m), doh, Mat::new(&vt, s.head_dim, m), false, threads(false));
        softmax_backward_rows(&mut ds, p, m, scale);
        let dsm = Mat::new(&ds, n, m);
        matmul(dqh, dsm, kh, false, threads(false));
        matmul(dkh, dsm.t(), qh, false, threads(false));
    });
}
