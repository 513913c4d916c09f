//! `mutation`: when a sample is deleted, sometimes explore something new.
//!
//! Expansion only ever grows the set around prompts it already has; mutation keeps it from
//! collapsing onto them. With probability `mutation_ratio` (paper: 0.1), each deletion asks the
//! judge for a prompt unrelated to the recent ones.

use evolve_sdk::prelude::*;
use serde::Deserialize;

/// Config of the `mutation` operator.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct MutationConfig {
    /// Probability that a deletion also mutates in a new prompt (paper: 0.1).
    #[serde(default = "tenth")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub mutation_ratio: f64,
}

fn tenth() -> f64 {
    0.1
}

/// The `mutation` operator.
#[derive(Debug, Clone)]
pub struct Mutation {
    config: MutationConfig,
}

impl Mutation {
    /// An operator with `config`.
    pub fn new(config: MutationConfig) -> Self {
        Mutation { config }
    }
}

impl Operator for Mutation {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        let deleted = sample.proposed.contains(&Action::Deactivate);
        let draw = SplitMix64::from_parts(&[sample.seed, 0x6D75_7461_7465]).next_f64();
        Ok(if deleted && draw < self.config.mutation_ratio { vec![Action::Mutate] } else { vec![] })
    }
}

evolve_sdk::register_plugin! {
    kind: Operator,
    name: "mutation",
    description: "When a sample is deleted, with probability mutation_ratio (paper: 0.1) adds an unrelated new prompt.",
    config: MutationConfig,
    build: |config: MutationConfig, _ctx: &PluginContext| {
        if !(0.0..=1.0).contains(&config.mutation_ratio) {
            return Err(PluginError::InvalidConfig(format!(
                "mutation_ratio must be within [0, 1], got {}",
                config.mutation_ratio
            )));
        }
        Ok(Mutation::new(config))
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn mutates_at_the_configured_rate_after_deletions_only() {
        let op = Mutation::new(MutationConfig { mutation_ratio: 0.1 });
        let mutated = (0..10_000u64)
            .filter(|&seed| {
                let s = sample(Outcome::BaseAsGood, vec![Action::Deactivate], seed);
                op.decide(&s).unwrap() == vec![Action::Mutate]
            })
            .count();
        assert!((800..1200).contains(&mutated), "{mutated} of 10000");
        let kept = sample(Outcome::BaseAsGood, vec![], 3);
        assert!((0..100).all(|_| op.decide(&kept).unwrap().is_empty()));
    }

    #[test]
    fn deterministic_for_a_seed() {
        let op = Mutation::new(MutationConfig { mutation_ratio: 0.5 });
        let s = sample(Outcome::BaseAsGood, vec![Action::Deactivate], 42);
        assert_eq!(op.decide(&s).unwrap(), op.decide(&s).unwrap());
    }
}
