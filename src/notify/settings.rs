//! Validation of the `slack:` and `webhooks:` configuration sections.
//!
//! Hand-written rather than serde-derived because serde's messages quote
//! the offending value ("invalid type: string \"xoxb-…\""), and these
//! sections hold secrets: every error here names the key, never a value.

use serde_json::{Map, Value};
use sudomode_notify::{EventName, SlackConfig, WebhookConfig};

const SLACK_KEYS: [&str; 5] = [
    "webhook_url",
    "signing_secret",
    "bot_token",
    "channel",
    "api_url",
];
const WEBHOOK_KEYS: [&str; 3] = ["url", "secret", "events"];

fn object<'v>(v: &'v Value, key: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{key}: expected a mapping"))
}

fn unknown_keys(map: &Map<String, Value>, known: &[&str], key: &str) -> Result<(), String> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        // Key names are the user's YAML structure, not secret values.
        Some(k) => Err(format!(
            "{key}.{k}: unknown key (expected one of {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// An optional string; empty counts as absent (as `${env:…}` of an unset
/// optional variable would read).
fn opt_string(map: &Map<String, Value>, field: &str, key: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key}.{field}: expected a string")),
    }
}

fn http_url(raw: &str) -> bool {
    raw.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    })
}

/// `slack: {webhook_url, signing_secret, bot_token, channel, api_url}`.
pub fn slack(v: &Value) -> Result<SlackConfig, String> {
    let map = object(v, "slack")?;
    unknown_keys(map, &SLACK_KEYS, "slack")?;
    let mut cfg = SlackConfig {
        webhook_url: opt_string(map, "webhook_url", "slack")?,
        signing_secret: opt_string(map, "signing_secret", "slack")?,
        bot_token: opt_string(map, "bot_token", "slack")?,
        channel: opt_string(map, "channel", "slack")?,
        ..SlackConfig::default()
    };
    if let Some(api) = opt_string(map, "api_url", "slack")? {
        cfg.api_url = api;
    }
    if !http_url(&cfg.api_url) {
        return Err("slack.api_url: expected an http(s) URL".into());
    }
    if cfg.webhook_url.as_deref().is_some_and(|u| !http_url(u)) {
        return Err("slack.webhook_url: expected an http(s) URL".into());
    }
    if cfg.bot_token.is_some() && cfg.channel.is_none() {
        return Err("slack.channel: required with slack.bot_token".into());
    }
    Ok(cfg)
}

/// `webhooks[i]: {url, secret, events}`.
pub fn webhook(i: usize, v: &Value) -> Result<WebhookConfig, String> {
    let key = format!("webhooks[{i}]");
    let map = object(v, &key)?;
    unknown_keys(map, &WEBHOOK_KEYS, &key)?;
    let url = opt_string(map, "url", &key)?.ok_or_else(|| format!("{key}.url: required"))?;
    if !http_url(&url) {
        return Err(format!("{key}.url: expected an http(s) URL"));
    }
    let secret =
        opt_string(map, "secret", &key)?.ok_or_else(|| format!("{key}.secret: required"))?;
    let events = match map.get("events") {
        None | Some(Value::Null) => EventName::all(),
        Some(Value::Array(list)) => {
            let mut events = Vec::new();
            for (j, e) in list.iter().enumerate() {
                let name = e.as_str().unwrap_or_default();
                let event = EventName::from_status(name).ok_or_else(|| {
                    format!(
                        "{key}.events[{j}]: expected one of pending, approved, rejected, expired, denied, completed"
                    )
                })?;
                if !events.contains(&event) {
                    events.push(event);
                }
            }
            events
        }
        Some(_) => return Err(format!("{key}.events: expected a list")),
    };
    Ok(WebhookConfig {
        url,
        secret,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slack_errors_name_the_key_never_the_value() {
        let e = slack(&json!("xoxb-secret-value")).unwrap_err();
        assert_eq!(e, "slack: expected a mapping");
        let e = slack(&json!({"bot_token": 5})).unwrap_err();
        assert_eq!(e, "slack.bot_token: expected a string");
        let e = slack(&json!({"bot_tokn": "xoxb-secret-value"})).unwrap_err();
        assert!(e.starts_with("slack.bot_tokn: unknown key"), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = slack(&json!({"bot_token": "xoxb-secret-value"})).unwrap_err();
        assert_eq!(e, "slack.channel: required with slack.bot_token");
        let e = slack(&json!({"webhook_url": "not a url secret-value"})).unwrap_err();
        assert_eq!(e, "slack.webhook_url: expected an http(s) URL");
    }

    #[test]
    fn slack_defaults() {
        let c =
            slack(&json!({"bot_token": "xoxb-1", "channel": "C1", "signing_secret": ""})).unwrap();
        assert_eq!(c.api_url, "https://slack.com/api");
        assert_eq!(c.signing_secret, None);
        let c = slack(&json!({"api_url": "http://127.0.0.1:9/api"})).unwrap();
        assert_eq!(c.api_url, "http://127.0.0.1:9/api");
    }

    #[test]
    fn webhook_validation() {
        let w = webhook(0, &json!({"url": "http://127.0.0.1:1/hook", "secret": "s"})).unwrap();
        assert_eq!(w.events, EventName::all());
        let w = webhook(
            0,
            &json!({"url": "https://x.example/h", "secret": "s", "events": ["pending", "completed", "pending"]}),
        )
        .unwrap();
        assert_eq!(w.events, vec![EventName::Pending, EventName::Completed]);
        assert_eq!(
            webhook(2, &json!({"url": "ftp://x/secret-value", "secret": "s"})).unwrap_err(),
            "webhooks[2].url: expected an http(s) URL"
        );
        assert_eq!(
            webhook(1, &json!({"url": "http://x/h"})).unwrap_err(),
            "webhooks[1].secret: required"
        );
        assert_eq!(
            webhook(
                0,
                &json!({"url": "http://x/h", "secret": "s", "events": ["Pending"]})
            )
            .unwrap_err(),
            "webhooks[0].events[0]: expected one of pending, approved, rejected, expired, denied, completed"
        );
        assert!(
            webhook(0, &json!({"url": "http://x/h", "secret": "s", "extra": 1}))
                .unwrap_err()
                .starts_with("webhooks[0].extra: unknown key")
        );
    }
}
