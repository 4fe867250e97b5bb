//! Operator API, sessions, SSE, the embedded UI and explicit intents
//! (SPEC §8, §9, §13.3–4), against the real binary.

mod common;

use std::time::Duration;

use common::{Options, SudoMode, error_body};
use futures_util::StreamExt;
use serde_json::{Value, json};

const POLICY: &str = r#"rules:
  - name: shell_needs_approval
    resource: shell
    action: exec
    decision: REQUIRE_APPROVAL
    reason: shell commands need a human
  - name: no_file_deletes
    resource: file
    action: delete
    decision: DENY
    reason: deleting files is not allowed
  - name: allow_rest
    resource: "*"
    decision: ALLOW
    reason: everything else is fine
"#;

const EXTRA: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: vic, token: viewer-token-1, role: viewer}
  - {name: ada, token: admin-token-1, role: admin}
agents:
  - {name: bot, token: bot-token-1}
  - {name: other, token: other-token-1}
";

const ALICE: &str = "alice-token-1";
const VIEWER: &str = "viewer-token-1";
const BOT: &str = "bot-token-1";

fn start() -> SudoMode {
    SudoMode::start(Options {
        policy: POLICY,
        extra: EXTRA,
        ..Default::default()
    })
}

async fn get(sm: &SudoMode, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut rb = sm.api().get(sm.dashboard_url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap()
}

async fn get_json(sm: &SudoMode, path: &str, token: &str) -> Value {
    let resp = get(sm, path, Some(token)).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

async fn post(sm: &SudoMode, path: &str, token: &str, body: Value) -> reqwest::Response {
    sm.api()
        .post(sm.dashboard_url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `POST /v1/govern` as an agent; returns the decision body.
async fn govern(sm: &SudoMode, token: &str, resource: &str, action: &str, args: Value) -> Value {
    let resp = post(
        sm,
        "/v1/govern",
        token,
        json!({"resource": resource, "action": action, "args": args}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn authentication_and_roles() {
    let sm = start();
    assert_eq!(get(&sm, "/healthz", None).await.status(), 200);
    let metrics = get(&sm, "/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("sudomode_pending_requests 0"), "{metrics}");

    let (status, body) = error_body(get(&sm, "/api/v1/requests", None).await).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(
        get(&sm, "/api/v1/requests", Some("wrong-token"))
            .await
            .status(),
        401
    );
    let (status, body) = error_body(get(&sm, "/api/v1/requests", Some(BOT)).await).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent tokens"),
        "{body}"
    );
    assert_eq!(
        get(&sm, "/api/v1/requests", Some(VIEWER)).await.status(),
        200
    );

    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "rm -rf /tmp/x"})).await;
    assert_eq!(held["status"], "REQUIRE_APPROVAL");
    let id = held["request_id"].as_str().unwrap();
    let metrics = get(&sm, "/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("sudomode_pending_requests 1"), "{metrics}");
    // The held call's record reached the store: a durable commit carried its event.
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let commits = counter("sudomode_store_commits_total");
    let durable = counter("sudomode_store_durable_commits_total");
    assert!(durable >= 1 && durable <= commits, "{metrics}");
    assert!(counter("sudomode_store_events_total") >= 1, "{metrics}");

    // Viewers read but cannot decide; agents cannot approve (SPEC §13.3).
    let (status, body) = error_body(
        post(
            &sm,
            &format!("/api/v1/requests/{id}/approve"),
            VIEWER,
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        post(&sm, &format!("/v1/requests/{id}/approve"), BOT, json!({}))
            .await
            .status(),
        403
    );
    assert_eq!(
        post(
            &sm,
            &format!("/api/v1/requests/{id}/reject"),
            BOT,
            json!({})
        )
        .await
        .status(),
        403
    );
    let still = get_json(&sm, &format!("/api/v1/requests/{id}"), VIEWER).await;
    assert_eq!(still["status"], "pending");
    assert!(still.get("retry_key").is_none());
    assert_eq!(
        post(&sm, "/api/v1/requests/nope/approve", ALICE, json!({}))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&sm, "/api/v1/requests/nope", Some(VIEWER))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&sm, "/api/v1/nothing-here", Some(VIEWER))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn explicit_intents_flow() {
    let sm = start();
    // Held: the agent polls its own request, upper-case status.
    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "make deploy"})).await;
    assert_eq!(held["status"], "REQUIRE_APPROVAL");
    assert_eq!(held["reason"], "shell commands need a human");
    let id = held["request_id"].as_str().unwrap().to_string();
    let mine = get_json(&sm, &format!("/v1/requests/{id}"), BOT).await;
    assert_eq!(mine["status"], "PENDING");
    assert_eq!(mine["resource"], "shell");
    assert_eq!(mine["args"]["cmd"], "make deploy");
    assert_eq!(
        get(&sm, &format!("/v1/requests/{id}"), Some("other-token-1"))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&sm, &format!("/v1/requests/{id}"), None).await.status(),
        401
    );
    // An identical ask joins the pending one.
    let again = govern(&sm, BOT, "shell", "exec", json!({"cmd": "make deploy"})).await;
    assert_eq!(again["request_id"], id.as_str());

    // Operators see the /api/v1 view through the alias too.
    let op_view = get_json(&sm, &format!("/v1/requests/{id}"), ALICE).await;
    assert_eq!(op_view["status"], "pending");
    assert!(
        op_view["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "request.decided")
    );

    let resp = post(
        &sm,
        &format!("/api/v1/requests/{id}/approve"),
        ALICE,
        json!({"reason": "looks fine"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let approved: Value = resp.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"][0]["operator"], "alice");
    assert_eq!(approved["approvals"][0]["reason"], "looks fine");
    let (status, body) = error_body(
        post(
            &sm,
            &format!("/api/v1/requests/{id}/approve"),
            ALICE,
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (409, Some("conflict"))
    );
    assert_eq!(
        get_json(&sm, &format!("/v1/requests/{id}"), BOT).await["status"],
        "APPROVED"
    );

    // Reject through the /v1 alias, with an empty body.
    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "reboot"})).await;
    let rid = held["request_id"].as_str().unwrap();
    let resp = sm
        .api()
        .post(sm.dashboard_url(&format!("/v1/requests/{rid}/reject")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        get_json(&sm, &format!("/v1/requests/{rid}"), BOT).await["status"],
        "REJECTED"
    );
    assert_eq!(
        get_json(&sm, &format!("/api/v1/requests/{rid}"), VIEWER).await["rejected_by"],
        "alice"
    );

    let denied = govern(&sm, BOT, "file", "delete", json!({"path": "/etc/passwd"})).await;
    assert_eq!(denied["status"], "DENY");
    assert_eq!(
        get_json(
            &sm,
            &format!("/v1/requests/{}", denied["request_id"].as_str().unwrap()),
            BOT
        )
        .await["status"],
        "DENIED"
    );
    assert_eq!(
        govern(&sm, BOT, "file", "read", json!({})).await["status"],
        "ALLOW"
    );

    // Bad input and wrong credentials.
    assert_eq!(
        post(&sm, "/v1/govern", BOT, json!({"resource": "shell"}))
            .await
            .status(),
        400
    );
    assert_eq!(
        post(
            &sm,
            "/v1/govern",
            BOT,
            json!({"resource": "a", "action": "b", "args": [1]})
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        post(
            &sm,
            "/v1/govern",
            "nope",
            json!({"resource": "a", "action": "b"})
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        post(
            &sm,
            "/v1/govern",
            ALICE,
            json!({"resource": "a", "action": "b"})
        )
        .await
        .status(),
        403
    );

    // The whole story is in a verifiable audit log.
    let verify = get_json(&sm, "/api/v1/audit/verify", VIEWER).await;
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["events"].as_u64().unwrap() >= 8, "{verify}");
    assert_eq!(verify["head_hash"].as_str().unwrap().len(), 64);
    let page = get_json(&sm, "/api/v1/audit?after_seq=0&limit=3", VIEWER).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    assert_eq!(page["events"][0]["seq"], 1);
    let resp = get(&sm, "/api/v1/audit/export", Some(VIEWER)).await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    assert_eq!(
        text.lines().count() as u64,
        verify["events"].as_u64().unwrap()
    );
    assert!(text.contains("request.approved"));
}

#[tokio::test]
async fn list_filters_and_paging() {
    let sm = start();
    for i in 0..5 {
        govern(&sm, BOT, "file", "read", json!({"n": i})).await;
    }
    govern(&sm, "other-token-1", "file", "delete", json!({})).await;
    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "ls"})).await;

    let all = get_json(&sm, "/api/v1/requests", VIEWER).await;
    let reqs = all["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 7);
    assert_eq!(reqs[0]["id"], held["request_id"], "newest first");
    assert!(all["next_cursor"].is_null());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/requests?limit=3&cursor={c}"),
            None => "/api/v1/requests?limit=3".to_string(),
        };
        let page = get_json(&sm, &path, VIEWER).await;
        let ids: Vec<String> = page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.len() <= 3);
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = reqs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected);

    let count = |v: Value| v["requests"].as_array().unwrap().len();
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?status=pending", VIEWER).await),
        1
    );
    assert_eq!(
        count(get_json(&sm, "/v1/requests?status=PENDING", VIEWER).await),
        1
    );
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?decision=DENY", VIEWER).await),
        1
    );
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?agent=other", VIEWER).await),
        1
    );
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?resource=file&action=read", VIEWER).await),
        5
    );
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?since=2000-01-01T00:00:00Z", VIEWER).await),
        7
    );
    assert_eq!(
        count(get_json(&sm, "/api/v1/requests?until=2000-01-01T00:00:00Z", VIEWER).await),
        0
    );
    for bad in [
        "status=bogus",
        "since=yesterday",
        "limit=0",
        "limit=501",
        "limit=x",
        "decision=MAYBE",
    ] {
        let (status, body) =
            error_body(get(&sm, &format!("/api/v1/requests?{bad}"), Some(VIEWER)).await).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }

    let stats = get_json(&sm, "/api/v1/stats", VIEWER).await;
    assert_eq!(
        stats["by_decision"],
        json!({"ALLOW": 5, "DENY": 1, "REQUIRE_APPROVAL": 1})
    );
    assert_eq!(stats["pending"], 1);
    let policy = get_json(&sm, "/api/v1/policy", VIEWER).await;
    assert_eq!(policy["version"].as_str().unwrap().len(), 64);
    assert!(policy["last_error"].is_null());
    assert_eq!(policy["rules"][0]["name"], "shell_needs_approval");
    assert!(policy["loaded_at"].is_string());
}

#[tokio::test]
async fn sse_delivers_request_changes() {
    let sm = start();
    let resp = get(&sm, "/api/v1/events", Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "uptime"})).await;
    let id = held["request_id"].as_str().unwrap();
    let mut buf = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if buf.contains("event: request") && buf.contains(id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{buf}");
    let data = buf
        .lines()
        .find(|l| l.starts_with("data:") && l.contains(id))
        .unwrap();
    let req: Value = serde_json::from_str(data.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(req["status"], "pending");
    assert!(req.get("retry_key").is_none());
    assert_eq!(get(&sm, "/api/v1/events", Some(BOT)).await.status(), 403);
    assert_eq!(get(&sm, "/api/v1/events", None).await.status(), 401);
}

/// The dashboard's sign-in: an operator token for a session token the page
/// sends as a bearer token (SPEC §8); no cookie is set or honoured.
#[tokio::test]
async fn session_tokens() {
    let sm = start();
    let url = sm.dashboard_url("/api/v1/session");
    let c = sm.api();
    assert_eq!(
        c.post(&url)
            .json(&json!({"token": BOT}))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.post(&url)
            .json(&json!({"token": "nope"}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    // A foreign page cannot sign the browser in (login CSRF).
    assert_eq!(
        c.post(&url)
            .header("Origin", "https://evil.example")
            .json(&json!({"token": ALICE}))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let resp = c
        .post(&url)
        .json(&json!({"token": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none(), "no cookie");
    let login: Value = resp.json().await.unwrap();
    assert_eq!(
        login["operator"],
        json!({"name": "alice", "role": "approver"})
    );
    let session = login["session_token"].as_str().unwrap().to_string();
    assert_eq!(session.len(), 64, "{login}");
    assert!(login.get("csrf_token").is_none(), "{login}");

    let who = get_json(&sm, "/api/v1/session", &session).await;
    assert_eq!(who["operator"]["name"], "alice");

    let held = govern(&sm, BOT, "shell", "exec", json!({"cmd": "id"})).await;
    let approve = format!(
        "/api/v1/requests/{}/approve",
        held["request_id"].as_str().unwrap()
    );
    let resp = post(&sm, &approve, &session, json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["approvals"][0]["operator"],
        "alice"
    );

    let out = c.delete(&url).bearer_auth(&session).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(
        get(&sm, "/api/v1/session", Some(&session)).await.status(),
        401
    );
    // Signing out with an operator token ends nothing and is harmless.
    let out = c.delete(&url).bearer_auth(ALICE).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(get(&sm, "/api/v1/session", Some(ALICE)).await.status(), 200);
}

#[tokio::test]
async fn ui_is_embedded_with_strict_headers() {
    let sm = start();
    let resp = get(&sm, "/", None).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(resp.text().await.unwrap().contains("/assets/app.js"));

    for (path, ctype) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/views/pending.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let resp = get(&sm, path, None).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ctype),
            "{path}"
        );
        assert!(
            resp.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }
    assert_eq!(get(&sm, "/assets/nope.js", None).await.status(), 404);
    assert_eq!(get(&sm, "/assets/../Cargo.toml", None).await.status(), 404);
    let api = get(&sm, "/api/v1/stats", None).await;
    assert!(api.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn open_mode_govern_from_loopback() {
    // No agents: loopback callers are the `default` agent (SPEC §3, §8).
    let extra = "operators:\n  - {name: alice, token: alice-token-1, role: approver}\n";
    let sm = SudoMode::start(Options {
        policy: POLICY,
        extra,
        ..Default::default()
    });
    let resp = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .json(&json!({"resource": "shell", "action": "exec", "args": {"cmd": "date"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let held: Value = resp.json().await.unwrap();
    assert_eq!(held["status"], "REQUIRE_APPROVAL");
    let id = held["request_id"].as_str().unwrap();
    let mine: Value = get(&sm, &format!("/v1/requests/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (mine["status"].as_str(), mine["agent"].as_str()),
        (Some("PENDING"), Some("default"))
    );
    // Operator routes still need an operator.
    let approve = sm.dashboard_url(&format!("/v1/requests/{id}/approve"));
    assert_eq!(sm.api().post(&approve).send().await.unwrap().status(), 401);
    assert_eq!(get(&sm, "/api/v1/requests", None).await.status(), 401);
    // A web page cannot use the loopback exemption through a browser.
    let resp = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .header("Origin", "https://evil.example")
        .json(&json!({"resource": "shell", "action": "exec"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

// Open SSE streams must not hold up shutdown.
#[tokio::test]
async fn sigterm_with_an_open_event_stream_exits_promptly() {
    let mut sm = start();
    let resp = get(&sm, "/api/v1/events", Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = sm.terminate();
        (s, sm)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(resp);
}
