//! The one error type every plugin call returns.

use std::time::Duration;

/// Why a plugin call failed. The host decides from the variant whether to retry, skip the
/// sample, or stop the run, so pick the variant by what the caller should do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// The plugin's configuration is unusable (caught at construction time).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The request itself is bad (e.g. a prompt the plugin cannot handle); retrying won't help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A passing failure (rate limit, time-out, 5xx); the host retries with back-off.
    #[error("transient failure: {message}")]
    Transient {
        /// What went wrong.
        message: String,
        /// The provider's requested wait (e.g. from `Retry-After`), if any.
        retry_after: Option<Duration>,
    },
    /// A paid request whose fate is unknown: it left, but no answer came (a time-out, a dropped
    /// connection) or the answer could not be read, so the provider may have accepted and billed
    /// it. The host counts the attempt as billed at its quote, then retries like a transient failure.
    #[error("outcome unknown, possibly billed: {0}")]
    Uncertain(String),
    /// The provider accepted and billed the request, but what it delivered is unusable (a
    /// corrupt or oversized image). The host counts the attempt at its quote and does not retry.
    #[error("billed, unusable: {0}")]
    Billed(String),
    /// A failure that retrying will not fix (authentication, refused content, malformed reply).
    #[error("{0}")]
    Failed(String),
    /// The plugin does not offer this operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The host disabled this plugin after a fault it cannot recover from (a trap, a time-out,
    /// memory excess, a panic). Plugins never return it; the run goes on without the plugin.
    #[error("quarantined: {0}")]
    Quarantined(String),
}

impl PluginError {
    /// A transient failure without a provider-requested wait.
    pub fn transient(message: impl Into<String>) -> Self {
        PluginError::Transient { message: message.into(), retry_after: None }
    }

    /// Whether the host should try the same call again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginError::Transient { .. } | PluginError::Uncertain(_))
    }
}
