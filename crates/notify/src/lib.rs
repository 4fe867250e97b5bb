//! SudoMode notifications: Slack Block Kit messages, Slack interactions, and signed webhooks.
//!
//! This crate depends on no other SudoMode crate: a request is passed as a
//! [`serde_json::Value`] shaped like the Request object of SPEC §8.

pub mod error;
pub mod mcp;
pub mod slack;
pub mod webhook;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use error::{InteractionError, NotifyError, SlackVerifyError};
pub use slack::client::{MessageRef, SlackNotifier, UpdateTarget};
pub use slack::interaction::{Decision, Interaction, parse_interaction};
pub use slack::message::{decided_message, pending_message};
pub use slack::text::escape_mrkdwn;
pub use slack::verify::{
    SLACK_MAX_SKEW_SECS, SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, slack_signature,
    verify_slack_signature,
};
pub use webhook::{
    DEFAULT_RETRY_DELAYS, SIGNATURE_HEADER, WebhookDispatcher, sign_webhook_body,
    verify_webhook_signature, webhook_body,
};

/// Timeout applied to every outbound notification call.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) const REDACTED: &str = "<redacted>";

/// `slack:` section of `sudomode.yaml` (SPEC §10).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL (a secret: it grants posting rights).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Signing secret used to verify `POST /slack/interactions`.
    #[serde(default)]
    pub signing_secret: Option<String>,
    /// Bot token (`xoxb-…`) for `chat.postMessage` / `chat.update`.
    #[serde(default)]
    pub bot_token: Option<String>,
    /// Channel id or name the bot posts into.
    #[serde(default)]
    pub channel: Option<String>,
    /// Slack Web API base URL (default `https://slack.com/api`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_api_url() -> String {
    "https://slack.com/api".to_string()
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            webhook_url: None,
            signing_secret: None,
            bot_token: None,
            channel: None,
            api_url: default_api_url(),
        }
    }
}

fn redact_opt(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| REDACTED)
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("webhook_url", &redact_opt(&self.webhook_url))
            .field("signing_secret", &redact_opt(&self.signing_secret))
            .field("bot_token", &redact_opt(&self.bot_token))
            .field("channel", &self.channel)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// A webhook subscription (SPEC §10).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL.
    pub url: String,
    /// HMAC-SHA256 key for `X-SudoMode-Signature`.
    pub secret: String,
    /// Events delivered to this webhook (default: all).
    #[serde(default = "EventName::all")]
    pub events: Vec<EventName>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &REDACTED)
            .field("events", &self.events)
            .finish()
    }
}

/// Reduce a URL to `scheme://host[:port]` so paths and queries (which may
/// carry tokens) never reach logs or Debug output.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{}:{}/…", u.scheme(), host, p),
                None => format!("{}://{}/…", u.scheme(), host),
            }
        }
        Err(_) => REDACTED.to_string(),
    }
}

/// Webhook event names (lower-case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventName {
    /// A request is waiting for approval.
    Pending,
    /// A request was approved.
    Approved,
    /// A request was rejected by an operator.
    Rejected,
    /// A pending request's approval window ended.
    Expired,
    /// A request was denied by policy.
    Denied,
    /// An allowed or approved request was forwarded and completed.
    Completed,
}

impl EventName {
    /// Every event, in SPEC order.
    pub const ALL: [EventName; 6] = [
        EventName::Pending,
        EventName::Approved,
        EventName::Rejected,
        EventName::Expired,
        EventName::Denied,
        EventName::Completed,
    ];

    /// Every event, as a `Vec` (the default subscription).
    pub fn all() -> Vec<EventName> {
        Self::ALL.to_vec()
    }

    /// The event announcing a request that reached `status` (SPEC §6 state
    /// names); `None` for states without an event (`allowed`, `cancelled`, `failed`).
    pub fn from_status(status: &str) -> Option<EventName> {
        Some(match status {
            "pending" => EventName::Pending,
            "approved" => EventName::Approved,
            "rejected" => EventName::Rejected,
            "expired" => EventName::Expired,
            "denied" => EventName::Denied,
            "completed" => EventName::Completed,
            _ => return None,
        })
    }

    /// The wire name (`"pending"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Pending => "pending",
            EventName::Approved => "approved",
            EventName::Rejected => "rejected",
            EventName::Expired => "expired",
            EventName::Denied => "denied",
            EventName::Completed => "completed",
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Notification channel label for `sudomode_notifications_total{channel}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Slack (Web API, incoming webhook, response_url).
    Slack,
    /// Signed webhooks.
    Webhook,
}

impl Channel {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Webhook => "webhook",
        }
    }
}

/// Counters behind `sudomode_notifications_total{channel,result}`.
///
/// Slack: one count per API call. Webhooks: one count per delivery (an
/// event to one receiver), after its retries: `ok` once delivered, `error`
/// once given up.
#[derive(Debug, Default)]
pub struct NotifyStats {
    slack_ok: AtomicU64,
    slack_error: AtomicU64,
    webhook_ok: AtomicU64,
    webhook_error: AtomicU64,
}

impl NotifyStats {
    /// New, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn counter(&self, channel: Channel, ok: bool) -> &AtomicU64 {
        match (channel, ok) {
            (Channel::Slack, true) => &self.slack_ok,
            (Channel::Slack, false) => &self.slack_error,
            (Channel::Webhook, true) => &self.webhook_ok,
            (Channel::Webhook, false) => &self.webhook_error,
        }
    }

    /// Count one outcome.
    pub fn record(&self, channel: Channel, ok: bool) {
        self.counter(channel, ok).fetch_add(1, Ordering::Relaxed);
    }

    /// Current value of one counter.
    pub fn get(&self, channel: Channel, ok: bool) -> u64 {
        self.counter(channel, ok).load(Ordering::Relaxed)
    }

    /// All counters as `(channel, result, count)` with `result` = `"ok"` | `"error"`.
    pub fn snapshot(&self) -> [(&'static str, &'static str, u64); 4] {
        [
            ("slack", "ok", self.get(Channel::Slack, true)),
            ("slack", "error", self.get(Channel::Slack, false)),
            ("webhook", "ok", self.get(Channel::Webhook, true)),
            ("webhook", "error", self.get(Channel::Webhook, false)),
        ]
    }

    /// Prometheus text lines for `sudomode_notifications_total` (with HELP/TYPE).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP sudomode_notifications_total Notifications sent, by channel and result.\n\
             # TYPE sudomode_notifications_total counter\n",
        );
        for (channel, result, n) in self.snapshot() {
            out.push_str(&format!(
                "sudomode_notifications_total{{channel=\"{channel}\",result=\"{result}\"}} {n}\n"
            ));
        }
        out
    }
}

/// Install rustls' ring crypto provider as the process default if none is
/// installed yet (reqwest built with `rustls-no-provider` needs one).
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub(crate) fn build_http_client(
    timeout: std::time::Duration,
) -> Result<reqwest::Client, NotifyError> {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sudomode/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NotifyError::Client(e.without_url().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_config_defaults_and_unknown_keys() {
        let c: SlackConfig =
            serde_json::from_str(r#"{"bot_token":"xoxb-1","channel":"C1"}"#).unwrap();
        assert_eq!(c.api_url, "https://slack.com/api");
        assert!(serde_json::from_str::<SlackConfig>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = SlackConfig {
            webhook_url: Some("https://hooks.slack.com/services/T/B/SECRETPATH".into()),
            signing_secret: Some("sigsecret123".into()),
            bot_token: Some("xoxb-supersecret".into()),
            channel: Some("C1".into()),
            api_url: default_api_url(),
        };
        let d = format!("{c:?}");
        assert!(
            !d.contains("SECRETPATH") && !d.contains("sigsecret123") && !d.contains("supersecret"),
            "{d}"
        );
        let w = WebhookConfig {
            url: "https://example.com/hook?token=tok123".into(),
            secret: "whsec_abc".into(),
            events: EventName::all(),
        };
        let d = format!("{w:?}");
        assert!(!d.contains("tok123") && !d.contains("whsec_abc"), "{d}");
        assert!(d.contains("example.com"), "{d}");
    }

    #[test]
    fn webhook_config_events() {
        let w: WebhookConfig = serde_json::from_str(r#"{"url":"http://x","secret":"s"}"#).unwrap();
        assert_eq!(w.events, EventName::all());
        let w: WebhookConfig = serde_json::from_str(
            r#"{"url":"http://x","secret":"s","events":["pending","completed"]}"#,
        )
        .unwrap();
        assert_eq!(w.events, vec![EventName::Pending, EventName::Completed]);
        for e in EventName::ALL {
            assert_eq!(EventName::from_status(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(EventName::from_status("cancelled"), None);
        assert!(
            serde_json::from_str::<WebhookConfig>(
                r#"{"url":"x","secret":"s","events":["Pending"]}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<WebhookConfig>(r#"{"url":"x","secret":"s","extra":1}"#).is_err()
        );
    }

    #[test]
    fn stats_render() {
        let s = NotifyStats::new();
        s.record(Channel::Slack, true);
        s.record(Channel::Webhook, false);
        s.record(Channel::Webhook, false);
        let text = s.render_prometheus();
        assert!(text.contains("sudomode_notifications_total{channel=\"slack\",result=\"ok\"} 1\n"));
        assert!(
            text.contains("sudomode_notifications_total{channel=\"webhook\",result=\"error\"} 2\n")
        );
        assert!(
            text.contains("sudomode_notifications_total{channel=\"slack\",result=\"error\"} 0\n")
        );
    }
}
