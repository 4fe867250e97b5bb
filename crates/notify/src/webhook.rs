//! Signed webhook delivery (`X-SudoMode-Signature: sha256=…`) in the background, with bounded retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

use crate::error::NotifyError;
use crate::mcp::{ToolCall, tool_call};
use crate::{
    Channel, DEFAULT_TIMEOUT, EventName, NotifyStats, WebhookConfig, build_http_client, redact_url,
};

/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-SudoMode-Signature";
/// Header carrying the event name (informational; the body has it too).
pub const EVENT_HEADER: &str = "X-SudoMode-Event";
/// Gaps between attempts: 5 retries after the first attempt, about a minute in all.
pub const DEFAULT_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
];

#[derive(Serialize)]
struct Envelope<'a> {
    event: EventName,
    request: &'a Value,
    /// For an MCP tool call: `{"server", "name"}` of the tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<ToolCall<'a>>,
}

/// The exact body delivered: `{"event": "<name>", "request": Request}`, plus
/// `"tool": {"server", "name"}` when the request is an MCP tool call.
pub fn webhook_body(event: EventName, request: &Value) -> Result<Vec<u8>, NotifyError> {
    let tool = tool_call(request);
    Ok(serde_json::to_vec(&Envelope {
        event,
        request,
        tool,
    })?)
}

fn mac(secret: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC accepts keys of any length, so this is always `Some`.
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    m.update(body);
    Some(m)
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign_webhook_body(secret: &str, body: &[u8]) -> String {
    mac(secret, body)
        .map(|m| format!("sha256={}", hex::encode(m.finalize().into_bytes())))
        .unwrap_or_default()
}

/// Check an `X-SudoMode-Signature` value against a body, in constant time
/// (for receivers and tests).
pub fn verify_webhook_signature(secret: &str, signature_header: &str, body: &[u8]) -> bool {
    let Some(hex_sig) = signature_header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, body).is_some_and(|m| m.verify_slice(&expected).is_ok())
}

/// Delivers events to configured webhooks in background tasks.
#[derive(Clone)]
pub struct WebhookDispatcher {
    hooks: Arc<[WebhookConfig]>,
    http: reqwest::Client,
    stats: Arc<NotifyStats>,
    delays: Arc<[Duration]>,
}

impl std::fmt::Debug for WebhookDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDispatcher")
            .field("hooks", &self.hooks)
            .field("delays", &self.delays)
            .finish_non_exhaustive()
    }
}

impl WebhookDispatcher {
    /// Build a dispatcher; every URL must be an absolute http(s) URL.
    /// Installs rustls' ring provider as the process default if none is set.
    pub fn new(hooks: Vec<WebhookConfig>) -> Result<Self, NotifyError> {
        for h in &hooks {
            match url::Url::parse(&h.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return Err(NotifyError::InvalidUrl(redact_url(&h.url))),
            }
        }
        Ok(WebhookDispatcher {
            hooks: hooks.into(),
            http: build_http_client(DEFAULT_TIMEOUT)?,
            stats: Arc::new(NotifyStats::new()),
            delays: DEFAULT_RETRY_DELAYS.to_vec().into(),
        })
    }

    /// Replace the gaps between attempts (one retry per entry; default
    /// [`DEFAULT_RETRY_DELAYS`]: 1 s, 2 s, 5 s, 10 s, 20 s).
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.delays = delays.into();
        self
    }

    /// Replace the per-attempt timeout (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, NotifyError> {
        self.http = build_http_client(timeout)?;
        Ok(self)
    }

    /// Count outcomes into a shared [`NotifyStats`].
    pub fn with_stats(mut self, stats: Arc<NotifyStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The counters this dispatcher records into.
    pub fn stats(&self) -> &Arc<NotifyStats> {
        &self.stats
    }

    /// True when no webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Deliver `{"event", "request"}` to every webhook subscribed to `event`,
    /// each in its own background task; returns at once. The handles resolve
    /// to `true` once delivered, `false` after giving up; dropping them is fine.
    /// Outside a Tokio runtime nothing is sent (counted and logged as errors).
    pub fn dispatch(&self, event: EventName, request: &Value) -> Vec<JoinHandle<bool>> {
        let targets: Vec<&WebhookConfig> = self
            .hooks
            .iter()
            .filter(|h| h.events.contains(&event))
            .collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let body = match webhook_body(event, request) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                for _ in &targets {
                    self.stats.record(Channel::Webhook, false);
                }
                tracing::warn!(target: "sudomode::notify", event = %event, error = %e, "webhook body not serialisable");
                return Vec::new();
            }
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            for h in &targets {
                self.stats.record(Channel::Webhook, false);
                tracing::warn!(target: "sudomode::notify", webhook = %redact_url(&h.url), event = %event,
                    "webhook not sent: no async runtime");
            }
            return Vec::new();
        };
        targets
            .into_iter()
            .map(|hook| {
                let delivery = Delivery {
                    url: hook.url.clone(),
                    signature: sign_webhook_body(&hook.secret, &body),
                    body: body.clone(),
                    event,
                    http: self.http.clone(),
                    stats: self.stats.clone(),
                    delays: self.delays.clone(),
                };
                rt.spawn(delivery.run())
            })
            .collect()
    }
}

struct Delivery {
    url: String,
    signature: String,
    body: Bytes,
    event: EventName,
    http: reqwest::Client,
    stats: Arc<NotifyStats>,
    delays: Arc<[Duration]>,
}

impl Delivery {
    async fn attempt(&self) -> Result<(), String> {
        let resp = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &self.signature)
            .header(EVENT_HEADER, self.event.as_str())
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP status {}", status.as_u16()))
        }
    }

    async fn run(self) -> bool {
        let attempts = self.delays.len() + 1;
        for n in 0..attempts {
            if n > 0 {
                tokio::time::sleep(self.delays[n - 1]).await;
            }
            match self.attempt().await {
                Ok(()) => {
                    self.stats.record(Channel::Webhook, true);
                    return true;
                }
                Err(error) => {
                    tracing::warn!(
                        target: "sudomode::notify",
                        webhook = %redact_url(&self.url),
                        event = %self.event,
                        attempt = n + 1,
                        of = attempts,
                        %error,
                        "webhook delivery failed"
                    );
                }
            }
        }
        self.stats.record(Channel::Webhook, false);
        tracing::warn!(target: "sudomode::notify", webhook = %redact_url(&self.url), event = %self.event,
            "webhook delivery given up");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_and_signature() {
        let req = json!({"id": "r1", "status": "pending"});
        let body = webhook_body(EventName::Pending, &req).unwrap();
        assert_eq!(
            body,
            br#"{"event":"pending","request":{"id":"r1","status":"pending"}}"#
        );
        // Known HMAC-SHA256 vector (RFC 4231 test case 2).
        assert_eq!(
            sign_webhook_body("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = sign_webhook_body("k", &body);
        assert!(verify_webhook_signature("k", &sig, &body));
        assert!(!verify_webhook_signature("k2", &sig, &body));
        assert!(!verify_webhook_signature("k", &sig, b"{}"));
        assert!(!verify_webhook_signature("k", &sig[7..], &body));
        assert!(!verify_webhook_signature("k", "sha256=zz", &body));
    }

    #[test]
    fn rejects_bad_urls() {
        let h = |url: &str| WebhookConfig {
            url: url.into(),
            secret: "s".into(),
            events: EventName::all(),
        };
        assert!(WebhookDispatcher::new(vec![h("ftp://x/y")]).is_err());
        assert!(WebhookDispatcher::new(vec![h("not a url")]).is_err());
        assert!(WebhookDispatcher::new(vec![h("https://example.com/hook")]).is_ok());
    }

    #[test]
    fn dispatch_outside_runtime_does_not_panic() {
        let d = WebhookDispatcher::new(vec![WebhookConfig {
            url: "http://127.0.0.1:9/h".into(),
            secret: "s".into(),
            events: vec![EventName::Denied],
        }])
        .unwrap();
        assert!(d.dispatch(EventName::Pending, &json!({})).is_empty());
        assert!(d.dispatch(EventName::Denied, &json!({})).is_empty());
        assert_eq!(d.stats().get(Channel::Webhook, false), 1);
    }
}
