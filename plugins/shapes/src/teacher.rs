//! The `shapes` teacher: renders any grammar prompt exactly, like a perfect image API, with
//! optional price, latency, failures and sloppiness so that budgets, fault paths and the choice
//! between several teachers can be tried offline. With `invoice`, every billed call is appended
//! to a file — the provider's side of the books, which tests hold the run's ledger against.

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
    /// Probability that a call panics before billing (a bug in a plugin), to check that a run
    /// contains it.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub panic_rate: f64,
    /// Calls the host may have in flight at once.
    #[serde(default = "sixteen")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u32,
    /// Probability that a call renders a different prompt of the same structure instead of the
    /// one asked for (a worse teacher, for multi-teacher experiments).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sloppiness: f64,
    /// A file to which every billed call is appended as one JSON line (prompt, size, seed).
    #[serde(default)]
    pub invoice: Option<std::path::PathBuf>,
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
        let unit = 0.0..=1.0;
        if !unit.contains(&config.failure_rate)
            || !unit.contains(&config.sloppiness)
            || !unit.contains(&config.panic_rate)
            || config.price_usd < 0.0
            || !config.price_usd.is_finite()
        {
            return Err(PluginError::InvalidConfig(
                "failure_rate, sloppiness and panic_rate must be in [0, 1] and price_usd >= 0".into(),
            ));
        }
        Ok(ShapesTeacher { config, seed, calls: AtomicU64::new(0) })
    }
}

impl ShapesTeacher {
    /// Appends `request` to the invoice file.
    fn bill(&self, path: &std::path::Path, request: &GenerateRequest) -> Result<(), PluginError> {
        use std::io::Write;
        let line = serde_json::json!({
            "prompt": request.prompt, "width": request.width, "height": request.height, "seed": request.seed,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| PluginError::Failed(format!("invoice {}: {e}", path.display())))?;
        // One write of the whole line, so that a process killed mid-call leaves no torn line.
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| PluginError::Failed(format!("invoice {}: {e}", path.display())))
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
        if SplitMix64::from_parts(&[self.seed, request.seed, call, 0x9A41C]).chance(self.config.panic_rate) {
            panic!("shapes teacher: injected panic (panic_rate) on {:?}", request.prompt);
        }
        let mut rng = SplitMix64::from_parts(&[self.seed, request.seed, 0x510_99E]);
        let rendered =
            if rng.chance(self.config.sloppiness) { Prompt::random(prompt.structure(), &mut rng) } else { prompt };
        if let Some(path) = &self.config.invoice {
            self.bill(path, request)?;
        }
        Ok(GeneratedImage {
            image: render(&rendered, request.width, request.height, request.seed),
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
