//! The `openai` teacher: OpenAI's images API (`gpt-image-1`, `dall-e-3`, `dall-e-2`) and any
//! server that speaks it. One `POST {base_url}/images/generations` per image; a `url` result
//! is downloaded at once (provider URLs expire within minutes).

use evolve_sdk::http::{HttpClient, HttpSettings, base64_decode, decode_image};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use std::time::Duration;

/// Config of the `openai` teacher.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct OpenAiTeacherConfig {
    /// API root, up to and including `/v1`.
    #[serde(default = "openai_base")]
    pub base_url: String,
    /// Model name sent in each request.
    #[serde(default = "image_model")]
    pub model: String,
    /// Environment variable holding the API key (`{ env = "OPENAI_API_KEY" }`); omit for
    /// servers without authentication.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// `b64_json` or `url`; omitted, the field is not sent (gpt-image-1 always returns base64
    /// and rejects the field).
    #[serde(default)]
    pub response_format: Option<String>,
    /// Image size requested, `WxH`; default `1024x1024` for OpenAI's models, the run's image
    /// size for other servers (the host resizes to the training size).
    #[serde(default)]
    pub size: Option<String>,
    /// `quality` sent as is (gpt-image-1: low, medium, high; dall-e-3: standard, hd).
    #[serde(default)]
    pub quality: Option<String>,
    /// Send the request's seed as `seed` (servers that accept one; OpenAI does not).
    #[serde(default)]
    pub send_seed: bool,
    /// Price per image in USD; default from the built-in table for OpenAI's models at their
    /// quality and size (required for any other model: 0 for a free local server).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub price_usd: Option<f64>,
    /// Calls in flight at once.
    #[serde(default = "four")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: u32,
    /// Calls started per minute (OpenAI tier 1 allows 5 images/min for gpt-image-1).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Largest response accepted, in MiB (larger replies fail the call).
    #[serde(default = "thirty_two")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_response_mb: u32,
    /// Time-out of one call, seconds (image models take up to a minute or two).
    #[serde(default = "two_minutes")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_s: u64,
}

/// The size asked for whatever the request: the configured one, or 1024x1024 for OpenAI's own
/// models (`None`: the run's image size, for other servers).
fn openai_size(config: &OpenAiTeacherConfig) -> Option<String> {
    match &config.size {
        Some(size) => Some(size.clone()),
        None if config.model.starts_with("dall-e") || config.model.starts_with("gpt-image") => Some("1024x1024".into()),
        None => None,
    }
}

fn openai_base() -> String {
    "https://api.openai.com/v1".into()
}
fn image_model() -> String {
    "gpt-image-1".into()
}
fn four() -> u32 {
    4
}
fn thirty_two() -> u32 {
    32
}
fn two_minutes() -> u64 {
    120
}

/// Published per-image prices (USD) by model, quality and size, November 2026; `None` for a
/// combination not in the table. gpt-image-1 without a quality (the API's `auto`) is quoted at
/// `high`, the most `auto` can cost.
pub fn list_price(model: &str, quality: Option<&str>, size: &str) -> Option<f64> {
    let oblong = match size {
        "1024x1024" => false,
        "1024x1536" | "1536x1024" if model == "gpt-image-1" => true,
        "1024x1792" | "1792x1024" if model == "dall-e-3" => true,
        _ if model == "dall-e-2" => {
            return match size {
                "256x256" => Some(0.016),
                "512x512" => Some(0.018),
                _ => None,
            };
        }
        _ => return None,
    };
    let (square, wide) = match (model, quality) {
        ("gpt-image-1", Some("low")) => (0.011, 0.016),
        ("gpt-image-1", Some("medium")) => (0.042, 0.063),
        ("gpt-image-1", Some("high" | "auto") | None) => (0.167, 0.25),
        ("dall-e-3", Some("hd")) => (0.08, 0.12),
        ("dall-e-3", Some("standard") | None) => (0.04, 0.08),
        ("dall-e-2", _) => (0.02, 0.02),
        _ => return None,
    };
    Some(if oblong { wide } else { square })
}

/// The `openai` teacher.
pub struct OpenAiTeacher {
    config: OpenAiTeacherConfig,
    key: Option<String>,
    http: HttpClient,
    /// Price per image, USD.
    price: f64,
}

impl OpenAiTeacher {
    /// A teacher with `config`; reads the API key now so that a missing key fails at start.
    pub fn new(config: OpenAiTeacherConfig) -> Result<Self, PluginError> {
        let key = config.api_key.as_ref().map(SecretRef::resolve).transpose()?;
        if let Some(format) = &config.response_format
            && format != "b64_json"
            && format != "url"
        {
            return Err(PluginError::InvalidConfig(format!("response_format must be b64_json or url, not {format:?}")));
        }
        let http = HttpClient::new(HttpSettings {
            max_bytes: (config.max_response_mb as usize) << 20,
            ..HttpSettings::for_provider(
                &config.base_url,
                Duration::from_secs(config.timeout_s),
                config.requests_per_minute,
            )
        })?;
        let size = openai_size(&config);
        let listed = size.as_deref().and_then(|size| list_price(&config.model, config.quality.as_deref(), size));
        let what = format!("{} at size {:?}", config.model, size.as_deref().unwrap_or("of the run"));
        let price = evolve_sdk::http::price_per_image(config.price_usd, listed, &what)?;
        Ok(OpenAiTeacher { config, key, http, price })
    }

    fn size(&self, request: &GenerateRequest) -> String {
        openai_size(&self.config).unwrap_or_else(|| format!("{}x{}", request.width, request.height))
    }

    fn post(&self, url: String) -> evolve_sdk::http::reqwest::RequestBuilder {
        let builder = self.http.client().post(url);
        match &self.key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }
}

#[async_trait]
impl Teacher for OpenAiTeacher {
    fn limits(&self) -> Limits {
        Limits { concurrency: self.config.concurrency, requests_per_minute: self.config.requests_per_minute }
    }

    fn price(&self, _request: &GenerateRequest) -> Cost {
        Cost::from_usd(self.price)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let mut body = serde_json::json!({
            "model": self.config.model, "prompt": request.prompt, "n": 1, "size": self.size(request),
        });
        if let Some(format) = &self.config.response_format {
            body["response_format"] = format.clone().into();
        }
        if let Some(quality) = &self.config.quality {
            body["quality"] = quality.clone().into();
        }
        if self.config.send_seed {
            body["seed"] = request.seed.into();
        }
        let url = format!("{}/images/generations", self.config.base_url.trim_end_matches('/'));
        let reply = self.http.purchase(self.post(url).json(&body)).await?;
        // The request is billed from here on, whatever becomes of the reply.
        self.read(request, reply).await.map_err(evolve_sdk::http::billed)
    }
}

impl OpenAiTeacher {
    async fn read(
        &self,
        request: &GenerateRequest,
        reply: evolve_sdk::http::Response,
    ) -> Result<GeneratedImage, PluginError> {
        if !reply.content_type.contains("json") {
            return Err(PluginError::transient(format!("expected JSON, got content type {:?}", reply.content_type)));
        }
        let json = reply.json()?;
        let item = json.get("data").and_then(|d| d.get(0)).ok_or_else(|| {
            PluginError::transient(format!(
                "no data[0] in the reply: {}",
                json.to_string().chars().take(200).collect::<String>()
            ))
        })?;
        let bytes = if let Some(b64) = item.get("b64_json").and_then(|v| v.as_str()) {
            base64_decode(b64)?
        } else if let Some(url) = item.get("url").and_then(|v| v.as_str()) {
            self.http.download(url).await?
        } else {
            return Err(PluginError::Failed("reply has neither b64_json nor url".into()));
        };
        Ok(GeneratedImage {
            image: decode_image(&bytes)?,
            revised_prompt: item.get("revised_prompt").and_then(|v| v.as_str()).map(String::from),
            cost: self.price(request),
        })
    }
}

evolve_sdk::register_plugin! {
    kind: Teacher,
    name: "openai",
    description: "OpenAI images API (gpt-image-1, dall-e-3) or any compatible server, e.g. `evolve serve`.",
    config: OpenAiTeacherConfig,
    build: |config: OpenAiTeacherConfig, _ctx: &PluginContext| OpenAiTeacher::new(config),
}
