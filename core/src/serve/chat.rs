//! The served judge: evolve's judge prompts (comparison, expansion, mutation) answered with the
//! shapes detector and grammar, in two protocols that differ only in their envelopes — OpenAI's
//! chat completions (`image_url` parts, `response_format`, `usage`) and Ollama's native chat
//! (`images` beside the text, `format`, `prompt_eval_count`/`eval_count`).

use super::{MAX_SIDE, World, error, fingerprint, now};
use evolve_sdk::http::{base64_decode, decode_image_within};
use evolve_sdk::{Choice, CompareRequest, Image, SplitMix64};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Images a chat message may carry (a comparison has two, or one side-by-side pair).
const MAX_CHAT_IMAGES: usize = 2;

/// What the judge is asked: the last user message of a chat.
struct Question {
    text: String,
    images: Vec<Image>,
    /// Whether the reply must be JSON in the schema the prompt's kind implies.
    structured: bool,
}

/// Why a chat request is refused (HTTP 400, with this as the message).
#[derive(Debug, thiserror::Error)]
enum BadChat {
    /// No message with role `user`.
    #[error("no user message")]
    NoUserMessage,
    /// The message's content or images are not shaped as the protocol says.
    #[error("{0}")]
    Shape(&'static str),
    /// More images than a judge prompt carries.
    #[error("at most {MAX_CHAT_IMAGES} images a message")]
    TooManyImages,
    /// One image that is not two side by side.
    #[error("one image that is not a side-by-side pair")]
    NotAPair,
    /// A prompt without the quoted description evolve's prompts carry.
    #[error("no quoted text description in the {0} prompt")]
    NoDescription(&'static str),
    /// Not one of evolve's judge prompts.
    #[error("this server answers evolve's judge prompts only")]
    NotAJudgePrompt,
    /// An image that does not decode, or a prompt the world's judge cannot read.
    #[error(transparent)]
    Plugin(#[from] evolve_sdk::PluginError),
}

/// The judge's reply with its token counts, counted as OpenAI counts them, roughly: four
/// characters a token, an image of at most 512 px one tile (85 + 170).
struct Reply {
    content: String,
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// `POST /v1/chat/completions`.
pub(super) async fn openai(State(world): State<Arc<World>>, Json(body): Json<Value>) -> Response {
    let answered = openai_question(&body).and_then(|question| answer(&world, question, fingerprint(&body.to_string())));
    let reply = match answered {
        Ok(reply) => reply,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let model = body.get("model").cloned().unwrap_or_else(|| "shapes".into());
    Json(json!({
        "id": format!("chatcmpl-{:x}", fingerprint(&reply.content)),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply.content },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }))
    .into_response()
}

/// `POST /api/chat` (Ollama), without streaming.
pub(super) async fn ollama(State(world): State<Arc<World>>, Json(body): Json<Value>) -> Response {
    if body.get("stream").and_then(Value::as_bool) != Some(false) {
        return ollama_error(StatusCode::BAD_REQUEST, "this server answers with `\"stream\": false` only");
    }
    let answered = ollama_question(&body).and_then(|question| answer(&world, question, fingerprint(&body.to_string())));
    let reply = match answered {
        Ok(reply) => reply,
        Err(e) => return ollama_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    Json(json!({
        "model": body.get("model").cloned().unwrap_or_else(|| "shapes".into()),
        "created_at": rfc3339(now()),
        "message": { "role": "assistant", "content": reply.content },
        "done": true,
        "done_reason": "stop",
        "prompt_eval_count": reply.prompt_tokens,
        "eval_count": reply.completion_tokens,
    }))
    .into_response()
}

/// `GET /api/tags` (Ollama): the one model.
pub(super) async fn ollama_tags() -> Response {
    Json(json!({ "models": [{ "name": "shapes", "model": "shapes", "size": 0, "details": { "family": "evolve" } }] }))
        .into_response()
}

/// Ollama's errors are a bare string under `error`.
fn ollama_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn last_user_message(body: &Value) -> Result<&Value, BadChat> {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .ok_or(BadChat::NoUserMessage)
}

fn decode_image(bytes_b64: &str) -> Result<Image, BadChat> {
    let bytes = base64_decode(bytes_b64)?;
    // A comparison's images are at most twice the largest image served (side by side).
    Ok(decode_image_within(&bytes, 2 * MAX_SIDE + 64)?)
}

/// OpenAI: the content is a string or a list of `text` and `image_url` (data URL) parts.
fn openai_question(body: &Value) -> Result<Question, BadChat> {
    let message = last_user_message(body)?;
    let mut text = String::new();
    let mut images = vec![];
    match message.get("content") {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(part.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("image_url") => {
                        if images.len() == MAX_CHAT_IMAGES {
                            return Err(BadChat::TooManyImages);
                        }
                        let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                        let b64 = url
                            .split_once("base64,")
                            .map(|(_, b)| b)
                            .ok_or(BadChat::Shape("image_url must be a base64 data URL"))?;
                        images.push(decode_image(b64)?);
                    }
                    _ => {}
                }
            }
        }
        _ => return Err(BadChat::Shape("message content must be a string or a list of parts")),
    }
    Ok(Question { text, images, structured: body.get("response_format").is_some() })
}

/// Ollama: the content is a string, the images plain base64 strings beside it.
fn ollama_question(body: &Value) -> Result<Question, BadChat> {
    let message = last_user_message(body)?;
    let text =
        message.get("content").and_then(Value::as_str).ok_or(BadChat::Shape("message content must be a string"))?;
    let encoded = match message.get("images") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(images)) => {
            let bad = BadChat::Shape("images must be base64 strings");
            images.iter().map(|i| i.as_str()).collect::<Option<_>>().ok_or(bad)?
        }
        Some(_) => return Err(BadChat::Shape("images must be a list of base64 strings")),
    };
    if encoded.len() > MAX_CHAT_IMAGES {
        return Err(BadChat::TooManyImages);
    }
    let images = encoded.into_iter().map(decode_image).collect::<Result<_, _>>()?;
    Ok(Question { text: text.to_string(), images, structured: body.get("format").is_some() })
}

/// The first double-quoted span of `text`.
fn quoted(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Answers one of evolve's judge prompts, told apart by its images and wording.
fn answer(world: &World, question: Question, seed: u64) -> Result<Reply, BadChat> {
    let Question { text, mut images, structured } = question;
    let prompt_tokens = text.len().div_ceil(4) + 255 * images.len();
    let content = if !images.is_empty() {
        if images.len() == 1 {
            images = evolve_openai::side_by_side::split(&images[0]).ok_or(BadChat::NotAPair)?.into();
        }
        let prompt = quoted(&text).ok_or(BadChat::NoDescription("comparison"))?;
        let request = CompareRequest { prompt: prompt.to_string(), images, seed };
        let verdict = world.judge.judge(&request)?;
        // A VLM must name one image; a tie goes to a coin flip.
        let index = match verdict.choice {
            Choice::Best(i) => i.min(1),
            Choice::Tie => SplitMix64::new(seed).below(2) as usize,
        };
        let label = ["A", "B"][index];
        if structured { json!({ "better": label }).to_string() } else { format!("({label}) is better") }
    } else if text.contains("more diverse text descriptions") {
        let prompt = quoted(&text).ok_or(BadChat::NoDescription("expansion"))?;
        let n = text
            .split("generate ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(3)
            .clamp(1, 32);
        let prompts = world.judge.variations(prompt, n, seed)?;
        if structured { json!({ "prompts": prompts }).to_string() } else { json!(prompts).to_string() }
    } else if text.contains("completely unrelated") {
        let recent: Vec<String> = text
            .find('[')
            .and_then(|start| text[start..].find(']').map(|len| &text[start..=start + len]))
            .and_then(|list| serde_json::from_str(list).ok())
            .unwrap_or_default();
        world.judge.mutation(&recent, seed)
    } else {
        return Err(BadChat::NotAJudgePrompt);
    };
    let completion_tokens = content.len().div_ceil(4);
    Ok(Reply { content, prompt_tokens, completion_tokens })
}

/// `seconds` since the Unix epoch as an RFC 3339 UTC time, as Ollama writes `created_at`.
/// (Days to a civil date by Howard Hinnant's `civil_from_days`; no date crate for one field.)
fn rfc3339(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_199), "2026-11-30T23:59:59Z");
    }
}
