//! `discrimination`: guards the verdict against the judge's position bias.
//!
//! VLMs prefer whichever image they see first (or second) more often than chance. The host
//! already shows the pair in random order; with `swap_debias` this operator asks for a second
//! verdict with the order swapped, and the host treats a disagreement as "base as good"
//! (no evidence the teacher is better). With `min_confidence`, only unsure verdicts are re-asked.

use evolve_sdk::prelude::*;
use serde::Deserialize;

/// Config of the `discrimination` operator.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct DiscriminationConfig {
    /// Ask the judge again with the images in swapped order before acting on a verdict.
    #[serde(default)]
    pub swap_debias: bool,
    /// Only re-ask when the verdict's confidence is below this (1.0 = always re-ask).
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f32,
}

fn one() -> f32 {
    1.0
}

/// The `discrimination` operator.
#[derive(Debug, Clone)]
pub struct Discrimination {
    config: DiscriminationConfig,
}

impl Discrimination {
    /// An operator with `config`.
    pub fn new(config: DiscriminationConfig) -> Self {
        Discrimination { config }
    }
}

impl Operator for Discrimination {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        let unsure = sample.verdict.confidence < self.config.min_confidence || self.config.min_confidence >= 1.0;
        Ok(if self.config.swap_debias && !sample.rejudged && unsure { vec![Action::Rejudge] } else { vec![] })
    }
}

evolve_sdk::register_plugin! {
    kind: Operator,
    name: "discrimination",
    description: "Re-asks the judge with swapped image order to cancel position bias (optional).",
    config: DiscriminationConfig,
    build: |config: DiscriminationConfig, _ctx: &PluginContext| Ok(Discrimination::new(config)),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn rejudges_once_when_enabled() {
        let op = Discrimination::new(DiscriminationConfig { swap_debias: true, min_confidence: 1.0 });
        let mut s = sample(Outcome::TeacherBetter, vec![], 0);
        assert_eq!(op.decide(&s).unwrap(), vec![Action::Rejudge]);
        s.rejudged = true;
        assert!(op.decide(&s).unwrap().is_empty());
    }

    #[test]
    fn confident_verdicts_pass() {
        let op = Discrimination::new(DiscriminationConfig { swap_debias: true, min_confidence: 0.8 });
        let mut s = sample(Outcome::TeacherBetter, vec![], 0);
        s.verdict.confidence = 0.9;
        assert!(op.decide(&s).unwrap().is_empty());
        s.verdict.confidence = 0.5;
        assert_eq!(op.decide(&s).unwrap(), vec![Action::Rejudge]);
    }

    #[test]
    fn off_by_default() {
        let op = Discrimination::new(evolve_sdk::decode_config(serde_json::json!({})).unwrap());
        assert!(op.decide(&sample(Outcome::TeacherBetter, vec![], 0)).unwrap().is_empty());
    }
}
