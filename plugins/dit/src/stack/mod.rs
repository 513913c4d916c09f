//! The transformer trunk (blocks and final layer) as one CPU op with a hand-written backward
//! pass.
//!
//! Through candle's autograd a training step of the blocks is a few hundred graph nodes, each
//! allocating its output and, in backward, a zero-filled gradient plus an addition per use.
//! On 2 CPU cores that bookkeeping cost as much as the arithmetic. Here the trunk is one
//! `CustomOp3` of `(x, cond, y)`: its forward pass runs [`block::forward`] per block and
//! [`output::forward`] over plain buffers and keeps the activations; its backward pass returns
//! the gradients of `x`, `cond` and `y` to candle (which differentiates the embedders and the
//! text encoder around it) and hands the trunk's own parameter gradients over through
//! [`StackGrads`].
//!
//! CPU and f32 only; other devices run the same model through candle's ops ([`super::dit`]).
//! The tests check this op against that path and against finite differences.

pub mod attention;
pub mod block;
pub mod kernels;
pub mod output;
pub mod pool;
pub mod simd;
#[cfg(test)]
mod tests;

use block::{BlockDims, BlockParams, Saved};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use output::{OutputParams, OutputSaved};
use pool::Buf;
use std::sync::{Arc, Mutex, PoisonError};

/// The trunk's parameters (candle variables, read afresh at every forward pass).
pub struct TransformerStack {
    blocks: Vec<BlockParams<Tensor>>,
    output: OutputParams<Tensor>,
    heads: usize,
}

/// The trunk's parameter gradients of one training step, filled by the backward pass.
#[derive(Clone, Default)]
pub struct StackGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl StackGrads {
    /// Moves the gradients into `grads` (after `loss.backward()`), adding to any a parameter
    /// already has there (a batch of several aspect-ratio buckets runs the trunk once each).
    pub fn add_to(&self, grads: &mut GradStore) -> Result<()> {
        for (param, grad) in self.0.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let sum = match grads.remove(&param) {
                Some(earlier) => (earlier + grad)?,
                None => grad,
            };
            grads.insert(&param, sum);
        }
        Ok(())
    }
}

struct StackOp {
    weights: Vec<BlockParams<Vec<f32>>>,
    output: OutputParams<Vec<f32>>,
    handles: Vec<BlockParams<Tensor>>,
    output_handles: OutputParams<Tensor>,
    heads: usize,
    train: bool,
    tape: Mutex<Option<Tape>>,
    grads: StackGrads,
}

/// The activations one backward pass needs.
struct Tape {
    blocks: Vec<Saved>,
    output: OutputSaved,
}

/// Splits `cond` (B, 7C) rows into `t6` (B, 6C) and `e_t` (B, C).
fn split_cond(cond: &[f32], c: usize) -> (Buf, Buf) {
    let batch = cond.len() / (7 * c);
    let (mut t6, mut e_t) = (Buf::scratch(batch * 6 * c), Buf::scratch(batch * c));
    for (b, row) in cond.chunks(7 * c).enumerate() {
        t6[b * 6 * c..(b + 1) * 6 * c].copy_from_slice(&row[..6 * c]);
        e_t[b * c..(b + 1) * c].copy_from_slice(&row[6 * c..]);
    }
    (t6, e_t)
}

fn dims(x: &Layout, y: &Layout, heads: usize, ff_width: usize) -> Result<BlockDims> {
    match (x.dims(), y.dims()) {
        (&[batch, tokens, width], &[_, caption_len, _]) => {
            Ok(BlockDims { batch, tokens, caption_len, width, heads, ff_width })
        }
        (a, b) => bail!("evolve stack: expected x (B, N, C) and y (B, L, C), got {a:?} and {b:?}"),
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => crate::ops::slice(v, l),
        _ => bail!("evolve stack: f32 only"),
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl StackOp {
    fn ff_width(&self) -> usize {
        self.weights.first().map(|w| w.f1b.len()).unwrap_or(0)
    }
}

impl CustomOp3 for StackOp {
    fn name(&self) -> &'static str {
        "evolve-transformer-stack"
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
        let d = dims(l1, l3, self.heads, self.ff_width())?;
        let (x, cond, y) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        if cond.len() != d.batch * 7 * d.width || y.len() != d.batch * d.caption_len * d.width {
            bail!("evolve stack: cond must be (B, 7C) and y (B, L, C)");
        }
        let (t6, e_t) = split_cond(cond, d.width);
        let mut x = Buf::copy_of(x);
        let mut blocks = Vec::with_capacity(if self.train { self.weights.len() } else { 0 });
        for w in &self.weights {
            let (next, saved) = block::forward(w, d, &x, &t6, y);
            x = next;
            if self.train {
                blocks.push(saved);
            }
        }
        let (out, saved) = output::forward(&self.output, d.tokens, &x, &e_t);
        if self.train {
            *self.tape.lock().unwrap_or_else(PoisonError::into_inner) = Some(Tape { blocks, output: saved });
        }
        let patch = self.output[2].len();
        Ok((CpuStorage::F32(out.into_vec()), Shape::from((d.batch, d.tokens, patch))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cond: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(tape) = self.tape.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            bail!("evolve stack: backward without a training forward pass (or twice)");
        };
        let d = dims(x.layout(), y.layout(), self.heads, self.ff_width())?;
        let c = d.width;
        let y_values = to_vec(y)?;
        let mut grads = self.grads.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keep = |grad: Buf, param: &Tensor| -> Result<()> {
            grads.push((param.clone(), Tensor::from_vec(grad.into_vec(), param.shape(), param.device())?));
            Ok(())
        };
        let (mut dx, de_t, output_grads) = output::backward(&self.output, &tape.output, d.tokens, &to_vec(grad_res)?);
        for (grad, param) in output_grads.into_iter().zip(&self.output_handles) {
            keep(grad, param)?;
        }
        let (mut dy, mut dt6) = (vec![0.0f32; y_values.len()], vec![0.0f32; d.batch * 6 * c]);
        for ((w, saved), handles) in self.weights.iter().zip(&tape.blocks).zip(&self.handles).rev() {
            let (next, g) = block::backward(w, d, saved, &y_values, &dx, &mut dy, &mut dt6);
            dx = next;
            for ((_, grad), (_, param)) in g.into_named().into_iter().zip(handles.clone().into_named()) {
                keep(grad, &param)?;
            }
        }
        let mut dcond = Vec::with_capacity(d.batch * 7 * c);
        for b in 0..d.batch {
            dcond.extend_from_slice(&dt6[b * 6 * c..(b + 1) * 6 * c]);
            dcond.extend_from_slice(&de_t[b * c..(b + 1) * c]);
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx.into_vec(), x.shape(), device)?),
            Some(Tensor::from_vec(dcond, cond.shape(), device)?),
            Some(Tensor::from_vec(dy, y.shape(), device)?),
        ))
    }
}

impl TransformerStack {
    /// The trunk over these blocks' and final layer's parameters.
    pub fn new(blocks: Vec<BlockParams<Tensor>>, output: OutputParams<Tensor>, heads: usize) -> Self {
        TransformerStack { blocks, output, heads }
    }

    /// Whether this stack can run `x` (CPU, f32).
    pub fn supports(x: &Tensor) -> bool {
        x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// Runs every block and the final layer on `x` (B, N, C) given `cond` (B, 7C: the six block
    /// modulations `t6`, then the timestep embedding `e_t`) and the projected caption `y`
    /// (B, L, C); returns the output patches (B, N, P). With `train`, activations are kept for
    /// one backward pass, whose parameter gradients the returned [`StackGrads`] collects.
    pub fn forward(&self, x: &Tensor, cond: &Tensor, y: &Tensor, train: bool) -> Result<(Tensor, StackGrads)> {
        let weights = self.blocks.iter().map(|b| b.try_map(to_vec)).collect::<Result<Vec<_>>>()?;
        let output = [to_vec(&self.output[0])?, to_vec(&self.output[1])?, to_vec(&self.output[2])?];
        let grads = StackGrads::default();
        let op = StackOp {
            weights,
            output,
            handles: self.blocks.clone(),
            output_handles: self.output.clone(),
            heads: self.heads,
            train,
            tape: Mutex::new(None),
            grads: grads.clone(),
        };
        let (x, cond, y) = (x.contiguous()?, cond.contiguous()?, y.contiguous()?);
        let out = if train { x.apply_op3(&cond, &y, op)? } else { x.apply_op3_no_bwd(&cond, &y, &op)? };
        Ok((out, grads))
    }
}
