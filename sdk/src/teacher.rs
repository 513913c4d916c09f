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

/// A job a queueing provider accepted (and bills), as text only its teacher reads back: the
/// provider's job id, its polling address. The host writes it down before collecting the
/// result, so that a run stopped at any moment collects what it paid for instead of buying it
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job(pub String);

/// What a teacher's [`submit`](Teacher::submit) got from the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The provider answered with the image at once.
    Done(GeneratedImage),
    /// The provider queued the request; [`collect`](Teacher::collect) fetches the result.
    Accepted(Job),
}

/// An image model to learn from.
///
/// Implementations make one call per [`generate`](Teacher::generate); retries, rate limits,
/// concurrency and never paying twice for the same request are the host's job. A provider that
/// queues requests also implements [`submit`](Teacher::submit) and [`collect`](Teacher::collect)
/// (and `generate` as [`generate_by_job`]), so that the host can record the accepted job between
/// the two.
#[async_trait::async_trait]
pub trait Teacher: Send + Sync {
    /// How many calls the provider tolerates; the host never exceeds it.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// The price of `request` before making it, so that the host can stop at a cost budget
    /// instead of overshooting it.
    fn price(&self, request: &GenerateRequest) -> Cost;

    /// The price of `request`, or why it cannot be priced. The host quotes every call with it
    /// and buys nothing it cannot price. The default is [`price`](Teacher::price); only wrappers
    /// of plugins across a boundary, whose pricing can fail, override it.
    fn quote(&self, request: &GenerateRequest) -> Result<Cost, PluginError> {
        Ok(self.price(request))
    }

    /// Renders `request`.
    ///
    /// Report an error after the provider may have accepted the request (no answer came, or it
    /// could not be read) as [`PluginError::Uncertain`]: the host then counts it as billed.
    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError>;

    /// Sends `request` and returns as soon as the provider has it: the image, or the job it
    /// queued. The default renders the image at once with [`generate`](Teacher::generate).
    async fn submit(&self, request: &GenerateRequest) -> Result<Submitted, PluginError> {
        self.generate(request).await.map(Submitted::Done)
    }

    /// Fetches the result of `job`, which this teacher's provider accepted for `request` (maybe
    /// in an earlier process). Collecting again must not buy again.
    async fn collect(&self, request: &GenerateRequest, job: &Job) -> Result<GeneratedImage, PluginError> {
        let _ = (request, job);
        Err(PluginError::Unsupported("this teacher queues no jobs".into()))
    }
}

/// [`Teacher::generate`] for a teacher whose provider queues jobs: submit, then collect.
pub async fn generate_by_job<T: Teacher + ?Sized>(
    teacher: &T,
    request: &GenerateRequest,
) -> Result<GeneratedImage, PluginError> {
    match teacher.submit(request).await? {
        Submitted::Done(image) => Ok(image),
        Submitted::Accepted(job) => teacher.collect(request, &job).await,
    }
}
