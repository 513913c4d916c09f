//! The image-API teachers against a loopback server that speaks each provider's protocol:
//! Replicate (create with `Prefer: wait`, poll `urls.get`), fal (queue submit, status, result),
//! Black Forest Labs (submit, poll `polling_url`), Stability AI (multipart; image bytes or JSON).
//! Each checks the authentication header, follows the asynchronous protocol, downloads the
//! result at once, and turns a provider-side failure into a clear error.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evolve_core::registry::Registry;
use evolve_sdk::http::{base64_encode, encode_png};
use evolve_sdk::{GenerateRequest, Image, PluginError, Teacher};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

const KEY: &str = "k-test-123";
const KEY_ENV: &str = "EVOLVE_TEST_PROVIDER_KEY";

#[derive(Default)]
struct Provider {
    base: OnceLock<String>,
    polls: Mutex<HashMap<String, u32>>,
}

impl Provider {
    fn base(&self) -> &str {
        self.base.get().map(String::as_str).unwrap_or("")
    }

    /// How many times `what` was asked before (0 the first time).
    fn tick(&self, what: &str) -> u32 {
        let mut polls = self.polls.lock().unwrap();
        let n = polls.entry(what.to_string()).or_default();
        *n += 1;
        *n - 1
    }
}

fn png() -> Vec<u8> {
    encode_png(&Image::filled(48, 48, [0, 90, 200])).unwrap()
}

fn header_is(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(value)
}

fn unauthorised() -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(json!({ "detail": "bad credentials" }))).into_response()
}

async fn route(State(p): State<Arc<Provider>>, request: Request) -> Response {
    let (method, path, headers) =
        (request.method().clone(), request.uri().path().to_string(), request.headers().clone());
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
    let body_text = String::from_utf8_lossy(&body).to_string();
    let base = p.base().to_string();
    let bearer = format!("Bearer {KEY}");
    match (method.as_str(), path.as_str()) {
        ("GET", "/files/out.png") => ([(header::CONTENT_TYPE, "image/png")], png()).into_response(),

        // Replicate
        ("POST", "/replicate/v1/models/black-forest-labs/flux-schnell/predictions") => {
            if !header_is(&headers, "authorization", &bearer) {
                return unauthorised();
            }
            assert!(header_is(&headers, "prefer", "wait"), "Prefer: wait missing");
            let input: Value = serde_json::from_str(&body_text).unwrap();
            assert_eq!(input["input"]["prompt"], "a blue square");
            assert_eq!(input["input"]["aspect_ratio"], "1:1");
            axum::Json(json!({ "id": "p1", "status": "starting", "urls": { "get": format!("{base}/replicate/v1/predictions/p1") } }))
                .into_response()
        }
        ("GET", "/replicate/v1/predictions/p1") => {
            let status = if p.tick("replicate") < 2 { "processing" } else { "succeeded" };
            let output = if status == "succeeded" { json!([format!("{base}/files/out.png")]) } else { Value::Null };
            axum::Json(json!({ "id": "p1", "status": status, "output": output })).into_response()
        }
        ("POST", "/replicate/v1/models/acme/broken/predictions") => {
            axum::Json(json!({ "id": "p2", "status": "failed", "error": "NSFW content detected" })).into_response()
        }

        // fal
        ("POST", "/fal/fal-ai/flux/schnell") => {
            if !header_is(&headers, "authorization", &format!("Key {KEY}")) {
                return unauthorised();
            }
            let input: Value = serde_json::from_str(&body_text).unwrap();
            assert_eq!(input["prompt"], "a blue square");
            assert!(input["image_size"]["width"].as_u64().unwrap() >= 256);
            axum::Json(json!({
                "request_id": "r1",
                "status_url": format!("{base}/fal/fal-ai/flux/requests/r1/status"),
                "response_url": format!("{base}/fal/fal-ai/flux/requests/r1"),
            }))
            .into_response()
        }
        ("GET", "/fal/fal-ai/flux/requests/r1/status") => {
            let status = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"][p.tick("fal").min(2) as usize];
            axum::Json(json!({ "status": status })).into_response()
        }
        ("GET", "/fal/fal-ai/flux/requests/r1") => {
            axum::Json(json!({ "images": [{ "url": format!("data:image/png;base64,{}", base64_encode(&png())) }] }))
                .into_response()
        }

        // Black Forest Labs
        ("POST", "/bfl/v1/flux-pro-1.1") => {
            if !header_is(&headers, "x-key", KEY) {
                return unauthorised();
            }
            let input: Value = serde_json::from_str(&body_text).unwrap();
            assert_eq!(input["width"].as_u64().unwrap() % 32, 0);
            axum::Json(json!({ "id": "b1", "polling_url": format!("{base}/bfl/v1/get_result?id=b1") })).into_response()
        }
        ("GET", "/bfl/v1/get_result") => {
            if p.tick("bfl") < 1 {
                axum::Json(json!({ "id": "b1", "status": "Pending" })).into_response()
            } else {
                axum::Json(
                    json!({ "id": "b1", "status": "Ready", "result": { "sample": format!("{base}/files/out.png") } }),
                )
                .into_response()
            }
        }
        ("POST", "/bfl/v1/flux-dev") => {
            axum::Json(json!({ "id": "b2", "polling_url": format!("{base}/bfl/v1/moderated") })).into_response()
        }
        ("GET", "/bfl/v1/moderated") => {
            axum::Json(json!({ "id": "b2", "status": "Content Moderated" })).into_response()
        }

        // Stability AI
        ("POST", "/stability/v2beta/stable-image/generate/core") => {
            if !header_is(&headers, "authorization", &bearer) {
                return unauthorised();
            }
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(content_type.starts_with("multipart/form-data"), "{content_type}");
            assert!(body_text.contains("name=\"prompt\"") && body_text.contains("a blue square"));
            if header_is(&headers, "accept", "application/json") {
                let filtered = body_text.contains("filtered please");
                let reason = if filtered { "CONTENT_FILTERED" } else { "SUCCESS" };
                axum::Json(json!({ "image": base64_encode(&png()), "finish_reason": reason, "seed": 1 }))
                    .into_response()
            } else {
                ([(header::CONTENT_TYPE, "image/png")], png()).into_response()
            }
        }
        _ => (StatusCode::NOT_FOUND, format!("no route {method} {path}")).into_response(),
    }
}

fn teacher(registry: &Registry, plugin: &str, config: Value) -> Box<dyn Teacher> {
    registry
        .teacher(&plugin.into(), config, &evolve_sdk::PluginContext::new(plugin, 0))
        .unwrap_or_else(|e| panic!("{plugin}: {e}"))
}

#[test]
fn each_provider_protocol_is_followed_to_the_image() {
    // SAFETY: set before any thread of this test binary reads the environment; no other test
    // in this binary touches it.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let provider = Arc::new(Provider::default());
    let app = Router::new().fallback(route).with_state(Arc::clone(&provider));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    provider.base.set(base.clone()).unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });

    let registry = Registry::builtin();
    let key = json!({ "env": KEY_ENV });
    let request = GenerateRequest { prompt: "a blue square".into(), width: 32, height: 32, seed: 7 };
    let cases = [
        (
            "replicate",
            json!({ "model": "black-forest-labs/flux-schnell", "base_url": format!("{base}/replicate/v1"), "api_key": key, "poll_ms": 10, "input": { "aspect_ratio": "1:1" } }),
            0.003,
        ),
        (
            "fal",
            json!({ "model": "fal-ai/flux/schnell", "base_url": format!("{base}/fal"), "api_key": key, "poll_ms": 10 }),
            0.003,
        ),
        ("bfl", json!({ "base_url": format!("{base}/bfl/v1"), "api_key": key, "poll_ms": 10 }), 0.04),
        ("stability", json!({ "base_url": format!("{base}/stability"), "api_key": key }), 0.03),
        ("stability", json!({ "base_url": format!("{base}/stability"), "api_key": key, "json": true }), 0.03),
    ];
    for (plugin, config, price) in cases {
        let teacher = teacher(&registry, plugin, config);
        assert_eq!(teacher.price(&request), evolve_sdk::Cost::from_usd(price), "{plugin} price table");
        let generated = rt.block_on(teacher.generate(&request)).unwrap_or_else(|e| panic!("{plugin}: {e}"));
        assert_eq!(generated.image, Image::filled(48, 48, [0, 90, 200]), "{plugin}");
        assert_eq!(generated.cost, evolve_sdk::Cost::from_usd(price));
    }

    // Provider-side refusals are clear, non-retryable errors.
    let refusals = [
        (
            "replicate",
            json!({ "model": "acme/broken", "base_url": format!("{base}/replicate/v1"), "api_key": key, "price_usd": 0.01 }),
            "NSFW",
        ),
        (
            "bfl",
            json!({ "model": "flux-dev", "base_url": format!("{base}/bfl/v1"), "api_key": key, "poll_ms": 10 }),
            "Moderated",
        ),
        (
            "stability",
            json!({ "base_url": format!("{base}/stability"), "api_key": key, "json": true, "fields": { "note": "filtered please" } }),
            "CONTENT_FILTERED",
        ),
        (
            "fal",
            json!({ "model": "fal-ai/flux/schnell", "base_url": format!("{base}/fal"), "api_key": { "env": "PATH" } }),
            "HTTP 401",
        ),
    ];
    for (plugin, config, needle) in refusals {
        let teacher = teacher(&registry, plugin, config);
        match rt.block_on(teacher.generate(&request)) {
            Err(PluginError::Failed(message)) => assert!(message.contains(needle), "{plugin}: {message}"),
            other => panic!("{plugin}: expected a clear failure, got {:?}", other.map(|_| ())),
        }
    }

    // A missing key fails at construction, naming the variable, never showing a value.
    let missing = json!({ "model": "x", "api_key": { "env": "EVOLVE_TEST_NO_SUCH_KEY" } });
    let error = registry.teacher(&"replicate".into(), missing, &evolve_sdk::PluginContext::new("r", 0)).err().unwrap();
    assert!(error.to_string().contains("EVOLVE_TEST_NO_SUCH_KEY"), "{error}");
}

/// Addresses of the lying provider and of the thief its replies point to.
#[derive(Default)]
struct Liar {
    base: OnceLock<String>,
    thief: OnceLock<String>,
    stolen: Mutex<Vec<String>>,
}

async fn liar(State(p): State<Arc<Liar>>, request: Request) -> Response {
    let (base, thief) = (p.base.get().cloned().unwrap_or_default(), p.thief.get().cloned().unwrap_or_default());
    let steal = format!("{thief}/steal");
    match (request.method().as_str(), request.uri().path()) {
        ("POST", "/bfl/v1/flux-pro-1.1") => axum::Json(json!({ "id": "b1", "polling_url": steal })).into_response(),
        ("POST", "/bfl/v1/flux-dev") => {
            axum::Json(json!({ "id": "b2", "polling_url": format!("{base}/bfl/v1/bounce") })).into_response()
        }
        ("GET", "/bfl/v1/bounce") => (StatusCode::FOUND, [(header::LOCATION, steal)]).into_response(),
        ("POST", "/fal/fal-ai/flux/schnell") => {
            axum::Json(json!({ "request_id": "r1", "status_url": steal, "response_url": steal })).into_response()
        }
        ("POST", "/replicate/v1/models/black-forest-labs/flux-schnell/predictions") => {
            axum::Json(json!({ "id": "p1", "status": "starting", "urls": { "get": steal } })).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no route").into_response(),
    }
}

async fn thief(State(p): State<Arc<Liar>>, request: Request) -> Response {
    let headers: Vec<String> = request.headers().keys().map(|k| k.to_string()).collect();
    p.stolen.lock().unwrap().push(format!("{} {}", request.uri(), headers.join(",")));
    axum::Json(json!({ "status": "Pending" })).into_response()
}

#[test]
fn a_reply_or_a_redirect_cannot_send_the_key_to_another_host() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let state = Arc::new(Liar::default());
    let serve = |app: Router| {
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        address
    };
    let base = serve(Router::new().fallback(liar).with_state(Arc::clone(&state)));
    let thief_base = serve(Router::new().fallback(thief).with_state(Arc::clone(&state)));
    state.base.set(base.clone()).unwrap();
    state.thief.set(thief_base).unwrap();

    let registry = Registry::builtin();
    let key = json!({ "env": "PATH" });
    let request = GenerateRequest { prompt: "a blue square".into(), width: 32, height: 32, seed: 7 };
    let cases = [
        (
            "bfl",
            json!({ "base_url": format!("{base}/bfl/v1"), "api_key": key, "poll_ms": 10, "timeout_s": 2 }),
            "not sent there",
        ),
        (
            "bfl",
            json!({ "model": "flux-dev", "base_url": format!("{base}/bfl/v1"), "api_key": key, "poll_ms": 10, "timeout_s": 2 }),
            "redirect to another origin",
        ),
        (
            "fal",
            json!({ "model": "fal-ai/flux/schnell", "base_url": format!("{base}/fal"), "api_key": key, "poll_ms": 10, "timeout_s": 2 }),
            "not sent there",
        ),
        (
            "replicate",
            json!({ "model": "black-forest-labs/flux-schnell", "base_url": format!("{base}/replicate/v1"), "api_key": key, "poll_ms": 10, "timeout_s": 2 }),
            "not sent there",
        ),
    ];
    for (plugin, config, needle) in cases {
        let teacher = teacher(&registry, plugin, config);
        match rt.block_on(teacher.generate(&request)) {
            Err(error) => assert!(error.to_string().contains(needle), "{plugin}: {error}"),
            Ok(_) => panic!("{plugin}: an image from the thief"),
        }
    }
    assert_eq!(*state.stolen.lock().unwrap(), Vec::<String>::new(), "requests reached the other host");
}

#[test]
fn key_targets_are_the_providers_own_hosts() {
    use evolve_sdk::http::check_key_target;
    assert!(check_key_target("https://api.bfl.ai/v1", "https://api.eu.bfl.ai/v1/get_result?id=1").is_ok());
    assert!(check_key_target("https://queue.fal.run", "https://queue.fal.run/fal-ai/flux/requests/1").is_ok());
    assert!(check_key_target("https://api.replicate.com/v1", "https://api.replicate.com/v1/predictions/1").is_ok());
    for (base, url) in [
        ("https://api.bfl.ai/v1", "https://bfl.ai.evil.example/steal"),
        ("https://api.bfl.ai/v1", "http://api.eu.bfl.ai/v1/get_result"),
        ("https://api.bfl.ai/v1", "https://api.bfl.ai:8443/v1/get_result"),
        ("https://api.bfl.ai/v1", "https://evilbfl.ai/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:9000/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.2:8000/v1"),
        ("https://api.bfl.ai/v1", "not a url"),
    ] {
        assert!(check_key_target(base, url).is_err(), "{url} accepted for {base}");
    }
}
