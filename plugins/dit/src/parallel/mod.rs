//! Data-parallel training: one process per GPU (`evolve run --gpus N`), each training the same
//! model on its own share of every batch, averaging gradients before every optimiser step so
//! that all of them take the same step and keep the same weights.
//!
//! Three parts, each replaceable without the others:
//!
//! - a [`Collective`]: the element-wise mean of a flat tensor over all ranks. On CUDA devices
//!   with the `nccl` feature, NCCL's all-reduce on a stream of its own ([`nccl`]); otherwise a
//!   star over loopback TCP ([`TcpCollective`]), which works on any device and is what the
//!   CPU tests run;
//! - a [`Reducer`]: a thread that owns the collective, so that averaging one bucket of
//!   gradients runs while the caller computes the next;
//! - the model's side ([`crate::DitModel`]): each transformer block's gradients go to the
//!   reducer as soon as that block's backward is done
//!   ([`BlockPath::Segmented`](crate::dit::BlockPath::Segmented) or gradient checkpointing),
//!   the blocks last first, then everything else; every rank submits the same buckets in the
//!   same order, which is what makes the collective's calls line up.

#[cfg(feature = "nccl")]
pub mod nccl;
mod reducer;
pub(crate) mod replica;
mod tcp;
#[cfg(test)]
mod tests;

use candle_core::{Device, Tensor};
use evolve_sdk::DataParallel;
pub use reducer::{Reducer, Round};
use std::time::Duration;
pub use tcp::TcpCollective;

/// How long a rank waits for the others to join before giving up.
pub const JOIN_PATIENCE: Duration = Duration::from_secs(120);

/// Why data-parallel training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The rendezvous address does not work.
    #[error("rank {rank}: cannot use the rendezvous address {address}: {source}")]
    Rendezvous {
        /// This process's rank.
        rank: usize,
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not every rank joined in time.
    #[error("rank {rank}: {missing} of {world} ranks did not join within {} s", JOIN_PATIENCE.as_secs())]
    Timeout {
        /// This process's rank.
        rank: usize,
        /// How many were missing.
        missing: usize,
        /// The group's size.
        world: usize,
    },
    /// A peer's connection failed (it stopped, most likely after an error of its own).
    #[error("lost rank {peer}: {source}")]
    Lost {
        /// The peer.
        peer: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A peer sent what this rank did not expect.
    #[error("ranks disagree: {0}")]
    Disagree(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The averaging thread is gone (an earlier error stopped it).
    #[error("the gradient-averaging thread stopped after an earlier error")]
    Stopped,
}

/// The element-wise mean of a tensor over every rank of a group.
pub trait Collective: Send {
    /// This process's place in the group, from 0.
    fn rank(&self) -> usize;

    /// How many processes the group has.
    fn world(&self) -> usize;

    /// The mean over all ranks of `bucket`, a flat tensor of the same length on every rank.
    /// The result may still be in flight on a device until [`Collective::fence`].
    fn mean(&mut self, bucket: &Tensor) -> Result<Tensor, ParallelError>;

    /// Waits until every result [`Collective::mean`] returned is ready for the model's own
    /// work (a no-op where `mean` already waited).
    fn fence(&mut self) -> Result<(), ParallelError> {
        Ok(())
    }
}

/// Joins `group` for a model on `device`: NCCL for a CUDA device in a build with the `nccl`
/// feature, TCP otherwise. Blocks until every rank has joined (at most [`JOIN_PATIENCE`]).
pub fn join(group: &DataParallel, device: &Device) -> Result<Box<dyn Collective>, ParallelError> {
    let tcp = TcpCollective::join(group.rank, group.world, &group.rendezvous, JOIN_PATIENCE)?;
    #[cfg(feature = "nccl")]
    if let Device::Cuda(cuda) = device {
        return Ok(Box::new(nccl::NcclCollective::join(tcp, cuda)?));
    }
    let _ = device;
    Ok(Box::new(tcp))
}
