//! The f32 kernels the fast transformer stack is built from: matrix products on strided views
//! (the `gemm` crate), fused LayerNorm-modulate, affine LayerNorm, GELU and reductions, each with
//! its backward. Every kernel writes into buffers the caller owns, so a training step allocates
//! once per activation instead of once per autograd node.
//!
//! Reductions over rows (bias and norm-weight gradients) run over a fixed partition of the rows
//! and add the partial sums in order, so results do not depend on thread scheduling: a resumed
//! run reproduces the uninterrupted one bit for bit.

use super::pool::Buf;
use super::simd::{self, multiversion};
use gemm::Parallelism;
use rayon::prelude::*;

/// Rows handled by one parallel task in row-wise kernels (amortises rayon's hand-off).
const ROWS_PER_TASK: usize = 64;
/// Fixed number of partial sums in row reductions (deterministic at any thread count).
const REDUCE_PARTS: usize = 16;

/// A read-only matrix view: element `(r, c)` at `data[offset + r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, 0, rows, cols, cols)
    }

    /// `rows x cols` elements starting at `offset`, rows `stride` apart (a head's columns).
    pub fn strided(data: &'a [f32], offset: usize, rows: usize, cols: usize, stride: usize) -> Self {
        let m = Mat { data, offset, rows, cols, rs: stride, cs: 1 };
        m.check();
        m
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The elements of row `r`, in order.
    pub fn row(&self, r: usize) -> impl Iterator<Item = f32> + '_ {
        let start = self.offset + r * self.rs;
        self.data[start..].iter().step_by(self.cs.max(1)).take(self.cols).copied()
    }

    /// The transpose (a change of strides, no copy).
    pub fn t(self) -> Self {
        Mat { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// A writable dense matrix view with row stride `rs` (column stride 1), possibly one of several
/// disjoint views into a buffer shared by parallel tasks.
pub struct MatMut {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    rs: usize,
}

impl MatMut {
    /// `rows x cols` at the start of `data`, row-major.
    pub fn new(data: &mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        MatMut { ptr: data.as_mut_ptr(), rows, cols, rs: cols }
    }

    /// A strided view into a buffer other tasks write too.
    ///
    /// # Safety
    /// `base.add(offset + r * stride + c)` must be in bounds for `r < rows`, `c < cols`, and no
    /// other live view may overlap these elements.
    pub unsafe fn shared(base: SharedPtr, offset: usize, rows: usize, cols: usize, stride: usize) -> Self {
        // SAFETY: the caller guarantees the offset is in bounds of the allocation.
        MatMut { ptr: unsafe { base.0.add(offset) }, rows, cols, rs: stride }
    }
}

/// A buffer's base pointer, handed to parallel tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub struct SharedPtr(*mut f32);
// SAFETY: only used to build `MatMut::shared` views, whose contract forbids overlap.
unsafe impl Send for SharedPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedPtr {}

impl SharedPtr {
    /// The base of `data`.
    pub fn of(data: &mut [f32]) -> Self {
        SharedPtr(data.as_mut_ptr())
    }
}

/// Multi-threaded (rayon's pool) or single-threaded matrix products.
pub fn threads(parallel: bool) -> Parallelism {
    if parallel { Parallelism::Rayon(0) } else { Parallelism::None }
}

/// `dst = a b` (or `dst += a b` when `accumulate`).
pub fn matmul(dst: MatMut, a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    assert!(a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows, "matmul shapes");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for r in 0..dst.rows {
                // SAFETY: row r of dst is in bounds by `MatMut`'s construction.
                unsafe { std::slice::from_raw_parts_mut(dst.ptr.add(r * dst.rs), dst.cols) }.fill(0.0);
            }
        }
        return;
    }
    // SAFETY: `Mat::check` bounds both inputs, `MatMut`'s constructors bound the output, and
    // the strides passed are those the views were checked with.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.ptr,
            1,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `y = x W^T + b` for `x` (rows x inputs) and a PyTorch-layout `W` (outputs x inputs).
pub fn linear(x: &[f32], w: &[f32], b: &[f32], rows: usize, inputs: usize, y: &mut [f32]) {
    let outputs = b.len();
    y[..rows * outputs].par_chunks_mut(outputs * ROWS_PER_TASK).for_each(|chunk| {
        chunk.chunks_mut(outputs).for_each(|row| row.copy_from_slice(b));
    });
    let wt = Mat::new(w, outputs, inputs).t();
    matmul(MatMut::new(y, rows, outputs), Mat::new(x, rows, inputs), wt, true, threads(true));
}

/// Where the input gradient of [`linear_backward`] goes.
pub enum InputGrad<'a> {
    /// Not needed.
    Skip,
    /// Overwrite this buffer.
    Write(&'a mut [f32]),
    /// Add to this buffer (the input feeds several layers).
    Add(&'a mut [f32]),
}

/// Gradients of [`linear`]: `dW = dy^T x`, `db = Σ_rows dy`, and `dx = dy W` as `dx` asks.
pub fn linear_backward(x: &[f32], w: &[f32], dy: &[f32], rows: usize, dw: &mut [f32], db: &mut [f32], dx: InputGrad) {
    let outputs = db.len();
    let inputs = w.len() / outputs.max(1);
    let dy_m = Mat::new(dy, rows, outputs);
    weight_grad(dy, x, rows, outputs, inputs, dw);
    column_sums(dy, outputs, db);
    let (dx, accumulate) = match dx {
        InputGrad::Skip => return,
        InputGrad::Write(dx) => (dx, false),
        InputGrad::Add(dx) => (dx, true),
    };
    matmul(MatMut::new(dx, rows, inputs), dy_m, Mat::new(w, outputs, inputs), accumulate, threads(true));
}

/// `dw = dy^T x` as two half-products over the rows run side by side, then added (always two
/// halves, so the result does not depend on the thread count). Why: the `gemm` crate divides
/// one product's output among threads, which suits a weight's gradient (long inner dimension,
/// small output) poorly; the halves measured 5-15% faster on the default preset's shapes and
/// no slower on the mid preset's.
fn weight_grad(dy: &[f32], x: &[f32], rows: usize, outputs: usize, inputs: usize, dw: &mut [f32]) {
    let half = rows / 2;
    let product = |dw: &mut [f32], from: usize, to: usize| {
        let dy_part = Mat::new(&dy[from * outputs..to * outputs], to - from, outputs);
        let x_part = Mat::new(&x[from * inputs..to * inputs], to - from, inputs);
        matmul(MatMut::new(dw, outputs, inputs), dy_part.t(), x_part, false, threads(true));
    };
    if half < MIN_HALF_ROWS {
        return product(dw, 0, rows);
    }
    let mut upper = Buf::scratch(dw.len());
    rayon::join(|| product(dw, 0, half), || product(&mut upper, half, rows));
    add_into(dw, &upper);
}

/// Below this many rows per half, [`weight_grad`] runs one product.
const MIN_HALF_ROWS: usize = 256;

/// `out[c] = Σ_r x[r, c]` over rows of width `cols`, in a fixed order.
pub fn column_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    sum_rows(x.len() / cols.max(1), out, |r, acc| {
        acc.iter_mut().zip(&x[r * cols..(r + 1) * cols]).for_each(|(s, v)| *s += v);
    });
}

/// `out[c] = Σ_r a[r, c] * b[r, c]`, in a fixed order.
pub fn column_sums_of2(a: &[f32], b: &[f32], cols: usize, out: &mut [f32]) {
    sum_rows(a.len() / cols.max(1), out, |r, acc| {
        let at = r * cols..(r + 1) * cols;
        acc.iter_mut().zip(&a[at.clone()]).zip(&b[at]).for_each(|((s, x), y)| *s += x * y);
    });
}

/// Adds up `row(r, acc)` for `r` in `0..rows` into `out`, over a fixed partition of the rows
/// whose partial sums are added in order.
fn sum_rows(rows: usize, out: &mut [f32], row: impl Fn(usize, &mut [f32]) + Sync) {
    let cols = out.len();
    let part_rows = rows.div_ceil(REDUCE_PARTS).max(1);
    let partials: Vec<Vec<f32>> = (0..rows.div_ceil(part_rows))
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0.0f32; cols];
            (part * part_rows..((part + 1) * part_rows).min(rows)).for_each(|r| row(r, &mut acc));
            acc
        })
        .collect();
    out.fill(0.0);
    for p in partials {
        out.iter_mut().zip(&p).for_each(|(o, v)| *o += v);
    }
}

/// Mean and reciprocal standard deviation of a row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = simd::sum(x) / n;
    let var = simd::sum_sq_dev(x, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`, added into `dx` or written.
#[inline(always)]
fn norm_backward_row(xhat: &[f32], dxhat: &[f32], rstd: f32, dx: &mut [f32], accumulate: bool) {
    let n = xhat.len() as f32;
    let (m1, m2) = (simd::sum(dxhat) / n, simd::dot(dxhat, xhat) / n);
    for ((d, &h), &g) in dx.iter_mut().zip(xhat).zip(dxhat) {
        let v = rstd * (g - m1 - h * m2);
        *d = if accumulate { *d + v } else { v };
    }
}

/// Per-sample modulation vectors: `shift` and `scale` rows (B x C) for `tokens` rows each.
pub struct Modulation<'a> {
    /// Shifts, one row per sample.
    pub shift: &'a [f32],
    /// Scales (used as `1 + scale`), one row per sample.
    pub scale: &'a [f32],
}

/// `out = LN(x) * (1 + scale_b) + shift_b` over rows of width `c`, `tokens` rows per sample;
/// keeps `xhat` and `rstd` for the backward pass.
pub fn ln_modulate(
    x: &[f32],
    m: Modulation,
    tokens: usize,
    c: usize,
    out: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
) {
    let per = tokens * c;
    out.par_chunks_mut(per)
        .zip(xhat.par_chunks_mut(per))
        .zip(rstd.par_chunks_mut(tokens))
        .zip(x.par_chunks(per))
        .enumerate()
        .for_each(|(b, (((out, xhat), rstd), x))| {
            let (shift, scale) = (&m.shift[b * c..(b + 1) * c], &m.scale[b * c..(b + 1) * c]);
            ln_modulate_sample(x, shift, scale, out, xhat, rstd);
        });
}

multiversion! {
    /// [`ln_modulate`] of one sample's rows.
    pub fn ln_modulate_sample(x: &[f32], shift: &[f32], scale: &[f32], out: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) {
        let c = shift.len();
        for (t, r) in rstd.iter_mut().enumerate() {
            let row = &x[t * c..(t + 1) * c];
            let (mean, rs) = row_stats(row, 1e-6);
            *r = rs;
            let (o, h) = (&mut out[t * c..(t + 1) * c], &mut xhat[t * c..(t + 1) * c]);
            for i in 0..c {
                h[i] = (row[i] - mean) * rs;
                o[i] = h[i] * (1.0 + scale[i]) + shift[i];
            }
        }
    }
}

/// Backward of [`ln_modulate`]: adds the input gradient into `dx` and writes the per-sample
/// `dshift` and `dscale` rows (B x C).
#[allow(clippy::too_many_arguments)]
pub fn ln_modulate_backward(
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    scale: &[f32],
    tokens: usize,
    c: usize,
    dx: &mut [f32],
    dshift: &mut [f32],
    dscale: &mut [f32],
) {
    let per = tokens * c;
    dx.par_chunks_mut(per).zip(dshift.par_chunks_mut(c)).zip(dscale.par_chunks_mut(c)).enumerate().for_each(
        |(b, ((dx, dshift), dscale))| {
            let at = b * per..(b + 1) * per;
            let (dout, xhat, rstd) = (&dout[at.clone()], &xhat[at], &rstd[b * tokens..(b + 1) * tokens]);
            ln_modulate_backward_sample(dout, xhat, rstd, &scale[b * c..(b + 1) * c], dx, dshift, dscale);
        },
    );
}

multiversion! {
    /// [`ln_modulate_backward`] of one sample's rows.
    pub fn ln_modulate_backward_sample(
        dout: &[f32],
        xhat: &[f32],
        rstd: &[f32],
        scale: &[f32],
        dx: &mut [f32],
        dshift: &mut [f32],
        dscale: &mut [f32],
    ) {
        let c = scale.len();
        dshift.fill(0.0);
        dscale.fill(0.0);
        let mut dxhat = vec![0.0f32; c];
        for (t, &rs) in rstd.iter().enumerate() {
            let (g, h) = (&dout[t * c..(t + 1) * c], &xhat[t * c..(t + 1) * c]);
            for i in 0..c {
                dshift[i] += g[i];
                dscale[i] += g[i] * h[i];
                dxhat[i] = g[i] * (1.0 + scale[i]);
            }
            norm_backward_row(h, &dxhat, rs, &mut dx[t * c..(t + 1) * c], true);
        }
    }
}

/// Affine LayerNorm over rows of width `w.len()` (the per-head Q/K norm); keeps `xhat`, `rstd`.
pub fn layer_norm_affine(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) {
    let task = w.len() * ROWS_PER_TASK;
    out.par_chunks_mut(task)
        .zip(xhat.par_chunks_mut(task))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(task))
        .for_each(|(((out, xhat), rstd), x)| layer_norm_affine_rows(x, w, b, out, xhat, rstd));
}

multiversion! {
    /// [`layer_norm_affine`] of a run of rows.
    pub fn layer_norm_affine_rows(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) {
        let d = w.len();
        for (r, rs) in rstd.iter_mut().enumerate() {
            let row = &x[r * d..(r + 1) * d];
            let (mean, s) = row_stats(row, 1e-6);
            *rs = s;
            for i in 0..d {
                let h = (row[i] - mean) * s;
                xhat[r * d + i] = h;
                out[r * d + i] = h * w[i] + b[i];
            }
        }
    }
}

/// Backward of [`layer_norm_affine`]: writes `dx`, `dw`, `db`.
pub fn layer_norm_affine_backward(
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    w: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let d = w.len();
    column_sums(dout, d, db);
    column_sums_of2(dout, xhat, d, dw);
    let task = d * ROWS_PER_TASK;
    dx.par_chunks_mut(task)
        .zip(dout.par_chunks(task))
        .zip(xhat.par_chunks(task))
        .zip(rstd.par_chunks(ROWS_PER_TASK))
        .for_each(|(((dx, g), h), rstd)| layer_norm_affine_backward_rows(g, h, rstd, w, dx));
}

multiversion! {
    /// [`layer_norm_affine_backward`]'s input gradient for a run of rows.
    pub fn layer_norm_affine_backward_rows(g: &[f32], h: &[f32], rstd: &[f32], w: &[f32], dx: &mut [f32]) {
        let d = w.len();
        let mut dxhat = vec![0.0f32; d];
        for (r, &rs) in rstd.iter().enumerate() {
            let (gr, hr) = (&g[r * d..(r + 1) * d], &h[r * d..(r + 1) * d]);
            dxhat.iter_mut().zip(gr).zip(w).for_each(|((o, &g), &w)| *o = g * w);
            norm_backward_row(hr, &dxhat, rs, &mut dx[r * d..(r + 1) * d], false);
        }
    }
}

/// `g = GELU_tanh(h)` elementwise.
pub fn gelu(h: &[f32], g: &mut [f32]) {
    g.par_chunks_mut(4096).zip(h.par_chunks(4096)).for_each(|(g, h)| gelu_run(h, g));
}

multiversion! {
    /// [`gelu`] of a run of values.
    pub fn gelu_run(h: &[f32], g: &mut [f32]) {
        g.iter_mut().zip(h).for_each(|(g, &h)| *g = simd::gelu(h));
    }
}

/// `dh = dg * GELU_tanh'(h)`, in place over `dg`.
pub fn gelu_backward(h: &[f32], dg: &mut [f32]) {
    dg.par_chunks_mut(4096).zip(h.par_chunks(4096)).for_each(|(dg, h)| gelu_backward_run(h, dg));
}

multiversion! {
    /// [`gelu_backward`] of a run of values.
    pub fn gelu_backward_run(h: &[f32], dg: &mut [f32]) {
        dg.iter_mut().zip(h).for_each(|(d, &h)| *d *= simd::gelu_derivative(h));
    }
}

/// `out = x + gate_b * f` (per-sample gate rows of width `c`, `tokens` rows each).
pub fn gated_residual(x: &[f32], f: &[f32], gate: &[f32], tokens: usize, c: usize, out: &mut [f32]) {
    let per = tokens * c;
    out.par_chunks_mut(per).enumerate().for_each(|(b, out)| {
        let g = &gate[b * c..(b + 1) * c];
        for t in 0..tokens {
            let at = b * per + t * c;
            for i in 0..c {
                out[t * c + i] = x[at + i] + g[i] * f[at + i];
            }
        }
    });
}

/// Backward of [`gated_residual`] for the branch: `df = dout * gate_b`, `dgate_b = Σ dout * f`.
#[allow(clippy::too_many_arguments)]
pub fn gated_residual_backward(
    dout: &[f32],
    f: &[f32],
    gate: &[f32],
    tokens: usize,
    c: usize,
    df: &mut [f32],
    dgate: &mut [f32],
) {
    let per = tokens * c;
    df.par_chunks_mut(per).zip(dgate.par_chunks_mut(c)).enumerate().for_each(|(b, (df, dg))| {
        let g = &gate[b * c..(b + 1) * c];
        dg.fill(0.0);
        for t in 0..tokens {
            let at = b * per + t * c;
            for i in 0..c {
                df[t * c + i] = dout[at + i] * g[i];
                dg[i] += dout[at + i] * f[at + i];
            }
        }
    });
}

/// `a += b` elementwise.
pub fn add_into(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(4096).zip(b.par_chunks(4096)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}
