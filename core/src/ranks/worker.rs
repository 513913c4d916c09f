//! `evolve worker`: one rank of a data-parallel run, started by rank 0 (`evolve run --gpus N`),
//! never by hand. It builds the run's base model on its own GPU, joined to the group, and
//! carries out rank 0's orders until told to stop or until rank 0 is gone.

use super::wire::{Order, Reply};
use crate::experiment::{self, ExperimentError};
use crate::registry::Registry;
use crate::run_model::{self, RunModelError};
use evolve_sdk::DataParallel;
use std::io::{self, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where a worker finds its run and its peers.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// The experiment file rank 0 runs.
    pub experiment: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// This worker's place in the group.
    pub group: DataParallel,
    /// Rank 0's control address.
    pub control: String,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Rank 0 could not be reached.
    #[error("cannot reach rank 0 at {address}: {source}")]
    Connect {
        /// Its control address.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// The experiment does not load.
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    /// The model could not be built.
    #[error(transparent)]
    Model(#[from] RunModelError),
    /// The control connection broke mid-answer.
    #[error("lost rank 0: {0}")]
    Lost(io::Error),
    /// An order failed (rank 0 was told why).
    #[error("{0}")]
    Failed(String),
}

/// Serves rank 0 until it says stop (or is gone: a closed connection ends the worker quietly).
pub fn serve(args: &WorkerArgs) -> Result<(), WorkerError> {
    let mut control = connect(&args.control)?;
    control
        .write_all(&(args.group.rank as u64).to_le_bytes())
        .map_err(|source| WorkerError::Connect { address: args.control.clone(), source })?;
    let registry = Registry::builtin();
    let experiment = experiment::load(&args.experiment, &registry)?;
    let mut model = run_model::build_as(&experiment, &registry, &args.run_dir, Some(&args.group))?;
    loop {
        let Ok(order) = Order::read(&mut control) else { return Ok(()) };
        let done = match order {
            Order::Stop => return Ok(()),
            Order::Load(dir) => model.load(&dir),
            Order::Step(batch) => model.train_step(&batch).map(|_| ()),
        };
        if let Err(error) = done {
            let message = error.to_string();
            let _ = Reply::Failed(message.clone()).write(&mut control);
            return Err(WorkerError::Failed(message));
        }
        Reply::Done.write(&mut control).map_err(WorkerError::Lost)?;
    }
}

/// The control connection; rank 0 listens before it starts workers, so a few retries suffice.
fn connect(address: &str) -> Result<TcpStream, WorkerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => return Err(WorkerError::Connect { address: address.to_string(), source }),
        }
    }
}
