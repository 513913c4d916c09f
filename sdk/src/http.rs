//! HTTP for plugins that call remote APIs (feature `http`): one client with time-outs,
//! a requests-per-minute limiter, response size limits, status codes mapped to the error
//! variant that tells the host what to do (429 and 5xx retry, honouring `Retry-After`; other
//! 4xx fail), and image decoding that refuses decompression bombs. API keys come from the
//! environment only ([`crate::SecretRef::resolve`]).
//!
//! Retries with back-off are the host's job: a plugin makes one attempt per call and returns
//! [`PluginError::Transient`] when another attempt may succeed.

use crate::{Image, PluginError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::codec::{MAX_IMAGE_SIDE, base64_decode, base64_encode, data_url, decode_image, encode_png};
pub use reqwest;

/// Largest response body read, by default (images included).
pub const DEFAULT_MAX_BYTES: usize = 32 << 20;

/// How a plugin's HTTP client behaves.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Time-out of a whole request, body included.
    pub timeout: Duration,
    /// Requests started per minute; `None` for no limit.
    pub requests_per_minute: Option<u32>,
    /// Largest response body read.
    pub max_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { timeout: Duration::from_secs(120), requests_per_minute: None, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, lower-cased, without parameters.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON, or a retryable error naming what was wrong (providers send truncated
    /// or HTML error bodies under load).
    pub fn json(&self) -> Result<serde_json::Value, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let start = String::from_utf8_lossy(&self.body[..self.body.len().min(120)]).into_owned();
            PluginError::transient(format!("malformed JSON ({e}) in a {} reply: {start:?}", self.content_type))
        })
    }
}

/// An HTTP client for one provider.
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    limiter: Mutex<Option<Instant>>,
}

impl HttpClient {
    /// A client with `settings`.
    pub fn new(settings: HttpSettings) -> Result<HttpClient, PluginError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| PluginError::InvalidConfig(format!("HTTP client: {e}")))?;
        Ok(HttpClient { client, settings, limiter: Mutex::new(None) })
    }

    /// A client with time-out `timeout`, at most `requests_per_minute`, and the default size limit.
    pub fn paced(timeout: Duration, requests_per_minute: Option<u32>) -> Result<HttpClient, PluginError> {
        HttpClient::new(HttpSettings { timeout, requests_per_minute, ..HttpSettings::default() })
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits until the requests-per-minute limit allows another request.
    async fn pace(&self) {
        let Some(rpm) = self.settings.requests_per_minute.filter(|r| *r > 0) else { return };
        let gap = Duration::from_secs_f64(60.0 / rpm as f64);
        let wait = {
            let mut next = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + gap);
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            crate::time::sleep(wait).await;
        }
    }

    /// Sends `request` once and reads the whole body (up to the size limit). Statuses 429 and
    /// 5xx, time-outs and connection failures become [`PluginError::Transient`] (with the
    /// server's `Retry-After`); other non-2xx statuses become [`PluginError::Failed`] with the
    /// start of the body, which providers use for the reason.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, PluginError> {
        self.pace().await;
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        if response.content_length().is_some_and(|n| n as usize > self.settings.max_bytes) {
            return Err(PluginError::Failed(format!("response larger than {} bytes refused", self.settings.max_bytes)));
        }
        let mut body = vec![];
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.settings.max_bytes {
                return Err(PluginError::Failed(format!(
                    "response larger than {} bytes refused",
                    self.settings.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let reply = Response { status, content_type, body };
        match status {
            200..=299 => Ok(reply),
            408 | 409 | 425 | 429 | 500..=599 => {
                Err(PluginError::Transient { message: format!("HTTP {status}: {}", snippet(&reply.body)), retry_after })
            }
            _ => Err(PluginError::Failed(format!("HTTP {status}: {}", snippet(&reply.body)))),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn transport_error(error: reqwest::Error) -> PluginError {
    if error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() || error.is_decode() {
        PluginError::transient(format!("transport: {error}"))
    } else {
        PluginError::Failed(format!("transport: {error}"))
    }
}

impl HttpClient {
    /// Fetches the image at `url` at once (provider result URLs expire within minutes); a
    /// `data:` URL is decoded in place.
    pub async fn fetch_image(&self, url: &str) -> Result<Image, PluginError> {
        if let Some(rest) = url.strip_prefix("data:") {
            let b64 = rest
                .split_once("base64,")
                .map(|(_, b)| b)
                .ok_or_else(|| PluginError::Failed("a data: URL result that is not base64".into()))?;
            return decode_image(&base64_decode(b64)?);
        }
        decode_image(&self.send(self.client.get(url)).await?.body)
    }
}

/// Polls `check` every `interval` until it yields a value, for at most `deadline`. A transient
/// failure of one poll is tried again at the next tick: the job being polled is already paid
/// for, and giving up would make the host pay for it again.
pub async fn poll<T, F, Fut>(interval: Duration, deadline: Duration, mut check: F) -> Result<T, PluginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, PluginError>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) | Err(PluginError::Transient { .. }) => {}
            Err(other) => return Err(other),
        }
        if started.elapsed() >= deadline {
            return Err(PluginError::Failed(format!("job not finished after {} s of polling", deadline.as_secs())));
        }
        crate::time::sleep(interval).await;
    }
}
