//! Data-parallel runs as the host sees them (`evolve run --gpus N`): one process per GPU.
//!
//! Rank 0 is the `evolve run` process itself: the director, the ledger, the judge and the
//! teachers live there, and it draws every batch. Ranks 1..N are `evolve worker` processes it
//! starts: each builds the same base model on its own GPU and, step by step, trains on the
//! share of the batch rank 0 sends it over a loopback control connection ([`wire`]). The base
//! model averages gradients across the ranks itself (the `dit` model: NCCL, or TCP), so every
//! rank takes the same optimiser step and only rank 0 saves checkpoints, samples and
//! evaluates. A worker whose control connection closes exits: killing rank 0 ends the run.

pub mod wire;
pub mod worker;

use evolve_sdk::{DataParallel, TrainBatch};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wire::{Order, Reply};

/// How long rank 0 waits for a worker to start and connect.
const CONNECT_PATIENCE: Duration = Duration::from_secs(120);

/// Why the ranks could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RanksError {
    /// A loopback port could not be opened.
    #[error("cannot open a loopback port for the ranks: {0}")]
    Port(io::Error),
    /// A worker process could not be started.
    #[error("cannot start rank {rank} ({}): {source}", program.display())]
    Spawn {
        /// Its rank.
        rank: usize,
        /// The program.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A worker exited or did not connect in time.
    #[error("rank {rank} did not start: {why} (its error, if any, is printed above)")]
    NotStarted {
        /// Its rank.
        rank: usize,
        /// What happened.
        why: String,
    },
    /// A worker's control connection broke.
    #[error("lost rank {rank}: {source}")]
    Lost {
        /// Its rank.
        rank: usize,
        /// Why.
        source: io::Error,
    },
    /// A worker failed an order (and exited).
    #[error("rank {rank} failed: {message}")]
    Failed {
        /// Its rank.
        rank: usize,
        /// Its error.
        message: String,
    },
    /// The base model does not average gradients across processes.
    #[error("base model `{0}` does not train data-parallel: run it with --gpus 1")]
    Unsupported(String),
}

/// The device rank `rank` trains on when the experiment names `device`: consecutive GPUs from
/// the one named (`cuda:1` → rank 2 on `cuda:3`); the CPU for every rank of a CPU run.
pub fn rank_device(device: &str, rank: usize) -> String {
    match device.strip_prefix("cuda").map(|rest| rest.strip_prefix(':').unwrap_or(rest)) {
        Some(first) => format!("cuda:{}", first.parse::<usize>().unwrap_or(0) + rank),
        None => device.to_string(),
    }
}

/// The worker processes of a data-parallel run, as rank 0 drives them.
pub struct Ranks {
    world: usize,
    workers: Vec<Worker>,
}

struct Worker {
    rank: usize,
    child: Child,
    control: TcpStream,
}

impl Ranks {
    /// Starts ranks 1..`world` as `evolve worker` processes (this executable) for the run of
    /// `experiment` in `run_dir`, waits until each has connected, and returns them with rank
    /// 0's place in the group.
    pub fn launch(experiment: &Path, run_dir: &Path, world: usize) -> Result<(Ranks, DataParallel), RanksError> {
        let control = TcpListener::bind("127.0.0.1:0").map_err(RanksError::Port)?;
        let control_address = control.local_addr().map_err(RanksError::Port)?.to_string();
        let rendezvous = free_loopback_address()?;
        let program = std::env::current_exe().map_err(|source| RanksError::Spawn {
            rank: 1,
            program: PathBuf::from("evolve"),
            source,
        })?;
        let mut children = Vec::with_capacity(world.saturating_sub(1));
        for rank in 1..world {
            let child = Command::new(&program)
                .arg("worker")
                .arg(experiment)
                .arg("--run-dir")
                .arg(run_dir)
                .args(["--rank", &rank.to_string(), "--world", &world.to_string()])
                .args(["--control", &control_address, "--rendezvous", &rendezvous])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|source| RanksError::Spawn { rank, program: program.clone(), source })?;
            children.push((rank, child));
        }
        let workers = accept_workers(&control, children)?;
        Ok((Ranks { world, workers }, DataParallel { rank: 0, world, rendezvous }))
    }

    /// How many ranks train, rank 0 included.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Runs `build` (rank 0's model: it blocks until every rank has joined the model's
    /// group) on a thread of its own while watching the workers: one that exits meanwhile
    /// fails the launch at once, where the build would otherwise wait out the model's patience
    /// for a rank that will never come. (The abandoned build ends with the process.)
    pub fn while_watching<T: Send + 'static>(
        &mut self,
        build: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RanksError> {
        let (built, result) = mpsc::channel();
        std::thread::Builder::new()
            .name("evolve-rank0-build".into())
            .spawn(move || {
                let _ = built.send(build());
            })
            .map_err(|e| RanksError::NotStarted { rank: 0, why: format!("cannot start its thread: {e}") })?;
        loop {
            match result.recv_timeout(Duration::from_millis(100)) {
                Ok(value) => return Ok(value),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(RanksError::NotStarted { rank: 0, why: "building its model panicked".into() });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    for worker in &mut self.workers {
                        if let Ok(Some(status)) = worker.child.try_wait() {
                            let why = format!("it exited ({status}) while the ranks were joining");
                            return Err(RanksError::NotStarted { rank: worker.rank, why });
                        }
                    }
                }
            }
        }
    }

    /// Asks every worker to load the checkpoint in `dir`; [`Ranks::wait`] for them after
    /// rank 0 has loaded it too (the model checks that all ranks hold the same weights).
    pub fn load(&mut self, dir: &Path) -> Result<(), RanksError> {
        for worker in &mut self.workers {
            worker.order(&Order::Load(dir.to_path_buf()))?;
        }
        Ok(())
    }

    /// Sends each worker its share of a step (`shares[i]` to rank `i + 1`); [`Ranks::wait`]
    /// for them after rank 0's own step.
    pub fn step(&mut self, shares: &[TrainBatch]) -> Result<(), RanksError> {
        for (worker, share) in self.workers.iter_mut().zip(shares) {
            worker.order(&Order::Step(share.clone()))?;
        }
        Ok(())
    }

    /// Waits for every worker's answer to the last order.
    pub fn wait(&mut self) -> Result<(), RanksError> {
        for worker in &mut self.workers {
            let rank = worker.rank;
            match Reply::read(&mut worker.control).map_err(|source| RanksError::Lost { rank, source })? {
                Reply::Done => {}
                Reply::Failed(message) => return Err(RanksError::Failed { rank, message }),
            }
        }
        Ok(())
    }

    /// The error a worker reported, if one did within a moment (after rank 0's own step
    /// failed: a worker's failure is the usual cause).
    pub fn failure(&mut self) -> Option<RanksError> {
        for worker in &mut self.workers {
            let _ = worker.control.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(Reply::Failed(message)) = Reply::read(&mut worker.control) {
                return Some(RanksError::Failed { rank: worker.rank, message });
            }
        }
        None
    }

    /// Tells every worker to exit and waits for them.
    pub fn stop(mut self) {
        for worker in &mut self.workers {
            let _ = worker.order(&Order::Stop);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for worker in &mut self.workers {
            while Instant::now() < deadline && matches!(worker.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Drop kills any that did not exit.
    }
}

impl Worker {
    fn order(&mut self, order: &Order) -> Result<(), RanksError> {
        order.write(&mut self.control).map_err(|source| RanksError::Lost { rank: self.rank, source })
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if matches!(worker.child.try_wait(), Ok(None)) {
                let _ = worker.child.kill();
            }
            let _ = worker.child.wait();
        }
    }
}

/// A loopback address no one listens at now, for the model's own rendezvous (rank 0's model
/// binds it moments later).
fn free_loopback_address() -> Result<String, RanksError> {
    let probe = TcpListener::bind("127.0.0.1:0").map_err(RanksError::Port)?;
    Ok(probe.local_addr().map_err(RanksError::Port)?.to_string())
}

/// Each child's control connection, in rank order; a child that exits first, or does not
/// connect within [`CONNECT_PATIENCE`], fails the launch (the others are killed).
fn accept_workers(control: &TcpListener, children: Vec<(usize, Child)>) -> Result<Vec<Worker>, RanksError> {
    let mut waiting: Vec<(usize, Child)> = children;
    let mut workers: Vec<Worker> = vec![];
    let fail = |waiting: &mut Vec<(usize, Child)>, error| {
        for (_, child) in waiting.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        error
    };
    control.set_nonblocking(true).map_err(RanksError::Port)?;
    let deadline = Instant::now() + CONNECT_PATIENCE;
    while !waiting.is_empty() {
        match control.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).map_err(RanksError::Port)?;
                let mut rank = [0; 8];
                io::Read::read_exact(&mut stream, &mut rank).map_err(RanksError::Port)?;
                let rank = u64::from_le_bytes(rank) as usize;
                let Some(at) = waiting.iter().position(|(r, _)| *r == rank) else {
                    let error = RanksError::NotStarted { rank, why: "a second connection for it".into() };
                    return Err(fail(&mut waiting, error));
                };
                let (rank, child) = waiting.remove(at);
                workers.push(Worker { rank, child, control: stream });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for (rank, child) in waiting.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        let error = RanksError::NotStarted { rank: *rank, why: format!("it exited ({status})") };
                        return Err(fail(&mut waiting, error));
                    }
                }
                if Instant::now() > deadline {
                    let rank = waiting[0].0;
                    let why = format!("it did not connect within {} s", CONNECT_PATIENCE.as_secs());
                    return Err(fail(&mut waiting, RanksError::NotStarted { rank, why }));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(fail(&mut waiting, RanksError::Port(e))),
        }
    }
    workers.sort_by_key(|w| w.rank);
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_sdk::Image;

    /// Ranks whose worker is `sh -c SCRIPT`, its control connection a loopback pair.
    fn ranks_running(script: &str) -> (Ranks, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let other_end = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (control, _) = listener.accept().unwrap();
        let child = Command::new("sh").args(["-c", script]).spawn().unwrap();
        (Ranks { world: 2, workers: vec![Worker { rank: 1, child, control }] }, other_end)
    }

    #[test]
    fn a_worker_that_exits_while_rank_zero_builds_fails_the_launch_at_once() {
        let (mut ranks, _control) = ranks_running("exit 3");
        let started = Instant::now();
        let error = ranks.while_watching(|| std::thread::sleep(Duration::from_secs(30))).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
        let message = error.to_string();
        assert!(message.starts_with("rank 1 did not start: it exited") && message.contains('3'), "{message}");

        let (mut ranks, _control) = ranks_running("sleep 5");
        assert_eq!(ranks.while_watching(|| 42).unwrap(), 42);
    }

    #[test]
    fn ranks_train_on_consecutive_gpus_and_share_the_batch_in_order() {
        assert_eq!(rank_device("cuda:0", 2), "cuda:2");
        assert_eq!(rank_device("cuda:1", 1), "cuda:2");
        assert_eq!(rank_device("cuda", 3), "cuda:3");
        assert_eq!(rank_device("cpu", 3), "cpu");
        // Rank i trains on share i of the step's batch.
        let batch = TrainBatch {
            prompts: (0..7).map(|i| i.to_string()).collect(),
            images: (0..7).map(|i| Image::filled(1, 1, [i, 0, 0])).collect(),
        };
        let shares = batch.shares(3);
        let prompts: Vec<Vec<String>> = shares.iter().map(|s| s.prompts.clone()).collect();
        assert_eq!(prompts, [vec!["0", "1"], vec!["2", "3"], vec!["4", "5", "6"]]);
        assert!(shares.iter().all(|s| s.images.len() == s.prompts.len()));
    }
}
