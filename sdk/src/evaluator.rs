//! Evaluators: a fixed, held-out suite of prompts and a scorer for images made from them.

use crate::{Image, PluginError};
use serde::{Deserialize, Serialize};

/// One prompt of an evaluation suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalCase {
    /// The prompt to render.
    pub prompt: String,
    /// The category it is scored under (e.g. GenEval's `counting`).
    pub category: String,
    /// The seed to render it with, so that every model is scored on the same noise.
    pub seed: u64,
}

/// A versioned evaluation suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSuite {
    /// The suite's name (e.g. `ShapesEval`).
    pub name: String,
    /// Scores are only comparable within one version.
    pub version: u32,
    /// The prompts, in a fixed order.
    pub cases: Vec<EvalCase>,
}

/// Scores images against a held-out prompt suite.
pub trait Evaluator: Send + Sync {
    /// The suite.
    fn suite(&self) -> EvalSuite;

    /// The score of `image` for `case`, in `[0, 1]` (1 = every requirement met).
    fn score(&self, case: &EvalCase, image: &Image) -> Result<f32, PluginError>;

    /// Whether `prompt` is held out for evaluation; the host never trains on such a prompt.
    fn holds_out(&self, prompt: &str) -> bool;
}
