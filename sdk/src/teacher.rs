//! Teachers: the paid image models the base model learns from.

use crate::{Image, Limits, PluginError};
use serde::{Deserialize, Serialize};

/// Money, counted in millionths of a US dollar so that budgets add up exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cost {
    /// Micro-dollars (1 USD = 1,000,000).
    pub micro_usd: u64,
}

impl Cost {
    /// Nothing.
    pub const ZERO: Cost = Cost { micro_usd: 0 };

    /// The nearest micro-dollar to `usd` (negative and non-finite amounts become zero).
    pub fn from_usd(usd: f64) -> Cost {
        if usd.is_finite() && usd > 0.0 { Cost { micro_usd: (usd * 1e6).round() as u64 } } else { Cost::ZERO }
    }

    /// The amount in dollars.
    pub fn usd(self) -> f64 {
        self.micro_usd as f64 / 1e6
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, rhs: Cost) -> Cost {
        Cost { micro_usd: self.micro_usd.saturating_add(rhs.micro_usd) }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, |a, b| a + b)
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.4}", self.usd())
    }
}

/// One image to render. Everything that changes the result is in here, because the host hashes
/// this request (with the teacher's identity) to recognise a call it has already paid for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The text to render.
    pub prompt: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Seed for providers that accept one; others ignore it.
    pub seed: u64,
}

/// What a teacher returns for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedImage {
    /// The image, at the size the provider delivered (the host resizes for training).
    pub image: Image,
    /// The prompt the provider actually rendered, when it rewrites prompts (DALL-E 3 does).
    pub revised_prompt: Option<String>,
    /// What this call cost.
    pub cost: Cost,
}

/// An image model to learn from.
///
/// Implementations make one call per [`generate`](Teacher::generate); retries, rate limits,
/// concurrency and never paying twice for the same request are the host's job.
#[async_trait::async_trait]
pub trait Teacher: Send + Sync {
    /// How many calls the provider tolerates; the host never exceeds it.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// The price of `request` before making it, so that the host can stop at a cost budget
    /// instead of overshooting it.
    fn price(&self, request: &GenerateRequest) -> Cost;

    /// Renders `request`.
    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError>;
}
