//! The `openai` and `ollama` judges: a vision-language model behind an OpenAI-compatible chat
//! endpoint (OpenAI, vLLM, SGLang, llama.cpp server, LM Studio, `evolve serve`) or Ollama's
//! native `/api/chat`.
//!
//! A comparison sends the prompt and the two images (as two images, or composed side by side
//! for models that take one, labelled (A) and (B)), constrained to "(A) is better" / "(B) is better" where the server
//! can constrain output; free text is parsed either way. A reply that names neither image fails
//! the call (the host skips the sample); a malformed expansion list is retried.

use crate::judge_price::{PROMPT_TOKENS, TokenPrice, judge_price};
use crate::parse;
use crate::side_by_side;
use crate::templates::{self, LENGTH_HINTS, PromptStyle};
use evolve_sdk::http::{HttpClient, base64_encode, data_url, encode_png};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use std::time::Duration;

/// How the server is asked to constrain a comparison's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(crate = "evolve_sdk::schemars")]
pub enum Constraint {
    /// `response_format` with a JSON schema (OpenAI, vLLM, SGLang, LM Studio, Ollama `format`).
    #[default]
    JsonSchema,
    /// vLLM's `structured_outputs.choice`.
    VllmChoice,
    /// llama.cpp server's GBNF `grammar`.
    Grammar,
    /// No constraint: free text, parsed.
    None,
}

/// Config of the `openai` and `ollama` judges.
#[derive(Debug, Clone, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ChatJudgeConfig {
    /// API root: up to and including `/v1` for OpenAI-compatible servers
    /// (default `https://api.openai.com/v1`); the server root for Ollama
    /// (default `http://127.0.0.1:11434`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The vision-language model.
    #[serde(default = "chat_model")]
    pub model: String,
    /// Environment variable holding the API key; omit for local servers.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// How the answer of a comparison is constrained.
    #[serde(default)]
    pub constraint: Constraint,
    /// Compose the two images side by side into one, labelled (A) and (B) underneath (for
    /// models that take one image).
    #[serde(default)]
    pub side_by_side: bool,
    /// Whose prompts to ask with: `paper` (EvolveDirector's released wording, the default) or
    /// `evolve` (this project's paraphrase). See [`templates`].
    #[serde(default)]
    pub prompt_style: PromptStyle,
    /// Comparison prompt (placeholders `{layout}`, `{prompt}`); default: the style's.
    #[serde(default)]
    pub compare_template: Option<String>,
    /// Expansion prompt (placeholders `{prompt}`, `{n}`); default: the style's.
    #[serde(default)]
    pub expand_template: Option<String>,
    /// Mutation prompt (placeholders `{recent}`, `{length_hint}`: one of the paper's four length
    /// and detail hints, drawn per request); default: the style's.
    #[serde(default)]
    pub mutate_template: Option<String>,
    /// Sampling temperature for expansion and mutation (comparisons use 0).
    #[serde(default = "creative")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: f64,
    /// Calls in flight at once.
    #[serde(default = "eight")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u32,
    /// Calls started per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Time-out of one call, seconds.
    #[serde(default = "one_minute")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_s: u64,
    /// The model's token price, counted against `max_cost_usd`; default: OpenAI's list price on
    /// OpenAI's host, free on a private address (your own server), required anywhere else.
    #[serde(default)]
    pub price: Option<TokenPrice>,
}

fn chat_model() -> String {
    "gpt-4o-mini".into()
}
fn creative() -> f64 {
    0.8
}
fn eight() -> u32 {
    8
}
fn one_minute() -> u64 {
    60
}

/// Which wire protocol a judge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /chat/completions` with `image_url` content parts.
    ChatCompletions,
    /// Ollama's `POST /api/chat` with base64 `images`.
    Ollama,
}

/// Asks for an expansion at most this many times before giving up on a reply that falls short
/// (the paper's code: 5, at a GPU's cost; here each is a paid call).
pub const EXPAND_ASKS: usize = 3;

/// A chat-based judge.
pub struct ChatJudge {
    config: ChatJudgeConfig,
    templates: templates::Templates,
    protocol: Protocol,
    base_url: String,
    key: Option<String>,
    http: HttpClient,
    price: TokenPrice,
}

/// Output tokens a comparison is quoted at (a constrained answer is a few; a free one a few
/// sentences).
const COMPARE_OUTPUT_TOKENS: u64 = 300;
/// Output tokens a mutation is quoted at.
const MUTATE_OUTPUT_TOKENS: u64 = 150;
/// Output tokens an expansion is quoted at, per prompt asked for, plus a preamble.
const EXPAND_TOKENS_PER_PROMPT: u64 = 40;

/// A message to send: text and images.
struct Ask<'a> {
    text: String,
    images: &'a [Image],
    temperature: f64,
    /// A JSON schema the answer must follow, for servers that constrain output.
    schema: Option<serde_json::Value>,
    /// Constrain to these exact answers (vLLM choice / llama.cpp grammar).
    choices: Option<[&'static str; 2]>,
    /// Output tokens to charge when the server does not report its count.
    output_tokens: u64,
    /// The comparison this message follows in the conversation, if any.
    before: Option<Turn>,
}

/// An earlier exchange of the conversation: what was asked, with images, and the answer.
struct Turn {
    text: String,
    images: Vec<Image>,
    reply: String,
}

impl ChatJudge {
    /// A judge speaking `protocol` with `config`.
    pub fn new(config: ChatJudgeConfig, protocol: Protocol) -> Result<Self, PluginError> {
        let key = config.api_key.as_ref().map(SecretRef::resolve).transpose()?;
        let default_base = match protocol {
            Protocol::ChatCompletions => "https://api.openai.com/v1",
            Protocol::Ollama => "http://127.0.0.1:11434",
        };
        let base_url = config.base_url.clone().unwrap_or_else(|| default_base.into()).trim_end_matches('/').to_string();
        let http = HttpClient::paced(&base_url, Duration::from_secs(config.timeout_s), config.requests_per_minute)?;
        let templates = config.prompt_style.templates();
        let price = judge_price(config.price, &config.model, &format!("{base_url}/"))?;
        Ok(ChatJudge { config, templates, protocol, base_url, key, http, price })
    }

    /// The images a comparison of `images` shows the model.
    fn shown(&self, images: usize) -> u64 {
        if self.config.side_by_side { 1 } else { images as u64 }
    }

    /// The price of one request of `turns` prompts with `images` images in all, answered in
    /// `output` tokens, as quoted (an earlier answer is counted as a prompt).
    fn estimate(&self, turns: u64, images: u64, output: u64) -> Usage {
        let input = turns * PROMPT_TOKENS + images * self.price.image_tokens;
        Usage { input_tokens: input, output_tokens: output, cost: self.price.cost(input, output) }
    }

    /// The text and images a comparison of `images` on `prompt` is asked with.
    fn comparison(&self, prompt: &str, images: &[Image]) -> Result<(String, Vec<Image>), PluginError> {
        let [a, b] = images else {
            return Err(PluginError::InvalidInput(format!(
                "this judge compares two images at a time, got {}",
                images.len()
            )));
        };
        let (shown, layout) = if self.config.side_by_side {
            (vec![side_by_side::compose(a, b)], templates::LAYOUT_SIDE_BY_SIDE)
        } else {
            (images.to_vec(), templates::LAYOUT_TWO)
        };
        let template = self.config.compare_template.as_deref().unwrap_or(self.templates.compare);
        Ok((templates::fill(template, &[("layout", layout), ("prompt", prompt)]), shown))
    }

    /// The comparison `after` as the conversation's first exchange.
    fn turn(&self, after: Option<&evolve_sdk::Comparison>) -> Result<Option<Turn>, PluginError> {
        let Some(after) = after else { return Ok(None) };
        let (text, images) = self.comparison(&after.prompt, &after.images)?;
        Ok(Some(Turn { text, images, reply: after.reply.clone() }))
    }

    /// What the server says a reply used, priced; the quote's estimate where it does not say.
    fn usage(&self, json: &serde_json::Value, ask: &Ask<'_>) -> Usage {
        let (input, output) = match self.protocol {
            Protocol::ChatCompletions => {
                (json.pointer("/usage/prompt_tokens"), json.pointer("/usage/completion_tokens"))
            }
            Protocol::Ollama => (json.get("prompt_eval_count"), json.get("eval_count")),
        };
        match (input.and_then(|v| v.as_u64()), output.and_then(|v| v.as_u64())) {
            (Some(input), Some(output)) => {
                Usage { input_tokens: input, output_tokens: output, cost: self.price.cost(input, output) }
            }
            _ => {
                let before = ask.before.as_ref().map_or(0, |turn| turn.images.len());
                let turns = 1 + 2 * u64::from(ask.before.is_some());
                self.estimate(turns, (ask.images.len() + before) as u64, ask.output_tokens)
            }
        }
    }

    async fn ask(&self, ask: Ask<'_>) -> Result<(String, Usage), PluginError> {
        let (url, body) = match self.protocol {
            Protocol::ChatCompletions => (format!("{}/chat/completions", self.base_url), self.chat_body(&ask)?),
            Protocol::Ollama => (format!("{}/api/chat", self.base_url), self.ollama_body(&ask)?),
        };
        let mut request = self.http.client().post(url).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let reply = self.http.send(request).await?;
        if !reply.content_type.contains("json") {
            return Err(PluginError::transient(format!("expected JSON, got content type {:?}", reply.content_type)));
        }
        let json = reply.json()?;
        let content = match self.protocol {
            Protocol::ChatCompletions => json.pointer("/choices/0/message/content"),
            Protocol::Ollama => json.pointer("/message/content"),
        };
        let content = content
            .and_then(|c| c.as_str())
            .map(String::from)
            .ok_or_else(|| PluginError::transient(format!("no message content in the reply: {}", short(&json))))?;
        Ok((content, self.usage(&json, &ask)))
    }

    fn chat_body(&self, ask: &Ask<'_>) -> Result<serde_json::Value, PluginError> {
        let content = |text: &str, images: &[Image]| -> Result<serde_json::Value, PluginError> {
            let mut parts = vec![serde_json::json!({ "type": "text", "text": text })];
            for image in images {
                parts.push(serde_json::json!({ "type": "image_url", "image_url": { "url": data_url(image)? } }));
            }
            Ok(serde_json::json!({ "role": "user", "content": parts }))
        };
        let mut messages = vec![];
        if let Some(turn) = &ask.before {
            messages.push(content(&turn.text, &turn.images)?);
            messages.push(serde_json::json!({ "role": "assistant", "content": turn.reply }));
        }
        messages.push(content(&ask.text, ask.images)?);
        let mut body = serde_json::json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": ask.temperature,
        });
        match (self.config.constraint, &ask.schema, ask.choices) {
            (Constraint::JsonSchema, Some(schema), _) => {
                body["response_format"] = serde_json::json!({
                    "type": "json_schema",
                    "json_schema": { "name": "answer", "strict": true, "schema": schema },
                });
            }
            (Constraint::VllmChoice, _, Some(choices)) => {
                body["structured_outputs"] = serde_json::json!({ "choice": choices });
            }
            (Constraint::Grammar, _, Some([a, b])) => {
                body["grammar"] = format!("root ::= \"{a}\" | \"{b}\"").into();
            }
            _ => {}
        }
        Ok(body)
    }

    fn ollama_body(&self, ask: &Ask<'_>) -> Result<serde_json::Value, PluginError> {
        let message = |text: &str, images: &[Image]| -> Result<serde_json::Value, PluginError> {
            let images: Vec<String> = images
                .iter()
                .map(|image| encode_png(image).map(|png| base64_encode(&png)))
                .collect::<Result<_, _>>()?;
            Ok(serde_json::json!({ "role": "user", "content": text, "images": images }))
        };
        let mut messages = vec![];
        if let Some(turn) = &ask.before {
            messages.push(message(&turn.text, &turn.images)?);
            messages.push(serde_json::json!({ "role": "assistant", "content": turn.reply }));
        }
        messages.push(message(&ask.text, ask.images)?);
        let mut body = serde_json::json!({
            "model": self.config.model,
            "messages": messages,
            "stream": false,
            "options": { "temperature": ask.temperature },
        });
        if let (Constraint::JsonSchema, Some(schema)) = (self.config.constraint, &ask.schema) {
            body["format"] = schema.clone();
        }
        Ok(body)
    }
}

fn short(json: &serde_json::Value) -> String {
    let text = json.to_string();
    text.chars().take(200).collect()
}

#[async_trait]
impl Judge for ChatJudge {
    fn limits(&self) -> Limits {
        Limits { concurrency: self.config.concurrency, requests_per_minute: self.config.requests_per_minute }
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        Ok(self.compare_metered(request).await?.value)
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        Ok(self.expand_metered(request).await?.value)
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        Ok(self.mutate_metered(request).await?.value)
    }

    /// Every expansion is quoted at its [`EXPAND_ASKS`] asks.
    fn quote(&self, call: JudgeCall) -> Cost {
        match call {
            JudgeCall::Compare { images } => self.estimate(1, self.shown(images), COMPARE_OUTPUT_TOKENS).cost,
            // After a comparison: its prompt, images and answer come first.
            JudgeCall::Expand { n } => {
                let one = self.estimate(3, self.shown(2), EXPAND_TOKENS_PER_PROMPT * n as u64 + 100).cost;
                Cost { micro_usd: one.micro_usd * EXPAND_ASKS as u64 }
            }
            JudgeCall::Mutate => self.estimate(3, self.shown(2), MUTATE_OUTPUT_TOKENS).cost,
        }
    }

    /// A reply that names neither image was billed all the same: the error says so.
    async fn compare_metered(&self, request: &CompareRequest) -> Result<Metered<Verdict>, PluginError> {
        let (text, images) = self.comparison(&request.prompt, &request.images)?;
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "better": { "type": "string", "enum": ["A", "B"] } },
            "required": ["better"],
            "additionalProperties": false,
        });
        let (reply, usage) = self
            .ask(Ask {
                text,
                images: &images,
                temperature: 0.0,
                schema: Some(schema),
                choices: Some(["(A) is better", "(B) is better"]),
                output_tokens: COMPARE_OUTPUT_TOKENS,
                before: None,
            })
            .await?;
        match parse::verdict(&reply) {
            Some(index) => {
                Ok(Metered { value: Verdict { choice: Choice::Best(index), confidence: 1.0, raw: reply }, usage })
            }
            None => Err(PluginError::Billed(format!("the judge's reply names neither (A) nor (B): {reply:?}"))),
        }
    }

    /// `request.n` distinct new prompts: a reply that falls short (too few, repeats, the prompt
    /// itself) is asked again, as the paper's code does, up to [`EXPAND_ASKS`] times in all.
    async fn expand_metered(&self, request: &ExpandRequest) -> Result<Metered<Vec<String>>, PluginError> {
        let template = self.config.expand_template.as_deref().unwrap_or(self.templates.expand);
        let n = request.n.to_string();
        let text = templates::fill(template, &[("prompt", &request.prompt), ("n", &n)]);
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "prompts": { "type": "array", "items": { "type": "string" } } },
            "required": ["prompts"],
            "additionalProperties": false,
        });
        let mut best = vec![];
        let mut usage = Usage::default();
        for _ in 0..EXPAND_ASKS {
            let ask = Ask {
                text: text.clone(),
                images: &[],
                temperature: self.config.temperature,
                schema: Some(schema.clone()),
                choices: None,
                output_tokens: EXPAND_TOKENS_PER_PROMPT * request.n as u64 + 100,
                before: self.turn(request.after.as_ref())?,
            };
            let (reply, used) = self.ask(ask).await?;
            usage += used;
            let list =
                match serde_json::from_str::<serde_json::Value>(&reply).ok().and_then(|v| v.get("prompts").cloned()) {
                    Some(prompts) => parse::prompt_list(&prompts.to_string())?,
                    None => parse::prompt_list(&reply)?,
                };
            let distinct = parse::distinct(list, &request.prompt);
            if distinct.len() >= request.n {
                return Ok(Metered { value: distinct.into_iter().take(request.n).collect(), usage });
            }
            if distinct.len() > best.len() {
                best = distinct;
            }
        }
        Err(PluginError::Billed(format!(
            "asked {EXPAND_ASKS} times for {} distinct variations of {:?}, got at most {}: {best:?}",
            request.n,
            request.prompt,
            best.len()
        )))
    }

    async fn mutate_metered(&self, request: &MutateRequest) -> Result<Metered<String>, PluginError> {
        let template = self.config.mutate_template.as_deref().unwrap_or(self.templates.mutate);
        let recent = serde_json::to_string(&request.recent).unwrap_or_else(|_| "[]".into());
        let hint = LENGTH_HINTS[(SplitMix64::new(request.seed).next_u64() % LENGTH_HINTS.len() as u64) as usize];
        let text = templates::fill(template, &[("recent", &recent), ("length_hint", hint)]);
        let ask = Ask {
            text,
            images: &[],
            temperature: self.config.temperature,
            schema: None,
            choices: None,
            output_tokens: MUTATE_OUTPUT_TOKENS,
            before: self.turn(request.after.as_ref())?,
        };
        let (reply, usage) = self.ask(ask).await?;
        Ok(Metered { value: parse::single_prompt(&reply)?, usage })
    }
}

evolve_sdk::register_plugin! {
    kind: Judge,
    name: "openai",
    description: "Vision-language judge over an OpenAI-compatible chat API (OpenAI, vLLM, SGLang, llama.cpp, LM Studio, evolve serve).",
    config: ChatJudgeConfig,
    build: |config: ChatJudgeConfig, _ctx: &PluginContext| ChatJudge::new(config, Protocol::ChatCompletions),
}

evolve_sdk::register_plugin! {
    kind: Judge,
    name: "ollama",
    description: "Vision-language judge over Ollama's native /api/chat (e.g. llava, qwen2.5vl).",
    config: ChatJudgeConfig,
    build: |config: ChatJudgeConfig, _ctx: &PluginContext| ChatJudge::new(config, Protocol::Ollama),
}
