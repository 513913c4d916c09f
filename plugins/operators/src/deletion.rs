//! `deletion`: what the base model has mastered leaves the active set.
//!
//! Training on mastered samples wastes steps; the paper removes a sample as soon as the judge
//! finds the base model's image as good as the teacher's. `patience` > 1 waits for that many
//! consecutive such verdicts, which guards against a lucky sample or a noisy judge.

use evolve_sdk::prelude::*;
use serde::Deserialize;

/// Config of the `deletion` operator.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct DeletionConfig {
    /// Consecutive "base as good" verdicts needed before deletion (paper: 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub patience: u32,
}

fn one() -> u32 {
    1
}

/// The `deletion` operator.
#[derive(Debug, Clone)]
pub struct Deletion {
    config: DeletionConfig,
}

impl Deletion {
    /// An operator with `config`.
    pub fn new(config: DeletionConfig) -> Self {
        Deletion { config }
    }
}

impl Operator for Deletion {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        if sample.outcome != Outcome::BaseAsGood {
            return Ok(vec![]);
        }
        let earlier_streak = sample.history.iter().rev().take_while(|o| **o == Outcome::BaseAsGood).count() as u32;
        Ok(if earlier_streak + 1 >= self.config.patience { vec![Action::Deactivate] } else { vec![] })
    }
}

evolve_sdk::register_plugin! {
    kind: Operator,
    name: "deletion",
    description: "Removes samples the base model has mastered from the active set (kept in the ledger).",
    config: DeletionConfig,
    build: |config: DeletionConfig, _ctx: &PluginContext| Ok(Deletion::new(config)),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn deletes_mastered_samples() {
        let op = Deletion::new(DeletionConfig { patience: 1 });
        assert_eq!(op.decide(&sample(Outcome::BaseAsGood, vec![], 0)).unwrap(), vec![Action::Deactivate]);
        assert!(op.decide(&sample(Outcome::TeacherBetter, vec![], 0)).unwrap().is_empty());
    }

    #[test]
    fn patience_counts_the_current_streak() {
        let op = Deletion::new(DeletionConfig { patience: 3 });
        let mut s = sample(Outcome::BaseAsGood, vec![], 0);
        s.history = vec![Outcome::BaseAsGood, Outcome::TeacherBetter, Outcome::BaseAsGood];
        assert!(op.decide(&s).unwrap().is_empty(), "streak is 2 with the current verdict");
        s.history.push(Outcome::BaseAsGood);
        assert_eq!(op.decide(&s).unwrap(), vec![Action::Deactivate]);
    }
}
