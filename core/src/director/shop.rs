//! Buying images for pending prompts: every prompt goes to every teacher, or those routing
//! chooses (routing.rs; each within its own concurrency limit), the judge picks the best image
//! in a pairwise tournament, every paid image is kept, and the winner joins the training set.
//!
//! A request already paid for (same teacher, same request hash) is read from the ledger, never
//! bought again; a paid image is durable before the ledger row that names it commits.
//!
//! Prompts are bought concurrently but enter the ledger in the order they were written down
//! (pending id); routing reads the teachers' records once per batch; and a batch that the call
//! limit cannot pay for whole buys its first prompts, not the fastest. So a sample's id, and
//! with it the trainer's batches and a round's selection, does not depend on which purchase
//! happened to finish first, and a lockstep run replays from its seed. (A money limit reached
//! in the middle of a batch is still met by whichever purchases reserve first: their quotes
//! are only known as they are made.)

use super::{DirectorError, routing};
use crate::acquire::{contained, request_for, with_retries};
use crate::budget::Budget;
use crate::experiment::{Experiment, TeacherSelection};
use crate::in_order::OrderedTasks;
use crate::lock;
use crate::purchase::{Bought, TeacherSlot, Till};
use crate::store::{Candidate, PendingRow, RunDir, TeacherRecord};
use crate::training_set::TrainingSample;
use evolve_sdk::{Choice, CompareRequest, GenerateRequest, Image, Judge, SplitMix64};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Attempts per judge call for transient failures (429, 5xx, time-outs).
const ATTEMPTS: u32 = 6;

/// What became of one pending prompt.
pub enum Purchase {
    /// Bought; the winner is in the training set.
    Added(TrainingSample),
    /// Every teacher failed for good; the prompt is dropped (the ledger records why).
    Dropped,
    /// The budget ran out before any image was bought; the prompt stays pending.
    OverBudget,
}

/// One prompt's images bought and judged, before the ledger hears of it.
enum Outcome {
    /// The tournament's winner among `candidates`, and which were as good as it.
    Won { row: PendingRow, candidates: Vec<Candidate>, winner: usize, as_good: Vec<bool> },
    /// Every teacher failed for good, for `reason`.
    Failed { row: PendingRow, reason: String },
    /// The budget ran out before any image was bought.
    OverBudget,
}

/// Buys images for the run.
pub struct Shop {
    teachers: Vec<TeacherSlot>,
    judge: Arc<dyn Judge>,
    judge_permits: Arc<Semaphore>,
    till: Till,
    experiment: Arc<Experiment>,
}

impl Shop {
    /// A shop buying from `teachers`, judged by `judge`, recording into `run` within `budget`.
    pub fn new(
        teachers: Vec<TeacherSlot>,
        judge: Arc<dyn Judge>,
        run: Arc<Mutex<RunDir>>,
        budget: Arc<Mutex<Budget>>,
        experiment: Arc<Experiment>,
    ) -> Shop {
        let judge_permits = Arc::new(Semaphore::new(judge.limits().concurrency.max(1) as usize));
        Shop { teachers, judge, judge_permits, till: Till { run, budget }, experiment }
    }

    /// The judge's concurrency permits, shared by every caller of the judge in the run.
    pub fn judge_permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.judge_permits)
    }

    /// The budget, shared with whoever reports it.
    pub fn budget(&self) -> Arc<Mutex<Budget>> {
        Arc::clone(&self.till.budget)
    }

    /// Buys every prompt of `pending` concurrently and records them in `pending`'s order; `done`
    /// is called after each is recorded. When routing needs tournaments before it can choose
    /// (an unproven `bandit`), their prompts are bought first, then the rest.
    pub async fn buy_all(
        self: &Arc<Self>,
        mut pending: Vec<PendingRow>,
        mut done: impl FnMut(&Purchase),
    ) -> Result<Vec<Purchase>, DirectorError> {
        let first = self.warm_up().await?.min(pending.len());
        let rest = pending.split_off(first);
        let mut purchases = self.buy_together(pending, &mut done).await?;
        purchases.extend(self.buy_together(rest, &mut done).await?);
        Ok(purchases)
    }

    /// How many prompts routing wants bought before the others (`routing::warm_up`).
    async fn warm_up(&self) -> Result<usize, DirectorError> {
        let selection = self.experiment.director.teacher_selection;
        if selection != TeacherSelection::Bandit {
            return Ok(0);
        }
        let records = crate::blocking(|| lock(&self.till.run).ledger.teacher_records())?;
        let labels: Vec<&str> = self.teachers.iter().map(|slot| slot.label.as_str()).collect();
        Ok(routing::warm_up(selection, &labels, &records))
    }

    /// Buys `pending` concurrently; each prompt is recorded once it and every prompt before it
    /// are bought, so samples get their ids in `pending`'s order whatever finishes first.
    async fn buy_together(
        self: &Arc<Self>,
        pending: Vec<PendingRow>,
        done: &mut impl FnMut(&Purchase),
    ) -> Result<Vec<Purchase>, DirectorError> {
        let records = self.routing_records().await?;
        let mut calls_left = lock(&self.till.budget).calls_left();
        let mut over_budget = 0;
        let mut tasks = OrderedTasks::default();
        for row in pending {
            let request = request_for(&self.experiment, &row.want.prompt);
            let teachers = if over_budget == 0 { self.route(&row, &request, &records)? } else { vec![] };
            let calls = teachers.len() as u64;
            if over_budget > 0 || calls_left.is_some_and(|left| left < calls) {
                // Bought in order: once a prompt does not fit, none after it is started.
                over_budget += 1;
                continue;
            }
            calls_left = calls_left.map(|left| left - calls);
            let shop = Arc::clone(self);
            tasks.spawn(async move { shop.buy(row, request, teachers).await });
        }
        let mut purchases = vec![];
        while let Some(due) = tasks.next_due().await {
            for joined in due {
                let outcome = joined.map_err(|source| DirectorError::Task { what: "purchase", source })?;
                let purchase = self.record(outcome?)?;
                done(&purchase);
                purchases.push(purchase);
            }
        }
        for _ in 0..over_budget {
            done(&Purchase::OverBudget);
            purchases.push(Purchase::OverBudget);
        }
        Ok(purchases)
    }

    /// The teachers' tournament records as routing reads them for a batch (none needed when
    /// every prompt goes to every teacher).
    async fn routing_records(&self) -> Result<Vec<TeacherRecord>, DirectorError> {
        if self.teachers.len() < 2 || self.experiment.director.teacher_selection == TeacherSelection::All {
            return Ok(vec![]);
        }
        Ok(crate::blocking(|| lock(&self.till.run).ledger.teacher_records())?)
    }

    /// Buys `request` for one pending prompt from `teachers` (indices) and judges their
    /// tournament.
    async fn buy(
        self: Arc<Self>,
        row: PendingRow,
        request: GenerateRequest,
        teachers: Vec<usize>,
    ) -> Result<Outcome, DirectorError> {
        let mut tasks = tokio::task::JoinSet::new();
        for index in teachers {
            let (shop, request) = (Arc::clone(&self), request.clone());
            tasks.spawn(async move { (index, shop.buy_from(index, &request).await) });
        }
        let mut results: Vec<(usize, Bought)> = vec![];
        while let Some(joined) = tasks.join_next().await {
            let (index, bought) = joined.map_err(|source| DirectorError::Task { what: "teacher", source })?;
            results.push((index, bought?));
        }
        results.sort_by_key(|(index, _)| *index);
        let (mut candidates, mut images, mut prices, mut failures, mut over_budget) =
            (vec![], vec![], vec![], vec![], false);
        for (index, bought) in results {
            let label = self.teachers[index].label.clone();
            match bought {
                Bought::Image(stored, image, cost) => {
                    candidates.push(Candidate { teacher: label, image: stored });
                    images.push(image);
                    prices.push(cost.micro_usd);
                }
                Bought::OverBudget => over_budget = true,
                Bought::Failed(why) => failures.push(format!("{label}: {why}")),
            }
        }
        if candidates.is_empty() {
            return Ok(if over_budget {
                Outcome::OverBudget
            } else {
                Outcome::Failed { row, reason: failures.join("; ") }
            });
        }
        let (winner, as_good) = self.tournament(&row, &images, &prices).await;
        Ok(Outcome::Won { row, candidates, winner, as_good })
    }

    /// Writes what became of a prompt into the ledger: the winner joins the set, or the prompt
    /// is dropped (an over-budget prompt stays pending).
    fn record(&self, outcome: Outcome) -> Result<Purchase, DirectorError> {
        match outcome {
            Outcome::Won { row, candidates, winner, as_good } => {
                let id = crate::blocking(|| {
                    lock(&self.till.run).ledger.resolve_pending(&row, &candidates, winner, &as_good)
                })?;
                let image = candidates[winner].image.hash().clone();
                Ok(Purchase::Added(TrainingSample { id, prompt: row.want.prompt, image }))
            }
            Outcome::Failed { row, reason } => {
                crate::blocking(|| lock(&self.till.run).ledger.drop_pending(row.id, &reason))?;
                tracing::warn!(prompt = %row.want.prompt, %reason, "every teacher failed; prompt dropped");
                Ok(Purchase::Dropped)
            }
            Outcome::OverBudget => Ok(Purchase::OverBudget),
        }
    }

    /// The teachers to buy `row` from: every teacher unless `director.teacher_selection` says
    /// otherwise.
    fn route(
        &self,
        row: &PendingRow,
        request: &GenerateRequest,
        records: &[TeacherRecord],
    ) -> Result<Vec<usize>, DirectorError> {
        let selection = self.experiment.director.teacher_selection;
        if self.teachers.len() < 2 || selection == TeacherSelection::All {
            return Ok((0..self.teachers.len()).collect());
        }
        let parent =
            crate::blocking(|| row.want.parent.map(|id| lock(&self.till.run).ledger.sample_teacher(id)).transpose())?
                .flatten();
        let seed = routing::seed_for(self.experiment.run.seed, row);
        Ok(routing::choose(selection, &self.candidates(request), parent.as_deref(), records, seed))
    }

    /// The teachers as routing sees them, with their quotes for `request`.
    fn candidates(&self, request: &GenerateRequest) -> Vec<routing::Candidate<'_>> {
        self.teachers
            .iter()
            .map(|slot| routing::Candidate { label: &slot.label, price: slot.teacher.price(request) })
            .collect()
    }

    async fn buy_from(&self, index: usize, request: &GenerateRequest) -> Result<Bought, DirectorError> {
        Ok(self.till.buy(&self.teachers[index], request).await?)
    }

    /// The index of the best image, and which images were as good as it: pairwise, champion
    /// against challenger, order randomised. A tie goes to the cheaper image (`prices`, what
    /// each cost in micro-dollars; equal prices keep the champion): equal quality for less money is the
    /// better buy. Both images of a tie stay as good as the winner; an image that loses, or whose
    /// comparison failed (the champion stays), does not.
    async fn tournament(&self, row: &PendingRow, images: &[Image], prices: &[u64]) -> (usize, Vec<bool>) {
        let mut champion = 0;
        let mut as_good = vec![true; images.len()];
        for challenger in 1..images.len() {
            let mut rng = SplitMix64::from_parts(&[self.experiment.run.seed, row.id as u64, challenger as u64]);
            let challenger_first = rng.chance(0.5);
            let pair = if challenger_first {
                vec![images[challenger].clone(), images[champion].clone()]
            } else {
                vec![images[champion].clone(), images[challenger].clone()]
            };
            let request = CompareRequest { prompt: row.want.prompt.clone(), images: pair, seed: rng.next_u64() };
            let verdict = {
                let _permit = self.judge_permits.acquire().await;
                let judge = Arc::clone(&self.judge);
                contained(async move { with_retries(ATTEMPTS, || judge.compare(&request)).await }).await
            };
            match verdict {
                Ok(v) if v.choice == Choice::Best(usize::from(!challenger_first)) => {
                    // The old champion loses, and every image it had tied with.
                    as_good[..challenger].iter_mut().for_each(|good| *good = false);
                    champion = challenger;
                }
                Ok(v) if v.choice == Choice::Tie => {
                    if prices[challenger] < prices[champion] {
                        champion = challenger;
                    }
                }
                Ok(_) => as_good[challenger] = false,
                Err(error) => {
                    as_good[challenger] = false;
                    tracing::warn!(prompt = %row.want.prompt, %error, "tournament comparison failed");
                }
            }
        }
        (champion, as_good)
    }
}
