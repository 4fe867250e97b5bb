//! Every request ends (SPEC §6): whatever happens — the agent gives up while
//! the upstream is slow, leaves while an approved call is being forwarded, or
//! SudoMode shuts down with a call in flight — an allowed or approved request
//! reaches a final status with its audit event, and the chain verifies.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"
rules:
  - name: charges_need_a_human
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
    reason: money movement
  - name: everything_else
    resource: "*"
    decision: ALLOW
    reason: test
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
agents:
  - {name: bot, token: bot-token-1}
";

const TOKEN: &str = "alice-token-1";

fn bot(sm: &SudoMode, timeout: Duration) -> reqwest::Client {
    agent_client_timeout(sm, "bot", "bot-token-1", timeout)
}

/// The newest request's record, once its status is no longer `from`.
async fn wait_status_change(sm: &SudoMode, id: Option<&str>, from: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = match id {
            Some(id) => sm.api_get(&format!("/api/v1/requests/{id}"), TOKEN).await.1,
            None => {
                let (_, v) = sm.api_get("/api/v1/requests?limit=1", TOKEN).await;
                v["requests"][0].clone()
            }
        };
        let status = r["status"].as_str().unwrap_or("");
        if !status.is_empty() && !from.contains(&status) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status}: {r}\n{}",
            sm.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn event_types(sm: &SudoMode, id: &str) -> Vec<String> {
    let (_, r) = sm.api_get(&format!("/api/v1/requests/{id}"), TOKEN).await;
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_allowed_call_whose_agent_gives_up_on_a_slow_upstream_ends() {
    let (_ca, up, sm) = api_world(POLICY, OPS, &["api.example.com"]).await;
    let err = bot(&sm, Duration::from_millis(700))
        .get("https://api.example.com/v1/slow")
        .header("x-stand-in-delay-ms", "4000")
        .send()
        .await
        .expect_err("the agent gives up first");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(up.requests().len(), 1, "the call did go upstream");
    let r = wait_status_change(&sm, None, &["allowed"]).await;
    let id = r["id"].as_str().unwrap();
    assert!(
        ["cancelled", "failed"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    assert!(r["completed_at"].is_string(), "{r}");
    let types = event_types(&sm, id).await;
    assert_eq!(types[0], "request.decided");
    assert!(
        types
            .iter()
            .any(|t| t == "request.cancelled" || t == "request.failed"),
        "{types:?}"
    );
    // Exactly one ending, even once the upstream answers later.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let types = event_types(&sm, id).await;
    let endings = types
        .iter()
        .filter(|t| {
            ["request.cancelled", "request.failed", "request.forwarded"].contains(&t.as_str())
        })
        .count();
    assert_eq!(endings, 1, "{types:?}");
}

#[tokio::test]
async fn an_approved_call_whose_agent_leaves_mid_forward_ends() {
    let (_ca, up, sm) = api_world(POLICY, OPS, &["api.stripe.com"]).await;
    let agent = bot(&sm, Duration::from_secs(4));
    let call = tokio::spawn(
        agent
            .post("https://api.stripe.com/v1/charges")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-stand-in-delay-ms", "10000")
            .body("amount=5000&currency=usd")
            .send(),
    );
    let pending = sm.wait_pending(TOKEN, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let (s, _) = sm
        .api_post(&format!("/api/v1/requests/{id}/approve"), TOKEN, json!({}))
        .await;
    assert_eq!(s, 200);
    // The agent gives up while the approved call is being forwarded.
    assert!(call.await.unwrap().is_err());
    assert_eq!(up.requests().len(), 1, "forwarded once");
    let r = wait_status_change(&sm, Some(&id), &["pending", "approved"]).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    let types = event_types(&sm, &id).await;
    assert_eq!(
        types,
        ["request.decided", "request.approved", "request.cancelled"],
        "{types:?}"
    );
}

#[tokio::test]
async fn a_call_in_flight_at_sigterm_has_ended_after_restart_and_the_chain_verifies() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.example.com"]).await;
    let opts = || Options {
        policy: POLICY,
        extra: OPS,
        resolve: vec![("api.example.com:443".into(), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    };
    let mut sm = SudoMode::start(opts());
    let agent = bot(&sm, Duration::from_secs(60));
    let call = tokio::spawn(
        agent
            .get("https://api.example.com/v1/slow")
            .header("x-stand-in-delay-ms", "60000")
            .send(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while up.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never forwarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, v) = sm.api_get("/api/v1/requests?limit=1", TOKEN).await;
    let id = v["requests"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["requests"][0]["status"], "allowed");

    let status = sm.terminate();
    assert!(status.success(), "clean exit: {status}\n{}", sm.logs());
    assert!(call.await.unwrap().is_err(), "the agent's call was cut");
    let verify = std::process::Command::new(bin())
        .args(["audit", "verify", "-c", "sudomode.yaml"])
        .current_dir(sm.dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    let dir = std::mem::replace(&mut sm.dir, tempfile::tempdir().unwrap());
    drop(sm);
    let sm = SudoMode::start_in(dir, opts());
    let (_, r) = sm.api_get(&format!("/api/v1/requests/{id}"), TOKEN).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    let types: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["request.decided", "request.cancelled"]);
    let (_, v) = sm.api_get("/api/v1/audit/verify", TOKEN).await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn a_call_that_joins_a_pending_one_is_recorded_on_it() {
    let (_ca, _up, sm) = api_world(POLICY, OPS, &["api.stripe.com"]).await;
    let agent = bot(&sm, Duration::from_secs(30));
    let send = || {
        tokio::spawn(
            agent
                .post("https://api.stripe.com/v1/charges")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("amount=7000&currency=usd")
                .send(),
        )
    };
    let first = send();
    let pending = sm.wait_pending(TOKEN, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let second = send();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !event_types(&sm, &id)
        .await
        .contains(&"request.joined".to_string())
    {
        assert!(std::time::Instant::now() < deadline, "join never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = sm
        .api_post(&format!("/api/v1/requests/{id}/reject"), TOKEN, json!({}))
        .await;
    assert_eq!(s, 200);
    for call in [first, second] {
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(
            resp.headers()["x-sudomode-request-id"].to_str().unwrap(),
            id,
            "both calls answer under the held request's id"
        );
    }
}
