//! The trainer thread: owns the base model, trains on the active set without pause, and renders
//! images for the judge between two steps.
//!
//! The model is compute-bound and synchronous, so it lives on a thread of its own and the async
//! director talks to it by message. Commands are served before every step, so the judge never
//! waits more than one step for its images, and the device never waits on the network: while
//! teachers and the judge are being called, the thread keeps training on the set it has.

use super::DirectorError;
use crate::eval::{EvalError, EvalReport, eval_model};
use crate::ranks::Ranks;
use crate::run_model::{self, HostState};
use crate::step_means::{RECORD_EVERY, StepMeans};
use crate::store::Ledger;
use crate::training_set::{TrainingSample, TrainingSet};
use evolve_sdk::{BaseModel, Evaluator, Image, PluginError, SampleRequest, SplitMix64};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How the trainer trains.
#[derive(Debug, Clone)]
pub struct TrainerSettings {
    /// The run directory (checkpoints, metrics).
    pub run_dir: PathBuf,
    /// Images per step.
    pub batch_size: usize,
    /// Stop training at this step (`None`: until stopped).
    pub max_steps: Option<u64>,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Hold training at every multiple of this step until [`Trainer::resume`] (a round in
    /// lockstep); `None` trains without pause.
    pub hold_every: Option<u64>,
}

/// The trainer's latest figures, published after every step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainerStatus {
    /// Steps taken.
    pub step: u64,
    /// Loss of the latest step.
    pub loss: f32,
    /// Fraction of wall time spent training or rendering since the trainer started.
    pub busy: f64,
    /// Training throughput since the trainer started, in images per second.
    pub images_per_second: f64,
    /// Samples in the active set.
    pub active: usize,
    /// Whether training reached `max_steps`.
    pub finished: bool,
}

enum Command {
    Add(Vec<TrainingSample>),
    Remove(Vec<i64>),
    Generate(SampleRequest, oneshot::Sender<Result<Vec<Image>, PluginError>>),
    Evaluate(Arc<dyn Evaluator>, oneshot::Sender<Result<EvalReport, EvalError>>),
    Resume,
    Stop,
}

/// Why the trainer thread failed (a training step's own error is the director's).
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The thread could not start.
    #[error("cannot start the trainer thread: {0}")]
    Spawn(std::io::Error),
    /// The thread panicked.
    #[error("the trainer thread panicked")]
    Panicked,
    /// The thread stopped while the director still needed it.
    #[error("the trainer thread stopped (see the error above)")]
    Stopped,
    /// The trainer was stopped twice.
    #[error("the trainer was already stopped")]
    AlreadyStopped,
}

/// A running trainer thread.
pub struct Trainer {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<TrainerStatus>,
    thread: Option<std::thread::JoinHandle<Result<Box<dyn BaseModel>, DirectorError>>>,
}

impl Trainer {
    /// Starts training `model` (restored to `state`) on `data`, with the other `ranks` of a
    /// data-parallel run, if any, each step training on a batch `batch_size` times their number.
    pub fn start(
        model: Box<dyn BaseModel>,
        state: HostState,
        data: TrainingSet,
        settings: TrainerSettings,
        ranks: Option<Ranks>,
    ) -> Result<Trainer, DirectorError> {
        let (commands, inbox) = mpsc::channel();
        let initial = TrainerStatus { step: state.step, active: data.len(), ..Default::default() };
        let (publish, status) = watch::channel(initial);
        let ledger = Ledger::open(&settings.run_dir.join("ledger.sqlite")).map_err(crate::store::StoreError::from)?;
        let mut worker = Worker::new(model, ranks, state, data, settings, ledger, publish);
        let thread = std::thread::Builder::new()
            .name("evolve-trainer".into())
            .spawn(move || worker.run(inbox).map(|()| worker.model))
            .map_err(TrainerError::Spawn)?;
        Ok(Trainer { commands, status, thread: Some(thread) })
    }

    /// A receiver of the trainer's status, updated after every step.
    pub fn status(&self) -> watch::Receiver<TrainerStatus> {
        self.status.clone()
    }

    /// Adds samples to the active set (from the next batch on).
    pub fn add(&self, samples: Vec<TrainingSample>) {
        if !samples.is_empty() {
            let _ = self.commands.send(Command::Add(samples));
        }
    }

    /// Removes samples from the active set.
    pub fn remove(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.commands.send(Command::Remove(ids));
        }
    }

    /// Lets a trainer held at a round's step (`hold_every`) train on.
    pub fn resume(&self) {
        let _ = self.commands.send(Command::Resume);
    }

    /// Renders `request` with the model's EMA weights, between two training steps.
    pub async fn generate(&self, request: SampleRequest) -> Result<Vec<Image>, DirectorError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Generate(request, reply)).map_err(|_| self.gone())?;
        answer
            .await
            .map_err(|_| self.gone())?
            .map_err(|source| DirectorError::Plugin { what: "base model".into(), source })
    }

    /// Scores the model on `evaluator`'s suite, between two training steps.
    pub async fn evaluate(&self, evaluator: Arc<dyn Evaluator>) -> Result<EvalReport, DirectorError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Evaluate(evaluator, reply)).map_err(|_| self.gone())?;
        Ok(answer.await.map_err(|_| self.gone())??)
    }

    /// Stops training, saves a final checkpoint and hands the model back.
    pub fn stop(mut self) -> Result<Box<dyn BaseModel>, DirectorError> {
        let _ = self.commands.send(Command::Stop);
        self.join()
    }

    fn join(&mut self) -> Result<Box<dyn BaseModel>, DirectorError> {
        let thread = self.thread.take().ok_or(TrainerError::AlreadyStopped)?;
        thread.join().map_err(|_| TrainerError::Panicked)?
    }

    fn gone(&self) -> DirectorError {
        TrainerError::Stopped.into()
    }
}

struct Worker {
    model: Box<dyn BaseModel>,
    /// The other processes of a data-parallel run.
    ranks: Option<Ranks>,
    state: HostState,
    data: TrainingSet,
    settings: TrainerSettings,
    ledger: Ledger,
    publish: watch::Sender<TrainerStatus>,
    started: Instant,
    busy: Duration,
    trained_images: u64,
    loss: f32,
    means: StepMeans,
    finished_at: Option<Instant>,
    /// The last step at which a hold was released (training may pass it).
    released: u64,
}

impl Worker {
    fn new(
        model: Box<dyn BaseModel>,
        ranks: Option<Ranks>,
        state: HostState,
        data: TrainingSet,
        settings: TrainerSettings,
        ledger: Ledger,
        publish: watch::Sender<TrainerStatus>,
    ) -> Worker {
        // A run resumed at a round's step has had that round: no hold there.
        let released = state.step;
        Worker {
            model,
            ranks,
            state,
            data,
            settings,
            ledger,
            publish,
            started: Instant::now(),
            busy: Duration::ZERO,
            trained_images: 0,
            loss: f32::NAN,
            means: StepMeans::default(),
            finished_at: None,
            released,
        }
    }

    fn training_done(&self) -> bool {
        self.settings.max_steps.is_some_and(|max| self.state.step >= max)
    }

    /// Whether training waits at this step for a round (lockstep) to finish.
    fn held(&self) -> bool {
        let step = self.state.step;
        self.settings.hold_every.is_some_and(|every| every > 0 && step.is_multiple_of(every)) && step > self.released
    }

    fn run(&mut self, inbox: mpsc::Receiver<Command>) -> Result<(), DirectorError> {
        loop {
            // Serve every waiting command first: the judge is waiting on renders, and set
            // changes must apply before the next batch is drawn.
            let mut next = inbox.try_recv().ok();
            if next.is_none() && (self.training_done() || self.data.is_empty() || self.held()) {
                if self.training_done() && self.finished_at.is_none() {
                    self.finished_at = Some(Instant::now());
                    self.checkpoint()?;
                    self.report(true);
                }
                next = Some(inbox.recv().unwrap_or(Command::Stop));
            }
            match next {
                Some(Command::Stop) => {
                    self.checkpoint()?;
                    if let Some(ranks) = self.ranks.take() {
                        ranks.stop();
                    }
                    self.record_busy();
                    return Ok(());
                }
                Some(command) => self.serve(command),
                None => self.step()?,
            }
        }
    }

    fn serve(&mut self, command: Command) {
        let began = Instant::now();
        match command {
            Command::Add(samples) => {
                self.data.add(samples);
                self.report(self.finished_at.is_some());
            }
            Command::Remove(ids) => {
                self.data.remove(&ids);
                self.report(self.finished_at.is_some());
            }
            Command::Generate(request, reply) => {
                let _ = reply.send(self.model.generate(&request));
            }
            Command::Evaluate(evaluator, reply) => {
                let subject = self.settings.run_dir.display().to_string();
                let _ = reply.send(eval_model(self.model.as_mut(), evaluator.as_ref(), &subject, |_, _| {}));
            }
            Command::Resume => self.released = self.state.step,
            Command::Stop => {}
        }
        if self.finished_at.is_none() {
            self.busy += began.elapsed();
        }
    }

    fn step(&mut self) -> Result<(), DirectorError> {
        let began = Instant::now();
        let mut rng = SplitMix64::new(self.state.data_rng);
        let world = self.ranks.as_ref().map_or(1, Ranks::world);
        let batch = self.data.batch(&mut rng, self.settings.batch_size * world)?;
        let stats = match &mut self.ranks {
            None => self.model.train_step(&batch),
            Some(ranks) => {
                let shares = batch.shares(world);
                ranks.step(&shares[1..])?;
                let stats = self.model.train_step(&shares[0]);
                match &stats {
                    Ok(_) => ranks.wait()?,
                    // Rank 0's step fails when a worker's did (it lost the worker): the
                    // worker's error says why. Otherwise the workers wait on rank 0 forever:
                    // they are stopped when `ranks` is dropped.
                    Err(_) => ranks.failure().map_or(Ok(()), Err)?,
                }
                stats
            }
        };
        let stats = stats.map_err(|source| DirectorError::Plugin {
            what: format!("base model training step {}", self.state.step + 1),
            source,
        })?;
        self.state = HostState { step: self.state.step + 1, data_rng: rng.state() };
        self.busy += began.elapsed();
        self.trained_images += batch.images.len() as u64;
        self.loss = stats.loss;
        self.means.add(&stats);
        let step = self.state.step;
        if step.is_multiple_of(RECORD_EVERY)
            && let Some(interval) = self.means.take()
        {
            let metrics =
                [("loss", interval.loss), ("learning_rate", interval.learning_rate), ("grad_norm", interval.grad_norm)];
            for (name, value) in metrics {
                self.ledger.record_metric(step, name, value).map_err(crate::store::StoreError::from)?;
            }
        }
        if step.is_multiple_of(50) {
            self.record_busy();
        }
        if step.is_multiple_of(self.settings.checkpoint_every) {
            self.checkpoint()?;
        }
        self.report(false);
        Ok(())
    }

    fn busy_fraction(&self) -> f64 {
        let wall = self.finished_at.unwrap_or_else(Instant::now).duration_since(self.started);
        (self.busy.as_secs_f64() / wall.as_secs_f64().max(1e-9)).min(1.0)
    }

    fn record_busy(&self) {
        let _ = self.ledger.record_metric(self.state.step, "trainer_busy", self.busy_fraction());
    }

    fn report(&self, finished: bool) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.publish.send_replace(TrainerStatus {
            step: self.state.step,
            loss: self.loss,
            busy: self.busy_fraction(),
            images_per_second: self.trained_images as f64 / elapsed,
            active: self.data.len(),
            finished,
        });
    }

    fn checkpoint(&self) -> Result<(), DirectorError> {
        let state = serde_json::to_value(self.state).unwrap_or_default();
        run_model::save_checkpoint(&self.settings.run_dir, self.state.step, self.model.as_ref(), &state)?;
        Ok(())
    }
}
