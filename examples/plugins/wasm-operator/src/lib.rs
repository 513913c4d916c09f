//! An example wasm evolve plugin: a curation operator that makes mastered prompts harder by
//! adding one constraint, as Evol-Instruct's "add constraints" in-depth evolving does for
//! instructions.
//!
//! When the judge finds the base model as good as the teacher on a simple prompt ("a red
//! circle"), the operator proposes the same prompt with a constraint appended ("a red circle
//! to the left of a blue square"); teachers render it and it joins the training set as a
//! mutation. The logic is plain Rust against `evolve-sdk`'s [`Operator`] trait; the last lines
//! export it as a wasm component, which the host runs sandboxed (no files, no network, bounded
//! memory and time per call).

use evolve_sdk::prelude::*;

/// The operator's config.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct AddConstraintConfig {
    /// Clauses that may be appended to a prompt; one is drawn per proposal.
    #[schemars(length(min = 1))]
    pub constraints: Vec<String>,
    /// Chance of proposing for a mastered sample.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rate: f64,
    /// Only prompts that start with one of these are evolved (empty: all).
    #[serde(default)]
    pub applies_to: Vec<String>,
    /// Prompts containing any of these already carry a constraint and are left alone.
    #[serde(default)]
    pub unless_contains: Vec<String>,
}

fn default_rate() -> f64 {
    0.5
}

/// The operator.
pub struct AddConstraint {
    config: AddConstraintConfig,
}

impl AddConstraint {
    /// The operator for `config`.
    pub fn new(config: AddConstraintConfig) -> Result<Self, PluginError> {
        if config.constraints.iter().any(|c| c.trim().is_empty()) {
            return Err(PluginError::InvalidConfig("constraints must not be empty strings".into()));
        }
        Ok(AddConstraint { config })
    }

    fn evolvable(&self, prompt: &str) -> bool {
        let starts = self.config.applies_to.is_empty() || self.config.applies_to.iter().any(|p| prompt.starts_with(p));
        starts && !self.config.unless_contains.iter().any(|c| prompt.contains(c.as_str()))
    }
}

impl Operator for AddConstraint {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        if sample.outcome != Outcome::BaseAsGood || !self.evolvable(&sample.prompt) {
            return Ok(vec![]);
        }
        let mut rng = SplitMix64::new(sample.seed ^ 0xC0457A1);
        if !rng.chance(self.config.rate) {
            return Ok(vec![]);
        }
        let Some(constraint) = rng.pick(&self.config.constraints) else { return Ok(vec![]) };
        let prompt = format!("{} {}", sample.prompt.trim_end(), constraint.trim());
        Ok(vec![Action::Propose { prompt }])
    }
}

#[cfg(target_arch = "wasm32")]
evolve_sdk::export_wasm_plugin! {
    kind: Operator,
    name: "add-constraint",
    description: "Evol-Instruct-style in-depth evolving: adds a constraint to prompts the base model has mastered.",
    config: AddConstraintConfig,
    build: |config: AddConstraintConfig, _ctx: &PluginContext| AddConstraint::new(config),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(prompt: &str, outcome: Outcome, seed: u64) -> EvaluatedSample {
        EvaluatedSample {
            sample_id: 1,
            prompt: prompt.into(),
            origin: Origin::Seed,
            round: 1,
            outcome,
            verdict: Verdict { choice: Choice::Tie, confidence: 1.0, raw: String::new() },
            rejudged: false,
            history: vec![],
            proposed: vec![],
            seed,
        }
    }

    fn operator() -> AddConstraint {
        AddConstraint::new(AddConstraintConfig {
            constraints: vec!["to the left of a blue square".into(), "above a small green circle".into()],
            rate: 1.0,
            applies_to: vec!["a ".into()],
            unless_contains: vec![" and ".into(), " of ".into(), " above ".into(), " below ".into()],
        })
        .unwrap()
    }

    #[test]
    fn adds_a_constraint_to_mastered_simple_prompts_only() {
        let op = operator();
        let actions = op.decide(&sample("a red circle", Outcome::BaseAsGood, 3)).unwrap();
        let [Action::Propose { prompt }] = actions.as_slice() else { panic!("{actions:?}") };
        assert!(prompt.starts_with("a red circle "), "{prompt}");
        assert!(op.decide(&sample("a red circle", Outcome::TeacherBetter, 3)).unwrap().is_empty());
        assert!(op.decide(&sample("a red circle and a cat", Outcome::BaseAsGood, 3)).unwrap().is_empty());
        assert!(op.decide(&sample("two red circles", Outcome::BaseAsGood, 3)).unwrap().is_empty());
    }

    #[test]
    fn draws_constraints_by_seed() {
        let op = operator();
        let prompts: std::collections::HashSet<String> = (0..32)
            .flat_map(|seed| op.decide(&sample("a red circle", Outcome::BaseAsGood, seed)).unwrap())
            .map(|a| format!("{a:?}"))
            .collect();
        assert_eq!(prompts.len(), 2);
    }
}
