//! Operators: the curation rules that turn a judged sample into changes of the training set.

use crate::{PluginError, Verdict};
use serde::{Deserialize, Serialize};

/// How a sample entered the training set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// From the experiment's initial prompts.
    Seed,
    /// Written by the judge as a variation of a prompt the base model got wrong.
    Expansion,
    /// Written by the judge as something new, after a sample was mastered.
    Mutation,
    /// Brought in with its image from an existing dataset (`[prompts] from_dataset`), not bought.
    Imported,
}

impl Origin {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::Expansion => "expansion",
            Origin::Mutation => "mutation",
            Origin::Imported => "imported",
        }
    }

    /// The origin named `name` (as [`as_str`](Origin::as_str) writes it), if any.
    pub fn from_name(name: &str) -> Option<Origin> {
        [Origin::Seed, Origin::Expansion, Origin::Mutation, Origin::Imported].into_iter().find(|o| o.as_str() == name)
    }
}

/// What the judge concluded about the base model on one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The teacher's image is better: the base model has more to learn here.
    TeacherBetter,
    /// The base model's image is as good as the teacher's: the sample is mastered.
    BaseAsGood,
}

/// One change an operator asks for. The host applies the union of a chain's actions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Leave the sample active (the default when no operator acts).
    Keep,
    /// Remove the sample from the active set; it stays in the ledger.
    Deactivate,
    /// Ask the judge for `n` variations of the prompt; teachers render them.
    Expand {
        /// How many new prompts.
        n: usize,
    },
    /// Ask the judge for a prompt unrelated to recent ones; teachers render it.
    Mutate,
    /// Judge the sample again with the images in swapped order (position-bias check).
    Rejudge,
    /// Add this prompt, written by the operator itself (e.g. the sample's prompt with a
    /// constraint added); teachers render it and it enters the set as a mutation.
    Propose {
        /// The new prompt.
        prompt: String,
    },
}

/// A sample after the judge compared the base model's image with the teacher's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatedSample {
    /// The ledger id of the sample.
    pub sample_id: i64,
    /// Its prompt.
    pub prompt: String,
    /// How it entered the set.
    pub origin: Origin,
    /// The round being run (1-based).
    pub round: u64,
    /// This round's conclusion.
    pub outcome: Outcome,
    /// The judge's verdict behind it.
    pub verdict: Verdict,
    /// Whether the verdict was confirmed with the images in swapped order.
    pub rejudged: bool,
    /// Outcomes of earlier rounds for this sample, oldest first.
    pub history: Vec<Outcome>,
    /// Actions earlier operators in the chain asked for.
    pub proposed: Vec<Action>,
    /// Seed for this decision; operators that draw randomness use [`crate::SplitMix64`] on it.
    pub seed: u64,
}

/// A curation rule. Synchronous and pure: everything it may look at is in the sample, so the
/// same trait can run built in, as a native library or inside a wasm sandbox.
pub trait Operator: Send + Sync {
    /// The actions this operator asks for on `sample` (empty for none).
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError>;
}
