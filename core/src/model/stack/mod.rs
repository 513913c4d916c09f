//! The transformer blocks as one CPU op with a hand-written backward pass.
//!
//! Through candle's autograd a training step of the blocks is a few hundred graph nodes, each
//! allocating its output and, in backward, a zero-filled gradient plus an addition per use.
//! On 2 CPU cores that bookkeeping cost as much as the arithmetic. Here the whole stack is one
//! `CustomOp3` of `(x, t6, y)`: its forward pass runs [`block::forward`] per block over plain
//! buffers and keeps the activations; its backward pass returns the gradients of `x`, `t6` and
//! `y` to candle (which differentiates the embedders and the text encoder around it) and hands
//! the blocks' own parameter gradients over through [`StackGrads`].
//!
//! CPU and f32 only; other devices run the same model through candle's ops ([`super::dit`]).
//! The tests check this op against that path and against finite differences.

pub mod attention;
pub mod block;
pub mod kernels;
pub mod pool;
pub mod simd;
#[cfg(test)]
mod tests;

use block::{BlockDims, BlockParams, Saved};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use std::sync::{Arc, Mutex, PoisonError};

/// The blocks' parameters (candle variables, read afresh at every forward pass).
pub struct TransformerStack {
    blocks: Vec<BlockParams<Tensor>>,
    heads: usize,
}

/// The blocks' parameter gradients of one training step, filled by the backward pass.
#[derive(Clone, Default)]
pub struct StackGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl StackGrads {
    /// Moves the gradients into `grads` (after `loss.backward()`).
    pub fn add_to(&self, grads: &mut GradStore) {
        for (param, grad) in self.0.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            grads.insert(&param, grad);
        }
    }
}

struct StackOp {
    weights: Vec<BlockParams<Vec<f32>>>,
    handles: Vec<BlockParams<Tensor>>,
    heads: usize,
    train: bool,
    tape: Mutex<Option<Vec<Saved>>>,
    grads: StackGrads,
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
        CpuStorage::F32(v) => crate::model::ops::slice(v, l),
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
        let (x, t6, y) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        if t6.len() != d.batch * 6 * d.width || y.len() != d.batch * d.caption_len * d.width {
            bail!("evolve stack: t6 must be (B, 6C) and y (B, L, C)");
        }
        let mut x = pool::Buf::copy_of(x);
        let mut tape = Vec::with_capacity(if self.train { self.weights.len() } else { 0 });
        for w in &self.weights {
            let (next, saved) = block::forward(w, d, &x, t6, y);
            x = next;
            if self.train {
                tape.push(saved);
            }
        }
        if self.train {
            *self.tape.lock().unwrap_or_else(PoisonError::into_inner) = Some(tape);
        }
        Ok((CpuStorage::F32(x.into_vec()), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        t6: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(tape) = self.tape.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            bail!("evolve stack: backward without a training forward pass (or twice)");
        };
        let d = dims(x.layout(), y.layout(), self.heads, self.ff_width())?;
        let y_values = to_vec(y)?;
        let mut dx = pool::Buf::copy_of(&to_vec(grad_res)?);
        let (mut dy, mut dt6) = (vec![0.0f32; y_values.len()], vec![0.0f32; t6.elem_count()]);
        let mut grads = self.grads.0.lock().unwrap_or_else(PoisonError::into_inner);
        for ((w, saved), handles) in self.weights.iter().zip(&tape).zip(&self.handles).rev() {
            let (next, g) = block::backward(w, d, saved, &y_values, &dx, &mut dy, &mut dt6);
            dx = next;
            for ((_, grad), (_, param)) in g.into_named().into_iter().zip(handles.clone().into_named()) {
                let grad = Tensor::from_vec(grad.into_vec(), param.shape(), param.device())?;
                grads.push((param, grad));
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx.into_vec(), x.shape(), device)?),
            Some(Tensor::from_vec(dt6, t6.shape(), device)?),
            Some(Tensor::from_vec(dy, y.shape(), device)?),
        ))
    }
}

impl TransformerStack {
    /// The stack over these blocks' parameters.
    pub fn new(blocks: Vec<BlockParams<Tensor>>, heads: usize) -> Self {
        TransformerStack { blocks, heads }
    }

    /// Whether this stack can run `x` (CPU, f32).
    pub fn supports(x: &Tensor) -> bool {
        x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// Runs every block on `x` (B, N, C) with the modulations `t6` (B, 6C) and the projected
    /// caption `y` (B, L, C). With `train`, activations are kept for one backward pass, whose
    /// parameter gradients the returned [`StackGrads`] collects.
    pub fn forward(&self, x: &Tensor, t6: &Tensor, y: &Tensor, train: bool) -> Result<(Tensor, StackGrads)> {
        let weights = self.blocks.iter().map(|b| b.try_map(to_vec)).collect::<Result<Vec<_>>>()?;
        let grads = StackGrads::default();
        let op = StackOp {
            weights,
            handles: self.blocks.clone(),
            heads: self.heads,
            train,
            tape: Mutex::new(None),
            grads: grads.clone(),
        };
        let (x, t6, y) = (x.contiguous()?, t6.contiguous()?, y.contiguous()?);
        let out = if train { x.apply_op3(&t6, &y, op)? } else { x.apply_op3_no_bwd(&t6, &y, &op)? };
        Ok((out, grads))
    }
}
