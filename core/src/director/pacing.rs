//! Spreading the teacher-call budget over the run's rounds (`director.spend = "paced"`).
//!
//! Left to ask for all it wants, the director spends a small budget in its first few rounds:
//! an untrained model fails every prompt, so every judged sample is expanded, and the set grows
//! by more than half each round until the money is gone — long before the judge's verdicts say
//! anything about what the model cannot learn by itself. Paced, each round buys at most an even
//! share of the calls left over the rounds left, so later rounds, whose verdicts single out the
//! model's real weaknesses, still have calls to spend.

use crate::store::NewPending;
use evolve_sdk::SplitMix64;

/// The most teacher calls the round at `step` may spend: the calls left shared evenly over
/// the rounds left (this one included) of a run of `max_steps` with a round every `every`
/// steps. Rounding up, so that the last round spends whatever is left.
pub fn round_share(calls_left: u64, step: u64, every: u64, max_steps: u64) -> u64 {
    let every = every.max(1);
    // Rounds run at every multiple of `every` below `max_steps`.
    let rounds_left = if step >= max_steps { 1 } else { (max_steps - 1 - step) / every + 1 };
    calls_left.div_ceil(rounds_left)
}

/// At most `prompts` of `wanted`, chosen at random by `seed` (none preferred for having been
/// judged first), in an order that depends on the seed and the prompts alone.
pub fn choose(mut wanted: Vec<NewPending>, prompts: usize, seed: u64) -> Vec<NewPending> {
    if wanted.len() <= prompts {
        return wanted;
    }
    // Sorted first, so that the choice depends on the prompts and the seed alone, whatever
    // order the caller collected them in.
    wanted.sort_by(|a, b| (a.parent, &a.prompt).cmp(&(b.parent, &b.prompt)));
    let mut rng = SplitMix64::new(seed);
    for i in (1..wanted.len()).rev() {
        wanted.swap(i, rng.below(i as u64 + 1) as usize);
    }
    wanted.truncate(prompts);
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_sdk::Origin;

    #[test]
    fn the_budget_is_shared_evenly_over_the_rounds_left() {
        // 10 rounds (steps 400 … 4000) in a run of 4400 steps: 2000 calls, 200 a round.
        assert_eq!(round_share(2000, 400, 400, 4400), 200);
        // What a round does not spend is shared by the later ones.
        assert_eq!(round_share(1900, 800, 400, 4400), 212);
        // The last round spends the rest.
        assert_eq!(round_share(37, 4000, 400, 4400), 37);
        assert_eq!(round_share(37, 5000, 400, 4400), 37);
        assert_eq!(round_share(0, 400, 400, 4400), 0);
    }

    fn want(prompt: &str, parent: i64) -> NewPending {
        NewPending { prompt: prompt.into(), origin: Origin::Expansion, parent: Some(parent), round: Some(1) }
    }

    #[test]
    fn the_choice_depends_on_the_seed_not_on_the_order_verdicts_came_back() {
        let wanted: Vec<NewPending> = (0..20).map(|i| want(&format!("prompt {i}"), i % 7)).collect();
        let mut reversed = wanted.clone();
        reversed.reverse();
        let a = choose(wanted.clone(), 5, 9);
        assert_eq!(a.len(), 5);
        assert_eq!(a, choose(reversed, 5, 9));
        assert_ne!(a, choose(wanted.clone(), 5, 10), "another seed, another choice");
        assert_eq!(choose(wanted.clone(), 50, 9), wanted, "under the share, everything is bought");
    }
}
