//! Gradient checkpointing of the transformer blocks: the forward pass keeps only each block's
//! input, and the backward pass runs every block again, last first, to differentiate it.
//!
//! Why: a block's activations (attention scores, the MLP's 4x-wide hidden layer) dominate a
//! training step's memory; a 28-block PixArt-XL at 512 px holds tens of gigabytes of them per
//! batch. Kept inputs are one `(B, N, C)` tensor per block; the price is a second forward pass
//! of the blocks (about a third more compute per step). candle has no checkpointing, so it is
//! built from its autograd: the blocks run on detached inputs, their output re-enters the graph
//! as a fresh variable, and after `loss.backward()` [`Recompute::add_to`] carries the gradient
//! at that variable down through the blocks and into the layers before them.
//!
//! The same backward, one block at a time, also runs with the activations kept
//! ([`crate::dit::BlockPath::Segmented`]): nothing is recomputed, but each block's gradients are
//! whole as soon as that block is done, so data-parallel training can start averaging them
//! across processes while the blocks below are still being differentiated.

use super::dit::Block;
use super::text::Caption;
use candle_core::backprop::GradStore;
use candle_core::{Error, Result, Tensor, Var};

/// Called after each block's parameters have their whole gradient in the store: the block's
/// index and the store.
pub type BlockDone<'a> = &'a mut dyn FnMut(usize, &GradStore) -> Result<()>;

/// What the backward pass through checkpointed blocks needs.
pub struct Recompute {
    /// The blocks, first to last.
    pub(crate) blocks: Vec<Block>,
    /// Each block's input: without a graph when recomputing, else the variable its kept
    /// output was computed from.
    pub(crate) inputs: Vec<Tensor>,
    /// Each block's output in its graph, when activations are kept; empty when recomputing.
    pub(crate) outputs: Vec<Tensor>,
    /// The modulation input and the caption features as the blocks saw them: leaves, so that
    /// each block's backward gives their gradients.
    pub(crate) leaves: (Var, Var),
    /// The last block's output as it re-entered the graph: the loss's gradient arrives here.
    pub(crate) top: Var,
    /// The first block's input, in the graph (patch embedding and positions).
    pub(crate) tokens: Tensor,
    /// The blocks' modulation input `(B, 6, C)`, in the graph (the timestep embedding).
    pub(crate) t6: Tensor,
    /// The projected caption, in the graph (caption projection, text encoder).
    pub(crate) caption: Caption,
}

impl Recompute {
    /// Runs the blocks, keeping their activations only if `keep`, and returns the last one's
    /// output as a new leaf of the graph, with what [`Recompute::add_to`] needs.
    pub(crate) fn forward(
        blocks: &[Block],
        tokens: Tensor,
        t6: Tensor,
        caption: Caption,
        keep: bool,
    ) -> Result<(Tensor, Recompute)> {
        let leaves = (Var::from_tensor(&t6.detach())?, Var::from_tensor(&caption.features.detach())?);
        let leaf_caption = Caption { features: leaves.1.as_tensor().clone(), mask: caption.mask.clone() };
        let (mut inputs, mut outputs) = (Vec::with_capacity(blocks.len()), vec![]);
        let mut x = tokens.detach();
        for block in blocks {
            if keep {
                let input = Var::from_tensor(&x)?.as_tensor().clone();
                let output = block.forward(&input, leaves.0.as_tensor(), &leaf_caption)?;
                x = output.detach();
                inputs.push(input);
                outputs.push(output);
            } else {
                inputs.push(x.clone());
                // Computed with the parameters' graph, which is dropped at once with `detach`.
                x = block.forward(&x, leaves.0.as_tensor(), &leaf_caption)?.detach();
            }
        }
        let top = Var::from_tensor(&x)?;
        let output = top.as_tensor().clone();
        Ok((output, Recompute { blocks: blocks.to_vec(), inputs, outputs, leaves, top, tokens, t6, caption }))
    }

    /// After `loss.backward()` gave `grads`: adds the gradients of every block's parameters and
    /// of everything before the blocks, one block at a time, last first (recomputing each one
    /// unless its activations were kept), calling `done` after each block.
    pub fn add_to(&self, grads: &mut GradStore, mut done: Option<BlockDone<'_>>) -> Result<()> {
        let Some(mut at_output) = grads.remove(&self.top) else {
            // The loss does not depend on the blocks (nothing to add).
            return Ok(());
        };
        let (mut at_t6, mut at_caption): (Option<Tensor>, Option<Tensor>) = (None, None);
        let (t6, features) = &self.leaves;
        let caption = Caption { features: features.as_tensor().clone(), mask: self.caption.mask.clone() };
        for (i, (block, input)) in self.blocks.iter().zip(&self.inputs).enumerate().rev() {
            // A kept input is the variable itself (same id); a recomputed one becomes a new one.
            let x = Var::from_tensor(input)?;
            let output = match self.outputs.get(i) {
                Some(kept) => kept.clone(),
                None => block.forward(x.as_tensor(), t6.as_tensor(), &caption)?,
            };
            let mut block_grads = (output * &at_output)?.sum_all()?.backward()?;
            at_output = block_grads.remove(&x).ok_or_else(|| Error::Msg("a block ignored its input".into()))?;
            add(&mut at_t6, block_grads.remove(t6))?;
            add(&mut at_caption, block_grads.remove(features))?;
            // What is left are the block's parameters.
            grads.extend(block_grads)?;
            if let Some(done) = done.as_mut() {
                done(i, grads)?;
            }
        }
        let mut surrogate = (&self.tokens * &at_output)?.sum_all()?;
        if let Some(g) = at_t6 {
            surrogate = (surrogate + (&self.t6 * g)?.sum_all()?)?;
        }
        if let Some(g) = at_caption {
            surrogate = (surrogate + (&self.caption.features * g)?.sum_all()?)?;
        }
        grads.extend(surrogate.backward()?)
    }
}

fn add(sum: &mut Option<Tensor>, more: Option<Tensor>) -> Result<()> {
    if let Some(more) = more {
        *sum = Some(match sum.take() {
            Some(before) => (before + more)?,
            None => more,
        });
    }
    Ok(())
}

/// The gradients the blocks still owe after `loss.backward()`: none (candle's autograd went
/// through them), the fused CPU trunk's, or the checkpointed blocks'.
#[derive(Default)]
pub enum BlockGrads {
    /// Candle's autograd has them all.
    #[default]
    None,
    /// The fused trunk's ([`crate::stack::StackGrads`]).
    Stack(crate::stack::StackGrads),
    /// Blocks differentiated one at a time, recomputed or from kept activations.
    Recompute(Box<Recompute>),
}

impl BlockGrads {
    /// Adds them to `grads`, the result of `loss.backward()`; `done` hears of each block whose
    /// gradients are whole (only blocks differentiated one at a time report).
    pub fn add_to(&self, grads: &mut GradStore, done: Option<BlockDone<'_>>) -> Result<()> {
        match self {
            BlockGrads::None => Ok(()),
            BlockGrads::Stack(stack) => stack.add_to(grads),
            BlockGrads::Recompute(recompute) => recompute.add_to(grads, done),
        }
    }
}
