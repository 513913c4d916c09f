//! Judges: the vision-language model that compares images and writes new prompts.

use crate::{Image, Limits, PluginError};
use serde::{Deserialize, Serialize};

/// Which of the compared images the judge prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum Choice {
    /// The image at this index of [`CompareRequest::images`] aligns best with the prompt.
    Best(usize),
    /// No image is better than the others.
    Tie,
}

/// A judge's answer to a [`CompareRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The preferred image.
    pub choice: Choice,
    /// How sure the judge is, in `[0, 1]`; 1 when the judge cannot say.
    pub confidence: f32,
    /// The judge's raw reply, kept in the ledger for auditing.
    pub raw: String,
}

impl Verdict {
    /// The verdict if it is one a host can record for a comparison of `images` images: a
    /// choice among them and a confidence in `[0, 1]` (not NaN). A judge outside the host's
    /// code (a native library, a wasm component) is checked with this at the boundary, so a
    /// bad answer is that judge's error rather than a corrupt ledger row.
    pub fn checked(self, images: usize) -> Result<Verdict, PluginError> {
        if let Choice::Best(index) = self.choice
            && index >= images
        {
            return Err(PluginError::Failed(format!(
                "the judge chose image {index} of {images} (valid: 0 to {})",
                images.saturating_sub(1)
            )));
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(PluginError::Failed(format!(
                "the judge's confidence is {}; it must be a number in [0, 1]",
                self.confidence
            )));
        }
        Ok(self)
    }
}

/// Compare `images` for how well each matches `prompt`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRequest {
    /// The prompt the images were made for.
    pub prompt: String,
    /// Two or more images, in the order the judge should see them (the host randomises it).
    pub images: Vec<Image>,
    /// Seed for any sampling the judge does.
    pub seed: u64,
}

/// Write `n` variations of `prompt` (the paper's expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandRequest {
    /// The prompt the base model still gets wrong.
    pub prompt: String,
    /// How many new prompts to write.
    pub n: usize,
    /// Seed for any sampling the judge does.
    pub seed: u64,
}

/// Write one prompt unlike the `recent` ones (the paper's mutation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutateRequest {
    /// Prompts the new one must differ from, most recent last; may be empty.
    pub recent: Vec<String>,
    /// Seed for any sampling the judge does.
    pub seed: u64,
}

/// A vision-language model that evaluates images and writes prompts.
#[async_trait::async_trait]
pub trait Judge: Send + Sync {
    /// How many calls the judge's server tolerates; the host never exceeds it.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Which image matches the prompt best.
    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError>;

    /// `request.n` new prompts that vary the nouns, colours and styles of `request.prompt`.
    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError>;

    /// One new prompt unrelated to `request.recent`, with a different structure.
    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError>;
}
