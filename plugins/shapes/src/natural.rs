//! A prompt set skewed as a real one is, for benchmarks that need the paper's baseline: uniform
//! sampling from a *natural* prompt set, not from the grammar the evaluation is drawn from.
//!
//! Captions of real images mostly name one or two things; counts and spatial relations are
//! rare in them (GenEval's authors find models weakest exactly there). Uniform sampling from
//! the grammar is the best baseline this world allows — the held-out evaluation is drawn from
//! the same distribution — and no director beats it by choosing prompts. A set that, like
//! real ones, under-represents what the evaluation asks is where choosing pays.

use crate::eval::is_eval_prompt;
use crate::grammar::{Prompt, Structure};
use evolve_sdk::SplitMix64;

/// How often each structure is drawn: one object 35%, two objects 45%, a count 10%, a spatial
/// relation 10% (the grammar's uniform draw is 25% each).
pub const WEIGHTS: [(Structure, f64); 4] =
    [(Structure::Single, 0.35), (Structure::Pair, 0.45), (Structure::Count, 0.10), (Structure::Relation, 0.10)];

/// `n` distinct prompts of the natural set for `seed`, none of them held out for evaluation.
/// The grammar has only so many one-object and counting prompts (84 and 196), so a large set
/// holds every one of them and is otherwise pairs and relations in the ratio of their weights.
/// A longer set for the same seed starts with the shorter one.
pub fn prompts(seed: u64, n: usize) -> Vec<String> {
    let mut rng = SplitMix64::new(seed ^ 0x004E_4154_5552_414C);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < 100 * n + 1000 {
        attempts += 1;
        let draw = rng.next_f64();
        let mut acc = 0.0;
        let structure = WEIGHTS
            .iter()
            .find(|(_, w)| {
                acc += w;
                draw < acc
            })
            .map_or(Structure::Relation, |(s, _)| *s);
        let prompt = Prompt::random(structure, &mut rng);
        if !is_eval_prompt(&prompt) && seen.insert(prompt) {
            out.push(prompt.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_distinct_held_out_free_skewed_and_a_prefix_of_longer_ones() {
        let set = prompts(3, 3000);
        assert_eq!(set.len(), 3000);
        assert_eq!(set.iter().collect::<std::collections::HashSet<_>>().len(), 3000);
        let parsed: Vec<Prompt> = set.iter().map(|p| Prompt::parse(p).unwrap()).collect();
        assert!(parsed.iter().all(|p| !is_eval_prompt(p)));
        let share = |s: Structure| parsed.iter().filter(|p| p.structure() == s).count() as f64 / 3000.0;
        // Relations are rare (uniform over the grammar, distinct, they would be about 45%).
        assert!(share(Structure::Relation) < 0.25, "{}", share(Structure::Relation));
        assert!(share(Structure::Pair) > 0.6, "{}", share(Structure::Pair));
        assert_eq!(prompts(3, 100), set[..100]);
        assert_ne!(prompts(4, 100), set[..100]);
    }
}
