//! # evolve-openai
//!
//! Teachers and judges that speak OpenAI-compatible HTTP APIs — which covers OpenAI itself and
//! the local servers people run (vLLM, SGLang, llama.cpp server, LM Studio, `evolve serve`) —
//! plus Ollama's native chat.
//!
//! | plugin | kind | protocol |
//! |---|---|---|
//! | [`openai`](teacher) | teacher | `POST {base_url}/images/generations` (`b64_json` or `url`, `revised_prompt`) |
//! | [`openai`](judge) | judge | `POST {base_url}/chat/completions`, images as `image_url` data URLs |
//! | [`ollama`](judge) | judge | `POST {base_url}/api/chat`, images as base64, `format` schema |
//!
//! Each call is one attempt: retries with back-off (honouring `Retry-After`), idempotency by
//! request hash and budgets are the host's. API keys are read from environment variables only.
//! A judge reports the tokens each call used, priced by [`judge_price`], so that the host counts
//! them against `max_cost_usd`.

pub mod judge;
pub mod judge_price;
pub mod parse;
pub mod side_by_side;
pub mod teacher;
pub mod templates;

/// Forces the linker to keep this crate, and with it the plugins it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
