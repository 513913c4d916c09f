//! # evolve-bfl
//!
//! The `bfl` teacher: Black Forest Labs' FLUX API. A request is submitted to
//! `{base_url}/{model}`, the returned `polling_url` (the job the host records) polled until
//! `Ready`, and the sample image downloaded at once (its URL expires after ten minutes).

use evolve_sdk::http::{HttpClient, poll};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// Config of the `bfl` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct BflConfig {
    /// Endpoint name, e.g. `flux-pro-1.1`, `flux-pro-1.1-ultra`, `flux-dev`, `flux-kontext-pro`.
    #[serde(default = "flux_pro")]
    pub model: String,
    /// Environment variable holding the API key (sent as `x-key`).
    #[serde(default = "key")]
    pub api_key: SecretRef,
    /// API root.
    #[serde(default = "base")]
    pub base_url: String,
    /// Further input fields sent beside `prompt`, `seed`, `width` and `height`.
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Price per image in USD; default from the built-in table (required for unlisted models).
    #[serde(default)]
    pub price_usd: Option<f64>,
    /// Requests in flight at once (BFL allows 24 active tasks).
    #[serde(default = "twenty_four")]
    pub concurrency: u32,
    /// Requests submitted per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Longest wait for one request's result (polling included), seconds.
    #[serde(default = "five_minutes")]
    pub timeout_s: u64,
    /// Longest wait for one HTTP exchange (a submission, a poll, a download), seconds.
    #[serde(default = "two_minutes")]
    pub request_timeout_s: u64,
    /// Interval between polls, milliseconds.
    #[serde(default = "half_second")]
    pub poll_ms: u64,
}

fn flux_pro() -> String {
    "flux-pro-1.1".into()
}
fn key() -> SecretRef {
    SecretRef { env: "BFL_API_KEY".into() }
}
fn base() -> String {
    "https://api.bfl.ai/v1".into()
}
fn twenty_four() -> u32 {
    24
}
fn five_minutes() -> u64 {
    300
}
fn two_minutes() -> u64 {
    120
}
fn half_second() -> u64 {
    500
}

/// Published per-image prices (USD), November 2026.
pub fn list_price(model: &str) -> Option<f64> {
    Some(match model {
        "flux-pro-1.1" => 0.04,
        "flux-pro-1.1-ultra" => 0.06,
        "flux-pro" => 0.05,
        "flux-dev" => 0.025,
        "flux-kontext-pro" => 0.04,
        "flux-kontext-max" => 0.08,
        _ => return None,
    })
}

/// The `bfl` teacher.
pub struct Bfl {
    config: BflConfig,
    key: String,
    http: HttpClient,
    /// Price per image, USD.
    price: f64,
}

impl Bfl {
    /// A teacher with `config`; reads the key now so that a missing one fails at start.
    pub fn new(config: BflConfig) -> Result<Self, PluginError> {
        let key = config.api_key.resolve()?;
        let http = HttpClient::paced(
            &config.base_url,
            Duration::from_secs(config.request_timeout_s),
            config.requests_per_minute,
        )?;
        let price = evolve_sdk::http::price_per_image(config.price_usd, list_price(&config.model), &config.model)?;
        Ok(Bfl { config, key, http, price })
    }
}

#[async_trait]
impl Teacher for Bfl {
    fn limits(&self) -> Limits {
        Limits { concurrency: self.config.concurrency, requests_per_minute: self.config.requests_per_minute }
    }

    fn price(&self, _request: &GenerateRequest) -> Cost {
        Cost::from_usd(self.price)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        evolve_sdk::generate_by_job(self, request).await
    }

    async fn submit(&self, request: &GenerateRequest) -> Result<Submitted, PluginError> {
        let mut input = self.config.input.clone();
        input.insert("prompt".into(), request.prompt.clone().into());
        input.insert("seed".into(), (request.seed % (1 << 31)).into());
        // FLUX takes multiples of 32 from 256 up; the host resizes to the training size.
        input.entry("width").or_insert_with(|| (request.width.clamp(256, 1440) / 32 * 32).into());
        input.entry("height").or_insert_with(|| (request.height.clamp(256, 1440) / 32 * 32).into());
        let url = format!("{}/{}", self.config.base_url.trim_end_matches('/'), self.config.model);
        let submitted = self
            .http
            .purchase(self.http.client().post(url).header("x-key", &self.key).json(&input))
            .await?
            .paid_json()?;
        let polling_url = submitted
            .get("polling_url")
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::Uncertain(format!("reply without polling_url: {submitted}")))?;
        Ok(Submitted::Accepted(Job(polling_url.to_string())))
    }

    async fn collect(&self, request: &GenerateRequest, job: &Job) -> Result<GeneratedImage, PluginError> {
        let polling_url = &job.0;
        evolve_sdk::http::check_key_target(&self.config.base_url, polling_url)?;
        let interval = Duration::from_millis(self.config.poll_ms);
        let sample = poll(interval, Duration::from_secs(self.config.timeout_s), || async {
            let status =
                self.http.send(self.http.client().get(polling_url).header("x-key", &self.key)).await?.json()?;
            match status.get("status").and_then(Value::as_str).unwrap_or("") {
                "Ready" => status
                    .pointer("/result/sample")
                    .and_then(Value::as_str)
                    .map(|s| Some(s.to_string()))
                    .ok_or_else(|| PluginError::Failed(format!("Ready without result.sample: {status}"))),
                "Pending" | "Queued" | "Processing" | "" => Ok(None),
                other => Err(PluginError::Failed(format!("BFL task {other}: {status}"))),
            }
        })
        .await?;
        Ok(GeneratedImage {
            image: self.http.fetch_image(&sample).await?,
            revised_prompt: None,
            cost: self.price(request),
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "bfl",
    description: "Black Forest Labs FLUX API (flux-pro-1.1, ultra, dev, kontext); needs BFL_API_KEY.",
    config: BflConfig,
    build: |config: BflConfig, _ctx: &PluginContext| Bfl::new(config),
}

/// Forces the linker to keep this crate, and with it the plugin it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
