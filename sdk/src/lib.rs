//! # evolve-sdk
//!
//! Everything a plugin author needs to extend [evolve](https://github.com/evolve-rs/evolve):
//! the data that flows through the evolution loop, the five plugin traits (teacher, judge,
//! operator, base model, evaluator), config-schema helpers and registration of built-in plugins.
//!
//! evolve trains a text-to-image model (the **base model**) on images bought from better models
//! (**teachers**) while a vision-language model (the **judge**) keeps rewriting the training set
//! through a chain of **operators**. Each of those four roles is a trait here:
//!
//! | kind | trait | what it does |
//! |---|---|---|
//! | teacher | [`Teacher`] | renders a prompt into an image, at a price |
//! | judge | [`Judge`] | compares images for a prompt, writes new prompts |
//! | operator | [`Operator`] | turns a judged sample into actions on the training set |
//! | base model | [`BaseModel`] | trains on a batch, samples images, saves and loads itself |
//! | evaluator | [`Evaluator`] | a held-out prompt suite and a scorer for its images |
//!
//! A plugin crate depends on this crate only, never on the host. The same trait
//! implementation can be registered as a built-in ([`register_plugin!`]), exported as a native
//! library (`export_native_plugin!`, feature `native`) or as a wasm component
//! (`export_wasm_plugin!`, target `wasm32-wasip2`, a WIT world per kind in `sdk/wit/`); the three
//! macros take the same arguments. External plugins reach the network through [`host::http`].
//!
//! ```
//! use evolve_sdk::prelude::*;
//!
//! /// Deactivates every sample whose prompt mentions a banned word.
//! struct Banlist { words: Vec<String> }
//!
//! // Plugin crates reach schemars through the SDK, so the derive is told where it lives.
//! #[derive(serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! #[schemars(crate = "evolve_sdk::schemars")]
//! struct BanlistConfig {
//!     /// Words that remove a prompt from the active set.
//!     words: Vec<String>,
//! }
//!
//! impl Operator for Banlist {
//!     fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
//!         let banned = self.words.iter().any(|w| sample.prompt.contains(w.as_str()));
//!         Ok(if banned { vec![Action::Deactivate] } else { vec![] })
//!     }
//! }
//!
//! evolve_sdk::register_plugin! {
//!     kind: Operator,
//!     name: "banlist",
//!     description: "Deactivates samples whose prompt contains a banned word.",
//!     config: BanlistConfig,
//!     build: |config: BanlistConfig, _ctx: &PluginContext| Ok(Banlist { words: config.words }),
//! }
//! # fn main() {}
//! ```

pub mod base_model;
mod block_on;
#[cfg(feature = "codec")]
pub mod codec;
pub mod config;
pub mod error;
pub mod evaluator;
pub mod exported;
pub mod host;
#[cfg(feature = "http")]
pub mod http;
pub mod image;
pub mod judge;
#[cfg(feature = "native")]
pub mod native;
pub mod operator;
pub mod plugin;
pub mod registry;
pub mod rng;
pub mod teacher;
pub mod time;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use async_trait::async_trait;
pub use base_model::{BaseModel, InitialNoise, SampleRequest, StepStats, TrainBatch};
pub use block_on::block_on;
pub use config::{SecretRef, config_schema, decode_config};
pub use error::PluginError;
pub use evaluator::{EvalCase, EvalSuite, Evaluator};
pub use image::{Image, ImageError};
pub use judge::{
    Choice, CompareRequest, Comparison, ExpandRequest, Judge, JudgeCall, Metered, MutateRequest, Usage, Verdict,
};
pub use operator::{Action, EvaluatedSample, Operator, Origin, Outcome};
pub use plugin::{DataParallel, Limits, PluginContext, PluginInfo, PluginKind};
pub use registry::{BuiltinPlugin, Constructor, builtin_plugins};
pub use rng::SplitMix64;
pub use teacher::{Cost, GenerateRequest, GeneratedImage, Job, Submitted, Teacher, generate_by_job};

/// Re-exported so that [`register_plugin!`] works without the plugin crate naming `inventory`.
#[doc(hidden)]
pub use inventory;
/// Re-exported so that plugin configs can derive `JsonSchema` with the same schemars version.
pub use schemars;
/// Re-exported for the export macros.
#[doc(hidden)]
pub use serde_json;

/// The items a plugin implementation usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Action, BaseModel, Choice, CompareRequest, Comparison, Cost, EvalCase, EvalSuite, EvaluatedSample, Evaluator,
        ExpandRequest, GenerateRequest, GeneratedImage, Image, Job, Judge, JudgeCall, Limits, Metered, MutateRequest,
        Operator, Origin, Outcome, PluginContext, PluginError, SampleRequest, SecretRef, SplitMix64, StepStats,
        Submitted, Teacher, TrainBatch, Usage, Verdict, async_trait,
    };
}
