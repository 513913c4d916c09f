//! The collective on CUDA devices: NCCL's all-reduce (average) on a stream of its own.
//!
//! Why a second stream: candle runs every kernel of a device on one stream, so an all-reduce
//! issued there would hold back the backward pass of the blocks below. Here each bucket's
//! all-reduce waits only for the kernels that produced it (an event recorded on the compute
//! stream), runs beside the compute stream's later kernels, and the compute stream waits for
//! the communication stream once, at [`Collective::fence`], before the optimiser reads the
//! averages. The NCCL id travels from rank 0 over the TCP rendezvous.
//!
//! Built only with the `nccl` feature (it links libnccl); run on the device machine, not in CI.

use super::{Collective, ParallelError, TcpCollective};
use candle_core::cuda_backend::cudarc::driver::CudaStream;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaDevice, CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};
use std::sync::Arc;

/// A rank of a group that averages with NCCL.
pub struct NcclCollective {
    comm: Communicator,
    /// The model's stream (candle's for the device).
    compute: Arc<CudaStream>,
}

/// NCCL's communicator, used by one thread at a time: the averaging thread, after
/// [`NcclCollective::join`] made it. (NCCL allows a communicator to move between threads as
/// long as calls on it do not overlap; cudarc's type holds a raw pointer and so is not `Send`.)
struct Communicator(Comm);

// SAFETY: see `Communicator`: only one thread at a time calls into it.
unsafe impl Send for Communicator {}

fn nccl_error(e: impl std::fmt::Debug) -> ParallelError {
    ParallelError::Tensor(candle_core::Error::Msg(format!("nccl: {e:?}")))
}

impl NcclCollective {
    /// Joins the group `tcp` already joined, on `device` (this rank's GPU).
    pub fn join(mut tcp: TcpCollective, device: &CudaDevice) -> Result<Self, ParallelError> {
        let (rank, world) = (tcp.rank(), tcp.world());
        let id = if rank == 0 { Some(Id::new().map_err(nccl_error)?) } else { None };
        let mine: Vec<u8> = id.as_ref().map(|id| id.internal().iter().map(|&c| c as u8).collect()).unwrap_or_default();
        let shared = tcp.broadcast(&mine)?;
        let internal: [std::ffi::c_char; 128] = shared
            .iter()
            .map(|&b| b as std::ffi::c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| ParallelError::Disagree(format!("rank 0 sent an NCCL id of {} bytes", shared.len())))?;
        let compute = device.cuda_stream();
        let stream = compute.fork().map_err(nccl_error)?;
        let comm = Comm::from_rank(stream, rank, world, Id::uninit(internal)).map_err(nccl_error)?;
        Ok(NcclCollective { comm: Communicator(comm), compute })
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.0.rank()
    }

    fn world(&self) -> usize {
        self.comm.0.world_size()
    }

    fn mean(&mut self, bucket: &Tensor) -> Result<Tensor, ParallelError> {
        self.compute.context().bind_to_thread().map_err(nccl_error)?;
        let bucket = bucket.to_dtype(DType::F32)?.contiguous()?;
        Ok(bucket.apply_op1_no_bwd(&AllReduceMean { comm: &self.comm.0, compute: &self.compute })?)
    }

    fn fence(&mut self) -> Result<(), ParallelError> {
        self.compute.join(&self.comm.0.stream()).map_err(nccl_error)
    }
}

/// The all-reduce as a candle op, so that it reads the tensor's device memory and returns a
/// new tensor without leaving candle's storage types.
struct AllReduceMean<'a> {
    comm: &'a Comm,
    compute: &'a Arc<CudaStream>,
}

impl CustomOp1 for AllReduceMean<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-mean"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the NCCL all-reduce needs a contiguous tensor")
        };
        let source = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let stream = self.comm.stream();
        let wrap = |e: &dyn std::fmt::Debug| candle_core::Error::Msg(format!("nccl: {e:?}"));
        // The bucket was written on the compute stream: the all-reduce waits for that only.
        let written = self.compute.record_event(None).map_err(|e| wrap(&e))?;
        stream.wait(&written).map_err(|e| wrap(&e))?;
        let mut mean = stream.alloc_zeros::<f32>(end - start).map_err(|e| wrap(&e))?;
        self.comm.all_reduce(&source, &mut mean, &ReduceOp::Avg).map_err(|e| wrap(&e))?;
        Ok((CudaStorage::wrap_cuda_slice(mean, storage.device.clone()), layout.shape().clone()))
    }
}
