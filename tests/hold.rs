//! Hold and approve through the real proxy and operator API (SPEC §6, §8).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const POLICY: &str = r#"
rules:
  - name: charges_need_a_human
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
    reason: money movement
  - name: payouts_need_two
    resource: stripe.payouts
    action: create
    decision: REQUIRE_APPROVAL
    approvals: 2
    reason: payouts need two people
  - name: refunds_expire_fast
    resource: stripe.refunds
    action: create
    decision: REQUIRE_APPROVAL
    timeout: 1s
    reason: refunds
  - name: read
    resource: "*"
    action: [retrieve, list]
    decision: ALLOW
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: bob, token: bob-token-22, role: approver}
  - {name: vic, token: viewer-token-1, role: viewer}
agents:
  - {name: bot, token: bot-token-1}
hold:
  retry_window: 30s
";

async fn world() -> (TestCa, Upstream, SudoMode) {
    api_world(POLICY, OPS, &["api.stripe.com"]).await
}

fn charge(
    client: &reqwest::Client,
    body: &'static str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let req = client
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    tokio::spawn(req.send())
}

#[tokio::test]
async fn approved_request_is_forwarded_once_with_identical_bytes() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let body = "amount=5000&currency=usd&metadata[order]=7";
    let call = charge(&bot, body);
    let pending = sm.wait_pending("alice-token-1", 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert_eq!(pending[0]["resource"], "stripe.charges");
    assert_eq!(pending[0]["args"]["amount"], 5000);
    assert_eq!(pending[0]["agent"], "bot");
    assert!(
        up.requests().is_empty(),
        "nothing goes upstream before approval"
    );

    let (s, rec) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{rec}");
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sudomode-request-id"], id.as_str());
    let got = up.requests();
    assert_eq!(got.len(), 1, "forwarded exactly once");
    assert_eq!(
        got[0].body,
        body.as_bytes(),
        "the approved bytes, unchanged"
    );

    // A second approve is a conflict; the record shows who approved and the upstream status.
    let (s, _) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/approve"),
            "bob-token-22",
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r2) = sm
            .api_get(&format!("/api/v1/requests/{id}"), "viewer-token-1")
            .await;
        if r2["status"] == "completed" {
            assert_eq!(r2["upstream_status"], 200);
            assert_eq!(r2["approvals"][0]["operator"], "alice");
            let types: Vec<&str> = r2["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap())
                .collect();
            assert!(
                types.starts_with(&["request.decided", "request.approved"]),
                "{types:?}"
            );
            assert!(types.contains(&"request.forwarded"), "{types:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r2}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reject_names_the_operator_and_expiry_answers_expired() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let call = charge(&bot, "amount=100&currency=usd");
    let id = sm.wait_pending("alice-token-1", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/reject"),
            "bob-token-22",
            json!({"reason": "not today"}),
        )
        .await;
    assert_eq!(s, 200);
    let (status, body) = error_body(call.await.unwrap().unwrap()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "rejected");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("bob") && msg.contains("not today"), "{msg}");

    let resp = bot
        .post("https://api.stripe.com/v1/refunds")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("charge=ch_1&amount=2500")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "expired");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn two_approvals_need_two_operators_and_roles_are_enforced() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let call = tokio::spawn(
        bot.post("https://api.stripe.com/v1/payouts")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("amount=100000&currency=usd")
            .send(),
    );
    let id = sm.wait_pending("alice-token-1", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/requests/{id}/approve");
    assert_eq!(
        sm.api_post(&path, "viewer-token-1", json!({})).await.0,
        403,
        "viewer cannot approve"
    );
    assert_eq!(
        sm.api_post(&path, "bot-token-1", json!({})).await.0,
        403,
        "agent token refused"
    );
    let r = sm
        .api()
        .post(sm.dashboard_url(&path))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");

    let (s, rec) = sm.api_post(&path, "alice-token-1", json!({})).await;
    assert_eq!((s, rec["status"].as_str()), (200, Some("pending")));
    let (s, rec) = sm.api_post(&path, "alice-token-1", json!({})).await;
    assert_eq!(
        (s, rec["status"].as_str()),
        (200, Some("pending")),
        "the same operator twice counts once"
    );
    assert!(up.requests().is_empty());
    let (s, rec) = sm.api_post(&path, "bob-token-22", json!({})).await;
    assert_eq!(
        (s, rec["status"].as_str()),
        (200, Some("approved")),
        "{rec}"
    );
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn disconnect_then_identical_retry_goes_through_once() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let body = "amount=777&currency=usd";
    // The agent's SDK gives up (timeout) while the request is held.
    let short = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://bot:bot-token-1@{}", sm.proxy)).unwrap())
        .tls_certs_only([reqwest::Certificate::from_pem(sm.ca_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let first = short
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    assert!(first.is_err(), "the agent timed out");
    // An identical request while pending joins the same record.
    let joined = short
        .post("https://api.stripe.com/v1/charges")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    assert!(joined.is_err());
    let pending = sm.wait_pending("alice-token-1", 1).await;
    assert_eq!(
        pending.len(),
        1,
        "identical pending requests are one record"
    );
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        sm.api_post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({})
        )
        .await
        .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        up.requests().is_empty(),
        "nobody was connected: nothing forwarded yet"
    );

    // The retry is forwarded without a new approval, under the approved id.
    let resp = charge(&bot, body).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sudomode-request-id"], id.as_str());
    assert_eq!(up.requests().len(), 1);
    // A second retry is judged afresh: held again.
    let again = charge(&bot, body);
    let pending = sm.wait_pending("alice-token-1", 1).await;
    assert_ne!(pending[0]["id"].as_str().unwrap(), id);
    assert_eq!(up.requests().len(), 1);
    again.abort();
}

#[tokio::test]
async fn pending_survives_kill_9_and_the_audit_verifies() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.stripe.com"]).await;
    let opts = || Options {
        policy: POLICY,
        extra: OPS,
        resolve: vec![("api.stripe.com:443".into(), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    };
    let mut sm = SudoMode::start(opts());
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let call = charge(&bot, "amount=4242&currency=usd");
    let id = sm.wait_pending("alice-token-1", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    sm.kill9();
    let _ = call.await;
    let dir = std::mem::replace(&mut sm.dir, tempfile::tempdir().unwrap());
    drop(sm);
    let sm = SudoMode::start_in(dir, opts());
    let (s, rec) = sm
        .api_get(&format!("/api/v1/requests/{id}"), "alice-token-1")
        .await;
    assert_eq!(s, 200);
    assert_eq!(rec["status"], "pending", "{rec}");
    let (_, v) = sm.api_get("/api/v1/audit/verify", "alice-token-1").await;
    assert_eq!(v["ok"], true, "{v}");
    // Still approvable; the agent's retry is then forwarded once.
    assert_eq!(
        sm.api_post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({})
        )
        .await
        .0,
        200
    );
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let resp = charge(&bot, "amount=4242&currency=usd")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn credential_headers_never_reach_the_audit() {
    let (_ca, _up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let resp = bot
        .get("https://api.stripe.com/v1/customers/cus_1")
        .header("authorization", "Bearer sk_live_SHOULD_NOT_APPEAR")
        .header("cookie", "session=COOKIE_SHOULD_NOT_APPEAR")
        .header("x-api-key", "APIKEY_SHOULD_NOT_APPEAR")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = sm
        .api()
        .get(sm.dashboard_url("/api/v1/audit/export"))
        .bearer_auth("alice-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("request.decided"), "{text}");
    for secret in ["SHOULD_NOT_APPEAR", "bot-token-1", "alice-token-1"] {
        assert!(!text.contains(secret), "{secret} leaked into the audit");
    }
}

#[tokio::test]
async fn a_looping_agent_is_capped_on_pending_requests() {
    let extra = format!("{OPS}  max_pending_per_agent: 2\n");
    let (_ca, up, sm) = api_world(POLICY, &extra, &["api.stripe.com"]).await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let a = charge(&bot, "amount=1&currency=usd");
    let b = charge(&bot, "amount=2&currency=usd");
    sm.wait_pending("alice-token-1", 2).await;
    let resp = charge(&bot, "amount=3&currency=usd")
        .await
        .unwrap()
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "denied");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("max_pending_per_agent"), "{msg}");
    assert_eq!(
        sm.wait_pending("alice-token-1", 2).await.len(),
        2,
        "the third was not parked"
    );
    assert!(up.requests().is_empty());
    a.abort();
    b.abort();
}
