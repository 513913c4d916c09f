//! What a judge call costs: the tokens the server reports times the model's price.
//!
//! Like a teacher's image price, a judge's token price is never assumed: OpenAI's models are
//! listed, a server on your own machine or network (Ollama, vLLM, llama.cpp) is free unless
//! priced, and any other model on any other host must be priced in the config — otherwise
//! `max_cost_usd` could not hold.

use evolve_sdk::Cost;
use evolve_sdk::PluginError;
use serde::Deserialize;

/// Input tokens a judge prompt is quoted at: the paper's templates are a few hundred tokens,
/// a mutation's list of recent prompts a few hundred more.
pub const PROMPT_TOKENS: u64 = 1_000;

/// A model's price per token.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct TokenPrice {
    /// USD per million input tokens (text and images).
    #[schemars(range(min = 0.0))]
    pub input_per_million_usd: f64,
    /// USD per million output tokens.
    #[schemars(range(min = 0.0))]
    pub output_per_million_usd: f64,
    /// Input tokens one image of at most 512 px is quoted at (the server's count is what is
    /// charged): 255 for OpenAI's models at high detail, 8,500 for gpt-4o-mini.
    #[serde(default = "tile_tokens")]
    pub image_tokens: u64,
}

fn tile_tokens() -> u64 {
    255
}

impl TokenPrice {
    /// A free server.
    pub const FREE: TokenPrice =
        TokenPrice { input_per_million_usd: 0.0, output_per_million_usd: 0.0, image_tokens: 0 };

    /// The price of `input` and `output` tokens, rounded up to the micro-dollar.
    pub fn cost(&self, input: u64, output: u64) -> Cost {
        let usd = (input as f64 * self.input_per_million_usd + output as f64 * self.output_per_million_usd) / 1e6;
        Cost { micro_usd: (usd * 1e6).ceil() as u64 }
    }

    /// Whether calls cost anything.
    pub fn is_free(&self) -> bool {
        self.input_per_million_usd == 0.0 && self.output_per_million_usd == 0.0
    }
}

/// OpenAI's published prices (USD per million tokens, input and output), November 2026, and
/// the tokens of one image of at most 512 px (one tile: 85 + 170; gpt-4o-mini counts images
/// at 33 times that).
pub fn list_price(model: &str) -> Option<TokenPrice> {
    let (input, output, image) = match model {
        "gpt-4o-mini" => (0.15, 0.60, 8_500),
        "gpt-4o" => (2.50, 10.00, 255),
        "gpt-4.1" => (2.00, 8.00, 255),
        "gpt-4.1-mini" => (0.40, 1.60, 255),
        "gpt-4.1-nano" => (0.10, 0.40, 255),
        "gpt-5" => (1.25, 10.00, 255),
        "gpt-5-mini" => (0.25, 2.00, 255),
        _ => return None,
    };
    Some(TokenPrice { input_per_million_usd: input, output_per_million_usd: output, image_tokens: image })
}

/// The price a judge of `model` at `base_url` is charged at: `configured` if given, else
/// OpenAI's list price on OpenAI's host, else free on a private address (a server of your
/// own); anything else is an error that says what to set.
pub fn judge_price(configured: Option<TokenPrice>, model: &str, base_url: &str) -> Result<TokenPrice, PluginError> {
    if let Some(price) = configured {
        let valid = |x: f64| x.is_finite() && x >= 0.0;
        if !valid(price.input_per_million_usd) || !valid(price.output_per_million_usd) {
            return Err(PluginError::InvalidConfig(format!("price is {price:?}; its figures must be numbers >= 0")));
        }
        return Ok(price);
    }
    let openai = base_url.starts_with("https://api.openai.com/");
    if let Some(price) = list_price(model).filter(|_| openai) {
        return Ok(price);
    }
    if evolve_sdk::http::is_private_url(base_url) {
        return Ok(TokenPrice::FREE);
    }
    Err(PluginError::InvalidConfig(format!(
        "evolve has no token price for judge model {model:?} at {base_url}: set price = \
         {{ input_per_million_usd = …, output_per_million_usd = … }} (0 for a free server), so that max_cost_usd \
         can hold"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_listed_configured_free_at_home_or_required() {
        let openai = "https://api.openai.com/v1";
        assert_eq!(judge_price(None, "gpt-4o", openai).unwrap().cost(1_000_000, 100_000), Cost::from_usd(3.5));
        assert!(judge_price(None, "llava", "http://127.0.0.1:11434").unwrap().is_free());
        assert!(judge_price(None, "qwen2.5vl", "http://192.168.1.20:8000/v1").unwrap().is_free());
        let unpriced = judge_price(None, "some-vlm", "https://api.example.com/v1").unwrap_err().to_string();
        assert!(unpriced.contains("set price"), "{unpriced}");
        assert!(judge_price(None, "gpt-4o", "https://api.example.com/v1").is_err(), "listed only on OpenAI's host");
        let mine = TokenPrice { input_per_million_usd: 1.0, output_per_million_usd: 2.0, image_tokens: 100 };
        assert_eq!(judge_price(Some(mine), "some-vlm", "https://api.example.com/v1").unwrap(), mine);
        let negative = TokenPrice { input_per_million_usd: -1.0, ..mine };
        assert!(judge_price(Some(negative), "x", "http://127.0.0.1:1").is_err());
        // Rounded up: a call never costs less than its tokens.
        assert_eq!(mine.cost(1, 0), Cost { micro_usd: 1 });
    }
}
