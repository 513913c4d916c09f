//! Plugins that say back, as text, every value the host sent them, and answer with values that
//! use every field: the wasm boundary's round-trip tests (`tests/boundary.rs`) compare both with
//! what the host holds. Text is each SDK value's `Debug` form (an image's pixels as a
//! [`fingerprint`], since its `Debug` shows only its size), so a field the host or the guest
//! bindings drop shows up as a difference.
//!
//! A prompt `error:KIND` makes the teacher fail with that [`PluginError`] case instead.

use evolve_sdk::prelude::*;
use std::time::Duration;

/// The fixtures take no settings.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct MirrorConfig {}

/// An image as text: its size and an FNV-1a hash of its pixels.
pub fn fingerprint(image: &Image) -> String {
    let hash =
        image.pixels().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{}x{}#{hash:016x}", image.width(), image.height())
}

fn fingerprints(images: &[Image]) -> Vec<String> {
    images.iter().map(fingerprint).collect()
}

fn comparison(after: &Option<Comparison>) -> String {
    format!("{after:?} {:?}", after.as_ref().map(|c| fingerprints(&c.images)))
}

/// The error a prompt `error:KIND` asks for.
pub fn error_for(prompt: &str) -> Option<PluginError> {
    let kind = prompt.strip_prefix("error:")?;
    let message = format!("asked for {kind}");
    Some(match kind {
        "invalid_config" => PluginError::InvalidConfig(message),
        "invalid_input" => PluginError::InvalidInput(message),
        "transient" => PluginError::Transient { message, retry_after: Some(Duration::from_millis(1500)) },
        "uncertain" => PluginError::Uncertain(message),
        "billed" => PluginError::Billed(message),
        "unsupported" => PluginError::Unsupported(message),
        _ => PluginError::Failed(message),
    })
}

/// The teacher: prices a request at 1000 + its seed micro-dollars, paints a two-colour image of
/// the size asked, and gives the request back as its revised prompt.
pub struct MirrorTeacher {
    /// The context it was started with, as text.
    pub context: String,
}

/// The image [`MirrorTeacher`] paints for `request`.
pub fn painted(request: &GenerateRequest) -> Image {
    let mut image = Image::filled(request.width, request.height, [1, 2, 3]);
    image.put(request.width - 1, request.height - 1, [250, 128, (request.seed % 251) as u8]);
    image
}

#[async_trait]
impl Teacher for MirrorTeacher {
    fn limits(&self) -> Limits {
        Limits { concurrency: 3, requests_per_minute: Some(77) }
    }

    fn price(&self, request: &GenerateRequest) -> Cost {
        Cost { micro_usd: 1000 + request.seed }
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        if let Some(error) = error_for(&request.prompt) {
            return Err(error);
        }
        Ok(GeneratedImage {
            image: painted(request),
            revised_prompt: Some(format!("{request:?} {}", self.context)),
            cost: Cost { micro_usd: 4242 },
        })
    }
}

/// The judge: prefers the last image (a tie for the prompt `tie`), and writes back what it was
/// asked.
pub struct MirrorJudge;

#[async_trait]
impl Judge for MirrorJudge {
    fn limits(&self) -> Limits {
        Limits { concurrency: 5, requests_per_minute: None }
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let choice = if request.prompt == "tie" { Choice::Tie } else { Choice::Best(request.images.len() - 1) };
        let raw = format!("{request:?} {:?}", fingerprints(&request.images));
        Ok(Verdict { choice, confidence: 0.375, raw })
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        Ok(vec![format!("{request:?}"), comparison(&request.after)])
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        Ok(format!("{request:?} {}", comparison(&request.after)))
    }
}

/// The operator: proposes the sample and its context back as text, then every other action.
pub struct MirrorOperator {
    /// The context it was started with, as text.
    pub context: String,
}

impl Operator for MirrorOperator {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        Ok(vec![
            Action::Propose { prompt: format!("{sample:?}") },
            Action::Propose { prompt: self.context.clone() },
            Action::Keep,
            Action::Deactivate,
            Action::Expand { n: 7 },
            Action::Mutate,
            Action::Rejudge,
        ])
    }
}

#[cfg(all(target_arch = "wasm32", feature = "teacher"))]
evolve_sdk::export_wasm_plugin! {
    kind: Teacher,
    name: "mirror-teacher",
    description: "Test fixture: gives back every request it gets.",
    config: MirrorConfig,
    build: |_config: MirrorConfig, ctx: &PluginContext| Ok(MirrorTeacher { context: format!("{ctx:?}") }),
}

#[cfg(all(target_arch = "wasm32", feature = "judge"))]
evolve_sdk::export_wasm_plugin! {
    kind: Judge,
    name: "mirror-judge",
    description: "Test fixture: gives back every request it gets.",
    config: MirrorConfig,
    build: |_config: MirrorConfig, _ctx: &PluginContext| Ok(MirrorJudge),
}

#[cfg(all(target_arch = "wasm32", feature = "operator"))]
evolve_sdk::export_wasm_plugin! {
    kind: Operator,
    name: "mirror-operator",
    description: "Test fixture: gives back every sample it gets.",
    config: MirrorConfig,
    build: |_config: MirrorConfig, ctx: &PluginContext| Ok(MirrorOperator { context: format!("{ctx:?}") }),
}
