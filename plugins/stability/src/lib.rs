//! # evolve-stability
//!
//! The `stability` teacher: Stability AI's v2beta stable-image generation
//! (`POST {base_url}/v2beta/stable-image/generate/{endpoint}`, multipart form). The reply is
//! the image itself (`Accept: image/*`) or JSON with a base64 image; either is accepted, and a
//! content-filtered result is a clear failure.

use evolve_sdk::http::reqwest::multipart::Form;
use evolve_sdk::http::{HttpClient, base64_decode, decode_image};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Config of the `stability` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct StabilityConfig {
    /// `core`, `ultra` or `sd3`.
    #[serde(default = "core_endpoint")]
    pub endpoint: String,
    /// With `sd3`: the model (`sd3.5-large`, `sd3.5-large-turbo`, `sd3.5-medium`).
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default = "key")]
    pub api_key: SecretRef,
    /// API root.
    #[serde(default = "base")]
    pub base_url: String,
    /// Further form fields (e.g. `aspect_ratio`, `negative_prompt`, `style_preset`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Ask for JSON (base64 image) instead of image bytes.
    #[serde(default)]
    pub json: bool,
    /// Price per image in USD; default from the built-in table.
    #[serde(default)]
    pub price_usd: Option<f64>,
    /// Requests in flight at once.
    #[serde(default = "four")]
    pub concurrency: u32,
    /// Requests per minute (Stability allows 150 per 10 s).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Time-out of one call, seconds.
    #[serde(default = "two_minutes")]
    pub timeout_s: u64,
}

fn core_endpoint() -> String {
    "core".into()
}
fn key() -> SecretRef {
    SecretRef { env: "STABILITY_API_KEY".into() }
}
fn base() -> String {
    "https://api.stability.ai".into()
}
fn four() -> u32 {
    4
}
fn two_minutes() -> u64 {
    120
}

/// Published per-image prices (USD; credits at $0.01), November 2026.
pub fn list_price(endpoint: &str, model: Option<&str>) -> f64 {
    match (endpoint, model) {
        ("ultra", _) => 0.08,
        ("sd3", Some("sd3.5-large-turbo")) => 0.04,
        ("sd3", Some("sd3.5-medium")) => 0.035,
        ("sd3", _) => 0.065,
        _ => 0.03,
    }
}

/// The `stability` teacher.
pub struct Stability {
    config: StabilityConfig,
    key: String,
    http: HttpClient,
}

impl Stability {
    /// A teacher with `config`; reads the key now so that a missing one fails at start.
    pub fn new(config: StabilityConfig) -> Result<Self, PluginError> {
        if !["core", "ultra", "sd3"].contains(&config.endpoint.as_str()) {
            return Err(PluginError::InvalidConfig(format!(
                "endpoint must be core, ultra or sd3, not {:?}",
                config.endpoint
            )));
        }
        let key = config.api_key.resolve()?;
        let http =
            HttpClient::paced(&config.base_url, Duration::from_secs(config.timeout_s), config.requests_per_minute)?;
        Ok(Stability { config, key, http })
    }
}

#[async_trait]
impl Teacher for Stability {
    fn limits(&self) -> Limits {
        Limits { concurrency: self.config.concurrency, requests_per_minute: self.config.requests_per_minute }
    }

    fn price(&self, _request: &GenerateRequest) -> Cost {
        Cost::from_usd(
            self.config.price_usd.unwrap_or_else(|| list_price(&self.config.endpoint, self.config.model.as_deref())),
        )
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let mut form = Form::new()
            .text("prompt", request.prompt.clone())
            .text("output_format", "png")
            .text("seed", (request.seed % 4_294_967_294).to_string());
        if let Some(model) = &self.config.model {
            form = form.text("model", model.clone());
        }
        for (name, value) in &self.config.fields {
            form = form.text(name.clone(), value.clone());
        }
        let url = format!(
            "{}/v2beta/stable-image/generate/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.endpoint
        );
        let accept = if self.config.json { "application/json" } else { "image/*" };
        let reply = self
            .http
            .purchase(self.http.client().post(url).bearer_auth(&self.key).header("Accept", accept).multipart(form))
            .await?;
        // The request is billed from here on: an unreadable image is counted, then retried.
        let billed = evolve_sdk::http::billed;
        let image = if reply.content_type.starts_with("image/") {
            decode_image(&reply.body).map_err(billed)?
        } else if reply.content_type.contains("json") {
            let json = reply.paid_json()?;
            if json.get("finish_reason").and_then(Value::as_str) == Some("CONTENT_FILTERED") {
                return Err(PluginError::Failed("Stability filtered the image (CONTENT_FILTERED)".into()));
            }
            let b64 = json
                .get("image")
                .and_then(Value::as_str)
                .ok_or_else(|| billed(PluginError::Failed(format!("JSON reply without image: {json}"))))?;
            decode_image(&base64_decode(b64)?).map_err(billed)?
        } else {
            return Err(billed(PluginError::Failed(format!("unexpected content type {:?}", reply.content_type))));
        };
        Ok(GeneratedImage { image, revised_prompt: None, cost: self.price(request) })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "stability",
    description: "Stability AI v2beta stable-image (core, ultra, sd3); needs STABILITY_API_KEY.",
    config: StabilityConfig,
    build: |config: StabilityConfig, _ctx: &PluginContext| Stability::new(config),
}

/// Forces the linker to keep this crate, and with it the plugin it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
