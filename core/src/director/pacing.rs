//! Spreading the teacher-call budget over the run's rounds (`director.spend = "paced"`).
//!
//! Left to ask for all it wants, the director spends a small budget in its first few rounds:
//! an untrained model fails every prompt, so every judged sample is expanded, and the set grows
//! by more than half each round until the money is gone — long before the judge's verdicts say
//! anything about what the model cannot learn by itself. Paced, each round buys at most an even
//! share of the calls left over the rounds left, so later rounds, whose verdicts single out the
//! model's real weaknesses, still have calls to spend.
//!
//! When a round's share cannot buy all it was asked for, `director.buy_first` says which go
//! first: a random choice, or the near misses — new prompts whose parent the teacher won by
//! the smallest margin. An untrained model fails almost every prompt, so "the teacher is
//! better" alone hardly narrows the choice; the margin says which failures are within reach.

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

/// At most `prompts` of `wanted`: those with the lowest `rank` first, at random by `seed`
/// among equal ranks (none preferred for having been judged first), in an order that depends
/// on the seed and the prompts alone. A constant `rank` is a random choice.
pub fn choose(
    mut wanted: Vec<NewPending>,
    prompts: usize,
    seed: u64,
    rank: impl Fn(&NewPending) -> f32,
) -> Vec<NewPending> {
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
    // Stable: equal ranks keep the shuffled order.
    wanted.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
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
        let any = |_: &NewPending| 0.0;
        let a = choose(wanted.clone(), 5, 9, any);
        assert_eq!(a.len(), 5);
        assert_eq!(a, choose(reversed, 5, 9, any));
        assert_ne!(a, choose(wanted.clone(), 5, 10, any), "another seed, another choice");
        assert_eq!(choose(wanted.clone(), 50, 9, any), wanted, "under the share, everything is bought");
    }

    #[test]
    fn the_lowest_ranks_are_bought_first_and_the_seed_chooses_among_equals() {
        // Parents 0 … 6; parent 2's children rank lowest, parent 5's next.
        let all = || (0..21).map(|i| want(&format!("prompt {i}"), i % 7)).collect::<Vec<_>>();
        let rank = |p: &NewPending| match p.parent {
            Some(2) => 0.1,
            Some(5) => 0.2,
            _ => 0.9,
        };
        let parents = |chosen: &[NewPending]| chosen.iter().map(|p| p.parent.unwrap_or(-1)).collect::<Vec<_>>();
        let first = choose(all(), 4, 9, rank);
        assert_eq!(parents(&first[..3]), [2, 2, 2]);
        assert_eq!(parents(&first[3..]), [5]);
        assert_eq!(parents(&choose(all(), 4, 11, rank)), parents(&first));
        let differs = (0..20).any(|seed| choose(all(), 4, seed, rank)[3] != first[3]);
        assert!(differs, "among parent 5's three children the seed chooses");
    }
}
