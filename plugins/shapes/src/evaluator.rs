//! The `shapes` evaluator: ShapesEval as an evolve plugin.

use crate::clauses::clauses;
use crate::detect::detect;
use crate::eval::{VERSION, is_eval_prompt, suite};
use crate::grammar::Prompt;
use evolve_sdk::prelude::*;
use serde::Deserialize;

/// Config of the `shapes` evaluator (none yet; the suite is fixed and versioned).
#[derive(Debug, Clone, Default, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ShapesEvalConfig {}

/// ShapesEval: an image scores 1 when the detector finds every clause of its prompt satisfied.
#[derive(Debug, Clone, Default)]
pub struct ShapesEval;

impl Evaluator for ShapesEval {
    fn suite(&self) -> EvalSuite {
        EvalSuite {
            name: "ShapesEval".into(),
            version: VERSION,
            cases: suite()
                .iter()
                .map(|e| EvalCase { prompt: e.prompt.to_string(), category: e.category.name().into(), seed: e.seed })
                .collect(),
        }
    }

    fn score(&self, case: &EvalCase, image: &Image) -> Result<f32, PluginError> {
        let prompt = Prompt::parse(&case.prompt).map_err(|e| PluginError::InvalidInput(e.to_string()))?;
        let objects = detect(image);
        Ok(if clauses(&prompt).iter().all(|c| c.holds(&objects)) { 1.0 } else { 0.0 })
    }

    fn holds_out(&self, prompt: &str) -> bool {
        Prompt::parse(prompt).is_ok_and(|p| is_eval_prompt(&p))
    }
}

evolve_sdk::register_plugin! {
    kind: Evaluator,
    name: "shapes",
    description: "ShapesEval: 406 held-out prompts in GenEval's six categories, scored by the shapes detector.",
    config: ShapesEvalConfig,
    build: |_config: ShapesEvalConfig, _ctx: &PluginContext| Ok(ShapesEval),
}
