//! Buying one image from one teacher, so that what the provider bills is what the ledger
//! records and the budget counts, however the call ends and whenever the process dies.
//!
//! Every attempt is reserved against the budget at its quote and written down in the ledger's
//! purchase journal before its request leaves. Then:
//!
//! - the provider answers with the image: the image and its cost are recorded, in the
//!   transaction that settles the attempt;
//! - the provider queues a job: the job is written down, and collecting it (polls, downloads,
//!   their retries) never buys again, in this process or, after a crash, in the next;
//! - the provider refuses (a 429, a 5xx, a bad request): the attempt is forgotten and its
//!   reservation returned, since nothing was bought;
//! - the outcome is unknown (no answer, an unreadable one, a lost result) or the delivery
//!   unusable: the attempt is charged at its quote and stays in the ledger, since the provider
//!   billed it or may have; only an unknown outcome is tried again.
//!
//! A request already paid for is read from the ledger, never bought again.

use crate::acquire::{Backoff, contained};
use crate::budget::Budget;
use crate::lock;
use crate::store::{RequestHash, RunDir, StoreError, StoredImage};
use evolve_sdk::{Cost, GenerateRequest, GeneratedImage, Image, PluginError, Submitted, Teacher};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Attempts per request: submissions the provider refused or left unanswered, or collections of
/// a job that failed passingly.
pub const ATTEMPTS: u32 = 6;

/// A teacher with its label and its concurrency limit.
pub struct TeacherSlot {
    /// The teacher's label in the ledger.
    pub label: String,
    /// The plugin.
    pub teacher: Arc<dyn Teacher>,
    permits: Arc<Semaphore>,
    /// Set when the teacher billed above its quote: nothing more is bought from it, since the
    /// budget can only hold against quotes it can trust.
    overcharged: std::sync::OnceLock<String>,
}

impl TeacherSlot {
    /// `teacher` labelled `label`, driven within its declared concurrency.
    pub fn new(label: String, teacher: Arc<dyn Teacher>) -> TeacherSlot {
        let permits = Arc::new(Semaphore::new(teacher.limits().concurrency.max(1) as usize));
        TeacherSlot { label, teacher, permits, overcharged: std::sync::OnceLock::new() }
    }
}

/// What became of one request.
pub enum Bought {
    /// The image, durable in the run: bought now, or found paid for; with what it cost.
    Image(StoredImage, Image, Cost),
    /// The budget has no room for another attempt.
    OverBudget,
    /// The teacher failed for good (every attempt is settled in the ledger and the budget).
    Failed(PluginError),
}

/// One request to one teacher, with what the ledger knows it by.
struct Order<'a> {
    slot: &'a TeacherSlot,
    request: &'a GenerateRequest,
    json: String,
    hash: RequestHash,
}

/// The run and the budget a purchase records into.
#[derive(Clone)]
pub struct Till {
    /// The run (ledger and images).
    pub run: Arc<Mutex<RunDir>>,
    /// The budget.
    pub budget: Arc<Mutex<Budget>>,
}

impl Till {
    /// Buys `request` from `slot`.
    pub async fn buy(&self, slot: &TeacherSlot, request: &GenerateRequest) -> Result<Bought, StoreError> {
        let hash = RequestHash::of(&slot.label, request);
        let order = Order { slot, request, json: serde_json::to_string(request).unwrap_or_default(), hash };
        let found = self.on_run(|run| match run.paid(&order.hash)? {
            Some(call) => Ok(Err((run.images.existing(&call.image)?, run.images.get(&call.image)?, call.cost))),
            None => Ok(Ok(run.ledger.queued_job(&order.hash)?)),
        })?;
        let queued = match found {
            Err((stored, image, cost)) => return Ok(Bought::Image(stored, image, cost)),
            Ok(queued) => queued,
        };
        if let Some(queued) = queued {
            // Accepted before the last stop and counted then: collect it, never buy it again.
            let _permit = slot.permits.acquire().await;
            return self.collect(&order, queued.attempt, &queued.job, queued.quoted).await;
        }
        let mut backoff = Backoff::new();
        let mut attempt_number = 0;
        loop {
            attempt_number += 1;
            if let Some(why) = slot.overcharged.get() {
                return self.failed(slot, PluginError::Quarantined(why.clone()));
            }
            // Off the async workers: a wasm teacher's quote waits for its instance, which its
            // `generate` may hold while its host HTTP needs a worker to make progress.
            let (teacher, owned) = (Arc::clone(&slot.teacher), request.clone());
            let quoted = tokio::task::spawn_blocking(move || teacher.quote(&owned))
                .await
                .unwrap_or_else(|_| Err(PluginError::Failed("the plugin panicked while pricing".into())));
            let quote = match quoted {
                Ok(quote) => quote,
                // Unpriced is never free: nothing is bought that the budget cannot count.
                Err(error @ PluginError::Quarantined(_)) => return self.failed(slot, error),
                Err(error) => {
                    let error = PluginError::Failed(format!("cannot price the request: {error}"));
                    return self.failed(slot, error);
                }
            };
            let Some(reservation) = lock(&self.budget).reserve(quote) else {
                return Ok(Bought::OverBudget);
            };
            let _permit = slot.permits.acquire().await;
            let attempt =
                self.on_run(|run| Ok(run.ledger.attempt_sent(&order.hash, &slot.label, &order.json, quote)?))?;
            let teacher = Arc::clone(&slot.teacher);
            let owned = request.clone();
            let submitted = contained(async move { teacher.submit(&owned).await }).await;
            let error = match submitted {
                Ok(Submitted::Done(generated)) => {
                    lock(&self.budget).settle(reservation, generated.cost);
                    return self.commit(&order, attempt, generated, quote);
                }
                Ok(Submitted::Accepted(job)) => {
                    self.on_run(|run| Ok(run.ledger.attempt_accepted(attempt, &job)?))?;
                    lock(&self.budget).settle(reservation, quote);
                    return self.collect(&order, attempt, &job, quote).await;
                }
                Err(error @ (PluginError::Uncertain(_) | PluginError::Billed(_))) => {
                    self.on_run(|run| Ok(run.ledger.attempt_charged(attempt, &error.to_string())?))?;
                    lock(&self.budget).settle(reservation, quote);
                    error
                }
                Err(error) => {
                    self.on_run(|run| Ok(run.ledger.attempt_refused(attempt)?))?;
                    lock(&self.budget).release(reservation);
                    error
                }
            };
            if !error.is_retryable() || attempt_number == ATTEMPTS {
                return self.failed(slot, error);
            }
            backoff.wait(&error).await;
        }
    }

    /// Collects `job`, accepted by attempt `attempt` and counted in the budget at `quoted`.
    async fn collect(
        &self,
        order: &Order<'_>,
        attempt: i64,
        job: &evolve_sdk::Job,
        quoted: evolve_sdk::Cost,
    ) -> Result<Bought, StoreError> {
        let (teacher, owned, job) = (Arc::clone(&order.slot.teacher), order.request.clone(), job.clone());
        let collected =
            contained(async move { crate::acquire::with_retries(ATTEMPTS, || teacher.collect(&owned, &job)).await })
                .await;
        match collected {
            Ok(generated) => {
                lock(&self.budget).reprice(quoted, generated.cost);
                self.commit(order, attempt, generated, quoted)
            }
            Err(error) => {
                let reason = format!("the paid job was lost: {error}");
                self.on_run(|run| Ok(run.ledger.attempt_charged(attempt, &reason)?))?;
                self.failed(order.slot, error)
            }
        }
    }

    /// Records the image `attempt` delivered, and what it cost against its `quote`.
    fn commit(
        &self,
        order: &Order<'_>,
        attempt: i64,
        generated: GeneratedImage,
        quote: evolve_sdk::Cost,
    ) -> Result<Bought, StoreError> {
        let label = &order.slot.label;
        // The ledger keeps what the teacher says it cost; a cost above the quote (which the
        // budget reserved) is the teacher's fault, kept on the attempt and in the log, and the
        // teacher is bought from no more.
        let overrun = (generated.cost > quote).then(|| format!("cost {} over its quote of {quote}", generated.cost));
        if let Some(overrun) = &overrun {
            tracing::warn!(teacher = %label, prompt = %order.request.prompt, "{overrun}; nothing more is bought from it");
            let _ = order.slot.overcharged.set(format!("teacher `{label}` billed a request {overrun}"));
        }
        self.on_run(|run| {
            let stored = run.commit_paid(&order.hash, label, &order.json, &generated, Some(attempt))?;
            if let Some(overrun) = overrun {
                run.ledger.attempt_note(attempt, &overrun)?;
            }
            Ok(Bought::Image(stored, generated.image, generated.cost))
        })
    }

    fn failed(&self, slot: &TeacherSlot, error: PluginError) -> Result<Bought, StoreError> {
        if let PluginError::Quarantined(reason) = &error {
            // The run goes on with the other teachers; the fault is on record.
            let instance = format!("teacher.{}", slot.label);
            self.on_run(|run| Ok(run.ledger.record_fault(&instance, None, reason)?))?;
        }
        Ok(Bought::Failed(error))
    }

    /// Runs `f` on the run through [`crate::blocking`]: PNG encoding, fsyncs and SQLite commits
    /// block, and the run's lock may be held by the trainer's side for as long.
    fn on_run<T>(&self, f: impl FnOnce(&mut RunDir) -> Result<T, StoreError>) -> Result<T, StoreError> {
        crate::blocking(|| f(&mut lock(&self.run)))
    }
}
