//! # evolve-fal
//!
//! The `fal` teacher: [fal](https://fal.ai)'s queue API. A request is submitted to
//! `{base_url}/{model}`, its `status_url` polled until `COMPLETED`, the result read from
//! `response_url`, and the first image downloaded at once.

use evolve_sdk::http::{HttpClient, poll};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// Config of the `fal` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct FalConfig {
    /// Model id, e.g. `fal-ai/flux/schnell`, `fal-ai/flux-pro/v1.1`, `fal-ai/recraft-v3`.
    pub model: String,
    /// Environment variable holding the API key.
    #[serde(default = "key")]
    pub api_key: SecretRef,
    /// Queue root.
    #[serde(default = "base")]
    pub base_url: String,
    /// Further input fields sent beside `prompt`, `seed` and `image_size`.
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Price per image in USD; default from the built-in table (required for unlisted models).
    #[serde(default)]
    pub price_usd: Option<f64>,
    /// Requests in flight at once (fal's default concurrency limit is 10).
    #[serde(default = "ten")]
    pub concurrency: u32,
    /// Requests submitted per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Longest wait for one request, seconds.
    #[serde(default = "five_minutes")]
    pub timeout_s: u64,
    /// Interval between polls, milliseconds.
    #[serde(default = "half_second")]
    pub poll_ms: u64,
}

fn key() -> SecretRef {
    SecretRef { env: "FAL_KEY".into() }
}
fn base() -> String {
    "https://queue.fal.run".into()
}
fn ten() -> u32 {
    10
}
fn five_minutes() -> u64 {
    300
}
fn half_second() -> u64 {
    500
}

/// Published per-image prices (USD, about one megapixel), November 2026.
pub fn list_price(model: &str) -> Option<f64> {
    Some(match model {
        "fal-ai/flux/schnell" => 0.003,
        "fal-ai/flux/dev" => 0.025,
        "fal-ai/flux-pro/v1.1" => 0.04,
        "fal-ai/flux-pro/v1.1-ultra" => 0.06,
        "fal-ai/recraft-v3" => 0.04,
        "fal-ai/ideogram/v2" => 0.08,
        _ => return None,
    })
}

/// The `fal` teacher.
pub struct Fal {
    config: FalConfig,
    auth: String,
    http: HttpClient,
    /// Price per image, USD.
    price: f64,
}

impl Fal {
    /// A teacher with `config`; reads the key now so that a missing one fails at start.
    pub fn new(config: FalConfig) -> Result<Self, PluginError> {
        let auth = format!("Key {}", config.api_key.resolve()?);
        let http = HttpClient::paced(&config.base_url, Duration::from_secs(120), config.requests_per_minute)?;
        let price = evolve_sdk::http::price_per_image(config.price_usd, list_price(&config.model), &config.model)?;
        Ok(Fal { config, auth, http, price })
    }

    /// GETs `url`, named in a reply, with the key: only if it is fal's own.
    async fn get(&self, url: &str) -> Result<Value, PluginError> {
        evolve_sdk::http::check_key_target(&self.config.base_url, url)?;
        self.http.send(self.http.client().get(url).header("Authorization", &self.auth)).await?.json()
    }
}

#[async_trait]
impl Teacher for Fal {
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
        input.entry("image_size").or_insert_with(
            || serde_json::json!({ "width": request.width.max(256), "height": request.height.max(256) }),
        );
        let url = format!("{}/{}", self.config.base_url.trim_end_matches('/'), self.config.model);
        let submitted = self
            .http
            .purchase(self.http.client().post(url).header("Authorization", &self.auth).json(&input))
            .await?
            .paid_json()?;
        let field = |name: &str| {
            submitted
                .get(name)
                .and_then(Value::as_str)
                .map(Value::from)
                .ok_or_else(|| PluginError::Uncertain(format!("queue reply without {name}: {submitted}")))
        };
        let job = serde_json::json!({ "status_url": field("status_url")?, "response_url": field("response_url")? });
        Ok(Submitted::Accepted(Job(job.to_string())))
    }

    async fn collect(&self, request: &GenerateRequest, job: &Job) -> Result<GeneratedImage, PluginError> {
        let job: Value = serde_json::from_str(&job.0).unwrap_or_default();
        let url = |name: &str| {
            job.get(name)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| PluginError::Failed(format!("a recorded fal job without {name}: {job}")))
        };
        let (status_url, response_url) = (url("status_url")?, url("response_url")?);
        let interval = Duration::from_millis(self.config.poll_ms);
        poll(interval, Duration::from_secs(self.config.timeout_s), || async {
            let status = self.get(&status_url).await?;
            match status.get("status").and_then(Value::as_str) {
                Some("COMPLETED") => match status.get("error") {
                    Some(error) if !error.is_null() => Err(PluginError::Failed(format!("fal: {error}"))),
                    _ => Ok(Some(())),
                },
                _ => Ok(None),
            }
        })
        .await?;
        let result = self.get(&response_url).await?;
        let image_url = result
            .pointer("/images/0/url")
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::Failed(format!("result without images[0].url: {result}")))?;
        Ok(GeneratedImage {
            image: self.http.fetch_image(image_url).await?,
            revised_prompt: None,
            cost: self.price(request),
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "fal",
    description: "fal queue API (FLUX, Recraft, Ideogram, ...); needs FAL_KEY.",
    config: FalConfig,
    build: |config: FalConfig, _ctx: &PluginContext| Fal::new(config),
}

/// Forces the linker to keep this crate, and with it the plugin it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
