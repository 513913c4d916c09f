//! The HTTP teachers and judges over real HTTP on loopback: against `evolve serve` end to end
//! (an `evolve run` killed and resumed), and against a server that injects the faults real
//! providers produce — each must end in a retry, a clear error or a skipped sample, never a crash.

mod support;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use evolve_core::acquire::with_retries;
use evolve_core::registry::Registry;
use evolve_sdk::http::{base64_encode, encode_png};
use evolve_sdk::{CompareRequest, ExpandRequest, GenerateRequest, Image, Judge, MutateRequest, PluginError, Teacher};
use serde_json::json;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{calls_counted, count, evolve, ledger, ok, start_serve};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ---------------------------------------------------------------- the fault-injecting server

#[derive(Default)]
struct Faults {
    calls: Mutex<HashMap<String, u32>>,
}

fn png_b64(image: &Image) -> String {
    base64_encode(&encode_png(image).unwrap())
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid small PNG whose header claims 100000 x 100000 pixels.
fn bomb_png() -> Vec<u8> {
    png_claiming(100_000)
}

/// A valid 16 px PNG whose header claims `side` x `side` pixels.
fn png_claiming(side: u32) -> Vec<u8> {
    let mut png = encode_png(&Image::filled(16, 16, [1, 2, 3])).unwrap();
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn good_image() -> Response {
    axum::Json(json!({ "data": [{ "b64_json": png_b64(&Image::filled(32, 32, [200, 0, 0])), "revised_prompt": "a red square, rendered" }] }))
        .into_response()
}

fn chat_reply(content: &str) -> Response {
    axum::Json(json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }] }))
        .into_response()
}

async fn fault(
    State(faults): State<Arc<Faults>>,
    UrlPath((scenario, endpoint)): UrlPath<(String, String)>,
    body: String,
) -> Response {
    let n = {
        let mut calls = faults.calls.lock().unwrap();
        let n = calls.entry(scenario.clone()).or_default();
        *n += 1;
        *n
    };
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    match (scenario.as_str(), n) {
        ("429", 1) => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "{\"error\":\"slow down\"}").into_response()
        }
        ("503", 1 | 2) => (StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded").into_response(),
        ("500", 1) => (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"oops\"}").into_response(),
        ("slow", 1) => {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            good_image()
        }
        ("truncated", 1) => (json_type, "{\"data\": [{\"b64_json\": \"iVBORw0KGgo").into_response(),
        ("html", 1) => ([(header::CONTENT_TYPE, "text/html")], "<html><body>Bad gateway</body></html>").into_response(),
        ("huge", _) => {
            (json_type, format!("{{\"data\":[{{\"b64_json\":\"{}\"}}]}}", "A".repeat(3 << 20))).into_response()
        }
        ("bomb", _) => axum::Json(json!({ "data": [{ "b64_json": base64_encode(&bomb_png()) }] })).into_response(),
        ("corrupt", _) => {
            axum::Json(json!({ "data": [{ "b64_json": base64_encode(b"not an image at all") }] })).into_response()
        }
        ("unauthorised", _) => (StatusCode::UNAUTHORIZED, "{\"error\":\"bad key\"}").into_response(),
        // No image, and an explanation whose 200th byte falls inside a two-byte character.
        ("nodata", _) => axum::Json(json!({ "error": { "message": "é".repeat(150) } })).into_response(),
        ("neither", _) => chat_reply("Both images are lovely; I cannot choose."),
        // A verdict with the server's token count, as OpenAI reports it.
        ("usage", _) => axum::Json(json!({
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "(B) is better" } }],
            "usage": { "prompt_tokens": 1200, "completion_tokens": 7, "total_tokens": 1207 },
        }))
        .into_response(),
        // One new prompt in three (a repeat, the prompt itself): asked again, then enough.
        ("short", 1) => chat_reply("[\"a blue circle\", \"A blue circle\", \"a red circle\"]"),
        ("never", _) => chat_reply("[\"a blue circle\", \"a blue circle\"]"),
        // Answers only the paper's wording (EvolveDirector's VLM/vlm_script.py), as its model would.
        ("paper", _) => {
            if body.contains("In these two images (A) and (B), which one aligns better") {
                chat_reply("<(B) is better>")
            } else if body.contains("Replace the nouns in the text description: \\\"a red circle\\\"") {
                chat_reply("[\"a blue circle\", \"two red squares\", \"a green diamond\"]")
            } else if body.contains("exercise your imagination") && body.contains("It should") {
                chat_reply("[\"a cat asleep on a windowsill\"]")
            } else {
                (StatusCode::BAD_REQUEST, "not the paper's wording").into_response()
            }
        }
        ("badlist", 1) => chat_reply(""),
        // New prompts asked in the comparison's conversation: its prompt with both images, the
        // judge's verdict, then the request.
        ("conversation", _) => {
            let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let messages = request["messages"].as_array().cloned().unwrap_or_default();
            let images = |m: &serde_json::Value| {
                m["content"].as_array().map_or(0, |parts| parts.iter().filter(|p| p["type"] == "image_url").count())
            };
            match messages.as_slice() {
                [compare] if images(compare) == 2 => chat_reply("(B) is better"),
                [first, verdict, ask]
                    if first["role"] == "user"
                        && images(first) == 2
                        && first["content"][0]["text"].as_str().is_some_and(|t| t.contains("a red circle"))
                        && verdict["role"] == "assistant"
                        && verdict["content"] == "(B) is better"
                        && images(ask) == 0 =>
                {
                    if body.contains("more diverse") {
                        chat_reply("[\"a blue circle\", \"two red squares\", \"a green diamond\"]")
                    } else {
                        chat_reply("\"three purple triangles\"")
                    }
                }
                _ => (StatusCode::BAD_REQUEST, "not the comparison's conversation").into_response(),
            }
        }
        _ if endpoint == "chat/completions" => {
            if body.contains("more diverse") {
                chat_reply("Here you go: [\"a blue circle\", \"two red squares\", \"a green diamond\"]")
            } else if body.contains("completely unrelated") {
                chat_reply("\"three purple triangles\"")
            } else {
                chat_reply("(B) is better")
            }
        }
        _ => good_image(),
    }
}

/// Ollama's native chat: images as base64 strings beside the text, answer in `message`.
async fn ollama_chat(body: String) -> Response {
    let request: serde_json::Value = serde_json::from_str(&body).unwrap();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let message = messages.last().cloned().unwrap_or_default();
    if messages.len() == 3 {
        // The comparison's conversation: its images, the verdict, then the request.
        assert_eq!(messages[0]["images"].as_array().map(Vec::len), Some(2));
        assert_eq!(messages[1]["role"], "assistant");
    }
    assert_eq!(request["stream"], false);
    let images = message["images"].as_array().map(Vec::len).unwrap_or(0);
    let content = if images == 2 {
        assert!(request["format"]["properties"]["better"].is_object(), "the verdict schema is sent as `format`");
        "{\"better\": \"A\"}"
    } else {
        "{\"prompts\": [\"a small red circle\", \"a large red circle\"]}"
    };
    // Ollama counts tokens as `prompt_eval_count` and `eval_count`.
    axum::Json(json!({
        "model": request["model"],
        "message": { "role": "assistant", "content": content },
        "done": true,
        "prompt_eval_count": 900,
        "eval_count": 12,
    }))
    .into_response()
}

/// Starts the fault server; returns its base address.
fn start_fault_server(rt: &tokio::runtime::Runtime) -> String {
    let app = Router::new()
        .route("/s/{scenario}/v1/{*endpoint}", post(fault))
        .route("/ollama/api/chat", post(ollama_chat))
        .with_state(Arc::new(Faults::default()));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn teacher(base: &str, scenario: &str, extra: serde_json::Value) -> Box<dyn Teacher> {
    let mut config =
        json!({ "base_url": format!("{base}/s/{scenario}/v1"), "model": "test", "timeout_s": 1, "price_usd": 0.0 });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    Registry::builtin().teacher(&"openai".into(), config, &evolve_sdk::PluginContext::new("t", 0)).unwrap()
}

fn judge(base: &str, scenario: &str) -> Box<dyn Judge> {
    let config = json!({ "base_url": format!("{base}/s/{scenario}/v1"), "model": "test", "constraint": "none" });
    Registry::builtin().judge(&"openai".into(), config, &evolve_sdk::PluginContext::new("j", 0)).unwrap()
}

fn request() -> GenerateRequest {
    GenerateRequest { prompt: "a red square".into(), width: 32, height: 32, seed: 1 }
}

#[test]
fn transient_faults_end_in_a_retry_that_succeeds() {
    let rt = runtime();
    let base = start_fault_server(&rt);
    for scenario in ["ok", "429", "503", "500", "slow", "truncated", "html"] {
        let teacher = teacher(&base, scenario, json!({}));
        let started = Instant::now();
        let req = request();
        let image = rt.block_on(with_retries(6, || teacher.generate(&req)));
        let image = image.unwrap_or_else(|e| panic!("{scenario}: {e}"));
        assert_eq!((image.image.width(), image.image.height()), (32, 32), "{scenario}");
        assert_eq!(image.revised_prompt.as_deref(), Some("a red square, rendered"));
        if scenario == "429" {
            assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After was not honoured");
        }
    }
}

#[test]
fn an_unlisted_model_is_never_assumed_free_and_prices_follow_size_and_quality() {
    let registry = Registry::builtin();
    let ctx = evolve_sdk::PluginContext::new("t", 0);
    let key = json!({ "env": "PATH" });
    let unpriced = [
        ("openai", json!({ "base_url": "http://127.0.0.1:9/v1", "model": "my-local-model" })),
        ("openai", json!({ "model": "dall-e-3", "size": "512x512" })),
        ("replicate", json!({ "model": "acme/new-model", "api_key": key })),
        ("fal", json!({ "model": "fal-ai/new-model", "api_key": key })),
        ("bfl", json!({ "model": "flux-new", "api_key": key })),
    ];
    for (plugin, config) in unpriced {
        let error = registry.teacher(&plugin.into(), config.clone(), &ctx).err().map(|e| e.to_string());
        let error = error.unwrap_or_else(|| panic!("{plugin} {config}: built with no price"));
        assert!(error.contains("set price_usd"), "{plugin}: {error}");
    }
    let quote = |config: serde_json::Value| {
        let teacher = registry.teacher(&"openai".into(), config, &ctx).unwrap();
        teacher.price(&request()).micro_usd
    };
    assert_eq!(quote(json!({ "model": "dall-e-3", "size": "1792x1024" })), 80_000);
    assert_eq!(quote(json!({ "model": "dall-e-3", "quality": "hd" })), 80_000);
    assert_eq!(quote(json!({ "model": "gpt-image-1", "quality": "low", "size": "1536x1024" })), 16_000);
    assert_eq!(quote(json!({ "model": "gpt-image-1" })), 167_000, "auto quality is quoted at its dearest");
    assert_eq!(quote(json!({ "model": "my-local-model", "price_usd": 0.0 })), 0, "free when the user says so");
}

#[test]
fn a_reply_without_an_image_in_any_script_is_an_error_not_a_panic() {
    let rt = runtime();
    let base = start_fault_server(&rt);
    let teacher = teacher(&base, "nodata", json!({}));
    match rt.block_on(teacher.generate(&request())) {
        Err(error) => assert!(error.to_string().contains("no data[0] in the reply: {\"error\""), "{error}"),
        Ok(_) => panic!("a reply without data gave an image"),
    }
}

#[test]
fn bad_images_and_refusals_are_clear_errors() {
    let rt = runtime();
    let base = start_fault_server(&rt);
    // A 2xx answer was billed, however unusable: the error says so, so that the host counts it.
    let cases = [
        ("huge", json!({ "max_response_mb": 1 }), "larger than", true),
        ("bomb", json!({}), "image", true),
        ("corrupt", json!({}), "image", true),
        ("unauthorised", json!({}), "HTTP 401", false),
    ];
    for (scenario, extra, needle, billed) in cases {
        let teacher = teacher(&base, scenario, extra);
        let req = request();
        match rt.block_on(with_retries(6, || teacher.generate(&req))) {
            Err(PluginError::Billed(message)) if billed => assert!(message.contains(needle), "{scenario}: {message}"),
            Err(PluginError::Failed(message)) if !billed => assert!(message.contains(needle), "{scenario}: {message}"),
            other => panic!("{scenario}: expected a clear failure, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn judge_replies_are_parsed_or_refused() {
    let rt = runtime();
    let base = start_fault_server(&rt);
    let pair = vec![Image::filled(32, 32, [0, 0, 0]), Image::filled(32, 32, [255, 255, 255])];
    let compare = CompareRequest { prompt: "a red circle".into(), images: pair, seed: 0 };
    let ok = judge(&base, "ok");
    let verdict = rt.block_on(with_retries(3, || ok.compare(&compare))).unwrap();
    assert_eq!(verdict.choice, evolve_sdk::Choice::Best(1));
    // A reply that names neither image fails the call (the host skips the sample), billed.
    let undecided = judge(&base, "neither");
    let neither = rt.block_on(with_retries(3, || undecided.compare(&compare)));
    assert!(matches!(neither, Err(PluginError::Billed(ref m)) if m.contains("neither")), "{neither:?}");
    // A malformed expansion is retried.
    let expand = ExpandRequest { prompt: "a red circle".into(), n: 3, seed: 0, after: None };
    let badlist = judge(&base, "badlist");
    let prompts = rt.block_on(with_retries(3, || badlist.expand(&expand))).unwrap();
    assert_eq!(prompts, ["a blue circle", "two red squares", "a green diamond"]);
    let mutated = rt.block_on(ok.mutate(&MutateRequest { recent: vec!["a red circle".into()], seed: 0, after: None }));
    assert_eq!(mutated.unwrap(), "three purple triangles");
    // An expansion that falls short of n distinct prompts is asked again, within a bound.
    let prompts = rt.block_on(judge(&base, "short").expand(&expand)).unwrap();
    assert_eq!(prompts, ["a blue circle", "two red squares", "a green diamond"]);
    let never = rt.block_on(judge(&base, "never").expand(&expand));
    assert!(matches!(never, Err(PluginError::Billed(ref m)) if m.contains("3 distinct")), "{never:?}");
    // The default prompts are the paper's, word for word.
    let paper = judge(&base, "paper");
    assert_eq!(rt.block_on(paper.compare(&compare)).unwrap().choice, evolve_sdk::Choice::Best(1));
    assert_eq!(rt.block_on(paper.expand(&expand)).unwrap().len(), 3);
    let mutated =
        rt.block_on(paper.mutate(&MutateRequest { recent: vec!["a red circle".into()], seed: 5, after: None }));
    assert_eq!(mutated.unwrap(), "a cat asleep on a windowsill");

    // Ollama's native protocol.
    let config = json!({ "base_url": format!("{base}/ollama"), "model": "qwen2.5vl" });
    let ollama = Registry::builtin().judge(&"ollama".into(), config, &evolve_sdk::PluginContext::new("o", 0)).unwrap();
    let verdict = rt.block_on(ollama.compare(&compare)).unwrap();
    assert_eq!(verdict.choice, evolve_sdk::Choice::Best(0));
    let prompts = rt
        .block_on(ollama.expand(&ExpandRequest { prompt: "a red circle".into(), n: 2, seed: 0, after: None }))
        .unwrap();
    assert_eq!(prompts, ["a small red circle", "a large red circle"]);

    // Expansion and mutation in the comparison's conversation, as the paper asks them.
    let after = evolve_sdk::Comparison {
        prompt: "a red circle".into(),
        images: compare.images.clone(),
        reply: "(B) is better".into(),
    };
    let talk = judge(&base, "conversation");
    let expand = ExpandRequest { prompt: "a red circle".into(), n: 3, seed: 0, after: Some(after.clone()) };
    assert_eq!(rt.block_on(talk.expand(&expand)).unwrap(), ["a blue circle", "two red squares", "a green diamond"]);
    let mutate = MutateRequest { recent: vec![], seed: 0, after: Some(after.clone()) };
    assert_eq!(rt.block_on(talk.mutate(&mutate)).unwrap(), "three purple triangles");
    let expand = ExpandRequest { prompt: "a red circle".into(), n: 2, seed: 0, after: Some(after) };
    assert_eq!(rt.block_on(ollama.expand(&expand)).unwrap().len(), 2);
}

#[test]
fn a_judges_token_usage_is_priced_and_quoted_before_the_call() {
    let rt = runtime();
    let base = start_fault_server(&rt);
    let pair = vec![Image::filled(32, 32, [0, 0, 0]), Image::filled(32, 32, [255, 255, 255])];
    let compare = CompareRequest { prompt: "a red circle".into(), images: pair, seed: 0 };
    let price = json!({ "input_per_million_usd": 2.5, "output_per_million_usd": 10.0 });
    let priced = |url: String, plugin: &str| {
        let constraint = if plugin == "ollama" { "json_schema" } else { "none" };
        let config = json!({ "base_url": url, "model": "test", "constraint": constraint, "price": price });
        Registry::builtin().judge(&plugin.into(), config, &evolve_sdk::PluginContext::new("j", 0)).unwrap()
    };
    // The server's count, priced: 1200 × $2.50/M + 7 × $10/M.
    let judge = priced(format!("{base}/s/usage/v1"), "openai");
    let metered = rt.block_on(judge.compare_metered(&compare)).unwrap();
    assert_eq!(metered.value.choice, evolve_sdk::Choice::Best(1));
    assert_eq!((metered.usage.input_tokens, metered.usage.output_tokens), (1200, 7));
    assert_eq!(metered.usage.cost.micro_usd, 3_070);
    // Quoted before the call: a prompt and two images of 255 tokens, 300 tokens of answer.
    let quote = judge.quote(evolve_sdk::JudgeCall::Compare { images: 2 });
    assert_eq!(quote.micro_usd, 6_775, "1510 × $2.50/M + 300 × $10/M");
    // A server that does not count is charged the quote's estimate, never nothing.
    let silent = priced(format!("{base}/s/ok/v1"), "openai");
    let metered = rt.block_on(silent.compare_metered(&compare)).unwrap();
    assert_eq!(metered.usage.cost, quote);
    // Ollama's counts.
    let ollama = priced(format!("{base}/ollama"), "ollama");
    let metered = rt.block_on(ollama.compare_metered(&compare)).unwrap();
    assert_eq!((metered.usage.input_tokens, metered.usage.output_tokens), (900, 12));
    // Not priced and not at home: refused, so that max_cost_usd can hold.
    let config = json!({ "base_url": "https://vlm.example.com/v1", "model": "some-vlm" });
    let error = Registry::builtin().judge(&"openai".into(), config, &evolve_sdk::PluginContext::new("j", 0));
    assert!(error.err().is_some_and(|e| e.to_string().contains("set price")));
}

// ---------------------------------------------------------------- end to end with evolve serve

#[test]
fn an_evolve_run_with_the_openai_plugins_against_evolve_serve_survives_a_kill() {
    let (_server, url) = start_serve(&[], &[]);

    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
[run]
name = "http-e2e"
seed = 4
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 3 }}
[[teachers]]
name = "served"
plugin = "openai"
config = {{ base_url = "{url}", model = "shapes", response_format = "url", send_seed = true, price_usd = 0.01 }}
[judge]
plugin = "openai"
config = {{ base_url = "{url}", model = "shapes", side_by_side = true }}
[prompts]
generate = 10
[training]
batch_size = 8
checkpoint_every = 10
# In lockstep every round (steps 10 to 50) runs whatever the machine's speed: otherwise a
# trainer faster than the rounds may reach max_steps before they spend the budget (CI saw 28).
[director]
every_steps = 10
select_ratio = 0.5
lockstep = true
[budget]
max_teacher_calls = 30
max_cost_usd = 1.0
max_steps = 60
[audit]
swap_share = 1.0
known_share = 1.0
"#
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut first =
        evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().ok();
    first.wait().unwrap();
    let mut resume = evolve();
    resume.arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet");
    if run.join("ledger.sqlite").exists() {
        resume.arg("--resume");
    }
    let out = resume.output().unwrap();
    ok(&out);

    let conn = ledger(&run);
    let count = |sql: &str| count(&conn, sql);
    // The budget is met exactly, counting any call the kill left in flight.
    let (calls, spent) = calls_counted(&conn);
    let delivered = count("SELECT count(*) FROM api_calls");
    assert_eq!(calls, 30, "the budget met exactly ({delivered} delivered, the rest in flight)");
    assert_eq!(count("SELECT count(DISTINCT request_hash) FROM api_calls"), delivered, "each paid call once");
    assert_eq!(spent, 300_000);
    assert!(count("SELECT count(*) FROM judgments") > 0, "the judge was asked over HTTP");
    assert!(count("SELECT count(*) FROM samples WHERE origin = 'expansion'") > 0, "expansions came over HTTP");
    assert!(count("SELECT count(*) FROM api_calls WHERE revised_prompt IS NOT NULL") > 0);
    // The judge audit's probes went over HTTP too: the served judge tells a teacher's image
    // from noise whichever side it is on.
    let known = count("SELECT count(*) FROM audit_probes WHERE kind = 'known'");
    assert!(known > 0 && count("SELECT count(*) FROM audit_probes WHERE kind = 'swap'") > 0);
    let right = count("SELECT count(*) FROM audit_probes WHERE kind = 'known' AND passed = 1");
    assert!(right * 10 >= known * 9, "{right} of {known} known-answer probes right");
}

#[test]
fn the_ollama_judge_runs_a_whole_evolve_run_against_evolve_serve_and_passes_its_audit() {
    let (_server, url) = start_serve(&[], &[]);
    // Ollama's API lives at the server's root, not under /v1.
    let root = url.trim_end_matches("/v1");
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
[run]
name = "ollama-e2e"
seed = 6
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "shapes"
[judge]
plugin = "ollama"
config = {{ base_url = "{root}", model = "shapes" }}
[prompts]
generate = 12
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_steps = 50
[audit]
swap_share = 1.0
known_share = 1.0
"#
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let stdout = ok(&evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());
    let conn = ledger(&run);
    let count = |sql: &str| count(&conn, sql);
    assert_eq!(
        count("SELECT count(*) FROM samples WHERE origin = 'seed'"),
        12,
        "the seeds were written over /api/chat"
    );
    assert!(count("SELECT count(*) FROM judgments") > 0, "comparisons over /api/chat: {stdout}");
    assert!(count("SELECT count(*) FROM samples WHERE origin = 'expansion'") > 0, "expansions over /api/chat");
    // The audit's probes asked the same judge: it tells a teacher's image from noise on either
    // side, and names the same image whichever order they come in.
    let known = count("SELECT count(*) FROM audit_probes WHERE kind = 'known'");
    let swaps = count("SELECT count(*) FROM audit_probes WHERE kind = 'swap'");
    assert!(known > 0 && swaps > 0, "{known} known, {swaps} swapped");
    let right = count("SELECT count(*) FROM audit_probes WHERE kind = 'known' AND passed = 1");
    assert!(right * 10 >= known * 9, "{right} of {known} known-answer probes right");
    assert!(!stdout.contains("judge audit failed"), "{stdout}");
    // A free judge at home writes no judge calls down.
    assert_eq!(count("SELECT count(*) FROM judge_calls"), 0);
}

#[test]
fn a_priced_judge_is_paid_out_of_the_same_budget_as_the_teachers() {
    let (_server, url) = start_serve(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    // A dear judge ($100 per million tokens, about 4 cents a comparison) and a cheap teacher:
    // the judge's spending is what reaches max_cost_usd.
    std::fs::write(
        &exp,
        format!(
            r#"
[run]
name = "priced-judge"
seed = 2
[base_model]
plugin = "dit"
config = {{ preset = "tiny", sample_steps = 2 }}
[[teachers]]
plugin = "openai"
config = {{ base_url = "{url}", model = "shapes", price_usd = 0.01 }}
[judge]
plugin = "openai"
config = {{ base_url = "{url}", model = "shapes", side_by_side = true, price = {{ input_per_million_usd = 100.0, output_per_million_usd = 100.0 }} }}
[prompts]
generate = 8
[training]
batch_size = 4
checkpoint_every = 1000
[director]
every_steps = 10
select_ratio = 1.0
[budget]
max_cost_usd = 1.0
max_steps = 60
[audit]
swap_share = 0.0
known_share = 0.0
"#
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let stdout = ok(&evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).arg("--quiet").output().unwrap());

    let conn = ledger(&run);
    let count = |sql: &str| count(&conn, sql);
    let judge_cost = count("SELECT coalesce(sum(cost_micro_usd), 0) FROM judge_calls");
    let teacher_cost = count("SELECT coalesce(sum(cost_micro_usd), 0) FROM api_calls");
    assert!(count("SELECT count(*) FROM judge_calls WHERE kind = 'compare'") > 0, "{stdout}");
    assert!(count("SELECT count(*) FROM judge_calls WHERE kind = 'mutate'") >= 8, "the seed prompts were written");
    assert!(count("SELECT min(input_tokens) FROM judge_calls") > 0, "the server's counts");
    assert!(judge_cost > 300_000, "the judge spent most of the dollar: {judge_cost}");
    assert!(judge_cost + teacher_cost <= 1_000_000, "judge {judge_cost} + teachers {teacher_cost} within $1");
    assert!(judge_cost + teacher_cost > 800_000, "the budget was spent, then the run stopped buying");
    assert!(stdout.contains("judge: ") && stdout.contains("total spent $"), "{stdout}");
    let report = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(report.contains("judge cost") && report.contains("teacher cost"), "the report shows both");
}

#[test]
fn a_judge_that_refuses_its_config_stops_the_run_before_it_has_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        "[run]\nname = \"x\"\n[base_model]\nplugin = \"dit\"\n[[teachers]]\nplugin = \"shapes\"\n[judge]\nplugin = \"openai\"\n\
         config = { base_url = \"https://vlm.example.com/v1\", model = \"some-vlm\" }\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let out = evolve().arg("run").arg(&exp).arg("--run-dir").arg(&run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("set price"), "{stderr}");
    assert!(!run.exists(), "a run that never started leaves nothing to --resume");
    // `evolve check` runs the plugin's configuration step too, so it says the same first.
    let out = evolve().arg("check").arg(&exp).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("judge: ") && stderr.contains("set price"), "{stderr}");
}

#[test]
fn evolve_serve_with_a_token_refuses_requests_without_it() {
    let token = ("EVOLVE_TEST_SERVE_TOKEN", "s3cret");
    let (_server, url) = start_serve(&["--token-env", token.0], &[token]);
    let rt = runtime();
    let client = evolve_sdk::http::reqwest::Client::new();
    let body = json!({ "prompt": "a red circle", "size": "32x32" });
    let status =
        |request: evolve_sdk::http::reqwest::RequestBuilder| rt.block_on(request.send()).unwrap().status().as_u16();
    let endpoint = format!("{url}/images/generations");
    assert_eq!(status(client.post(&endpoint).json(&body)), 401);
    assert_eq!(status(client.post(&endpoint).bearer_auth("wrong").json(&body)), 401);
    assert_eq!(status(client.post(&endpoint).bearer_auth("s3cret").json(&body)), 200);
}

#[test]
fn evolve_serve_answers_only_its_loopback_name_and_bounds_what_a_request_may_hold() {
    let (_server, url) = start_serve(&[], &[]);
    let rt = runtime();
    let client = evolve_sdk::http::reqwest::Client::new();
    let send = |request: evolve_sdk::http::reqwest::RequestBuilder| {
        let reply = rt.block_on(request.send()).unwrap();
        (reply.status().as_u16(), rt.block_on(reply.text()).unwrap())
    };
    let body = json!({ "prompt": "a red circle", "size": "32x32" });
    let endpoint = format!("{url}/images/generations");
    assert_eq!(send(client.post(&endpoint).json(&body)).0, 200);
    assert_eq!(send(client.post(&endpoint).header("host", "localhost:1234").json(&body)).0, 200);
    // DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1.
    let (status, text) = send(client.post(&endpoint).header("host", "evil.example:80").json(&body));
    assert_eq!(status, 403, "{text}");

    // A comparison holds two images, each of a sane size; a small file claiming a huge canvas
    // is refused before it is decoded.
    let part = |png: &[u8]| json!({ "type": "image_url", "image_url": { "url": format!("data:image/png;base64,{}", base64_encode(png)) } });
    let small = evolve_sdk::http::encode_png(&Image::filled(16, 16, [200, 0, 0])).unwrap();
    let chat = |parts: Vec<serde_json::Value>| {
        let mut content = vec![json!({ "type": "text", "text": "Which image matches \"a red circle\"?" })];
        content.extend(parts);
        json!({ "model": "shapes", "messages": [{ "role": "user", "content": content }] })
    };
    let chat_endpoint = format!("{url}/chat/completions");
    assert_eq!(send(client.post(&chat_endpoint).json(&chat(vec![part(&small), part(&small)]))).0, 200);
    let (status, text) = send(client.post(&chat_endpoint).json(&chat(vec![part(&small); 3])));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("at most 2 images"), "{text}");
    let (status, text) = send(client.post(&chat_endpoint).json(&chat(vec![part(&png_claiming(4000)), part(&small)])));
    assert_eq!(status, 400, "{text}");
}

/// Counts of a provider that bills each submission and whose result host is briefly down.
#[derive(Default)]
struct Billing {
    base: std::sync::OnceLock<String>,
    submitted: std::sync::atomic::AtomicU32,
    downloads: std::sync::atomic::AtomicU32,
}

#[test]
fn a_paid_result_whose_download_fails_is_downloaded_again_not_bought_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let rt = runtime();
    let billing = Arc::new(Billing::default());
    let submit = |State(b): State<Arc<Billing>>| async move {
        b.submitted.fetch_add(1, SeqCst);
        let url = format!("{}/files/result.png", b.base.get().unwrap());
        axum::Json(json!({ "data": [{ "url": url }] })).into_response()
    };
    let result = |State(b): State<Arc<Billing>>| async move {
        if b.downloads.fetch_add(1, SeqCst) < 2 {
            (StatusCode::SERVICE_UNAVAILABLE, "result store busy").into_response()
        } else {
            ([(header::CONTENT_TYPE, "image/png")], encode_png(&Image::filled(32, 32, [0, 0, 200])).unwrap())
                .into_response()
        }
    };
    let app = Router::new()
        .route("/v1/images/generations", post(submit))
        .route("/files/result.png", axum::routing::get(result))
        .with_state(Arc::clone(&billing));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    billing.base.set(base.clone()).unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });

    let config =
        json!({ "base_url": format!("{base}/v1"), "model": "test", "price_usd": 0.04, "response_format": "url" });
    let teacher =
        Registry::builtin().teacher(&"openai".into(), config, &evolve_sdk::PluginContext::new("t", 0)).unwrap();
    let req = request();
    let image = rt.block_on(with_retries(6, || teacher.generate(&req))).unwrap();
    assert_eq!((image.image.width(), image.cost.micro_usd), (32, 40_000));
    assert_eq!(billing.submitted.load(SeqCst), 1, "the image was bought again instead of downloaded again");
    assert_eq!(billing.downloads.load(SeqCst), 3);
}

#[test]
fn a_result_url_on_the_users_own_network_is_refused_unless_the_provider_lives_there() {
    use evolve_sdk::http::{HttpClient, HttpSettings};
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    let rt = runtime();
    let hits = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().route(
        "/secret.png",
        axum::routing::get(move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, SeqCst);
                ([(header::CONTENT_TYPE, "image/png")], encode_png(&Image::filled(4, 4, [1, 2, 3])).unwrap())
            }
        }),
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await });

    // A provider on the public internet whose reply names a loopback or link-local address, or a
    // name for one: nothing is fetched.
    let public =
        HttpClient::new(HttpSettings::for_provider("https://api.example.com/v1", Duration::from_secs(5), None))
            .unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/secret.png"),
        format!("http://localhost:{port}/secret.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/secret.png"),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        match rt.block_on(public.download(&url)) {
            Err(error) => assert!(error.to_string().contains("private address"), "{url}: {error}"),
            Ok(_) => panic!("{url} was fetched"),
        }
    }
    assert_eq!(hits.load(SeqCst), 0);
    // Your own server on loopback hands out loopback result URLs.
    let own = HttpClient::new(HttpSettings::for_provider(
        &format!("http://127.0.0.1:{port}/v1"),
        Duration::from_secs(5),
        None,
    ))
    .unwrap();
    assert!(rt.block_on(own.download(&format!("http://127.0.0.1:{port}/secret.png"))).is_ok());
    assert_eq!(hits.load(SeqCst), 1);
}
