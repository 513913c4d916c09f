//! # evolve-replicate
//!
//! The `replicate` teacher: [Replicate](https://replicate.com)'s predictions API. A prediction is
//! created with `Prefer: wait`, so the reply usually carries the output; otherwise `urls.get` is
//! polled. The output image is downloaded at once (Replicate's URLs expire).

use evolve_sdk::http::{HttpClient, poll};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Config of the `replicate` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ReplicateConfig {
    /// `owner/name` of an official model (e.g. `black-forest-labs/flux-schnell`), or
    /// `owner/name:VERSION` for a pinned version.
    pub model: String,
    /// Environment variable holding the API token.
    #[serde(default = "token")]
    pub api_key: SecretRef,
    /// API root.
    #[serde(default = "base")]
    pub base_url: String,
    /// Further input fields sent beside `prompt` and `seed` (e.g. `aspect_ratio`, `output_format`).
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Price per image in USD; default from the built-in table (required for unlisted models).
    #[serde(default)]
    pub price_usd: Option<f64>,
    /// Predictions in flight at once.
    #[serde(default = "eight")]
    pub concurrency: u32,
    /// Predictions created per minute (Replicate allows 600).
    #[serde(default = "six_hundred")]
    pub requests_per_minute: Option<u32>,
    /// Longest wait for one prediction, seconds.
    #[serde(default = "five_minutes")]
    pub timeout_s: u64,
    /// Interval between polls, milliseconds.
    #[serde(default = "second")]
    pub poll_ms: u64,
}

fn token() -> SecretRef {
    SecretRef { env: "REPLICATE_API_TOKEN".into() }
}
fn base() -> String {
    "https://api.replicate.com/v1".into()
}
fn eight() -> u32 {
    8
}
fn six_hundred() -> Option<u32> {
    Some(600)
}
fn five_minutes() -> u64 {
    300
}
fn second() -> u64 {
    1000
}

/// Published per-image prices (USD), November 2026.
pub fn list_price(model: &str) -> Option<f64> {
    Some(match model.split(':').next().unwrap_or(model) {
        "black-forest-labs/flux-schnell" => 0.003,
        "black-forest-labs/flux-dev" => 0.025,
        "black-forest-labs/flux-1.1-pro" => 0.04,
        "black-forest-labs/flux-1.1-pro-ultra" => 0.06,
        "stability-ai/stable-diffusion-3.5-large" => 0.065,
        "ideogram-ai/ideogram-v2" => 0.08,
        "recraft-ai/recraft-v3" => 0.04,
        _ => return None,
    })
}

/// The `replicate` teacher.
pub struct Replicate {
    config: ReplicateConfig,
    key: String,
    http: HttpClient,
    /// Price per image, USD.
    price: f64,
}

impl Replicate {
    /// A teacher with `config`; reads the token now so that a missing one fails at start.
    pub fn new(config: ReplicateConfig) -> Result<Self, PluginError> {
        let key = config.api_key.resolve()?;
        let http = HttpClient::paced(&config.base_url, Duration::from_secs(120), config.requests_per_minute)?;
        let price = evolve_sdk::http::price_per_image(config.price_usd, list_price(&config.model), &config.model)?;
        Ok(Replicate { config, key, http, price })
    }

    /// GETs `url`, named in a reply, with the key: only if it is Replicate's own.
    async fn get(&self, url: &str) -> Result<Value, PluginError> {
        evolve_sdk::http::check_key_target(&self.config.base_url, url)?;
        self.http.send(self.http.client().get(url).bearer_auth(&self.key)).await?.json()
    }
}

/// The first output URL of a finished prediction, `None` while it runs.
fn output_of(prediction: &Value) -> Result<Option<String>, PluginError> {
    match prediction.get("status").and_then(Value::as_str).unwrap_or("") {
        "succeeded" => {
            let output = prediction.get("output").unwrap_or(&Value::Null);
            let url = output.as_str().or_else(|| output.get(0).and_then(Value::as_str));
            url.map(|u| Some(u.to_string()))
                .ok_or_else(|| PluginError::Failed(format!("no image URL in output {output}")))
        }
        "failed" | "canceled" | "aborted" => Err(PluginError::Failed(format!(
            "prediction {}: {}",
            prediction.get("status").and_then(Value::as_str).unwrap_or(""),
            prediction.get("error").map(Value::to_string).unwrap_or_default()
        ))),
        _ => Ok(None),
    }
}

#[async_trait]
impl Teacher for Replicate {
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
        let base = self.config.base_url.trim_end_matches('/');
        let (url, body) = match self.config.model.split_once(':') {
            Some((_, version)) => (format!("{base}/predictions"), json!({ "version": version, "input": input })),
            None => (format!("{base}/models/{}/predictions", self.config.model), json!({ "input": input })),
        };
        let created = self
            .http
            .purchase(self.http.client().post(url).bearer_auth(&self.key).header("Prefer", "wait").json(&body))
            .await?
            .paid_json()?;
        let finished = output_of(&created)?;
        match (created.pointer("/urls/get").and_then(Value::as_str), finished) {
            // The prediction's own address is the job: collecting it again costs nothing.
            (Some(get), _) => Ok(Submitted::Accepted(Job(get.to_string()))),
            (None, Some(image_url)) => Ok(Submitted::Done(self.fetch(request, &image_url).await?)),
            (None, None) => Err(PluginError::Uncertain(format!("prediction without urls.get: {created}"))),
        }
    }

    async fn collect(&self, request: &GenerateRequest, job: &Job) -> Result<GeneratedImage, PluginError> {
        let interval = Duration::from_millis(self.config.poll_ms);
        let image_url = poll(interval, Duration::from_secs(self.config.timeout_s), || async {
            output_of(&self.get(&job.0).await?)
        })
        .await?;
        self.fetch(request, &image_url).await
    }
}

impl Replicate {
    async fn fetch(&self, request: &GenerateRequest, image_url: &str) -> Result<GeneratedImage, PluginError> {
        Ok(GeneratedImage {
            image: self.http.fetch_image(image_url).await?,
            revised_prompt: None,
            cost: self.price(request),
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "replicate",
    description: "Replicate predictions API (FLUX, SD 3.5, Ideogram, Recraft, ...); needs REPLICATE_API_TOKEN.",
    config: ReplicateConfig,
    build: |config: ReplicateConfig, _ctx: &PluginContext| Replicate::new(config),
}

/// Forces the linker to keep this crate, and with it the plugin it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
