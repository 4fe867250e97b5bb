//! Slack client against a local stand-in speaking Slack's wire format.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sudomode_notify::{
    Channel, MessageRef, NotifyError, NotifyStats, SlackConfig, SlackNotifier, UpdateTarget,
};

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, path: &str, headers: &HeaderMap, body: &str) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    log.lock().unwrap().push(Seen {
        path: path.to_string(),
        auth: h("authorization"),
        content_type: h("content-type"),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    });
}

/// Slack Web API: `ok: true` only with the right bearer token.
fn api_reply(headers: &HeaderMap, ok: Value) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer xoxb-test-token")
    {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    axum::Json(ok).into_response()
}

async fn start() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route(
            "/api/chat.postMessage",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                record(&log, "chat.postMessage", &headers, &body);
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                api_reply(
                    &headers,
                    json!({"ok": true, "channel": "C0SUDO", "ts": "1700000000.000100",
                           "message": {"text": v["text"], "blocks": v["blocks"]}}),
                )
            }),
        )
        .route(
            "/api/chat.update",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                record(&log, "chat.update", &headers, &body);
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if v["ts"] != "1700000000.000100" {
                    return axum::Json(json!({"ok": false, "error": "message_not_found"})).into_response();
                }
                api_reply(&headers, json!({"ok": true, "channel": v["channel"], "ts": v["ts"], "text": v["text"]}))
            }),
        )
        .route(
            "/services/T0/B0/hooksecret",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                record(&log, "incoming webhook", &headers, &body);
                (StatusCode::OK, "ok")
            }),
        )
        .route(
            "/actions/T0/123/respsecret",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                record(&log, "response_url", &headers, &body);
                axum::Json(json!({"ok": true}))
            }),
        )
        .route("/broken", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }))
        .route(
            "/hang",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn request(status: &str) -> Value {
    json!({
        "id": "req_7", "created_at": "2026-11-23T21:00:00Z", "agent": "ops-bot",
        "method": "POST", "url": "https://dynamodb.us-east-1.amazonaws.com/",
        "resource": "aws.dynamodb", "action": "DeleteTable",
        "args": {"TableName": "prod <!channel>", "region": "us-east-1"},
        "decision": "REQUIRE_APPROVAL", "rule": "no-drops", "reason": "destructive",
        "status": status, "required_approvals": 1,
        "approvals": if status == "approved" { json!([{"operator": "alice", "at": "2026-11-23T21:02:00Z", "reason": "planned"}]) } else { json!([]) },
        "rejected_by": null, "expires_at": "2026-11-23T21:10:00Z",
        "upstream_status": null, "completed_at": null
    })
}

fn bot_config(base: &str, token: &str) -> SlackConfig {
    SlackConfig {
        bot_token: Some(token.into()),
        channel: Some("#approvals".into()),
        signing_secret: Some("sig".into()),
        api_url: format!("{base}/api"),
        ..SlackConfig::default()
    }
}

fn has_actions(body: &Value) -> bool {
    body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["type"] == "actions")
}

#[tokio::test]
async fn post_message_then_update() {
    let (base, log) = start().await;
    let stats = Arc::new(NotifyStats::new());
    let slack = SlackNotifier::new(
        bot_config(&base, "xoxb-test-token"),
        "https://sudo.example.com",
    )
    .unwrap()
    .with_stats(stats.clone());
    assert!(slack.has_bot_token());

    let msg = slack.post_pending(&request("pending")).await.unwrap();
    let msg = msg.expect("bot token posts return a message ref");
    assert_eq!(
        msg,
        MessageRef {
            channel: "C0SUDO".into(),
            ts: "1700000000.000100".into()
        }
    );

    slack
        .update_decided(UpdateTarget::Message(&msg), &request("approved"))
        .await
        .unwrap();

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let post = &seen[0];
    assert_eq!(post.path, "chat.postMessage");
    assert_eq!(post.auth.as_deref(), Some("Bearer xoxb-test-token"));
    assert!(
        post.content_type
            .as_deref()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(post.body["channel"], "#approvals");
    assert!(has_actions(&post.body));
    let text = post.body.to_string();
    assert!(text.contains("sudomode_approve") && text.contains("sudomode_reject"));
    assert!(text.contains("https://sudo.example.com/#/requests/req_7"));
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(text.contains("&lt;!channel&gt;"));

    let upd = &seen[1];
    assert_eq!(upd.path, "chat.update");
    assert_eq!(upd.auth.as_deref(), Some("Bearer xoxb-test-token"));
    assert_eq!(upd.body["channel"], "C0SUDO");
    assert_eq!(upd.body["ts"], "1700000000.000100");
    assert!(!has_actions(&upd.body), "buttons are gone once decided");
    assert!(
        upd.body
            .to_string()
            .contains("✅ Approved by alice: planned")
    );

    assert_eq!(stats.get(Channel::Slack, true), 2);
    assert_eq!(stats.get(Channel::Slack, false), 0);
}

#[tokio::test]
async fn slack_ok_false_is_an_error() {
    let (base, _log) = start().await;
    let slack = SlackNotifier::new(bot_config(&base, "xoxb-wrong"), "http://h").unwrap();
    let err = slack.post_pending(&request("pending")).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::SlackApi { error, .. } if error == "invalid_auth"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("xoxb"),
        "no token in errors: {err}"
    );
    let good = SlackNotifier::new(bot_config(&base, "xoxb-test-token"), "http://h").unwrap();
    let stale = MessageRef {
        channel: "C0SUDO".into(),
        ts: "1.2".into(),
    };
    let err = good
        .update_decided(UpdateTarget::Message(&stale), &request("expired"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NotifyError::SlackApi { error, .. } if error == "message_not_found"),
        "{err}"
    );
    assert_eq!(slack.stats().get(Channel::Slack, false), 1);
    assert_eq!(good.stats().get(Channel::Slack, false), 1);
}

#[tokio::test]
async fn incoming_webhook_and_response_url() {
    let (base, log) = start().await;
    let cfg = SlackConfig {
        webhook_url: Some(format!("{base}/services/T0/B0/hooksecret")),
        ..SlackConfig::default()
    };
    let slack = SlackNotifier::new(cfg, "http://dash").unwrap();
    assert!(!slack.has_bot_token());
    assert_eq!(slack.post_pending(&request("pending")).await.unwrap(), None);

    let resp_url = format!("{base}/actions/T0/123/respsecret");
    slack
        .update_decided(UpdateTarget::ResponseUrl(&resp_url), &request("approved"))
        .await
        .unwrap();
    slack
        .ephemeral_refusal(&resp_url, "You are not an approver <@U1>")
        .await
        .unwrap();
    // chat.update without a bot token is refused locally.
    let r = MessageRef {
        channel: "C".into(),
        ts: "1".into(),
    };
    assert!(matches!(
        slack
            .update_decided(UpdateTarget::Message(&r), &request("approved"))
            .await,
        Err(NotifyError::NotConfigured(_))
    ));

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].path, "incoming webhook");
    assert_eq!(seen[0].auth, None);
    assert!(has_actions(&seen[0].body));
    assert_eq!(seen[1].path, "response_url");
    assert_eq!(seen[1].body["replace_original"], true);
    assert!(!has_actions(&seen[1].body));
    assert!(seen[1].body.to_string().contains("Approved by alice"));
    assert_eq!(
        seen[2].body,
        json!({"response_type": "ephemeral", "replace_original": false,
               "text": "You are not an approver &lt;@U1&gt;"})
    );
    assert_eq!(slack.stats().get(Channel::Slack, true), 3);
}

#[tokio::test]
async fn http_errors_and_timeouts() {
    let (base, _log) = start().await;
    let slack = SlackNotifier::new(SlackConfig::default(), "http://dash")
        .unwrap()
        .with_timeout(Duration::from_millis(300))
        .unwrap();
    // Nothing configured: posting is a no-op.
    assert_eq!(slack.post_pending(&request("pending")).await.unwrap(), None);
    let err = slack
        .ephemeral_refusal(&format!("{base}/broken"), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::Status { status: 500, .. }),
        "{err}"
    );
    let started = Instant::now();
    let err = slack
        .ephemeral_refusal(&format!("{base}/hang?token=secret123"), "x")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, NotifyError::Transport { .. }), "{err}");
    assert!(
        !err.to_string().contains("secret123"),
        "URL stripped: {err}"
    );
    assert_eq!(slack.stats().get(Channel::Slack, false), 2);
}

#[tokio::test]
async fn signed_interaction_round_trip_and_refresh() {
    let (base, log) = start().await;
    let slack = SlackNotifier::new(bot_config(&base, "xoxb-test-token"), "http://dash").unwrap();
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "team_id": "T0"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0SUDO"},
        "channel": {"id": "C0SUDO", "name": "approvals"},
        "response_url": format!("{base}/actions/T0/123/respsecret"),
        "actions": [{"type": "button", "action_id": "sudomode_reject", "block_id": "sudomode_actions:req_7",
                     "value": "req_7", "action_ts": "1700000050.1"}]
    });
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let now = 1_700_000_060;
    let ts = now.to_string();
    let sig = sudomode_notify::slack_signature("sig", &ts, body.as_bytes());
    slack.verify(&ts, &sig, body.as_bytes(), now).unwrap();
    assert!(slack.verify(&ts, &sig, b"payload=%7B%7D", now).is_err());
    assert!(slack.verify(&ts, &sig, body.as_bytes(), now + 360).is_err());
    let i = sudomode_notify::parse_interaction(body.as_bytes()).unwrap();
    assert_eq!(i.decision, sudomode_notify::Decision::Reject);
    assert_eq!(i.request_id, "req_7");
    assert_eq!(i.user_id, "U0ALICE");

    let msg = MessageRef {
        channel: i.channel.unwrap(),
        ts: i.message_ts.unwrap(),
    };
    let mut partial = request("pending");
    partial["required_approvals"] = json!(2);
    partial["approvals"] = json!([{"operator": "bob", "at": "x", "reason": ""}]);
    slack.refresh_pending(&msg, &partial).await.unwrap();
    let mut rejected = request("rejected");
    rejected["rejected_by"] = json!("alice");
    rejected["rejected_reason"] = json!("not today");
    let url = i.response_url.unwrap();
    slack
        .update_decided(UpdateTarget::ResponseUrl(&url), &rejected)
        .await
        .unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].path, "chat.update");
    assert!(has_actions(&seen[0].body));
    assert!(seen[0].body.to_string().contains("1 of 2 still needed"));
    assert_eq!(seen[1].path, "response_url");
    assert!(
        seen[1]
            .body
            .to_string()
            .contains("❌ Rejected by alice: not today")
    );
}
