//! Error types for Slack delivery, Slack request verification, interaction parsing and webhooks.

use thiserror::Error;

/// A failure to deliver a notification (Slack Web API, incoming webhook, response_url, webhook).
///
/// Messages never contain secrets or full URLs (which may carry tokens).
#[derive(Debug, Error)]
pub enum NotifyError {
    /// The notifier is not configured for the requested operation.
    #[error("notification not configured: {0}")]
    NotConfigured(&'static str),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    Client(String),
    /// Transport error (connect, timeout, TLS, body). The URL is stripped.
    #[error("{target}: transport error: {source}")]
    Transport {
        /// What was being called (`chat.postMessage`, `incoming webhook`, …).
        target: &'static str,
        /// The underlying error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint answered with a non-2xx status.
    #[error("{target}: HTTP status {status}")]
    Status {
        /// What was being called.
        target: &'static str,
        /// The HTTP status code.
        status: u16,
    },
    /// Slack answered `{"ok": false, "error": …}` (or an unreadable body).
    #[error("{target}: Slack API error: {error}")]
    SlackApi {
        /// What was being called.
        target: &'static str,
        /// Slack's `error` string.
        error: String,
    },
    /// A configured URL is not a valid http(s) URL (shown reduced to scheme and host).
    #[error("invalid notification URL: {0}")]
    InvalidUrl(String),
    /// The payload could not be serialised.
    #[error("cannot serialise payload: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl NotifyError {
    pub(crate) fn transport(target: &'static str, err: reqwest::Error) -> Self {
        NotifyError::Transport {
            target,
            source: err.without_url(),
        }
    }
}

/// Why a Slack request signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlackVerifyError {
    /// `X-Slack-Request-Timestamp` is absent or not a Unix timestamp.
    #[error("malformed X-Slack-Request-Timestamp")]
    MalformedTimestamp,
    /// `X-Slack-Signature` is absent or not `v0=<64 hex digits>`.
    #[error("malformed X-Slack-Signature")]
    MalformedSignature,
    /// The timestamp is more than 5 minutes away from now.
    #[error("stale Slack request timestamp")]
    Stale,
    /// The signature does not match.
    #[error("Slack signature mismatch")]
    Mismatch,
    /// No signing secret is configured.
    #[error("no Slack signing secret configured")]
    NoSecret,
}

/// Why a Slack interaction payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InteractionError {
    /// The form body has no `payload` field.
    #[error("missing payload field")]
    MissingPayload,
    /// `payload` is not valid JSON of the expected shape.
    #[error("invalid payload JSON: {0}")]
    InvalidJson(String),
    /// The interaction is not `block_actions`.
    #[error("unsupported interaction type: {0}")]
    UnsupportedType(String),
    /// A required field is missing or empty.
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// The action is not one of SudoMode's buttons.
    #[error("unknown action_id: {0}")]
    UnknownAction(String),
}
