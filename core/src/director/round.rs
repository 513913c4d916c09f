//! One evolution round (EvolveDirector §3.2): select part of the active set, render it with the
//! base model, let the judge compare each render with the teacher's image, run the operator
//! chain on every verdict, and apply what it asks for — deletions at once, expansions and
//! mutations as pending prompts that the shop buys.

use super::DirectorError;
use super::lock;
use super::pacing;
use super::shop::{Purchase, Shop};
use super::trainer::Trainer;
use crate::acquire::with_retries;
use crate::budget::Budget;
use crate::experiment::{AuditSettings, BuyFirst, Experiment, Spend};
use crate::in_order::OrderedTasks;
use crate::session::OperatorChain;
use crate::store::{NewJudgment, NewPending, Probe, RoundSummary, RunDir, SampleRow};
use evolve_sdk::{
    Action, Choice, CompareRequest, Comparison, EvaluatedSample, Evaluator, ExpandRequest, Image, Judge, JudgeCall,
    MutateRequest, Origin, Outcome, PluginError, SampleRequest, SplitMix64, Verdict,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Images rendered per request to the trainer (keeps each pause of training short).
const RENDER_BATCH: usize = 64;
/// Attempts per judge call for transient failures.
const ATTEMPTS: u32 = 6;
/// Recent prompts a mutation is asked to differ from.
const RECENT: usize = 16;

/// What a round needs.
pub struct RoundContext {
    /// The run.
    pub run: Arc<Mutex<RunDir>>,
    /// The experiment.
    pub experiment: Arc<Experiment>,
    /// The judge.
    pub judge: Arc<dyn Judge>,
    /// The operator chain, in order.
    pub operators: OperatorChain,
    /// Held-out prompts never enter the set.
    pub evaluator: Option<Arc<dyn Evaluator>>,
    /// Buys new prompts.
    pub shop: Arc<Shop>,
}

/// Operators quarantined during a round: instance label and why.
type Faults = Arc<Mutex<Vec<(String, String)>>>;

/// A judged sample and what the chain decided for it.
struct Decision {
    sample: SampleRow,
    base_image: Image,
    teacher_image: crate::store::ImageHash,
    outcome: Outcome,
    verdict: Verdict,
    base_first: bool,
    rejudged: bool,
    deactivate: bool,
    wanted: Vec<NewPending>,
    /// Audit probes asked about this sample, with the judge's raw replies.
    probes: Vec<(Probe, String)>,
}

/// What a round collects from its judged samples.
#[derive(Default)]
struct Collected {
    /// Samples deactivated.
    removed: Vec<i64>,
    /// New prompts asked for.
    wanted: Vec<NewPending>,
    /// Per judged sample, the teacher's margin over the base model (the verdict's confidence
    /// where the teacher won, 0 otherwise): how far its children are from what the model does.
    margins: HashMap<i64, f32>,
}

/// Records one judged sample: the base model's render, the judgment, and what the chain decided.
fn record(
    ctx: &RoundContext,
    round: i64,
    decision: Decision,
    summary: &mut RoundSummary,
    collected: &mut Collected,
) -> Result<(), DirectorError> {
    let mut run = lock(&ctx.run);
    let base = run.images.put(&decision.base_image)?;
    run.ledger.record_judgment(&NewJudgment {
        round,
        sample: decision.sample.id,
        base_image: &base,
        teacher_image: &decision.teacher_image,
        outcome: decision.outcome,
        base_shown_first: decision.base_first,
        confidence: decision.verdict.confidence,
        raw: &decision.verdict.raw,
    })?;
    let teacher_won = decision.outcome == Outcome::TeacherBetter;
    summary.teacher_wins += u32::from(teacher_won);
    collected.margins.insert(decision.sample.id, if teacher_won { decision.verdict.confidence } else { 0.0 });
    summary.rejudged += u32::from(decision.rejudged);
    for (probe, raw) in &decision.probes {
        run.ledger.record_probe(round, decision.sample.id, probe, raw)?;
    }
    if decision.deactivate {
        run.ledger.deactivate(decision.sample.id, round)?;
        collected.removed.push(decision.sample.id);
    }
    collected.wanted.extend(decision.wanted);
    Ok(())
}

/// Runs round `round` (a ledger round id) at trainer step `step`.
pub async fn run_round(
    ctx: &RoundContext,
    trainer: &Trainer,
    round: i64,
    step: u64,
) -> Result<RoundSummary, DirectorError> {
    let (selected, recent) = {
        let run = lock(&ctx.run);
        let active = run.ledger.active_count()?;
        let n = (active as f64 * ctx.experiment.director.select_ratio).ceil() as usize;
        (run.ledger.select_for_round(n)?, run.ledger.recent_prompts(RECENT)?)
    };
    let mut summary = RoundSummary { selected: selected.len() as u32, ..Default::default() };
    // A paid judge that the money left cannot pay for ends judging (training goes on): without
    // this, every sample of every later round would fail its comparison one by one.
    let comparison = ctx.judge.quote(JudgeCall::Compare { images: 2 });
    if comparison > evolve_sdk::Cost::ZERO && !lock(&ctx.shop.budget()).affords(comparison) {
        tracing::warn!(
            round,
            "the budget leaves no room for a judge call: this round judges nothing (training goes on)"
        );
        summary.selected = 0;
    }
    if summary.selected == 0 {
        lock(&ctx.run).ledger.finish_round(round, summary)?;
        return Ok(summary);
    }

    // Render the selection with the model's EMA weights, between training steps.
    let seed = SplitMix64::from_parts(&[ctx.experiment.run.seed, round as u64, 0xBA5E]).next_u64();
    let mut renders = Vec::with_capacity(selected.len());
    for (i, chunk) in selected.chunks(RENDER_BATCH).enumerate() {
        let request = SampleRequest {
            prompts: chunk.iter().map(|s| s.prompt.clone()).collect(),
            seed: seed.wrapping_add(i as u64),
            steps: ctx.experiment.director.sample_steps,
            guidance: None,
            ..SampleRequest::default()
        };
        renders.extend(trainer.generate(request).await?);
    }

    // Judge every sample concurrently; each task runs the operator chain on its verdict.
    let permits = ctx.shop.judge_permits();
    // With the budget spent, new prompts could never be bought: do not ask the judge for them.
    let buying = !lock(&ctx.shop.budget()).exhausted();
    let faults = Faults::default();
    let mut tasks = OrderedTasks::default();
    for (sample, base_image) in selected.into_iter().zip(renders) {
        let (history, teacher_image) = {
            let run = lock(&ctx.run);
            let history = run.ledger.outcome_history(sample.id)?;
            (history, run.images.get(&sample.image)?)
        };
        let job = Judging {
            judge: Arc::clone(&ctx.judge),
            operators: Arc::clone(&ctx.operators),
            faults: Arc::clone(&faults),
            evaluator: ctx.evaluator.clone(),
            permits: Arc::clone(&permits),
            recent: recent.clone(),
            seed: SplitMix64::from_parts(&[ctx.experiment.run.seed, round as u64, sample.id as u64]).next_u64(),
            round,
            buying,
            audit: ctx.experiment.audit.clone(),
            budget: ctx.shop.budget(),
        };
        tasks.spawn(async move { job.decide(sample, base_image, teacher_image, history).await });
    }
    // Recorded in the selection's order, as soon as every earlier sample is: what is deleted and
    // which new prompts are bought first must not depend on the judge's latency.
    let mut collected = Collected::default();
    while let Some(due) = tasks.next_due().await {
        for joined in due {
            let decision = match joined {
                Ok(Some(decision)) => decision,
                Ok(None) => continue,
                // A judge or operator that panics costs its sample this round, not the run.
                Err(panic) => {
                    tracing::warn!(%panic, "judging a sample panicked; it is skipped this round");
                    continue;
                }
            };
            // The render's PNG, its fsync and the judgment's commit block: off the async worker.
            crate::blocking(|| record(ctx, round, decision, &mut summary, &mut collected))?;
        }
    }
    let Collected { removed, wanted, margins } = collected;
    summary.deactivated = removed.len() as u32;
    trainer.remove(removed);
    for (instance, reason) in lock(&faults).drain(..) {
        lock(&ctx.run).ledger.record_fault(&instance, Some(round), &reason)?;
    }

    let wanted = if ctx.experiment.director.spend == Spend::Paced {
        let fresh = crate::blocking(|| lock(&ctx.run).ledger.new_prompts(wanted))?;
        paced(ctx, fresh, &margins, round, step)
    } else {
        wanted
    };
    // Write the new prompts down before paying for any, then buy them.
    let pending = crate::blocking(|| lock(&ctx.run).ledger.add_pending(&wanted))?;
    let purchases = ctx.shop.buy_all(pending.clone(), |_| {}).await?;
    let mut added = vec![];
    for purchase in purchases {
        if let Purchase::Added(sample) = purchase {
            let mutated = pending.iter().any(|p| p.want.prompt == sample.prompt && p.want.origin == Origin::Mutation);
            summary.mutated += u32::from(mutated);
            added.push(sample);
        }
    }
    summary.added = added.len() as u32;
    trainer.add(added);
    crate::blocking(|| {
        let run = lock(&ctx.run);
        run.ledger.finish_round(round, summary)?;
        let win_rate = summary.teacher_wins as f64 / summary.selected.max(1) as f64;
        let active = run.ledger.active_count()?;
        for (name, value) in [("round/teacher_win_rate", win_rate), ("round/active", active as f64)] {
            run.ledger.record_metric(step, name, value)?;
        }
        Ok::<_, crate::store::LedgerError>(())
    })?;
    Ok(summary)
}

/// `wanted` within the round's share of the budget when the run paces its spending (every
/// prompt is bought from every teacher), chosen as `director.buy_first` says: `margins` holds
/// each judged parent's margin.
fn paced(
    ctx: &RoundContext,
    wanted: Vec<NewPending>,
    margins: &HashMap<i64, f32>,
    round: i64,
    step: u64,
) -> Vec<NewPending> {
    let experiment = &ctx.experiment;
    let (Spend::Paced, Some(max_steps)) = (experiment.director.spend, experiment.budget.max_steps) else {
        return wanted;
    };
    let budget = ctx.shop.budget();
    let calls_left = {
        let budget = lock(&budget);
        budget.max_calls().map(|max| max.saturating_sub(budget.calls()))
    };
    let Some(calls_left) = calls_left else { return wanted };
    let share = pacing::round_share(calls_left, step, experiment.director.every_steps, max_steps);
    let prompts = share / experiment.teachers.len().max(1) as u64;
    let seed = SplitMix64::from_parts(&[experiment.run.seed, round as u64, 0x9ACE]).next_u64();
    let margin = |p: &NewPending| p.parent.and_then(|parent| margins.get(&parent).copied()).unwrap_or(0.0);
    match experiment.director.buy_first {
        BuyFirst::Any => pacing::choose(wanted, prompts as usize, seed, |_| 0.0),
        BuyFirst::NearMisses => pacing::choose(wanted, prompts as usize, seed, margin),
    }
}

/// Everything one judging task needs, owned so that it can run on any worker.
struct Judging {
    judge: Arc<dyn Judge>,
    operators: OperatorChain,
    faults: Faults,
    evaluator: Option<Arc<dyn Evaluator>>,
    permits: Arc<Semaphore>,
    recent: Vec<String>,
    seed: u64,
    round: i64,
    buying: bool,
    audit: AuditSettings,
    budget: Arc<Mutex<Budget>>,
}

impl Judging {
    /// Logs a judge call that failed: a warning, unless the money left cannot pay for such a
    /// call (a paid judge at the end of its budget: one note at the round's start says so).
    fn failed(&self, call: JudgeCall, what: &str, prompt: &str, error: &PluginError) {
        if lock(&self.budget).affords(self.judge.quote(call)) {
            tracing::warn!(%prompt, %error, "{what}");
        } else {
            tracing::debug!(%prompt, %error, "{what}");
        }
    }

    async fn decide(
        self,
        sample: SampleRow,
        base_image: Image,
        teacher_image: Image,
        history: Vec<Outcome>,
    ) -> Option<Decision> {
        let mut rng = SplitMix64::new(self.seed);
        let base_first = rng.chance(0.5);
        let verdict = self.compare(&sample.prompt, &base_image, &teacher_image, base_first, rng.next_u64()).await?;
        let mut outcome = outcome_of(&verdict, base_first);
        let origin = Origin::from_name(&sample.origin).unwrap_or(Origin::Seed);
        let mut evaluated = EvaluatedSample {
            sample_id: sample.id,
            prompt: sample.prompt.clone(),
            origin,
            round: self.round as u64,
            outcome,
            verdict: verdict.clone(),
            rejudged: false,
            history,
            proposed: vec![],
            seed: rng.next_u64(),
        };
        let mut actions = self.chain(&evaluated)?;
        // The audit draws from a stream of its own: probing never changes what the chain decides.
        let mut audit = SplitMix64::from_parts(&[self.seed, 0xA0D1]);
        let mut probes = vec![];
        let mut swapped = None;
        if actions.contains(&Action::Rejudge) {
            // Asked again with the order swapped; the teacher wins only if both verdicts agree.
            let again = self.compare(&sample.prompt, &base_image, &teacher_image, !base_first, rng.next_u64()).await?;
            if outcome_of(&again, !base_first) != outcome {
                outcome = Outcome::BaseAsGood;
            }
            evaluated.outcome = outcome;
            evaluated.rejudged = true;
            actions = self.chain(&evaluated)?;
            swapped = Some(again);
        }
        if audit.chance(self.audit.swap_share) {
            // A rejudged sample was asked both ways already: that is the probe.
            let again = match swapped {
                Some(again) => Some(again),
                None => self.compare(&sample.prompt, &base_image, &teacher_image, !base_first, audit.next_u64()).await,
            };
            if let Some(again) = again {
                let consistent = chosen(&verdict, base_first) == chosen(&again, !base_first);
                probes.push((Probe::Swap { consistent }, again.raw));
            }
        }
        if audit.chance(self.audit.known_share) {
            let right_first = audit.chance(0.5);
            let noise = noise_like(&teacher_image, audit.next_u64());
            let images =
                if right_first { vec![teacher_image.clone(), noise] } else { vec![noise, teacher_image.clone()] };
            if let Some(answer) = self.ask(&sample.prompt, images, audit.next_u64()).await {
                let right = answer.choice == Choice::Best(usize::from(!right_first));
                probes.push((Probe::Known { right_first, right }, answer.raw));
            }
        }
        let mut wanted = vec![];
        // New prompts are asked in the comparison's conversation, as the paper does: the judge
        // has seen the images and said which was better.
        let after = || {
            let shown = if base_first { [&base_image, &teacher_image] } else { [&teacher_image, &base_image] };
            Some(Comparison {
                prompt: sample.prompt.clone(),
                images: same_size(shown.into_iter().cloned().collect()),
                reply: verdict.raw.clone(),
            })
        };
        let expand = actions.iter().filter_map(|a| if let Action::Expand { n } = a { Some(*n) } else { None }).max();
        if let Some(n) = expand.filter(|&n| n > 0 && self.buying) {
            let request = ExpandRequest { prompt: sample.prompt.clone(), n, seed: rng.next_u64(), after: after() };
            match self.call(|| self.judge.expand(&request)).await {
                Ok(prompts) => wanted.extend(prompts.into_iter().take(n).map(|p| (p, Origin::Expansion))),
                Err(error) => self.failed(JudgeCall::Expand { n }, "expansion failed; skipped", &sample.prompt, &error),
            }
        }
        if actions.contains(&Action::Mutate) && self.buying {
            let request = MutateRequest { recent: self.recent.clone(), seed: rng.next_u64(), after: after() };
            match self.call(|| self.judge.mutate(&request)).await {
                Ok(prompt) => wanted.push((prompt, Origin::Mutation)),
                Err(error) => self.failed(JudgeCall::Mutate, "mutation failed; skipped", &sample.prompt, &error),
            }
        }
        if self.buying {
            // Prompts an operator wrote itself (e.g. a constraint added to a mastered prompt).
            let proposed = actions.iter().filter_map(|a| match a {
                Action::Propose { prompt } => Some((prompt.clone(), Origin::Mutation)),
                _ => None,
            });
            wanted.extend(proposed);
        }
        let held_out = |p: &str| self.evaluator.as_ref().is_some_and(|e| e.holds_out(p));
        let wanted = wanted
            .into_iter()
            .filter(|(p, _)| !p.trim().is_empty() && !held_out(p))
            .map(|(prompt, origin)| NewPending { prompt, origin, parent: Some(sample.id), round: Some(self.round) })
            .collect();
        Some(Decision {
            teacher_image: sample.image.clone(),
            deactivate: actions.contains(&Action::Deactivate),
            rejudged: evaluated.rejudged,
            sample,
            base_image,
            outcome,
            verdict,
            base_first,
            wanted,
            probes,
        })
    }

    /// Runs the operator chain: each operator sees what the earlier ones proposed. An operator
    /// that fails leaves the sample untouched this round; a quarantined one is left out of the
    /// chain (and recorded). External operators may block, so the chain runs off the workers.
    fn chain(&self, sample: &EvaluatedSample) -> Option<Vec<Action>> {
        let run = || {
            let mut sample = sample.clone();
            sample.proposed.clear();
            for (label, operator) in self.operators.iter() {
                match operator.decide(&sample) {
                    Ok(actions) => sample.proposed.extend(actions),
                    Err(PluginError::Quarantined(reason)) => lock(&self.faults).push((label.clone(), reason)),
                    Err(error) => {
                        tracing::warn!(operator = %label, prompt = %sample.prompt, %error, "operator failed; sample skipped");
                        return None;
                    }
                }
            }
            Some(sample.proposed)
        };
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        match flavor {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    async fn compare(
        &self,
        prompt: &str,
        base: &Image,
        teacher: &Image,
        base_first: bool,
        seed: u64,
    ) -> Option<Verdict> {
        let images = if base_first { vec![base.clone(), teacher.clone()] } else { vec![teacher.clone(), base.clone()] };
        self.ask(prompt, images, seed).await
    }

    /// The judge's verdict on `images` for `prompt` (`None`, logged, when it cannot give one),
    /// shown at one size.
    async fn ask(&self, prompt: &str, images: Vec<Image>, seed: u64) -> Option<Verdict> {
        let request = CompareRequest { prompt: prompt.to_string(), images: same_size(images), seed };
        match self.call(|| self.judge.compare(&request)).await {
            Ok(verdict) => Some(verdict),
            Err(error) => {
                let call = JudgeCall::Compare { images: request.images.len() };
                self.failed(call, "judge comparison failed; sample skipped this round", prompt, &error);
                None
            }
        }
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, evolve_sdk::PluginError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, evolve_sdk::PluginError>>,
    {
        let _permit = self.permits.acquire().await;
        with_retries(ATTEMPTS, f).await
    }
}

/// The longest side a judge is shown (the paper's comparison images: at most 512).
const JUDGE_SIDE: u32 = 512;

/// `images` at one size, as the paper compares them: the smallest one's, at most
/// [`JUDGE_SIDE`] on its long side. A judge shown the teacher's 1024-pixel image beside the
/// base model's 256-pixel render sees resolution, not alignment with the prompt.
fn same_size(images: Vec<Image>) -> Vec<Image> {
    let Some(smallest) = images.iter().min_by_key(|i| u64::from(i.width()) * u64::from(i.height())) else {
        return images;
    };
    let (w, h) = (smallest.width(), smallest.height());
    let scale = (f64::from(JUDGE_SIDE) / f64::from(w.max(h))).min(1.0);
    let (w, h) = ((f64::from(w) * scale).round().max(1.0) as u32, (f64::from(h) * scale).round().max(1.0) as u32);
    images.into_iter().map(|image| crate::training_set::resize(image, w, h)).collect()
}

/// Which image a verdict chose: `Some(true)` the teacher's, `Some(false)` the base model's,
/// `None` neither (a tie).
fn chosen(verdict: &Verdict, base_first: bool) -> Option<bool> {
    match verdict.choice {
        Choice::Best(index) => Some(index == usize::from(base_first)),
        Choice::Tie => None,
    }
}

/// Uniform noise of `image`'s size: an image no prompt describes (the audit's known answer).
fn noise_like(image: &Image, seed: u64) -> Image {
    let mut rng = SplitMix64::new(seed);
    let pixels = (0..image.width() as usize * image.height() as usize * 3).map(|_| rng.below(256) as u8).collect();
    Image::from_rgb(image.width(), image.height(), pixels).unwrap_or_else(|_| image.clone())
}

/// The outcome a verdict means when the base image was shown first (`base_first`) or second.
fn outcome_of(verdict: &Verdict, base_first: bool) -> Outcome {
    let teacher_index = usize::from(base_first);
    if verdict.choice == Choice::Best(teacher_index) { Outcome::TeacherBetter } else { Outcome::BaseAsGood }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_judge_sees_both_images_at_the_smaller_ones_size_at_most_512() {
        let sizes = |images: Vec<Image>| same_size(images).iter().map(|i| (i.width(), i.height())).collect::<Vec<_>>();
        let (render, teacher) = (Image::filled(256, 256, [0, 0, 0]), Image::filled(1024, 1024, [9, 9, 9]));
        assert_eq!(sizes(vec![render.clone(), teacher.clone()]), [(256, 256), (256, 256)]);
        assert_eq!(sizes(vec![teacher, render]), [(256, 256), (256, 256)], "whichever comes first");
        let wide = vec![Image::filled(1536, 1024, [0, 0, 0]), Image::filled(2048, 1365, [0, 0, 0])];
        assert_eq!(sizes(wide), [(512, 341), (512, 341)]);
        let same = Image::filled(32, 32, [1, 2, 3]);
        assert_eq!(same_size(vec![same.clone(), same.clone()]), [same.clone(), same], "untouched");
    }
}
