//! HTTP for plugins that call remote APIs (feature `http`): one client with time-outs,
//! a requests-per-minute limiter, response size limits, status codes mapped to the error
//! variant that tells the host what to do (429 and 5xx retry, honouring `Retry-After`; other
//! 4xx fail), and image decoding that refuses decompression bombs. API keys come from the
//! environment only ([`crate::SecretRef::resolve`]).
//!
//! Retries with back-off are the host's job: a plugin makes one attempt per call and returns
//! [`PluginError::Transient`] when another attempt may succeed.

mod guard;

use crate::{Image, PluginError};
pub use guard::{is_private, is_private_url};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::codec::{
    MAX_IMAGE_SIDE, base64_decode, base64_encode, data_url, decode_image, decode_image_within, encode_png,
};
pub use reqwest;

/// Largest response body read, by default (images included).
pub const DEFAULT_MAX_BYTES: usize = 32 << 20;

/// The price per image a paid teacher quotes: `configured` (the experiment's `price_usd`) if
/// given, else the provider's `listed` price for `model`. Neither is an error: a price of 0 would
/// let `max_cost_usd` pass every call, so an unlisted model must be priced by the user (0 for
/// a free server), never assumed free.
pub fn price_per_image(configured: Option<f64>, listed: Option<f64>, model: &str) -> Result<f64, PluginError> {
    let price = configured.or(listed).ok_or_else(|| {
        PluginError::InvalidConfig(format!(
            "evolve has no list price for {model:?}: set price_usd to its price per image in USD \
             (0 for a free local server), so that max_cost_usd can hold"
        ))
    })?;
    if !price.is_finite() || price < 0.0 {
        return Err(PluginError::InvalidConfig(format!("price_usd is {price}; it must be a number >= 0")));
    }
    Ok(price)
}

/// How a plugin's HTTP client behaves.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Time-out of a whole request, body included.
    pub timeout: Duration,
    /// Requests started per minute; `None` for no limit.
    pub requests_per_minute: Option<u32>,
    /// Largest response body read.
    pub max_bytes: usize,
    /// Whether result downloads may reach private addresses (loopback, LAN, link-local): only
    /// for a provider that is itself at one ([`HttpSettings::for_provider`]).
    pub private_results: bool,
}

impl HttpSettings {
    /// Settings for the provider whose API is at `base_url`: its result URLs may be private
    /// addresses only if it is at one itself (your own server, a test on loopback).
    pub fn for_provider(base_url: &str, timeout: Duration, requests_per_minute: Option<u32>) -> HttpSettings {
        HttpSettings { timeout, requests_per_minute, private_results: is_private_url(base_url), ..Default::default() }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(120),
            requests_per_minute: None,
            max_bytes: DEFAULT_MAX_BYTES,
            private_results: false,
        }
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
    /// The body of a 2xx answer to a paid request as JSON; one that is not is
    /// [`PluginError::Uncertain`], since the provider accepted (and billed) the request.
    pub fn paid_json(&self) -> Result<serde_json::Value, PluginError> {
        self.json().map_err(billed)
    }

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
    /// For calls that may carry a key: redirects are followed within one origin only.
    client: reqwest::Client,
    /// For result downloads, which carry no key: redirects are followed anywhere (CDNs).
    downloads: reqwest::Client,
    settings: HttpSettings,
    limiter: Mutex<Option<Instant>>,
}

impl HttpClient {
    /// A client with `settings`.
    pub fn new(settings: HttpSettings) -> Result<HttpClient, PluginError> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
        };
        // reqwest drops `Authorization` on a redirect to another host, but not a provider's own
        // key header (BFL's `x-key`): such a redirect is not followed at all.
        let same_origin = reqwest::redirect::Policy::custom(|attempt| {
            let leaves = attempt.previous().first().is_some_and(|first| first.origin() != attempt.url().origin());
            if leaves {
                let error =
                    format!("redirect to another origin ({}) refused", attempt.url().origin().ascii_serialization());
                attempt.error(error)
            } else if attempt.previous().len() > 10 {
                attempt.error("more than 10 redirects")
            } else {
                attempt.follow()
            }
        });
        let client = builder().redirect(same_origin).build();
        let downloads = if settings.private_results {
            builder().build()
        } else {
            let public_only = reqwest::redirect::Policy::custom(|attempt| match guard::refuse_literal(attempt.url()) {
                Some(why) => attempt.error(why),
                None if attempt.previous().len() > 10 => attempt.error("more than 10 redirects"),
                None => attempt.follow(),
            });
            builder().redirect(public_only).dns_resolver(Arc::new(guard::PublicOnly)).build()
        };
        let (client, downloads) = client
            .and_then(|client| Ok((client, downloads?)))
            .map_err(|e| PluginError::InvalidConfig(format!("HTTP client: {e}")))?;
        Ok(HttpClient { client, downloads, settings, limiter: Mutex::new(None) })
    }

    /// A client for the provider at `base_url` with time-out `timeout`, at most
    /// `requests_per_minute`, and the default size limit.
    pub fn paced(
        base_url: &str,
        timeout: Duration,
        requests_per_minute: Option<u32>,
    ) -> Result<HttpClient, PluginError> {
        HttpClient::new(HttpSettings::for_provider(base_url, timeout, requests_per_minute))
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
        self.exchange(request, false).await
    }

    /// Sends a paid request (a teacher's submission) once, like [`send`](Self::send), except that
    /// a failure after the request may have reached the provider — a time-out, a dropped
    /// connection, a 2xx body that breaks off — is [`PluginError::Uncertain`]: the provider may
    /// have billed it, and the host must count it. A refused connection, or a 429/5xx answer, is
    /// still [`PluginError::Transient`]: nothing was bought. Read the reply with
    /// [`Response::paid_json`].
    pub async fn purchase(&self, request: reqwest::RequestBuilder) -> Result<Response, PluginError> {
        self.exchange(request, true).await
    }

    async fn exchange(&self, request: reqwest::RequestBuilder, paid: bool) -> Result<Response, PluginError> {
        let transport_error = |error| transport_error(error, paid);
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
        let too_large = || {
            let error = PluginError::Failed(format!("response larger than {} bytes refused", self.settings.max_bytes));
            if paid && (200..300).contains(&status) { billed(error) } else { error }
        };
        if response.content_length().is_some_and(|n| n as usize > self.settings.max_bytes) {
            return Err(too_large());
        }
        let mut body = vec![];
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.settings.max_bytes {
                return Err(too_large());
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

fn transport_error(error: reqwest::Error, paid: bool) -> PluginError {
    // reqwest's message names the URL; its causes say what went wrong (a refused redirect).
    let mut message = format!("transport: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_redirect() {
        PluginError::Failed(message)
    } else if paid && !error.is_connect() && (error.is_timeout() || error.is_request() || error.is_body()) {
        PluginError::Uncertain(message)
    } else if error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() || error.is_decode() {
        PluginError::transient(message)
    } else {
        PluginError::Failed(message)
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
        decode_image(&self.download(url).await?)
    }

    /// The body at `url`, a paid result: a transient failure (5xx, 429, a time-out, a dropped
    /// connection) is retried here, up to [`DOWNLOAD_ATTEMPTS`] times with back-off, because the
    /// host retrying the whole call would buy the image again.
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, PluginError> {
        if !self.settings.private_results {
            // Refused at once, not retried: no later attempt would be allowed either.
            guard::check_public(url).await.map_err(|e| PluginError::Failed(e.to_string()))?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(self.downloads.get(url)).await {
                Ok(reply) => return Ok(reply.body),
                Err(PluginError::Transient { message, retry_after }) => {
                    if attempt == DOWNLOAD_ATTEMPTS {
                        return Err(PluginError::Failed(format!(
                            "the paid result at {url} could not be downloaded in {attempt} attempts: {message}"
                        )));
                    }
                    let backoff = Duration::from_millis(250 << attempt.min(6));
                    crate::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(30))).await;
                }
                Err(other) => return Err(other),
            }
        }
    }
}

/// A failure after a provider accepted a paid request, as an error the host counts: one that
/// may pass (a broken-off reply) is [`PluginError::Uncertain`] and retried; one that will not
/// (a corrupt or oversized image, a reply without one) is [`PluginError::Billed`].
pub fn billed(error: PluginError) -> PluginError {
    match error {
        PluginError::Uncertain(_) | PluginError::Billed(_) => error,
        PluginError::Transient { message, .. } => {
            PluginError::Uncertain(format!("the provider accepted the request, but {message}"))
        }
        other => PluginError::Billed(format!("the provider accepted the request, but {other}")),
    }
}

/// Attempts to download a paid result before giving up on it.
pub const DOWNLOAD_ATTEMPTS: u32 = 5;

/// Checks that `url`, named in a provider's reply (a polling or result address), belongs to the
/// provider whose API is at `base` before its key is sent there: the same scheme, host and port,
/// or (for named hosts) a host in the same parent domain — BFL answers `api.bfl.ai` requests
/// with polling URLs at `api.eu.bfl.ai`. Anything else would hand the key to whoever wrote the
/// reply.
pub fn check_key_target(base: &str, url: &str) -> Result<(), PluginError> {
    let refuse = || {
        PluginError::Failed(format!(
            "the provider's reply points to {url:?}, outside {base:?}: its key is not sent there"
        ))
    };
    let (base_url, target) = match (reqwest::Url::parse(base), reqwest::Url::parse(url)) {
        (Ok(b), Ok(t)) => (b, t),
        _ => return Err(refuse()),
    };
    if base_url.origin() == target.origin() {
        return Ok(());
    }
    let same_scheme =
        base_url.scheme() == target.scheme() && target.port_or_known_default() == base_url.port_or_known_default();
    let (Some(base_host), Some(host)) = (base_url.domain(), target.domain()) else {
        return Err(refuse());
    };
    // The parent of `api.bfl.ai` is `bfl.ai`; a two-label host is its own parent.
    let parent = match base_host.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => base_host,
    };
    let in_family = host.eq_ignore_ascii_case(parent)
        || host.to_ascii_lowercase().ends_with(&format!(".{}", parent.to_ascii_lowercase()));
    if same_scheme && in_family { Ok(()) } else { Err(refuse()) }
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
