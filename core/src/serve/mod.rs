//! `evolve serve --world shapes`: the embedded world behind OpenAI-compatible endpoints, so that
//! the HTTP teachers and judges can be tried end to end offline, and tested over real HTTP.
//!
//! - `POST /v1/images/generations` renders with the shapes teacher (`b64_json` or `url`).
//! - `GET /v1/files/{name}` serves images returned by URL.
//! - `POST /v1/chat/completions` answers the judge's prompts (evolve's default templates:
//!   comparison, expansion, mutation) with the shapes detector and grammar, and `usage` token
//!   counts as OpenAI reports them, so that a priced judge can be run end to end.
//! - `POST /api/chat` answers the same prompts in Ollama's native protocol (and `GET /api/tags`
//!   lists the one model), so that the `ollama` judge can be run end to end too.
//!
//! It binds to loopback by default; binding any other address needs a bearer token (read from
//! an environment variable), and then every request without it is refused with 401.

mod chat;

use evolve_sdk::http::{base64_encode, encode_png};
use evolve_sdk::{GenerateRequest, Teacher};
use evolve_shapes::judge::{ShapesJudge, ShapesJudgeConfig};
use evolve_shapes::teacher::{ShapesTeacher, ShapesTeacherConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Largest image side the server renders.
const MAX_SIDE: u32 = 1024;
/// Bytes of PNGs kept for `url` responses (oldest dropped first).
const KEPT_BYTES: usize = 64 << 20;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Only `shapes` exists.
    #[error("unknown world `{0}`; available: shapes")]
    UnknownWorld(String),
    /// A non-loopback address without a token.
    #[error("binding {0} (not loopback) needs a bearer token: set the environment variable {1}")]
    NeedsToken(SocketAddr, String),
    /// The socket could not be bound or served.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct World {
    teacher: ShapesTeacher,
    judge: ShapesJudge,
    token: Option<String>,
    files: Mutex<Files>,
}

/// Images returned by URL, oldest dropped first.
#[derive(Default)]
struct Files {
    by_name: HashMap<String, Vec<u8>>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

/// Checks that `addr` may be bound with `token`.
pub fn check_bind(addr: SocketAddr, token: Option<&str>, token_env: &str) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() && token.is_none_or(|t| t.is_empty()) {
        return Err(ServeError::NeedsToken(addr, token_env.to_string()));
    }
    Ok(())
}

/// The router serving `world` (only `shapes`), requiring `token` when given.
pub fn router(world: &str, token: Option<String>) -> Result<Router, ServeError> {
    if world != "shapes" {
        return Err(ServeError::UnknownWorld(world.to_string()));
    }
    let teacher_config: ShapesTeacherConfig = evolve_sdk::decode_config(json!({})).map_err(io_other)?;
    let judge_config: ShapesJudgeConfig = evolve_sdk::decode_config(json!({})).map_err(io_other)?;
    let world = World {
        teacher: ShapesTeacher::new(teacher_config, 0).map_err(io_other)?,
        judge: ShapesJudge::new(judge_config, 0).map_err(io_other)?,
        token: token.filter(|t| !t.is_empty()),
        files: Mutex::new(Default::default()),
    };
    let world = Arc::new(world);
    Ok(Router::new()
        .route("/v1/images/generations", post(images))
        .route("/v1/chat/completions", post(chat::openai))
        .route("/api/chat", post(chat::ollama))
        .route("/api/tags", get(chat::ollama_tags))
        .route("/v1/files/{name}", get(file))
        .route("/v1/models", get(models))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&world), require_token))
        .with_state(world))
}

fn io_other(e: evolve_sdk::PluginError) -> ServeError {
    ServeError::Io(std::io::Error::other(e.to_string()))
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> Result<(), ServeError> {
    axum::serve(listener, router).await?;
    Ok(())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": "invalid_request_error" } });
    (status, Json(body)).into_response()
}

/// Refuses every request without the server's bearer token, when it has one.
async fn require_token(
    State(world): State<Arc<World>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match &world.token {
        Some(token) => {
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // blake3's hash equality is constant-time: the reply's timing tells nothing of
            // how much of a guess was right.
            if given.map(|g| blake3::hash(g.as_bytes())) != Some(blake3::hash(token.as_bytes())) {
                return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            }
        }
        None => {
            // Without a token the server is loopback-only; a page elsewhere could still reach
            // it by rebinding its own name to 127.0.0.1, but its requests carry that name.
            let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !is_loopback_host(host) {
                return error(StatusCode::FORBIDDEN, format!("host {host:?} is not this loopback server"));
            }
        }
    }
    next.run(request).await
}

/// Whether a `Host` header names the loopback interface (`localhost`, `127.x.y.z`, `[::1]`,
/// with any port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn fingerprint(text: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(text.as_bytes()).as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

async fn models() -> Response {
    Json(json!({ "object": "list", "data": [{ "id": "shapes", "object": "model", "owned_by": "evolve" }] }))
        .into_response()
}

async fn images(State(world): State<Arc<World>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "`prompt` is required");
    };
    let size = body.get("size").and_then(Value::as_str).unwrap_or("32x32");
    let Some((width, height)) =
        size.split_once('x').and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
    else {
        return error(StatusCode::BAD_REQUEST, format!("`size` must be WxH, got {size:?}"));
    };
    if !(16..=MAX_SIDE).contains(&width) || !(16..=MAX_SIDE).contains(&height) {
        return error(StatusCode::BAD_REQUEST, format!("`size` sides must be within 16..={MAX_SIDE}"));
    }
    let seed = body.get("seed").and_then(Value::as_u64).unwrap_or_else(|| fingerprint(prompt));
    let request = GenerateRequest { prompt: prompt.to_string(), width, height, seed };
    let generated = match world.teacher.generate(&request).await {
        Ok(generated) => generated,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let png = match encode_png(&generated.image) {
        Ok(png) => png,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut item = json!({ "revised_prompt": prompt });
    if body.get("response_format").and_then(Value::as_str) == Some("url") {
        let name = format!("{}.png", blake3::hash(&png).to_hex());
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        item["url"] = format!("http://{host}/v1/files/{name}").into();
        let mut files = world.files.lock().unwrap_or_else(|p| p.into_inner());
        let size = png.len();
        if files.by_name.insert(name.clone(), png).is_none() {
            files.order.push_back(name);
            files.bytes += size;
        }
        while files.bytes > KEPT_BYTES {
            let Some(old) = files.order.pop_front() else { break };
            if let Some(png) = files.by_name.remove(&old) {
                files.bytes -= png.len();
            }
        }
    } else {
        item["b64_json"] = base64_encode(&png).into();
    }
    Json(json!({ "created": now(), "data": [item] })).into_response()
}

async fn file(State(world): State<Arc<World>>, Path(name): Path<String>) -> Response {
    let files = world.files.lock().unwrap_or_else(|p| p.into_inner());
    match files.by_name.get(&name) {
        Some(png) => ([(header::CONTENT_TYPE, "image/png")], png.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no file {name}")),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds_without_a_token() {
        let local: SocketAddr = "127.0.0.1:8765".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:8765".parse().unwrap();
        assert!(check_bind(local, None, "T").is_ok());
        assert!(matches!(check_bind(open, None, "T"), Err(ServeError::NeedsToken(..))));
        assert!(matches!(check_bind(open, Some(""), "T"), Err(ServeError::NeedsToken(..))));
        assert!(check_bind(open, Some("secret"), "T").is_ok());
    }
}
