//! The run directory: everything a run owns, laid out so that `kill -9` at any moment loses
//! nothing that was paid for.
//!
//! ```text
//! <run>/experiment.toml   the resolved experiment (secrets are only ever env-var names)
//! <run>/ledger.sqlite     prompts, images, samples, judgments, rounds, api_calls, metrics
//! <run>/images/ab/cd/…    content-addressed PNGs (blake3 of the file)
//! <run>/checkpoints/      model, EMA, optimizer state
//! <run>/report/           HTML report
//! ```
//!
//! Durability rule: an image file is written, fsynced and renamed into place before the
//! ledger row naming it commits. The type system enforces the order: ledger rows take a
//! [`StoredImage`], which only [`ImageStore::put`] can make.

mod audit;
mod curation;
mod dataset;
mod fsutil;
mod images;
mod judge_calls;
mod ledger;
mod migrations;
mod purchases;

pub use audit::Probe;
pub use curation::{Candidate, NewPending, PendingRow, TeacherRecord};
pub use dataset::{DatasetFilter, DatasetRow, DatasetVerdict, ImportedSample};
pub use fsutil::{atomic_write, replace_folder};
pub use images::{DecodeError, ImageHash, ImageStore, StoredImage, decode_png, encode_png};
pub use judge_calls::{JudgeCallKind, JudgeTotals};
pub use ledger::{
    ApiCall, ConsistencyReport, Ledger, LedgerError, NewApiCall, NewJudgment, NewSample, RequestHash, RoundSummary,
    SampleRow,
};
pub use purchases::QueuedJob;

use std::path::{Path, PathBuf};

/// Errors opening or writing a run directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The ledger refused an operation.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An image could not be encoded or decoded.
    #[error("image {hash}: {message}")]
    Image {
        /// The image's address (or `-` before it has one).
        hash: String,
        /// What went wrong.
        message: String,
    },
    /// `create` found a run already there.
    #[error("{} already holds a run; use --resume to continue it or pick another --run-dir", .0.display())]
    Exists(PathBuf),
    /// `open` found no run there.
    #[error("{} holds no run (no ledger.sqlite)", .0.display())]
    Missing(PathBuf),
    /// Another process holds the run.
    #[error(
        "another evolve process is using the run at {} (it holds run.lock): wait for it to finish or stop it",
        .0.display()
    )]
    Busy(PathBuf),
}

pub(crate) fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { what, path: path.to_path_buf(), source }
}

/// An open run directory: its ledger and its image store. One process at a time holds a run
/// (an exclusive lock on `run.lock`, released when the process ends, however it ends): two
/// processes resuming one run would both buy its pending prompts.
pub struct RunDir {
    root: PathBuf,
    /// Held for the life of this value.
    _lock: std::fs::File,
    /// The run ledger.
    pub ledger: Ledger,
    /// The content-addressed image store.
    pub images: ImageStore,
}

impl RunDir {
    /// Creates a new run at `root` holding `experiment_toml`; fails if a run is already there.
    pub fn create(root: &Path, experiment_toml: &str) -> Result<RunDir, StoreError> {
        if root.join("ledger.sqlite").exists() {
            return Err(StoreError::Exists(root.to_path_buf()));
        }
        std::fs::create_dir_all(root).map_err(io_err("cannot create run directory", root))?;
        for sub in ["checkpoints", "report"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        }
        atomic_write(&root.join("experiment.toml"), experiment_toml.as_bytes())?;
        Self::open_parts(root)
    }

    /// Opens the run at `root` (to resume, sample, evaluate or report).
    pub fn open(root: &Path) -> Result<RunDir, StoreError> {
        if !root.join("ledger.sqlite").exists() {
            return Err(StoreError::Missing(root.to_path_buf()));
        }
        Self::open_parts(root)
    }

    fn open_parts(root: &Path) -> Result<RunDir, StoreError> {
        let path = root.join("run.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("cannot open", &path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Busy(root.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &path)(e)),
        }
        let images = ImageStore::open(&root.join("images"))?;
        let ledger = Ledger::open(&root.join("ledger.sqlite"))?;
        // This process alone holds the run: an attempt still in flight was a dead process's.
        let interrupted = ledger.charge_interrupted_attempts()?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "paid calls were in flight when the run stopped: counted as billed at their quotes"
            );
        }
        Ok(RunDir { root: root.to_path_buf(), _lock: lock, ledger, images })
    }

    /// The run's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where checkpoints go.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Where the report goes.
    pub fn report(&self) -> PathBuf {
        self.root.join("report")
    }

    /// The resolved experiment file.
    pub fn experiment_file(&self) -> PathBuf {
        self.root.join("experiment.toml")
    }

    /// The image a paid call returned, if that exact request was paid for before.
    pub fn paid(&self, request: &RequestHash) -> Result<Option<ApiCall>, StoreError> {
        Ok(self.ledger.lookup_call(request)?)
    }

    /// Makes a paid image durable: the file first, then the ledger row that names it (settling
    /// the journalled `attempt` that delivered it). Returns the stored image; calling it again
    /// for the same request is a no-op.
    pub fn commit_paid(
        &mut self,
        request: &RequestHash,
        plugin: &str,
        request_json: &str,
        generated: &evolve_sdk::GeneratedImage,
        attempt: Option<i64>,
    ) -> Result<StoredImage, StoreError> {
        let stored = self.images.put(&generated.image)?;
        self.ledger.record_call(&NewApiCall {
            request: request.clone(),
            plugin: plugin.to_string(),
            request_json: request_json.to_string(),
            image: &stored,
            revised_prompt: generated.revised_prompt.clone(),
            cost: generated.cost,
            attempt,
        })?;
        Ok(stored)
    }

    /// Checks that the ledger is intact and every image it names is on disk with the right hash.
    pub fn check(&self) -> Result<ConsistencyReport, StoreError> {
        self.ledger.check(&self.images)
    }
}
