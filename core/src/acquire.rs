//! Getting training data: initial prompts from a file and the judge, and teacher images bought
//! exactly once each ([`crate::purchase`]).

use crate::budget::Budget;
use crate::experiment::Experiment;
use crate::in_order::OrderedTasks;
use crate::lock;
use crate::purchase::{Bought, TeacherSlot, Till};
use crate::store::{NewSample, RunDir, StoreError, StoredImage};
use evolve_sdk::{Evaluator, GenerateRequest, Judge, MutateRequest, Origin, PluginError, Teacher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why data could not be acquired.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The prompt file could not be read.
    #[error("cannot read prompt file {path}: {source}")]
    PromptFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A plugin call failed for good.
    #[error("{what}: {source}")]
    Plugin {
        /// Which call.
        what: String,
        /// Why.
        source: PluginError,
    },
    /// The run store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A ledger error is a store error: `?` on a ledger call needs no conversion at each site.
impl From<crate::store::LedgerError> for AcquireError {
    fn from(error: crate::store::LedgerError) -> Self {
        AcquireError::Store(error.into())
    }
}

/// Calls `f` until it succeeds, retrying transient failures with exponential back-off
/// and jitter (honouring a provider's requested wait, e.g. `Retry-After`) up to `attempts` times.
pub async fn with_retries<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, PluginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PluginError>>,
{
    let mut backoff = Backoff::new();
    let mut attempt = 1;
    loop {
        match f().await {
            Err(error) if error.is_retryable() && attempt < attempts => {
                backoff.wait(&error).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Waits between retries: exponential back-off from 100 ms to 30 s, with jitter, or the
/// provider's requested wait (`Retry-After`) when it named one.
pub struct Backoff {
    delay: Duration,
    jitter: evolve_sdk::SplitMix64,
}

impl Backoff {
    /// A back-off at its first, shortest wait.
    pub fn new() -> Backoff {
        // Jitter spreads the retries of many concurrent calls instead of having them hit a
        // recovering provider in lockstep; the seed needs no reproducibility.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Backoff { delay: Duration::from_millis(100), jitter: evolve_sdk::SplitMix64::new(seed) }
    }

    /// Waits before retrying after `error`, and doubles the next wait.
    pub async fn wait(&mut self, error: &PluginError) {
        let requested = match error {
            PluginError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        };
        let backoff = self.delay.mul_f64(0.5 + 0.5 * self.jitter.next_f64());
        tokio::time::sleep(requested.unwrap_or(backoff)).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(30));
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Runs `call` (a plugin's future) on a task of its own, so that a panic in the plugin becomes
/// that call's error instead of ending the run and the purchases in flight with it.
pub async fn contained<T: Send + 'static>(
    call: impl std::future::Future<Output = Result<T, PluginError>> + Send + 'static,
) -> Result<T, PluginError> {
    tokio::spawn(call).await.unwrap_or_else(|joined| {
        let why = match joined.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into()),
            Err(cancelled) => cancelled.to_string(),
        };
        Err(PluginError::Failed(format!("the plugin panicked: {why}")))
    })
}

/// The experiment's initial prompts: the prompt file's lines, then prompts the judge writes by
/// mutation, up to `limit`, skipping held-out evaluation prompts and duplicates.
pub async fn seed_prompts(
    experiment: &Experiment,
    experiment_dir: &Path,
    judge: &dyn Judge,
    evaluator: Option<&dyn Evaluator>,
    limit: usize,
) -> Result<Vec<String>, AcquireError> {
    let mut prompts: Vec<String> = vec![];
    let held_out = |p: &str| evaluator.is_some_and(|e| e.holds_out(p));
    if let Some(file) = &experiment.prompts.file {
        let path = experiment_dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| AcquireError::PromptFile { path: path.display().to_string(), source })?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if !held_out(line) && !prompts.iter().any(|p| p == line) {
                prompts.push(line.to_string());
            }
        }
    }
    let wanted = (prompts.len() + experiment.prompts.generate as usize).min(limit);
    let mut seen: std::collections::HashSet<String> = prompts.iter().cloned().collect();
    // The judge sees its last proposals, accepted or not, so that a rejected duplicate steers
    // it elsewhere instead of being proposed again.
    let mut recent: std::collections::VecDeque<String> = prompts.iter().rev().take(16).rev().cloned().collect();
    let mut attempts = 0u64;
    while prompts.len() < wanted && attempts < 20 * wanted as u64 + 100 {
        attempts += 1;
        let request = MutateRequest {
            recent: recent.iter().cloned().collect(),
            seed: experiment.run.seed ^ attempts.wrapping_mul(0x9E37_79B9),
            after: None,
        };
        let prompt = with_retries(5, || judge.mutate(&request))
            .await
            .map_err(|source| AcquireError::Plugin { what: "judge.mutate (seed prompts)".into(), source })?;
        recent.push_back(prompt.clone());
        if recent.len() > 16 {
            recent.pop_front();
        }
        if !held_out(&prompt) && seen.insert(prompt.clone()) {
            prompts.push(prompt);
        }
    }
    prompts.truncate(limit);
    Ok(prompts)
}

/// The request a teacher gets for `prompt` in this run: its seed depends on the run seed and the
/// prompt only, so that a restarted run makes the very same request (and finds it paid).
pub fn request_for(experiment: &Experiment, prompt: &str) -> GenerateRequest {
    let seed = evolve_sdk::SplitMix64::from_parts(&[
        experiment.run.seed,
        prompt.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)),
    ])
    .next_u64();
    let size = experiment.run.image_size;
    GenerateRequest { prompt: prompt.to_string(), width: size, height: size, seed }
}

/// Buys `prompts` from `teacher` as seed samples within `max_cost_usd`: already-paid requests
/// come from the ledger, the rest are bought ([`crate::purchase`]) with the teacher's
/// concurrency. `progress` is called after each prompt.
pub async fn buy_seed_samples(
    run: &Arc<Mutex<RunDir>>,
    experiment: &Experiment,
    teacher: Arc<dyn Teacher>,
    label: &str,
    prompts: &[String],
    mut progress: impl FnMut(usize),
) -> Result<usize, AcquireError> {
    let (known, (paid_calls, paid_cost)) = {
        let run = lock(run);
        let known: std::collections::HashSet<String> =
            run.ledger.samples(false)?.into_iter().map(|s| s.prompt).collect();
        (known, run.ledger.call_totals()?)
    };
    let max_cost = experiment.budget.max_cost_usd.map(evolve_sdk::Cost::from_usd);
    let budget = Arc::new(Mutex::new(Budget::new(None, max_cost, paid_calls, paid_cost)));
    let till = Till { run: Arc::clone(run), budget: Arc::clone(&budget) };
    let slot = Arc::new(TeacherSlot::new(label.to_string(), teacher));
    // Recorded in the prompts' order, whichever purchase finishes first: a sample's id orders
    // the training set, so a run replays from its seed.
    let mut tasks = OrderedTasks::default();
    let mut done = 0;
    for prompt in prompts {
        if known.contains(prompt) {
            done += 1;
            progress(done);
            continue;
        }
        if lock(&budget).exhausted() {
            tracing::warn!(%prompt, "max_cost_usd reached: the remaining prompts are not bought");
            break;
        }
        let request = request_for(experiment, prompt);
        let (till, slot) = (till.clone(), Arc::clone(&slot));
        tasks.spawn(async move {
            let bought = till.buy(&slot, &request).await;
            (request, bought)
        });
    }
    while let Some(due) = tasks.next_due().await {
        // A purchase that panicked buys nothing; the prompts after it still count.
        for (request, bought) in due.into_iter().flatten() {
            let stored = match bought? {
                Bought::Image(stored, ..) => stored,
                Bought::OverBudget => continue,
                Bought::Failed(source) => {
                    let what = format!("teacher {label} on {:?}", request.prompt);
                    return Err(AcquireError::Plugin { what, source });
                }
            };
            add_seed(&mut lock(run), &request.prompt, &stored, label)?;
            done += 1;
            progress(done);
        }
    }
    Ok(done)
}

fn add_seed(run: &mut RunDir, prompt: &str, image: &StoredImage, teacher: &str) -> Result<i64, AcquireError> {
    let sample = NewSample { prompt, image, teacher, origin: Origin::Seed, parent: None, round: None };
    Ok(run.ledger.add_sample(&sample)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn the_judge_writes_as_many_distinct_held_out_free_prompts_as_asked() {
        let registry = Registry::builtin();
        let text = "[run]\nname = \"p\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n\
                    [judge]\nplugin = \"shapes\"\n[eval]\nplugin = \"shapes\"\n[prompts]\ngenerate = 600\n";
        let experiment = crate::experiment::parse(text, Path::new("p.toml"), &registry).unwrap();
        let ctx = evolve_sdk::PluginContext::new("judge", 1);
        let judge = registry.judge(&"shapes".into(), serde_json::json!({}), &ctx).unwrap();
        let evaluator = registry.evaluator(&"shapes".into(), serde_json::json!({}), &ctx).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let prompts = runtime
            .block_on(seed_prompts(&experiment, Path::new("."), judge.as_ref(), Some(evaluator.as_ref()), usize::MAX))
            .unwrap();
        assert_eq!(prompts.len(), 600);
        let distinct: std::collections::HashSet<&String> = prompts.iter().collect();
        assert_eq!(distinct.len(), 600);
        assert!(prompts.iter().all(|p| !evaluator.holds_out(p)));
    }
}
