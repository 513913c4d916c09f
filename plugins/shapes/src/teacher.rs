//! The `shapes` teacher: renders any grammar prompt exactly, like a perfect image API, with
//! optional price, latency and failures so that budgets and fault paths can be tried offline.

use crate::grammar::Prompt;
use crate::render::render;
use evolve_sdk::prelude::*;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Config of the `shapes` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ShapesTeacherConfig {
    /// Price charged per image, in US dollars (default 0: free).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub price_usd: f64,
    /// Artificial latency per call, in milliseconds.
    #[serde(default)]
    #[schemars(range(max = 600_000))]
    pub latency_ms: u64,
    /// Probability that a call fails with a transient error (like a 503), to exercise retries.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub failure_rate: f64,
    /// Calls the host may have in flight at once.
    #[serde(default = "sixteen")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u32,
}

fn sixteen() -> u32 {
    16
}

/// The `shapes` teacher.
pub struct ShapesTeacher {
    config: ShapesTeacherConfig,
    seed: u64,
    calls: AtomicU64,
}

impl ShapesTeacher {
    /// A teacher with `config`; `seed` drives its failures.
    pub fn new(config: ShapesTeacherConfig, seed: u64) -> Result<Self, PluginError> {
        if !(0.0..=1.0).contains(&config.failure_rate) || config.price_usd < 0.0 || !config.price_usd.is_finite() {
            return Err(PluginError::InvalidConfig("failure_rate must be in [0, 1] and price_usd >= 0".into()));
        }
        Ok(ShapesTeacher { config, seed, calls: AtomicU64::new(0) })
    }
}

#[async_trait]
impl Teacher for ShapesTeacher {
    fn limits(&self) -> Limits {
        Limits { concurrency: self.config.concurrency, requests_per_minute: None }
    }

    fn price(&self, _request: &GenerateRequest) -> Cost {
        Cost::from_usd(self.config.price_usd)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let prompt = Prompt::parse(&request.prompt).map_err(|e| PluginError::InvalidInput(e.to_string()))?;
        if request.width < 16 || request.height < 16 || request.width > 4096 || request.height > 4096 {
            return Err(PluginError::InvalidInput(format!(
                "size {}x{} outside 16..=4096 pixels a side",
                request.width, request.height
            )));
        }
        if self.config.latency_ms > 0 {
            evolve_sdk::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        // Failures depend on the call count too, so that a retry of the same request can succeed.
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if SplitMix64::from_parts(&[self.seed, request.seed, call]).chance(self.config.failure_rate) {
            return Err(PluginError::transient("shapes teacher: injected failure (failure_rate)"));
        }
        Ok(GeneratedImage {
            image: render(&prompt, request.width, request.height, request.seed),
            revised_prompt: None,
            cost: Cost::from_usd(self.config.price_usd),
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "shapes",
    description: "Embedded world: renders any shapes-grammar prompt exactly (offline, free unless priced).",
    config: ShapesTeacherConfig,
    build: |config: ShapesTeacherConfig, ctx: &PluginContext| ShapesTeacher::new(config, ctx.seed),
}
