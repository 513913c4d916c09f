//! Judges: the vision-language model that compares images and writes new prompts.

use crate::{Cost, Image, Limits, PluginError};
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

/// The comparison an expansion or a mutation follows. EvolveDirector asks for new prompts in
/// the same conversation as the comparison that called for them, so that the judge writes them
/// having seen the images and its own verdict; a chat judge replays it as the turns before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The prompt the images were compared on.
    pub prompt: String,
    /// The images as the judge was shown them, in that order.
    pub images: Vec<Image>,
    /// The judge's reply ([`Verdict::raw`]).
    pub reply: String,
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
    /// The comparison that found the base model wanting, when there was one.
    pub after: Option<Comparison>,
}

/// Write one prompt unlike the `recent` ones (the paper's mutation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutateRequest {
    /// Prompts the new one must differ from, most recent last; may be empty.
    pub recent: Vec<String>,
    /// Seed for any sampling the judge does.
    pub seed: u64,
    /// The comparison that found a sample mastered, when the mutation replaces one (none for
    /// the initial prompts).
    pub after: Option<Comparison>,
}

/// A kind of judge call, for a quote before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeCall {
    /// A comparison of this many images.
    Compare {
        /// How many images are shown.
        images: usize,
    },
    /// An expansion into this many prompts.
    Expand {
        /// How many prompts are asked for.
        n: usize,
    },
    /// A mutation.
    Mutate,
}

/// What a judge call used, as the server counted it, and what that cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens read (text and images).
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// Their price.
    pub cost: Cost,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost = self.cost + other.cost;
    }
}

/// A judge's answer with what it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Metered<T> {
    /// The answer.
    pub value: T,
    /// What the call (every request it made) used.
    pub usage: Usage,
}

impl<T> Metered<T> {
    /// An answer that cost nothing (a judge that runs in-process, or does not count).
    pub fn free(value: T) -> Metered<T> {
        Metered { value, usage: Usage::default() }
    }
}

/// A vision-language model that evaluates images and writes prompts.
///
/// A judge that costs money reports it: it implements [`Judge::quote`] and the `*_metered`
/// methods (the plain methods then return their `value`). The host reserves each call's quote
/// against the experiment's `max_cost_usd` before making it and settles it at the reported
/// usage; a judge that does not override them is counted as free.
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

    /// The most a call of this kind should cost: what the host reserves against the budget
    /// before the call. Zero for a free judge.
    fn quote(&self, _call: JudgeCall) -> Cost {
        Cost::ZERO
    }

    /// [`Judge::compare`] with what it used.
    async fn compare_metered(&self, request: &CompareRequest) -> Result<Metered<Verdict>, PluginError> {
        Ok(Metered::free(self.compare(request).await?))
    }

    /// [`Judge::expand`] with what it used.
    async fn expand_metered(&self, request: &ExpandRequest) -> Result<Metered<Vec<String>>, PluginError> {
        Ok(Metered::free(self.expand(request).await?))
    }

    /// [`Judge::mutate`] with what it used.
    async fn mutate_metered(&self, request: &MutateRequest) -> Result<Metered<String>, PluginError> {
        Ok(Metered::free(self.mutate(request).await?))
    }
}
