//! The capabilities the host lends external plugins: HTTP to allowed hosts, and logging.
//!
//! Both loaders route here, so the allow-list is enforced in one place. Calls block: plugins
//! run on blocking threads, never on the async runtime's workers.

use evolve_sdk::host::{HostCalls, HttpRequest, HttpResponse, LogLevel};
use evolve_sdk::http::reqwest;
use std::sync::RwLock;
use std::time::Duration;

/// Largest reply body handed to a plugin.
const MAX_BODY: usize = 64 << 20;
/// Time limit of one HTTP request made for a plugin.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `host` at `port` is covered by `allowed`. An entry names a host (exactly, or
/// `*.example.com` for its subdomains) and a port: `host` alone allows the scheme's default
/// port (`default_port`: 80 or 443), `host:8080` that port, `host:*` any port.
pub fn host_allowed(host: &str, port: u16, default_port: u16, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        // `[::1]:8080` and `::1` alike: a port follows the last colon only after `]` or in a
        // name without other colons.
        let (pattern, port_ok) = match entry.rsplit_once(':') {
            Some((name, wanted)) if !name.contains(':') || name.ends_with(']') => {
                (name.trim_matches(['[', ']']).to_string(), wanted == "*" || wanted.parse() == Ok(port))
            }
            _ => (entry.trim_matches(['[', ']']).to_string(), port == default_port),
        };
        let host_ok = match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        };
        host_ok && port_ok
    })
}

/// Why a plugin's request was not answered. It crosses to the plugin as its message: one that
/// starts with `refused` is permanent (the SDK's `host::http` maps it so), any other a network
/// failure worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum HostHttpError {
    /// The URL does not parse.
    #[error("refused: bad URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// The parser's words.
        reason: String,
    },
    /// Not http or https.
    #[error("refused: only http and https URLs are allowed, not `{0}`")]
    Scheme(String),
    /// The host and port are not in the experiment's allow-list.
    #[error(
        "refused: host `{host}` port {port} is not in the experiment's [plugins] allow_hosts ({list}; \
         `host:port` or `host:*` allow other ports than {default_port})"
    )]
    NotAllowed {
        /// The host asked for.
        host: String,
        /// Its port.
        port: u16,
        /// The scheme's default port.
        default_port: u16,
        /// The allow-list, in words.
        list: String,
    },
    /// Not an HTTP method.
    #[error("refused: bad HTTP method `{0}`")]
    Method(String),
    /// The reply is larger than a plugin is handed.
    #[error("refused: reply larger than {} MiB", MAX_BODY >> 20)]
    TooLarge,
    /// The request or the reply's body failed on the network.
    #[error("{what} failed: {source}")]
    Network {
        /// `request` or `reading the reply`.
        what: &'static str,
        /// Why.
        source: reqwest::Error,
    },
}

/// Performs `request` for a plugin if its host is in `allowed`.
pub fn http(request: &HttpRequest, allowed: &[String]) -> Result<HttpResponse, HostHttpError> {
    let url = reqwest::Url::parse(&request.url)
        .map_err(|e| HostHttpError::BadUrl { url: request.url.clone(), reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HostHttpError::Scheme(url.scheme().to_string()));
    }
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
    let default_port = if url.scheme() == "https" { 443 } else { 80 };
    let port = url.port_or_known_default().unwrap_or(default_port);
    if !host_allowed(&host, port, default_port, allowed) {
        let list = if allowed.is_empty() { "it is empty".to_string() } else { allowed.join(", ") };
        return Err(HostHttpError::NotAllowed { host, port, default_port, list });
    }
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HostHttpError::Method(request.method.clone()))?;
    let mut builder = client().request(method, url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    block(async move {
        let mut response = builder.send().await.map_err(|source| HostHttpError::Network { what: "request", source })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|source| HostHttpError::Network { what: "reading the reply", source })?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HostHttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body })
    })
}

/// Writes a plugin's log line into the host's log.
pub fn log(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "evolve::plugin", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "evolve::plugin", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "evolve::plugin", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "evolve::plugin", plugin, "{message}"),
    }
}

/// The client plugins' requests go through. It follows no redirect: a plugin gets the 3xx and
/// its `Location`, and a request it makes there is checked against the allow-list again.
fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|_| reqwest::Client::new())
        })
        .clone()
}

/// Runs `future` to completion from a blocking thread: on the ambient runtime when there is one
/// (plugins are called from `spawn_blocking` or `block_in_place`), else on a private one.
fn block<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => {
            static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
            let runtime = RUNTIME.get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime can always be built on this platform")
            });
            runtime.block_on(future)
        }
    }
}

/// The hosts native plugins may reach. Native plugins are connected once per process, so the
/// list is process-wide; the experiment being run sets it.
static NATIVE_ALLOWED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Sets the hosts native plugins may reach.
pub fn set_native_allow_list(hosts: &[String]) {
    if let Ok(mut list) = NATIVE_ALLOWED.write() {
        *list = hosts.to_vec();
    }
}

/// The capabilities as the SDK's [`HostCalls`], for native plugins and built-ins.
pub struct NativeHost;

impl HostCalls for NativeHost {
    // The message is the ABI's error type (an `RString` across the native boundary).
    fn http(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let allowed = NATIVE_ALLOWED.read().map(|l| l.clone()).unwrap_or_default();
        http(request, &allowed).map_err(|e| e.to_string())
    }

    fn log(&self, level: LogLevel, message: &str) {
        log("native", level, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_exact_names_and_wildcard_subdomains() {
        let allowed = vec!["127.0.0.1".to_string(), "*.example.com".to_string()];
        assert!(host_allowed("127.0.0.1", 80, 80, &allowed));
        assert!(host_allowed("api.example.com", 443, 443, &allowed));
        assert!(!host_allowed("example.com", 443, 443, &allowed));
        assert!(!host_allowed("evil.com", 80, 80, &allowed));
        assert!(!host_allowed("example.com.evil.com", 80, 80, &allowed));
    }

    #[test]
    fn allow_list_entries_name_their_ports() {
        let allowed = vec!["127.0.0.1".to_string(), "localhost:8765".to_string(), "[::1]:*".to_string()];
        assert!(!host_allowed("127.0.0.1", 8765, 80, &allowed), "a bare host is its default port only");
        assert!(host_allowed("localhost", 8765, 80, &allowed));
        assert!(!host_allowed("localhost", 8766, 80, &allowed));
        assert!(host_allowed("::1", 5, 80, &allowed));
        assert!(host_allowed("::1", 443, 443, &["::1".to_string()]));
        assert!(!host_allowed("::1", 8080, 80, &["::1".to_string()]));
    }

    #[test]
    fn refuses_disallowed_hosts_before_any_connection() {
        let error = http(&HttpRequest::get("http://evil.test/steal"), &[]).unwrap_err();
        assert!(matches!(&error, HostHttpError::NotAllowed { host, .. } if host == "evil.test"), "{error}");
        // The plugin's SDK reads the prefix as "permanent".
        assert!(error.to_string().starts_with("refused: host `evil.test`"), "{error}");
        let error = http(&HttpRequest::get("file:///etc/passwd"), &["x".into()]).unwrap_err();
        assert!(matches!(&error, HostHttpError::Scheme(scheme) if scheme == "file"), "{error}");
    }
}
