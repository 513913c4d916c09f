//! An example native evolve plugin: a teacher that buys images from any OpenAI-compatible
//! `/v1/images/generations` endpoint.
//!
//! It shows what a native plugin does differently from a built-in: it starts no async runtime
//! and opens no sockets — every request goes through [`evolve_sdk::host::http`], which the host
//! performs on its own client and only to the hosts the experiment lists in
//! `[plugins] allow_hosts`. The trait implementation is the same as a built-in's; only the last
//! lines (`export_native_plugin!`) make it a plugin.

use evolve_sdk::host::{self, HttpRequest, LogLevel};
use evolve_sdk::prelude::*;

/// The teacher's config, as an experiment writes it under `config = { ... }`.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ImagesApiConfig {
    /// Base URL of the API, up to and including `/v1` (e.g. `http://127.0.0.1:8765/v1`).
    pub base_url: String,
    /// Model name sent with each request.
    #[serde(default = "default_model")]
    pub model: String,
    /// API key, read from the environment (`{ env = "MY_KEY" }`); none for local servers.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// Price of one image in US dollars, for the run's cost budget.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub price_usd: f64,
}

fn default_model() -> String {
    "shapes".to_string()
}

/// The teacher.
pub struct ImagesApi {
    config: ImagesApiConfig,
    api_key: Option<String>,
}

impl ImagesApi {
    /// A teacher from its config (reads the API key from the environment now).
    pub fn new(config: ImagesApiConfig) -> Result<Self, PluginError> {
        if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
            return Err(PluginError::InvalidConfig(format!("base_url must be http(s), got {:?}", config.base_url)));
        }
        let api_key = config.api_key.as_ref().map(SecretRef::resolve).transpose()?;
        Ok(ImagesApi { config, api_key })
    }

    /// The request body for `request`.
    pub fn body(&self, request: &GenerateRequest) -> serde_json::Value {
        serde_json::json!({
            "model": self.config.model,
            "prompt": request.prompt,
            "n": 1,
            "size": format!("{}x{}", request.width, request.height),
            "seed": request.seed,
            "response_format": "b64_json",
        })
    }
}

#[async_trait]
impl Teacher for ImagesApi {
    fn limits(&self) -> Limits {
        Limits { concurrency: 4, requests_per_minute: None }
    }

    fn price(&self, _request: &GenerateRequest) -> Cost {
        Cost::from_usd(self.config.price_usd)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let url = format!("{}/images/generations", self.config.base_url.trim_end_matches('/'));
        let mut http = HttpRequest::post_json(url, &self.body(request));
        if let Some(key) = &self.api_key {
            http = http.header("authorization", format!("Bearer {key}"));
        }
        let reply = host::http(&http)?;
        match reply.status {
            200..=299 => {}
            429 | 500..=599 => return Err(PluginError::transient(format!("HTTP {}", reply.status))),
            status => {
                let text = String::from_utf8_lossy(&reply.body);
                return Err(PluginError::Failed(format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
        }
        let json = reply.json()?;
        let item = &json["data"][0];
        let b64 = item["b64_json"]
            .as_str()
            .ok_or_else(|| PluginError::Failed("reply has no data[0].b64_json".to_string()))?;
        let image = evolve_sdk::codec::decode_image(&evolve_sdk::codec::base64_decode(b64)?)?;
        host::log(LogLevel::Debug, &format!("rendered {:?}", request.prompt));
        Ok(GeneratedImage {
            image,
            revised_prompt: item["revised_prompt"].as_str().map(str::to_string),
            cost: self.price(request),
        })
    }
}

evolve_sdk::export_native_plugin! {
    kind: Teacher,
    name: "images-api",
    description: "Teacher for any OpenAI-compatible images endpoint, reached through the host's HTTP.",
    config: ImagesApiConfig,
    build: |config: ImagesApiConfig, _ctx: &PluginContext| ImagesApi::new(config),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_openai_request_body() {
        let config = ImagesApiConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: None,
            price_usd: 0.02,
        };
        let teacher = ImagesApi::new(config).unwrap();
        let request = GenerateRequest { prompt: "a red circle".into(), width: 32, height: 32, seed: 7 };
        let body = teacher.body(&request);
        assert_eq!(body["size"], "32x32");
        assert_eq!(body["response_format"], "b64_json");
        assert_eq!(teacher.price(&request), Cost { micro_usd: 20_000 });
    }

    #[test]
    fn refuses_non_http_urls() {
        let config = ImagesApiConfig { base_url: "ftp://x".into(), model: "m".into(), api_key: None, price_usd: 0.0 };
        assert!(matches!(ImagesApi::new(config), Err(PluginError::InvalidConfig(_))));
    }
}
