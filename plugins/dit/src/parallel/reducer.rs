//! The averaging thread: it owns the [`Collective`] and averages buckets of gradients in the
//! order they arrive, while the thread that sent them goes on with the backward pass.

use super::{Collective, ParallelError};
use candle_core::backprop::GradStore;
use candle_core::{Shape, Tensor};
use std::cell::Cell;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

enum Job {
    /// Average this flat bucket.
    Mean(Tensor),
    /// Make every average so far ready for the model's work.
    Fence,
}

/// A data-parallel group's averaging thread.
pub struct Reducer {
    rank: usize,
    jobs: Option<Sender<Job>>,
    done: Receiver<Result<Option<Tensor>, ParallelError>>,
    thread: Option<JoinHandle<()>>,
    /// Set when a round ended without [`Round::finish`]: answers may be left in the channel,
    /// so no later round can trust the order of what comes back.
    broken: Cell<bool>,
}

impl Reducer {
    /// Starts the thread that runs `collective`.
    pub fn start(mut collective: Box<dyn Collective>) -> Result<Reducer, ParallelError> {
        let rank = collective.rank();
        let (jobs, inbox) = channel::<Job>();
        let (answer, done) = channel();
        let thread = std::thread::Builder::new()
            .name(format!("evolve-allreduce-{rank}"))
            .spawn(move || {
                for job in inbox {
                    let result = match job {
                        Job::Mean(bucket) => collective.mean(&bucket).map(Some),
                        Job::Fence => collective.fence().map(|()| None),
                    };
                    let failed = result.is_err();
                    if answer.send(result).is_err() || failed {
                        // After a failure the peers are out of step: stop (the caller sees
                        // the error, then `Stopped`).
                        return;
                    }
                }
            })
            .map_err(|e| ParallelError::Disagree(format!("cannot start the averaging thread: {e}")))?;
        Ok(Reducer { rank, jobs: Some(jobs), done, thread: Some(thread), broken: Cell::new(false) })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Starts one step's averaging.
    pub fn round(&self) -> Result<Round<'_>, ParallelError> {
        if self.broken.get() {
            return Err(ParallelError::Stopped);
        }
        Ok(Round { reducer: self, buckets: vec![], finished: false })
    }

    /// The mean of `tensor` over all ranks, waiting for it.
    pub fn mean_now(&self, tensor: &Tensor) -> Result<Tensor, ParallelError> {
        let mut round = self.round()?;
        round.submit(vec![(tensor.clone(), tensor.clone())])?;
        let mut grads = GradStore::default();
        round.finish(&mut grads)?;
        grads.remove(tensor).ok_or(ParallelError::Stopped)
    }

    fn send(&self, job: Job) -> Result<(), ParallelError> {
        self.jobs.as_ref().and_then(|jobs| jobs.send(job).ok()).ok_or(ParallelError::Stopped)
    }

    fn answer(&self) -> Result<Option<Tensor>, ParallelError> {
        self.done.recv().map_err(|_| ParallelError::Stopped)?
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One step's buckets, averaged in the background as they are submitted.
pub struct Round<'a> {
    reducer: &'a Reducer,
    /// Per bucket sent: its parameters and their gradients' shapes, in the bucket's order.
    buckets: Vec<Vec<(Tensor, Shape)>>,
    finished: bool,
}

impl Round<'_> {
    /// Starts averaging the gradients of `entries` (parameter, gradient) as one bucket. Every
    /// rank must submit the same parameters in the same order.
    pub fn submit(&mut self, entries: Vec<(Tensor, Tensor)>) -> Result<(), ParallelError> {
        if entries.is_empty() {
            return Ok(());
        }
        let flat: Vec<Tensor> = entries.iter().map(|(_, g)| g.flatten_all()).collect::<Result<_, _>>()?;
        self.reducer.send(Job::Mean(Tensor::cat(&flat, 0)?))?;
        self.buckets.push(entries.into_iter().map(|(p, g)| (p, g.shape().clone())).collect());
        Ok(())
    }

    /// Waits for every bucket and puts the averaged gradients into `grads`, replacing this
    /// rank's own.
    pub fn finish(mut self, grads: &mut GradStore) -> Result<(), ParallelError> {
        self.finished = true;
        let result = self.collect(grads);
        if result.is_err() {
            self.reducer.broken.set(true);
        }
        result
    }

    fn collect(&mut self, grads: &mut GradStore) -> Result<(), ParallelError> {
        self.reducer.send(Job::Fence)?;
        for bucket in std::mem::take(&mut self.buckets) {
            let mean = self.reducer.answer()?.ok_or(ParallelError::Stopped)?;
            let mut offset = 0;
            for (param, shape) in bucket {
                let n = shape.elem_count();
                grads.insert(&param, mean.narrow(0, offset, n)?.reshape(shape)?);
                offset += n;
            }
        }
        // The fence's answer: the averages are ready.
        self.reducer.answer()?;
        Ok(())
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        if !self.finished && !self.buckets.is_empty() {
            self.reducer.broken.set(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::TcpCollective;
    use candle_core::{Device, Var};
    use std::time::Duration;

    #[test]
    fn buckets_come_back_averaged_into_the_store_under_their_parameters() {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let ranks: Vec<_> = (0..2)
            .map(|rank| {
                let address = address.clone();
                std::thread::spawn(move || {
                    let group = TcpCollective::join(rank, 2, &address, Duration::from_secs(20)).unwrap();
                    let reducer = Reducer::start(Box::new(group)).unwrap();
                    let (a, b) = (
                        Var::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
                        Var::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
                    );
                    let r = rank as f32;
                    let ga = Tensor::new(&[[r, r], [r, 4.0]], &Device::Cpu).unwrap();
                    let gb = Tensor::new(&[2.0 * r, 0.0, 1.0], &Device::Cpu).unwrap();
                    let mut grads = GradStore::default();
                    let mut round = reducer.round().unwrap();
                    round.submit(vec![(a.as_tensor().clone(), ga)]).unwrap();
                    round.submit(vec![(b.as_tensor().clone(), gb)]).unwrap();
                    round.finish(&mut grads).unwrap();
                    let mean = reducer.mean_now(&Tensor::new(&[r], &Device::Cpu).unwrap()).unwrap();
                    (
                        grads.get(a.as_tensor()).unwrap().to_vec2::<f32>().unwrap(),
                        grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
                        mean.to_vec1::<f32>().unwrap(),
                    )
                })
            })
            .collect();
        for rank in ranks {
            let (a, b, mean) = rank.join().unwrap();
            assert_eq!(a, vec![vec![0.5, 0.5], vec![0.5, 4.0]]);
            assert_eq!(b, vec![1.0, 0.0, 1.0]);
            assert_eq!(mean, vec![0.5]);
        }
    }
}
