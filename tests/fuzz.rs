//! Fuzzing what outsiders write: experiment files, a judge's replies, a provider's replies, and
//! requests to `evolve serve`. Each target is a property test over arbitrary and mutated inputs
//! (proptest), bounded so that CI runs it in seconds; `EVOLVE_FUZZ_CASES=100000` runs longer.
//! The property is always the same: a clear error or a valid result, never a panic, a hang or
//! a server that stops answering.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use evolve_core::registry::Registry;
use evolve_sdk::GenerateRequest;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Cases per target: 256 in CI, more on request.
fn cases() -> u32 {
    std::env::var("EVOLVE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

const EXPERIMENT: &str = r#"
[run]
name = "fuzz"
seed = 1
image_size = 32
[base_model]
plugin = "dit"
config = { preset = "tiny", guidance = 4.5 }
[[teachers]]
plugin = "shapes"
config = { failure_rate = 0.1 }
[judge]
plugin = "shapes"
config = { flip_rate = 0.1 }
[[operators]]
plugin = "expansion"
config = { expand_num = 3 }
[prompts]
generate = 10
[training]
batch_size = 8
[director]
every_steps = 10
[budget]
max_teacher_calls = 20
max_cost_usd = 1.5
"#;

/// An experiment file with one edit: a line dropped or duplicated, a span replaced by arbitrary
/// text, or a byte changed.
fn mutated_experiment() -> impl Strategy<Value = String> {
    let lines = EXPERIMENT.lines().count();
    (0..4u8, 0..lines, 0..EXPERIMENT.len(), ".{0,12}", any::<u8>()).prop_map(|(kind, line, at, text, byte)| {
        let mut lines: Vec<String> = EXPERIMENT.lines().map(String::from).collect();
        match kind {
            0 => {
                lines.remove(line);
                lines.join("\n")
            }
            1 => {
                let copy = lines[line].clone();
                lines.insert(line, copy);
                lines.join("\n")
            }
            2 => {
                let mut at = at;
                while !EXPERIMENT.is_char_boundary(at) {
                    at -= 1;
                }
                let end = (at + text.len()).min(EXPERIMENT.len());
                let end =
                    (end..=EXPERIMENT.len()).find(|&e| EXPERIMENT.is_char_boundary(e)).unwrap_or(EXPERIMENT.len());
                format!("{}{text}{}", &EXPERIMENT[..at], &EXPERIMENT[end..])
            }
            _ => {
                let mut bytes = EXPERIMENT.as_bytes().to_vec();
                bytes[at] = byte;
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    })
}

#[test]
fn fuzz_the_experiment_parser() {
    let registry = Registry::builtin();
    let path = Path::new("fuzz.toml");
    let inputs = prop_oneof![mutated_experiment(), ".{0,200}", "(\\[[a-z_.]{0,12}\\]\n[a-z_]{1,10} = .{0,20}\n){0,6}"];
    let tried = std::cell::Cell::new(0u32);
    runner()
        .run(&inputs, |text| {
            tried.set(tried.get() + 1);
            if let Err(error) = evolve_core::experiment::parse(&text, path, &registry) {
                let message = error.to_string();
                prop_assert!(message.contains("fuzz.toml"), "an error that does not name the file: {message}");
            }
            Ok(())
        })
        .unwrap();
    println!("fuzz experiment parser: {} inputs, 0 panics", tried.get());
}

#[test]
fn fuzz_judge_reply_parsing() {
    use evolve_openai::parse;
    let replies = prop_oneof![
        ".{0,300}",
        "[ \n]*\\{\"(better|answer)\": *\"[AB(). a-z]{0,8}\"\\}[ \n]*",
        "(Here.{0,20})?\\[(\"[a-z ]{0,20}\", ?){0,5}\"[a-z ]{0,20}\"\\].{0,20}",
        "([0-9]{1,2}[.)] .{0,30}\n){0,6}",
    ];
    let tried = std::cell::Cell::new(0u32);
    runner()
        .run(&replies, |reply| {
            tried.set(tried.get() + 1);
            let choice = parse::verdict(&reply);
            prop_assert!(choice.is_none_or(|c| c < 2));
            if let Ok(list) = parse::prompt_list(&reply) {
                prop_assert!(!list.is_empty() && list.iter().all(|p| !p.trim().is_empty()));
            }
            if let Ok(prompt) = parse::single_prompt(&reply) {
                prop_assert!(!prompt.is_empty());
            }
            Ok(())
        })
        .unwrap();
    println!("fuzz judge replies: {} inputs, 0 panics", tried.get());
}

/// A provider that answers every request with the body and content type set for the case.
#[derive(Default)]
struct Scripted {
    reply: Mutex<(u16, &'static str, Vec<u8>)>,
}

async fn scripted(State(s): State<Arc<Scripted>>) -> axum::response::Response {
    let (status, content_type, body) = s.reply.lock().unwrap().clone();
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    (status, [(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Bodies a provider might send: arbitrary bytes, JSON shaped like each protocol's replies with
/// arbitrary values, and truncations of valid ones.
fn provider_reply() -> impl Strategy<Value = (u16, &'static str, Vec<u8>)> {
    let json_shaped = prop_oneof![
        ".{0,40}".prop_map(|s| format!("{{\"data\": [{{\"b64_json\": \"{s}\"}}]}}")),
        ".{0,40}".prop_map(|s| format!("{{\"data\": [{{\"url\": \"{s}\"}}]}}")),
        ".{0,40}".prop_map(|s| format!("{{\"id\": \"x\", \"polling_url\": \"{s}\"}}")),
        ".{0,40}".prop_map(|s| format!("{{\"status\": \"{s}\", \"output\": [\"{s}\"]}}")),
        ".{0,40}".prop_map(|s| format!("{{\"request_id\": \"r\", \"status_url\": \"{s}\", \"response_url\": 7}}")),
        "\\{\"data\": \\[\\{\"b64_json\": \"iVBORw0KGgo".prop_map(String::from),
    ];
    let statuses = prop_oneof![Just(200u16), Just(201), Just(400), Just(404), Just(429), Just(500), Just(503)];
    let content_types = prop_oneof![Just("application/json"), Just("text/html"), Just("image/png")];
    (
        statuses,
        content_types,
        prop_oneof![json_shaped.prop_map(String::into_bytes), proptest::collection::vec(any::<u8>(), 0..200)],
    )
}

#[test]
fn fuzz_provider_reply_parsing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let script = Arc::new(Scripted::default());
    let app = Router::new().fallback(post(scripted).get(scripted)).with_state(Arc::clone(&script));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    // SAFETY: set before any teacher reads it; the fuzz tests touch no other variable.
    unsafe { std::env::set_var("EVOLVE_FUZZ_KEY", "k") };
    let key = serde_json::json!({ "env": "EVOLVE_FUZZ_KEY" });
    let ctx = evolve_sdk::PluginContext::new("t", 0);
    let registry = Registry::builtin();
    let teachers: Vec<(&str, Box<dyn evolve_sdk::Teacher>)> = [
        ("openai", serde_json::json!({ "base_url": format!("{base}/v1"), "model": "m", "price_usd": 0.01, "timeout_s": 2 })),
        ("bfl", serde_json::json!({ "base_url": format!("{base}/v1"), "api_key": key, "price_usd": 0.01, "timeout_s": 1, "poll_ms": 10 })),
        ("replicate", serde_json::json!({ "base_url": format!("{base}/v1"), "api_key": key, "model": "a/b", "price_usd": 0.01, "timeout_s": 1, "poll_ms": 10 })),
        ("fal", serde_json::json!({ "base_url": format!("{base}/fal"), "api_key": key, "model": "m", "price_usd": 0.01, "timeout_s": 1, "poll_ms": 10 })),
        ("stability", serde_json::json!({ "base_url": base.clone(), "api_key": key, "price_usd": 0.01, "json": true })),
    ]
    .into_iter()
    .map(|(name, config)| (name, registry.teacher(&name.into(), config, &ctx).unwrap_or_else(|e| panic!("{name}: {e}"))))
    .collect();
    let request = GenerateRequest { prompt: "a red circle".into(), width: 32, height: 32, seed: 1 };
    let tried = std::cell::Cell::new(0u32);
    let mut config = Config { cases: cases() / 4, failure_persistence: None, ..Config::default() };
    config.cases = config.cases.max(16);
    TestRunner::new(config)
        .run(&provider_reply(), |reply| {
            *script.reply.lock().unwrap() = reply;
            for (_, teacher) in &teachers {
                tried.set(tried.get() + 1);
                let outcome = rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(10), teacher.generate(&request)).await
                });
                prop_assert!(outcome.is_ok(), "a teacher hung on a reply");
            }
            Ok(())
        })
        .unwrap();
    println!("fuzz provider replies: {} inputs, 0 panics, 0 hangs", tried.get());
}

#[test]
fn fuzz_serve_request_handling() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = evolve_core::serve::router("shapes", None).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    let client = evolve_sdk::http::reqwest::Client::new();
    let send = |path: String, body: Vec<u8>| {
        let request = client.post(format!("{base}{path}")).header("content-type", "application/json").body(body);
        rt.block_on(async { request.send().await.map(|r| r.status().as_u16()) })
    };
    let image = evolve_sdk::http::base64_encode(
        &evolve_sdk::http::encode_png(&evolve_sdk::Image::filled(8, 8, [1, 2, 3])).unwrap(),
    );
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        ".{0,60}".prop_map(|p| format!("{{\"prompt\": \"{p}\", \"size\": \"32x32\", \"n\": 1}}").into_bytes()),
        ("[0-9x]{0,12}", "[a-z_]{0,10}").prop_map(|(size, format)| format!("{{\"prompt\": \"a red circle\", \"size\": \"{size}\", \"response_format\": \"{format}\"}}").into_bytes()),
        (".{0,40}", 0..4usize).prop_map(move |(text, images)| {
            let parts: Vec<String> = (0..images).map(|_| format!("{{\"type\": \"image_url\", \"image_url\": {{\"url\": \"data:image/png;base64,{image}\"}}}}")).collect();
            format!("{{\"model\": \"shapes\", \"messages\": [{{\"role\": \"user\", \"content\": [{{\"type\": \"text\", \"text\": \"{text}\"}}{}{}]}}]}}", if parts.is_empty() { "" } else { ", " }, parts.join(", ")).into_bytes()
        }),
    ];
    let paths = prop_oneof![Just("/v1/images/generations".to_string()), Just("/v1/chat/completions".to_string())];
    let tried = std::cell::Cell::new(0u32);
    runner()
        .run(&(paths, bodies), |(path, body)| {
            tried.set(tried.get() + 1);
            let status = send(path, body);
            prop_assert!(status.as_ref().is_ok_and(|s| *s < 500), "serve failed a request: {status:?}");
            Ok(())
        })
        .unwrap();
    // Still answering.
    assert_eq!(
        send("/v1/images/generations".into(), br#"{"prompt": "a red circle", "size": "32x32"}"#.to_vec()).unwrap(),
        200
    );
    println!("fuzz serve: {} requests, 0 panics, 0 server errors", tried.get());
}
