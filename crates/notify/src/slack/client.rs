//! Async Slack client: post pending-request messages, update them once decided, and reply ephemerally.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::message::{decided_message, pending_message};
use super::text::escape_mrkdwn;
use super::verify::verify_slack_signature;
use crate::error::{NotifyError, SlackVerifyError};
use crate::{Channel, DEFAULT_TIMEOUT, NotifyStats, SlackConfig, build_http_client};

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Where a posted message lives (returned by `chat.postMessage`; keep it to `chat.update` later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// Channel id.
    pub channel: String,
    /// Message timestamp.
    pub ts: String,
}

/// Which message to update.
#[derive(Debug, Clone, Copy)]
pub enum UpdateTarget<'a> {
    /// A message posted with the bot token (`chat.update`).
    Message(&'a MessageRef),
    /// An interaction's `response_url` (`replace_original`).
    ResponseUrl(&'a str),
}

/// Slack notifier: Web API with a bot token, or an incoming webhook.
#[derive(Clone)]
pub struct SlackNotifier {
    config: SlackConfig,
    public_url: String,
    http: reqwest::Client,
    stats: Arc<NotifyStats>,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("config", &self.config)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl SlackNotifier {
    /// Build a notifier. `public_url` is the dashboard base URL used in links.
    /// Installs rustls' ring provider as the process default if none is set.
    pub fn new(config: SlackConfig, public_url: impl Into<String>) -> Result<Self, NotifyError> {
        Ok(SlackNotifier {
            config,
            public_url: public_url.into(),
            http: build_http_client(DEFAULT_TIMEOUT)?,
            stats: Arc::new(NotifyStats::new()),
        })
    }

    /// Replace the per-call timeout (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, NotifyError> {
        self.http = build_http_client(timeout)?;
        Ok(self)
    }

    /// Count outcomes into a shared [`NotifyStats`].
    pub fn with_stats(mut self, stats: Arc<NotifyStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The counters this notifier records into.
    pub fn stats(&self) -> &Arc<NotifyStats> {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &SlackConfig {
        &self.config
    }

    /// True when a bot token is configured (messages can be updated with `chat.update`).
    pub fn has_bot_token(&self) -> bool {
        self.config
            .bot_token
            .as_deref()
            .is_some_and(|t| !t.is_empty())
    }

    /// Verify an interaction request with the configured signing secret
    /// (see [`verify_slack_signature`]); refused when none is configured.
    pub fn verify(
        &self,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), SlackVerifyError> {
        let secret = self
            .config
            .signing_secret
            .as_deref()
            .ok_or(SlackVerifyError::NoSecret)?;
        verify_slack_signature(secret, timestamp_header, signature_header, body, now_unix)
    }

    fn record<T>(
        &self,
        target: &'static str,
        res: Result<T, NotifyError>,
    ) -> Result<T, NotifyError> {
        match &res {
            Ok(_) => self.stats.record(Channel::Slack, true),
            Err(e) => {
                self.stats.record(Channel::Slack, false);
                tracing::warn!(target: "sudomode::notify", call = target, error = %e, "slack notification failed");
            }
        }
        res
    }

    /// Post the Block Kit message for a pending request. With a bot token
    /// and channel: `chat.postMessage`, returning the message reference;
    /// else with an incoming webhook: returns `None`. With neither, does nothing.
    pub async fn post_pending(&self, request: &Value) -> Result<Option<MessageRef>, NotifyError> {
        let msg = pending_message(request, &self.public_url);
        let channel = self.config.channel.as_deref().filter(|c| !c.is_empty());
        if let (Some(token), Some(channel)) = (self.bot_token(), channel) {
            let mut body = msg;
            if let Value::Object(map) = &mut body {
                map.insert("channel".into(), json!(channel));
                map.insert("unfurl_links".into(), json!(false));
                map.insert("unfurl_media".into(), json!(false));
            }
            let res = self
                .call_api(token, "chat.postMessage", &body)
                .await
                .and_then(|resp| {
                    let channel = resp
                        .get("channel")
                        .and_then(Value::as_str)
                        .unwrap_or(channel);
                    let ts = resp.get("ts").and_then(Value::as_str).ok_or_else(|| {
                        NotifyError::SlackApi {
                            target: "chat.postMessage",
                            error: "response has no ts".into(),
                        }
                    })?;
                    Ok(MessageRef {
                        channel: channel.to_string(),
                        ts: ts.to_string(),
                    })
                });
            return self.record("chat.postMessage", res).map(Some);
        }
        if let Some(url) = self.config.webhook_url.as_deref().filter(|u| !u.is_empty()) {
            let res = self.post_plain("incoming webhook", url, &msg).await;
            return self.record("incoming webhook", res).map(|()| None);
        }
        if self.bot_token().is_some() {
            return Err(NotifyError::NotConfigured(
                "slack.channel is required with slack.bot_token",
            ));
        }
        Ok(None)
    }

    /// Re-render a still-pending message in place (e.g. after a first of
    /// several approvals), keeping the buttons. Needs the bot token.
    pub async fn refresh_pending(
        &self,
        msg: &MessageRef,
        request: &Value,
    ) -> Result<(), NotifyError> {
        let token = self.bot_token().ok_or(NotifyError::NotConfigured(
            "chat.update needs slack.bot_token",
        ))?;
        let mut body = pending_message(request, &self.public_url);
        if let Value::Object(map) = &mut body {
            map.insert("channel".into(), json!(msg.channel));
            map.insert("ts".into(), json!(msg.ts));
        }
        let res = self.call_api(token, "chat.update", &body).await.map(|_| ());
        self.record("chat.update", res)
    }

    /// Replace a message's buttons with the decision (who approved/rejected, or expired).
    pub async fn update_decided(
        &self,
        target: UpdateTarget<'_>,
        request: &Value,
    ) -> Result<(), NotifyError> {
        let msg = decided_message(request, &self.public_url);
        match target {
            UpdateTarget::Message(r) => {
                let token = self.bot_token().ok_or(NotifyError::NotConfigured(
                    "chat.update needs slack.bot_token",
                ))?;
                let mut body = msg;
                if let Value::Object(map) = &mut body {
                    map.insert("channel".into(), json!(r.channel));
                    map.insert("ts".into(), json!(r.ts));
                }
                let res = self.call_api(token, "chat.update", &body).await.map(|_| ());
                self.record("chat.update", res)
            }
            UpdateTarget::ResponseUrl(url) => {
                let mut body = msg;
                if let Value::Object(map) = &mut body {
                    map.insert("replace_original".into(), json!(true));
                }
                let res = self.post_plain("response_url", url, &body).await;
                self.record("response_url", res)
            }
        }
    }

    /// Tell only the presser why their click was refused (not an approver, not
    /// pending…). `text` is escaped.
    pub async fn ephemeral_refusal(
        &self,
        response_url: &str,
        text: &str,
    ) -> Result<(), NotifyError> {
        let body = json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": escape_mrkdwn(text),
        });
        let res = self.post_plain("response_url", response_url, &body).await;
        self.record("response_url", res)
    }

    fn bot_token(&self) -> Option<&str> {
        self.config.bot_token.as_deref().filter(|t| !t.is_empty())
    }

    /// Call a Slack Web API method; succeed only on 2xx with `"ok": true`.
    async fn call_api(
        &self,
        token: &str,
        method: &'static str,
        body: &Value,
    ) -> Result<Value, NotifyError> {
        let url = format!("{}/{}", self.config.api_url.trim_end_matches('/'), method);
        let bytes = serde_json::to_vec(body)?;
        let resp = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(bytes)
            .send()
            .await
            .map_err(|e| NotifyError::transport(method, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(NotifyError::Status {
                target: method,
                status: status.as_u16(),
            });
        }
        let json: Value = resp
            .json()
            .await
            .map_err(|e| NotifyError::transport(method, e))?;
        if json.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(json)
        } else {
            let error = json
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("response without ok: true")
                .to_string();
            Err(NotifyError::SlackApi {
                target: method,
                error,
            })
        }
    }

    /// POST JSON to an incoming webhook or a response_url; succeed on 2xx
    /// unless the body is JSON with `"ok": false`.
    async fn post_plain(
        &self,
        target: &'static str,
        url: &str,
        body: &Value,
    ) -> Result<(), NotifyError> {
        let bytes = serde_json::to_vec(body)?;
        let resp = self
            .http
            .post(url)
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(bytes)
            .send()
            .await
            .map_err(|e| NotifyError::transport(target, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(NotifyError::Status {
                target,
                status: status.as_u16(),
            });
        }
        let text = resp
            .text()
            .await
            .map_err(|e| NotifyError::transport(target, e))?;
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && v.get("ok").and_then(Value::as_bool) == Some(false)
        {
            let error = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("ok: false")
                .to_string();
            return Err(NotifyError::SlackApi { target, error });
        }
        Ok(())
    }
}
