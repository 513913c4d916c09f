//! The model's side of data-parallel training: which gradients go to the averaging thread, in
//! which buckets and when.
//!
//! Buckets are one per transformer block, last block first, then one for every other
//! parameter; a block's bucket leaves as soon as its backward is done, so averaging it overlaps
//! the backward of the blocks below. Every rank sends the same buckets in the same order (a
//! parameter without a gradient on one rank sends zeros), whatever its share of the batch.

use super::Reducer;
use crate::dit::BlockPath;
use crate::{DitModel, failed};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use evolve_sdk::{DataParallel, PluginError, SplitMix64, TrainBatch};

/// A model's place in a data-parallel group.
pub(crate) struct Replica {
    reducer: Reducer,
    /// Each transformer block's parameters, in name order.
    blocks: Vec<Vec<Tensor>>,
    /// Every other parameter, in name order.
    others: Vec<Tensor>,
}

impl DitModel {
    /// This model as rank `group.rank` of `group`: joins the other ranks (blocking until all
    /// have), draws noise and timesteps of its own, and checks that every rank starts from the
    /// same weights.
    pub fn join_group(mut self, group: &DataParallel) -> Result<Self, PluginError> {
        let collective = super::join(group, self.params.device()).map_err(failed)?;
        let reducer = Reducer::start(collective).map_err(failed)?;
        let mut blocks = vec![vec![]; self.shape.depth];
        let mut others = vec![];
        for (name, var) in self.params.vars() {
            let block = name.strip_prefix("transformer_blocks.").and_then(|rest| rest.split('.').next());
            match block.and_then(|i| i.parse::<usize>().ok()).and_then(|i| blocks.get_mut(i)) {
                Some(block) => block.push(var.as_tensor().clone()),
                None => others.push(var.as_tensor().clone()),
            }
        }
        self.rng = rank_stream(&self.rng, group.rank);
        self.replica = Some(Replica { reducer, blocks, others });
        self.check_weights_agree()?;
        Ok(self)
    }

    /// After a checkpoint was loaded into a replica: its own random stream again, and the
    /// check that every rank loaded the same weights.
    pub(crate) fn rejoin_after_load(&mut self) -> Result<(), PluginError> {
        let Some(rank) = self.replica.as_ref().map(|r| r.reducer.rank()) else { return Ok(()) };
        self.rng = rank_stream(&self.rng, rank);
        self.check_weights_agree()
    }

    /// The loss and gradients of this rank's `batch`, both averaged over the group.
    pub(crate) fn averaged_gradients(&mut self, batch: &TrainBatch) -> Result<(f32, GradStore), PluginError> {
        let replica = self.replica.take().ok_or_else(|| failed("not part of a data-parallel group"))?;
        let result = self.average_with(&replica, batch);
        self.replica = Some(replica);
        result
    }

    fn average_with(&mut self, replica: &Replica, batch: &TrainBatch) -> Result<(f32, GradStore), PluginError> {
        let mut round = replica.reducer.round().map_err(failed)?;
        let mut sent = vec![false; replica.blocks.len()];
        let (loss, mut grads) = if self.config.accumulate > 1 {
            // Blocks finish once per micro-batch: everything is sent after the last one.
            self.accumulated_gradients(batch)?
        } else {
            let path = if self.config.gradient_checkpointing { BlockPath::Recompute } else { BlockPath::Segmented };
            let mut block_done = |i: usize, grads: &GradStore| -> candle_core::Result<()> {
                sent[i] = true;
                round.submit(entries(&replica.blocks[i], grads)?).map_err(candle_core::Error::wrap)
            };
            self.gradients_reporting(batch, Some(path), Some(&mut block_done))?
        };
        for i in (0..sent.len()).rev().filter(|&i| !sent[i]) {
            round.submit(entries(&replica.blocks[i], &grads).map_err(failed)?).map_err(failed)?;
        }
        round.submit(entries(&replica.others, &grads).map_err(failed)?).map_err(failed)?;
        round.finish(&mut grads).map_err(failed)?;
        let device = self.params.device();
        let loss = Tensor::new(&[loss], device).and_then(|l| l.to_dtype(DType::F32)).map_err(failed)?;
        let mean = replica.reducer.mean_now(&loss).map_err(failed)?;
        let loss = mean.to_vec1::<f32>().map_err(failed)?.first().copied().unwrap_or(f32::NAN);
        Ok((loss, grads))
    }

    /// Fails unless every rank holds the same weights (by a sum per parameter).
    fn check_weights_agree(&self) -> Result<(), PluginError> {
        let Some(replica) = &self.replica else { return Ok(()) };
        let vars = self.params.vars();
        let sums: Vec<f32> = vars
            .values()
            .map(|v| v.as_tensor().to_dtype(DType::F32).and_then(|t| t.sum_all()).and_then(|s| s.to_scalar::<f32>()))
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        let mine = Tensor::new(sums.as_slice(), self.params.device()).map_err(failed)?;
        let mean = replica.reducer.mean_now(&mine).and_then(|m| Ok(m.to_vec1::<f32>()?)).map_err(failed)?;
        for ((name, a), b) in vars.keys().zip(&sums).zip(&mean) {
            if (a - b).abs() > 1e-5 * a.abs().max(1.0) {
                return Err(PluginError::InvalidConfig(format!(
                    "rank {} holds other weights than the group ({name} sums to {a}, the group's mean is {b}): \
                     every rank must build the same model from the same seed, weights and checkpoint",
                    replica.reducer.rank()
                )));
            }
        }
        Ok(())
    }
}

/// Rank `rank`'s random stream, derived from the shared one (rank 0 keeps it), so that ranks
/// draw different noise for their different images.
pub(crate) fn rank_stream(shared: &SplitMix64, rank: usize) -> SplitMix64 {
    if rank == 0 { shared.clone() } else { SplitMix64::from_parts(&[shared.state(), rank as u64]) }
}

/// `params` with their gradients in `grads`, zeros for one that has none.
fn entries(params: &[Tensor], grads: &GradStore) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
    params
        .iter()
        .map(|p| {
            let grad = match grads.get(p) {
                Some(g) => g.clone(),
                None => p.zeros_like()?,
            };
            Ok((p.clone(), grad))
        })
        .collect()
}
