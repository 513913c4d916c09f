//! `expansion`: where the teacher is still better, learn more of the same kind.
//!
//! The paper asks the judge for `expand_num` (3) prompts that replace the nouns, colours and
//! styles of the prompt the base model got wrong, so that the set grows where the model is weak.

use evolve_sdk::prelude::*;
use serde::Deserialize;

/// Config of the `expansion` operator.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ExpansionConfig {
    /// New prompts per sample the base model gets wrong (paper: 3).
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 64))]
    pub expand_num: usize,
}

fn three() -> usize {
    3
}

/// The `expansion` operator.
#[derive(Debug, Clone)]
pub struct Expansion {
    config: ExpansionConfig,
}

impl Expansion {
    /// An operator with `config`.
    pub fn new(config: ExpansionConfig) -> Self {
        Expansion { config }
    }
}

impl Operator for Expansion {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        Ok(match sample.outcome {
            Outcome::TeacherBetter => vec![Action::Expand { n: self.config.expand_num }],
            Outcome::BaseAsGood => vec![],
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Operator,
    name: "expansion",
    description: "Where the teacher is better, asks the judge for variations of the prompt (paper: 3).",
    config: ExpansionConfig,
    build: |config: ExpansionConfig, ctx: &PluginContext| {
        if config.expand_num == 0 {
            return Err(PluginError::InvalidConfig(format!("{}: expand_num must be at least 1", ctx.instance)));
        }
        Ok(Expansion::new(config))
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn expands_only_when_teacher_is_better() {
        let op = Expansion::new(ExpansionConfig { expand_num: 3 });
        assert_eq!(op.decide(&sample(Outcome::TeacherBetter, vec![], 0)).unwrap(), vec![Action::Expand { n: 3 }]);
        assert!(op.decide(&sample(Outcome::BaseAsGood, vec![], 0)).unwrap().is_empty());
    }
}
