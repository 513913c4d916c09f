//! Capabilities the host lends to external plugins: HTTP and logging.
//!
//! A native plugin must not start an async runtime of its own (tokio's reactor does not cross a
//! `dlopen` boundary) and a wasm plugin has no network at all, so both reach the outside world
//! through the host: [`http`] goes out on the host's client, only to the hosts the experiment
//! lists in `[plugins] allow_hosts`, and [`log`] lands in the host's log tagged with the plugin.
//!
//! ```no_run
//! use evolve_sdk::host::{self, HttpRequest};
//!
//! let reply = host::http(&HttpRequest::get("https://api.example.com/v1/models"))?;
//! host::log(host::LogLevel::Info, &format!("status {}", reply.status));
//! # Ok::<(), evolve_sdk::PluginError>(())
//! ```

use crate::PluginError;
use std::sync::OnceLock;

/// One HTTP request made through the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest { method: "GET".into(), url: url.into(), headers: vec![], body: vec![] }
    }

    /// A `POST` of a JSON body to `url`.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// The same request with one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The reply to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| PluginError::Failed(format!("reply is not JSON: {e}")))
    }
}

/// Severity of a [`log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Progress worth seeing.
    Info,
    /// Detail for debugging.
    Debug,
}

impl LogLevel {
    /// The level as a small integer (stable across the native ABI).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The level for [`as_u8`](LogLevel::as_u8)'s value; unknown values read as `Debug`.
    pub fn from_u8(value: u8) -> LogLevel {
        [LogLevel::Error, LogLevel::Warn, LogLevel::Info].get(value as usize).copied().unwrap_or(LogLevel::Debug)
    }
}

/// What a host implements to lend its capabilities (the host side of this module).
pub trait HostCalls: Send + Sync {
    /// Performs `request`, or says why not (e.g. a host outside the allow-list).
    fn http(&self, request: &HttpRequest) -> Result<HttpResponse, String>;
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
}

static HOST: OnceLock<Box<dyn HostCalls>> = OnceLock::new();

/// Connects this copy of the SDK to its host. The first call wins; a native plugin's copy is
/// connected by the loader, a wasm plugin needs none.
pub fn install(host: Box<dyn HostCalls>) -> bool {
    HOST.set(host).is_ok()
}

/// Performs `request` through the host.
///
/// Fails with [`PluginError::Failed`] when the host refuses it (a host not in `allow_hosts`),
/// and [`PluginError::Transient`] when the network fails; the status code is the caller's to
/// interpret.
pub fn http(request: &HttpRequest) -> Result<HttpResponse, PluginError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasm::host_http(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let host = HOST.get().ok_or_else(|| PluginError::Unsupported("no host is connected to lend HTTP".into()))?;
        host.http(request).map_err(host_error)
    }
}

/// Writes `message` to the host's log.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wasm::host_log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(host) = HOST.get() {
        host.log(level, message);
    }
}

/// Maps the host's refusal text to an error: refusals are permanent, network trouble is not.
pub(crate) fn host_error(message: String) -> PluginError {
    if message.starts_with("refused") { PluginError::Failed(message) } else { PluginError::transient(message) }
}
