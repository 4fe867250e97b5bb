//! Notifications end to end (SPEC §10, §13.9): the real binary posts held
//! requests to a stand-in Slack API and a webhook receiver, Slack button
//! presses (signed like Slack signs them) approve or reject, and messages
//! are updated to show who decided.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

const SIGNING_SECRET: &str = "slack-signing-secret-test";
const POLICY: &str = "rules:\n  - name: needs_human\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reason: test\n";
const HOST: &str = "api.example.test";

/// One call the stand-in received.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A stand-in for the Slack Web API (`/api/chat.*`), for response_urls
/// (`/response/{n}`) and for a webhook receiver (`/hook`).
struct StandIn {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// Records a call; returns how many calls to that path there were so far.
fn record(calls: &Calls, path: String, headers: &HeaderMap, body: &Bytes) -> usize {
    let mut c = calls.lock().unwrap();
    let same = c.iter().filter(|x| x.path == path).count() + 1;
    c.push(Call {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    same
}

async fn slack_api(
    State(calls): State<Calls>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let n = record(&calls, format!("/api/{method}"), &headers, &body);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match method.as_str() {
        "chat.postMessage" => axum::Json(json!({
            "ok": true, "channel": req["channel"], "ts": format!("1700000000.{n:06}"),
        })),
        "chat.update" => {
            axum::Json(json!({"ok": true, "channel": req["channel"], "ts": req["ts"]}))
        }
        _ => axum::Json(json!({"ok": false, "error": "unknown_method"})),
    }
}

async fn plain(
    State(calls): State<Calls>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    record(&calls, format!("/{rest}"), &headers, &body);
    "ok"
}

impl StandIn {
    async fn start() -> StandIn {
        let calls: Calls = Arc::default();
        let app = Router::new()
            .route("/api/{method}", post(slack_api))
            .route("/{*rest}", post(plain))
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { addr, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn calls(&self, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// Waits until a call to `path` satisfies `pred`.
    async fn wait(&self, path: &str, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = self.calls(path).into_iter().find(|c| pred(c)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on {path}; got {:#?}",
                self.calls.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn config(slack_api_url: &str, hook_url: &str) -> String {
    format!(
        "slack: {{bot_token: xoxb-test, signing_secret: {SIGNING_SECRET}, channel: C123, api_url: \"{slack_api_url}\"}}\n\
         webhooks:\n  - {{url: \"{hook_url}\", secret: whsec, events: [pending, approved, rejected]}}\n\
         operators:\n  - {{name: alice, token: alice-token-1, role: approver, slack_user_id: U_ALICE}}\n  \
         - {{name: vic, token: viewer-token-1, role: viewer, slack_user_id: U_VIC}}\n"
    )
}

async fn setup(slack_api_url: Option<&str>) -> (TestCa, Upstream, StandIn, SudoMode) {
    setup_with(|stand_in| {
        let api_url = slack_api_url
            .map(str::to_string)
            .unwrap_or_else(|| stand_in.url("/api"));
        config(&api_url, &stand_in.url("/hook"))
    })
    .await
}

/// Starts the upstream, the stand-in and SudoMode with the YAML `extra`
/// builds (it may point at the stand-in).
async fn setup_with(
    extra: impl FnOnce(&StandIn) -> String,
) -> (TestCa, Upstream, StandIn, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[HOST]).await;
    let stand_in = StandIn::start().await;
    let extra = extra(&stand_in);
    let sm = SudoMode::start(Options {
        policy: POLICY,
        extra: &extra,
        resolve: vec![(format!("{HOST}:443"), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    (ca, up, stand_in, sm)
}

/// An agent call through the proxy; it blocks while held.
fn agent_call(sm: &SudoMode, path: &str) -> tokio::task::JoinHandle<reqwest::Response> {
    let client = sm.client();
    let url = format!("https://{HOST}{path}");
    tokio::spawn(async move {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"amount": 5000}"#)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
    })
}

fn button_values(post: &Value) -> Vec<(String, String)> {
    post["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().iter())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The form body Slack sends for a button press on a message.
fn press_body(user: &str, action: &str, id: &str, response_url: &str, ts: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": ts, "channel_id": "C123"},
        "channel": {"id": "C123", "name": "approvals"},
        "message": {"type": "message", "ts": ts, "text": "Approval needed", "blocks": []},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": format!("sudomode_actions:{id}"),
                     "value": id, "type": "button", "action_ts": "1700000010.123456"}]
    });
    format!("payload={}", form_encode(&payload.to_string()))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn send_press(sm: &SudoMode, body: &str, ts: i64, signature: Option<String>) -> u16 {
    let ts = ts.to_string();
    let sig = signature
        .unwrap_or_else(|| sudomode_notify::slack_signature(SIGNING_SECRET, &ts, body.as_bytes()));
    sm.api()
        .post(sm.dashboard_url("/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", &ts)
        .header("X-Slack-Signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn request_status(sm: &SudoMode, id: &str) -> Value {
    let resp = sm
        .api()
        .get(sm.dashboard_url(&format!("/api/v1/requests/{id}")))
        .bearer_auth("alice-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn metrics(sm: &SudoMode) -> String {
    let resp = sm
        .api()
        .get(sm.dashboard_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn counter(text: &str, channel: &str, result: &str) -> u64 {
    let prefix =
        format!("sudomode_notifications_total{{channel=\"{channel}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits for the webhook delivery of `event` for request `id` and checks
/// its signature.
async fn webhook(stand_in: &StandIn, event: &str, id: &str) -> Value {
    let call = stand_in
        .wait("/hook", &format!("webhook {event}"), |c| {
            let v: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
            v["event"] == event && v["request"]["id"] == id
        })
        .await;
    let sig = call.header("x-sudomode-signature").unwrap();
    assert!(sig.starts_with("sha256="), "{sig}");
    assert!(
        sudomode_notify::verify_webhook_signature("whsec", sig, &call.body),
        "webhook signature must verify with the configured secret"
    );
    assert!(!sudomode_notify::verify_webhook_signature(
        "other", sig, &call.body
    ));
    call.json()
}

#[tokio::test]
async fn slack_button_approves_a_held_request_end_to_end() {
    let (_ca, up, stand_in, sm) = setup(None).await;
    let agent = agent_call(&sm, "/v1/charges");

    // The held request is posted with both buttons carrying its id.
    let posted = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await;
    assert_eq!(posted.header("authorization"), Some("Bearer xoxb-test"));
    let msg = posted.json();
    assert_eq!(msg["channel"], "C123");
    let buttons = button_values(&msg);
    // The rule allows standing grants, so "Approve for 1 h" is offered too.
    assert_eq!(buttons.len(), 3, "{msg:#}");
    let id = buttons[0].1.clone();
    assert!(!id.is_empty());
    assert_eq!(
        buttons,
        vec![
            ("sudomode_approve".to_string(), id.clone()),
            ("sudomode_approve_grant".to_string(), id.clone()),
            ("sudomode_reject".to_string(), id.clone())
        ]
    );
    assert!(msg.to_string().contains(HOST), "{msg:#}");
    let ts = "1700000000.000001";

    // The pending webhook: signed, `{"event", "request"}`, the API's shape.
    let hook = webhook(&stand_in, "pending", &id).await;
    assert_eq!(hook["request"]["status"], "pending");
    assert_eq!(hook["request"]["method"], "POST");
    assert_eq!(hook["request"]["url"], format!("https://{HOST}/v1/charges"));
    assert_eq!(hook["request"]["rule"], "needs_human");
    assert!(hook["request"].get("retry_key").is_none(), "{hook:#}");
    assert_eq!(hook.as_object().unwrap().len(), 2, "{hook:#}");

    let response_url = stand_in.url("/response/1");
    let approve = press_body("U_ALICE", "sudomode_approve", &id, &response_url, ts);

    // Forged, stale or unsigned presses change nothing.
    let forged = sudomode_notify::slack_signature(
        "wrong-secret",
        &now_unix().to_string(),
        approve.as_bytes(),
    );
    assert_eq!(
        send_press(&sm, &approve, now_unix(), Some(forged)).await,
        401
    );
    let stale = now_unix() - 6 * 60;
    assert_eq!(send_press(&sm, &approve, stale, None).await, 401);
    let tampered = approve.replace("U_ALICE", "U_ALICF");
    let sig = sudomode_notify::slack_signature(
        SIGNING_SECRET,
        &now_unix().to_string(),
        approve.as_bytes(),
    );
    assert_eq!(send_press(&sm, &tampered, now_unix(), Some(sig)).await, 401);
    let resp = sm
        .api()
        .post(sm.dashboard_url("/slack/interactions"))
        .body(approve.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(request_status(&sm, &id).await["status"], "pending");

    // Unmapped users and viewers are refused (ephemerally), nothing changes.
    for (user, n) in [("U_NOBODY", 1), ("U_VIC", 2)] {
        let url = stand_in.url(&format!("/response/refusal-{n}"));
        let body = press_body(user, "sudomode_approve", &id, &url, ts);
        assert_eq!(send_press(&sm, &body, now_unix(), None).await, 200);
        let refusal = stand_in
            .wait(
                &format!("/response/refusal-{n}"),
                "an ephemeral refusal",
                |_| true,
            )
            .await
            .json();
        assert_eq!(refusal["response_type"], "ephemeral");
        assert_eq!(refusal["replace_original"], false);
        assert_eq!(request_status(&sm, &id).await["status"], "pending");
    }
    assert!(
        stand_in.calls("/response/refusal-2")[0]
            .text()
            .contains("viewer")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!agent.is_finished(), "the agent call must still be held");
    assert!(up.requests().is_empty(), "nothing may reach the upstream");
    assert!(stand_in.calls("/api/chat.update").is_empty());

    // Alice approves from Slack: the agent's call goes through.
    assert_eq!(send_press(&sm, &approve, now_unix(), None).await, 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the approved call completes")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "stand-in");
    assert_eq!(up.requests().len(), 1);
    let record = request_status(&sm, &id).await;
    assert!(
        record["status"] == "approved" || record["status"] == "completed",
        "{record:#}"
    );
    assert_eq!(record["approvals"][0]["operator"], "alice");
    assert_eq!(record["approvals"][0]["reason"], "via Slack");

    // The message is updated in place to show who decided, without buttons.
    let update = stand_in
        .wait("/api/chat.update", "the decided message", |_| true)
        .await
        .json();
    assert_eq!(update["channel"], "C123");
    assert_eq!(update["ts"], ts);
    assert!(
        update.to_string().contains("Approved by alice"),
        "{update:#}"
    );
    assert!(button_values(&update).is_empty(), "{update:#}");
    let approved = webhook(&stand_in, "approved", &id).await;
    assert_eq!(approved["request"]["approvals"][0]["operator"], "alice");

    // A second press is told it is already decided.
    let again_url = stand_in.url("/response/again");
    let again = press_body("U_ALICE", "sudomode_reject", &id, &again_url, ts);
    assert_eq!(send_press(&sm, &again, now_unix(), None).await, 200);
    let told = stand_in
        .wait("/response/again", "already decided", |_| true)
        .await;
    assert!(told.text().contains("already decided"), "{}", told.text());

    // One update only (the response_url is not also replaced), and the
    // counters show on /metrics.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stand_in.calls("/api/chat.update").len(), 1);
    assert!(
        stand_in.calls("/response/1").is_empty(),
        "{:?}",
        stand_in.calls("/response/1")
    );
    let text = metrics(&sm).await;
    assert!(counter(&text, "slack", "ok") >= 2, "{text}");
    assert!(counter(&text, "webhook", "ok") >= 2, "{text}");
    assert_eq!(counter(&text, "webhook", "error"), 0, "{text}");
    assert!(text.contains("sudomode_requests_total"), "{text}");
}

#[tokio::test]
async fn dashboard_decisions_and_slack_rejections_update_the_message() {
    let (_ca, up, stand_in, sm) = setup(None).await;

    // Approved in the dashboard (operator API): chat.update shows alice.
    let agent = agent_call(&sm, "/v1/first");
    let posted = stand_in
        .wait("/api/chat.postMessage", "first message", |c| {
            c.text().contains("/v1/first")
        })
        .await
        .json();
    let id = button_values(&posted)[0].1.clone();
    let resp = sm
        .api()
        .post(sm.dashboard_url(&format!("/api/v1/requests/{id}/approve")))
        .bearer_auth("alice-token-1")
        .json(&json!({"reason": "fine by me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let update = stand_in
        .wait("/api/chat.update", "the first update", |c| {
            c.text().contains(&id)
        })
        .await
        .json();
    assert!(
        update.to_string().contains("Approved by alice"),
        "{update:#}"
    );
    assert!(update.to_string().contains("fine by me"), "{update:#}");

    // Rejected from Slack: the agent gets 403 naming alice; the message
    // and the `rejected` webhook follow.
    let agent = agent_call(&sm, "/v1/second");
    let posted_call = stand_in
        .wait("/api/chat.postMessage", "second message", |c| {
            c.text().contains("/v1/second")
        })
        .await;
    let posted = posted_call.json();
    let id2 = button_values(&posted)[0].1.clone();
    assert_ne!(id, id2);
    webhook(&stand_in, "pending", &id2).await;
    let response_url = stand_in.url("/response/reject");
    let reject = press_body(
        "U_ALICE",
        "sudomode_reject",
        &id2,
        &response_url,
        "1700000000.000002",
    );
    assert_eq!(send_press(&sm, &reject, now_unix(), None).await, 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("alice"), "{body}");
    let update = stand_in
        .wait("/api/chat.update", "the rejection update", |c| {
            c.text().contains(&id2)
        })
        .await
        .json();
    assert!(
        update.to_string().contains("Rejected by alice"),
        "{update:#}"
    );
    let rejected = webhook(&stand_in, "rejected", &id2).await;
    assert_eq!(rejected["request"]["rejected_by"], "alice");
    assert_eq!(
        up.requests().len(),
        1,
        "the rejected call never reached the upstream"
    );
}

#[tokio::test]
async fn slack_down_never_blocks_a_request() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/api", closed.local_addr().unwrap());
    drop(closed);
    let (_ca, up, stand_in, sm) = setup(Some(&dead)).await;
    let agent = agent_call(&sm, "/v1/while-slack-is-down");

    // The request is still held, announced on the webhook, and approvable.
    let hook_call = stand_in
        .wait("/hook", "pending", |c| c.text().contains("\"pending\""))
        .await;
    let id = hook_call.json()["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    webhook(&stand_in, "pending", &id).await;
    assert_eq!(request_status(&sm, &id).await["status"], "pending");
    let resp = sm
        .api()
        .post(sm.dashboard_url(&format!("/api/v1/requests/{id}/approve")))
        .bearer_auth("alice-token-1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(&sm).await;
        if counter(&text, "slack", "error") >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn incoming_webhook_only_updates_through_the_response_url() {
    let (_ca, up, stand_in, sm) = setup_with(|s| {
        format!(
            "slack: {{webhook_url: \"{}\", signing_secret: {SIGNING_SECRET}}}\n\
             operators:\n  - {{name: alice, token: alice-token-1, role: approver, slack_user_id: U_ALICE}}\n",
            s.url("/incoming")
        )
    })
    .await;
    let agent = agent_call(&sm, "/v1/incoming");
    let posted = stand_in
        .wait("/incoming", "the pending message", |_| true)
        .await
        .json();
    let id = button_values(&posted)[0].1.clone();
    let response_url = stand_in.url("/response/incoming");
    let approve = press_body("U_ALICE", "sudomode_approve", &id, &response_url, "1.2");
    assert_eq!(send_press(&sm, &approve, now_unix(), None).await, 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().len(), 1);
    let replaced = stand_in
        .wait("/response/incoming", "the replaced message", |_| true)
        .await
        .json();
    assert_eq!(replaced["replace_original"], true);
    assert!(
        replaced.to_string().contains("Approved by alice"),
        "{replaced:#}"
    );
    assert!(button_values(&replaced).is_empty());
    // No Web API without a bot token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stand_in.calls("/api/chat.update").is_empty());
    assert!(stand_in.calls("/api/chat.postMessage").is_empty());
}

#[tokio::test]
async fn expiry_updates_the_message_and_presses_need_a_signing_secret() {
    let (_ca, up, stand_in, sm) = setup_with(|s| {
        format!(
            "hold:\n  timeout: 2s\n\
             slack: {{bot_token: xoxb-test, channel: C123, api_url: \"{}\"}}\n\
             webhooks:\n  - {{url: \"{}\", secret: whsec, events: [expired]}}\n",
            s.url("/api"),
            s.url("/hook")
        )
    })
    .await;
    let agent = agent_call(&sm, "/v1/too-slow");
    let posted = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    let id = button_values(&posted)[0].1.clone();
    // Without a signing secret no button press is accepted at all.
    let press = press_body(
        "U_ALICE",
        "sudomode_approve",
        &id,
        &stand_in.url("/response/x"),
        "1.1",
    );
    assert_eq!(send_press(&sm, &press, now_unix(), None).await, 404);
    let expired = webhook(&stand_in, "expired", &id).await;
    assert_eq!(expired["request"]["status"], "expired");
    let update = stand_in
        .wait("/api/chat.update", "the expired message", |_| true)
        .await
        .json();
    assert!(update.to_string().contains("Expired"), "{update:#}");
    assert!(button_values(&update).is_empty());
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(up.requests().is_empty());
    // Only `expired` was subscribed.
    assert_eq!(stand_in.calls("/hook").len(), 1);
}

#[test]
fn notification_config_errors_name_the_key_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        (
            "slack: {bot_token: xoxb-very-secret-1, chanel: C1}\n",
            "slack.chanel",
        ),
        ("slack: {bot_token: xoxb-very-secret-1}\n", "slack.channel"),
        (
            "webhooks:\n  - {url: \"ftp://very-secret-1.example/\", secret: s}\n",
            "webhooks[0].url",
        ),
    ] {
        std::fs::write(
            dir.path().join("n.yaml"),
            format!("store:\n  path: data/s.redb\n{yaml}"),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .args([
                "run",
                "-c",
                "n.yaml",
                "--proxy-listen",
                "127.0.0.1:0",
                "--dashboard-listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("very-secret-1"), "{err}");
    }
}

// --------------------------------------------------------------- issue 20 (operator red team)

/// Agents and a setup where everything is held and announced everywhere.
async fn red_team_setup() -> (TestCa, Upstream, StandIn, SudoMode) {
    setup_with(|s| {
        format!(
            "{}agents:\n  - {{name: bot, token: bot-proxy-token-77}}\n",
            config(&s.url("/api"), &s.url("/hook"))
        )
    })
    .await
}

/// A held call by agent `bot` with these headers and JSON body.
fn bot_call(
    sm: &SudoMode,
    path_and_query: &str,
    headers: &[(&'static str, &'static str)],
    body: Value,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let client = agent_client(sm, "bot", "bot-proxy-token-77");
    let mut rb = client
        .post(format!("https://{HOST}{path_and_query}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(60));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    tokio::spawn(async move { rb.send().await.unwrap() })
}

/// The first `request` event on an open SSE stream for request `id`.
async fn sse_record(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin),
    id: &str,
) -> Value {
    use futures_util::StreamExt;
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(line) = buf
            .lines()
            .find(|l| l.starts_with("data:") && l.contains(id))
        {
            return serde_json::from_str(line.trim_start_matches("data:").trim()).unwrap();
        }
        assert!(Instant::now() < deadline, "no SSE event for {id}: {buf}");
        let chunk = tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Issue 20.6: an agent's proxy token in its URL is masked where it occurs —
/// the rest of the URL stays readable — and API, SSE, webhook and Slack all
/// get the same redacted record.
#[tokio::test]
async fn a_token_in_the_url_is_masked_alike_in_every_view() {
    let (_ca, _up, stand_in, sm) = red_team_setup().await;
    let events = sm
        .api()
        .get(sm.dashboard_url("/api/v1/events"))
        .bearer_auth("alice-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    let agent = bot_call(
        &sm,
        "/v1/payouts?note=bot-proxy-token-77&destination=acct_REAL",
        &[],
        json!({"amount": 100}),
    );
    let hook = stand_in
        .wait("/hook", "pending", |c| c.text().contains("\"pending\""))
        .await
        .json();
    let id = hook["request"]["id"].as_str().unwrap().to_string();
    let api = request_status(&sm, &id).await;
    let sse = sse_record(&mut stream, &id).await;
    let slack = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .text();
    let expected = format!("https://{HOST}/v1/payouts?note=[redacted]&destination=acct_REAL");
    for (view, url) in [
        ("API", &api["url"]),
        ("SSE", &sse["url"]),
        ("webhook", &hook["request"]["url"]),
    ] {
        assert_eq!(url, &json!(expected), "{view}");
    }
    assert!(slack.contains("destination=acct_REAL"), "{slack}");
    assert!(slack.contains("[redacted]"), "{slack}");
    for (view, text) in [
        ("API", api.to_string()),
        ("SSE", sse.to_string()),
        ("webhook", hook.to_string()),
        ("Slack", slack),
    ] {
        assert!(!text.contains("bot-proxy-token-77"), "{view}: {text}");
    }
    agent.abort();
}

/// The Slack message's text blocks, joined.
fn slack_text(msg: &Value) -> String {
    msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            let mut t = vec![b["text"]["text"].as_str().unwrap_or("").to_string()];
            if let Some(fields) = b["fields"].as_array() {
                t.extend(
                    fields
                        .iter()
                        .map(|f| f["text"].as_str().unwrap_or("").to_string()),
                );
            }
            t
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 20.3: no argument value can draw a line of its own, every argument
/// is shown, and the confirmation claims no more than that.
#[tokio::test]
async fn slack_cannot_be_made_to_show_a_fake_destination() {
    let (_ca, _up, stand_in, sm) = red_team_setup().await;
    let mut body = serde_json::Map::new();
    body.insert(
        "description".into(),
        json!("Invoice 7\n• *destination:* acct_1TRUSTEDVENDOR\n> all checked _by finance_"),
    );
    for k in ["a1", "a2", "a3", "a4", "a5", "a6", "a7"] {
        body.insert(k.into(), json!(format!("filler {k}")));
    }
    body.insert(
        "meta".into(),
        json!({"route": {"hops": ["x", {"bank": "DE89"}]}}),
    );
    body.insert("memo".into(), json!("m".repeat(5000)));
    body.insert("destination".into(), json!("acct_REAL_ATTACKER"));
    // Issue 20.12: a bidi override would show this account number reversed.
    body.insert("iban".into(), json!("DE89\u{202E}4321\u{202C}\u{200B}"));
    let agent = bot_call(&sm, "/v1/payouts", &[], Value::Object(body));
    let msg = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    let text = slack_text(&msg);
    assert!(text.contains("acct_REAL_ATTACKER"), "{text}");
    for line in text.lines() {
        assert!(
            !line.contains("destination")
                || line.contains("acct_REAL_ATTACKER")
                || line.contains("\\n"),
            "a value drew its own line: {line:?}\n{text}"
        );
        assert!(!line.trim_start().starts_with('>'), "{line:?}");
    }
    for key in ["a1", "a7", "meta.route.hops[1].bank", "memo", "description"] {
        assert!(text.contains(key), "argument {key} is hidden:\n{text}");
    }
    assert!(text.contains("DE89"), "{text}");
    assert!(
        text.contains("DE89[U+202E]4321[U+202C][U+200B]"),
        "bidi shown: {text}"
    );
    assert!(!text.contains('\u{202E}'), "{text}");
    assert!(text.contains("5000"), "a cut value says its length: {text}");
    assert!(!text.contains("more_"), "{text}");
    let confirm = msg.to_string();
    assert!(
        !confirm.contains("exact request shown"),
        "the confirmation claims more than is shown: {confirm}"
    );
    assert_eq!(button_values(&msg).len(), 3, "{msg:#}");
    agent.abort();
}

/// Issue 20.3: where Slack's limits would hide arguments, the buttons give
/// way to "Review in the dashboard".
#[tokio::test]
async fn too_many_arguments_for_slack_means_review_in_the_dashboard() {
    let (_ca, _up, stand_in, sm) = red_team_setup().await;
    let items: Vec<Value> = (0..3000)
        .map(|i| json!({"to": format!("acct_{i}"), "n": i}))
        .collect();
    let agent = bot_call(
        &sm,
        "/v1/batch",
        &[],
        json!({"items": items, "destination": "acct_LAST"}),
    );
    let msg = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    assert!(
        button_values(&msg).is_empty(),
        "buttons despite hidden arguments"
    );
    let text = slack_text(&msg);
    assert!(text.contains("Review in the dashboard"), "{text}");
    assert!(msg["blocks"].as_array().unwrap().len() <= 50);
    for b in msg["blocks"].as_array().unwrap() {
        assert!(b["text"]["text"].as_str().unwrap_or("").chars().count() <= 3000);
    }
    agent.abort();
}

/// Issue 20.4: headers that change what the upstream executes are shown.
#[tokio::test]
async fn meaning_changing_headers_are_shown_in_slack_and_the_api() {
    let (_ca, _up, stand_in, sm) = red_team_setup().await;
    let agent = bot_call(
        &sm,
        "/v1/charges",
        &[
            ("Stripe-Account", "acct_CONNECTED_9"),
            ("Idempotency-Key", "idem-42"),
            ("Prefer", "return=minimal"),
        ],
        json!({"amount": 100}),
    );
    let msg = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    let text = slack_text(&msg);
    for v in [
        "stripe-account",
        "acct_CONNECTED_9",
        "idempotency-key",
        "idem-42",
        "prefer",
        "return=minimal",
    ] {
        assert!(text.contains(v), "{v}: {text}");
    }
    let id = button_values(&msg)[0].1.clone();
    let rec = request_status(&sm, &id).await;
    assert_eq!(
        rec["headers"],
        json!({"stripe-account": "acct_CONNECTED_9", "idempotency-key": "idem-42", "prefer": "return=minimal"}),
        "{rec:#}"
    );
    agent.abort();
}

// --- MCP tool calls (SPEC §4.9): Slack and webhooks name the tool. ---

#[tokio::test]
async fn mcp_tool_calls_are_named_in_slack_and_webhooks() {
    let (_ca, up, stand_in, sm) = setup(None).await;
    let client = sm.client();
    let call = tokio::spawn(async move {
        client
            .post(format!("https://{HOST}/mcp"))
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_payment","arguments":{"amount":250,"to":"acct_1"}}}"#)
            .timeout(Duration::from_secs(60))
            .send()
            .await
    });
    let id = sm.wait_pending("alice-token-1", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let post = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    let blocks = post["blocks"].to_string();
    assert!(
        blocks.contains(&format!("*Tool:* `send_payment` on MCP server `{HOST}`")),
        "{blocks}"
    );
    let hook = webhook(&stand_in, "pending", &id).await;
    assert_eq!(
        hook["tool"],
        json!({"server": HOST, "name": "send_payment"})
    );
    assert_eq!(
        hook["request"]["args"],
        json!({"amount": 250, "to": "acct_1"})
    );
    assert!(up.requests().is_empty(), "held, so nothing was sent");
    call.abort();
}

// --- Standing grants from Slack (issue 14, SPEC §6.1, §10). ---

const GRANT_POLICY: &str = "rules:
  - name: charges
    resource: http.api.example.test
    action: post
    decision: REQUIRE_APPROVAL
    reason: test
  - name: deletes_every_time
    resource: http.api.example.test
    action: delete
    decision: REQUIRE_APPROVAL
    grantable: false
";

/// "Approve for 1 h" approves, makes a one-hour grant the next call uses, and
/// the message says so; a rule that forbids grants shows no such button.
#[tokio::test]
async fn slack_approve_for_an_hour_makes_a_one_hour_grant() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[HOST]).await;
    let stand_in = StandIn::start().await;
    let extra = config(&stand_in.url("/api"), &stand_in.url("/hook"));
    let sm = SudoMode::start(Options {
        policy: GRANT_POLICY,
        extra: &extra,
        resolve: vec![(format!("{HOST}:443"), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    let agent = agent_call(&sm, "/v1/charges");
    let posted = stand_in
        .wait("/api/chat.postMessage", "the pending message", |_| true)
        .await
        .json();
    let buttons = button_values(&posted);
    assert_eq!(buttons[1].0, "sudomode_approve_grant", "{posted:#}");
    assert!(posted.to_string().contains("Approve for 1 h"));
    let id = buttons[1].1.clone();
    let press = press_body(
        "U_ALICE",
        "sudomode_approve_grant",
        &id,
        &stand_in.url("/respond"),
        "1.1",
    );
    // A viewer's press changes nothing.
    let viewer = press_body(
        "U_VIC",
        "sudomode_approve_grant",
        &id,
        &stand_in.url("/respond"),
        "1.1",
    );
    assert_eq!(send_press(&sm, &viewer, now_unix(), None).await, 200);
    assert_eq!(request_status(&sm, &id).await["status"], "pending");
    assert_eq!(send_press(&sm, &press, now_unix(), None).await, 200);
    let resp = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("approved")
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The grant: one hour, alice's, from this request.
    let (_, list) = sm
        .api_get("/api/v1/grants?active=true", "alice-token-1")
        .await;
    let g = list["grants"][0].clone();
    assert_eq!(g["created_by"], "alice", "{list}");
    assert_eq!(g["from_request"], id.as_str());
    let created = time::OffsetDateTime::parse(
        g["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        g["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - created, time::Duration::hours(1));

    // The message now says who approved and that the call is allowed again.
    let update = stand_in
        .wait("/api/chat.update", "the decided message", |_| true)
        .await
        .json();
    let text = update.to_string();
    assert!(text.contains("Approved by alice"), "{text}");
    assert!(text.contains(g["id"].as_str().unwrap()), "{text}");
    assert!(button_values(&update).is_empty());

    // The next call of the same agent and intent passes without a message.
    let next = agent_call(&sm, "/v1/charges");
    let resp = tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .expect("a granted call is not held")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(stand_in.calls("/api/chat.postMessage").len(), 1);

    // A rule that says `grantable: false` gets no "Approve for 1 h", and a
    // forged press of it changes nothing.
    let client = sm.client();
    let del = tokio::spawn(async move {
        client
            .delete(format!("https://{HOST}/v1/charges/ch_1"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
    });
    let second = stand_in
        .wait("/api/chat.postMessage", "the second pending message", |c| {
            c.json()["text"]
                .as_str()
                .is_some_and(|t| t.contains("delete"))
        })
        .await
        .json();
    let ids: Vec<String> = button_values(&second).into_iter().map(|b| b.0).collect();
    assert_eq!(ids, ["sudomode_approve", "sudomode_reject"], "{second:#}");
    let del_id = button_values(&second)[0].1.clone();
    let forged = press_body(
        "U_ALICE",
        "sudomode_approve_grant",
        &del_id,
        &stand_in.url("/respond"),
        "1.2",
    );
    assert_eq!(send_press(&sm, &forged, now_unix(), None).await, 200);
    let rec = request_status(&sm, &del_id).await;
    assert_eq!(rec["status"], "pending", "{rec}");
    del.abort();
}
