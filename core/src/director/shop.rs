//! Buying images for pending prompts: every prompt goes to every teacher, or those routing
//! chooses (routing.rs; each within its own concurrency limit), the judge picks the best image
//! in a pairwise tournament, every paid image is kept, and the winner joins the training set.
//!
//! A request already paid for (same teacher, same request hash) is read from the ledger, never
//! bought again; a paid image is durable before the ledger row that names it commits.

use super::{DirectorError, routing};
use crate::acquire::{contained, request_for, with_retries};
use crate::budget::Budget;
use crate::experiment::{Experiment, TeacherSelection};
use crate::lock;
use crate::purchase::{Bought, TeacherSlot, Till};
use crate::store::{Candidate, PendingRow, RunDir};
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

    /// Buys every prompt of `pending` concurrently; `done` is called after each. When routing
    /// needs tournaments before it can choose (an unproven `bandit`), their prompts are bought
    /// first, then the rest.
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

    async fn buy_together(
        self: &Arc<Self>,
        pending: Vec<PendingRow>,
        done: &mut impl FnMut(&Purchase),
    ) -> Result<Vec<Purchase>, DirectorError> {
        let mut tasks = tokio::task::JoinSet::new();
        for row in pending {
            let shop = Arc::clone(self);
            tasks.spawn(async move { shop.buy(row).await });
        }
        let mut purchases = vec![];
        while let Some(joined) = tasks.join_next().await {
            let purchase = joined.map_err(|source| DirectorError::Task { what: "purchase", source })??;
            done(&purchase);
            purchases.push(purchase);
        }
        Ok(purchases)
    }

    /// Buys one pending prompt from the teachers routing chooses (every teacher unless
    /// `director.teacher_selection` says otherwise) and keeps the tournament's winner.
    pub async fn buy(self: Arc<Self>, row: PendingRow) -> Result<Purchase, DirectorError> {
        let request = request_for(&self.experiment, &row.want.prompt);
        let mut tasks = tokio::task::JoinSet::new();
        for index in self.route(&row, &request)? {
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
            if over_budget {
                return Ok(Purchase::OverBudget);
            }
            let reason = failures.join("; ");
            crate::blocking(|| lock(&self.till.run).ledger.drop_pending(row.id, &reason))?;
            tracing::warn!(prompt = %row.want.prompt, %reason, "every teacher failed; prompt dropped");
            return Ok(Purchase::Dropped);
        }
        let (winner, as_good) = self.tournament(&row, &images, &prices).await;
        let id = crate::blocking(|| lock(&self.till.run).ledger.resolve_pending(&row, &candidates, winner, &as_good))?;
        let image = candidates[winner].image.hash().clone();
        Ok(Purchase::Added(TrainingSample { id, prompt: row.want.prompt, image }))
    }

    /// The teachers to buy `row` from.
    fn route(&self, row: &PendingRow, request: &GenerateRequest) -> Result<Vec<usize>, DirectorError> {
        let selection = self.experiment.director.teacher_selection;
        if self.teachers.len() < 2 || selection == TeacherSelection::All {
            return Ok((0..self.teachers.len()).collect());
        }
        let (parent, records) = crate::blocking(|| {
            let run = lock(&self.till.run);
            let parent = row.want.parent.map(|id| run.ledger.sample_teacher(id)).transpose()?.flatten();
            Ok::<_, crate::store::LedgerError>((parent, run.ledger.teacher_records()?))
        })?;
        let seed = routing::seed_for(self.experiment.run.seed, row);
        Ok(routing::choose(selection, &self.candidates(request), parent.as_deref(), &records, seed))
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
