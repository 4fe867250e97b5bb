//! Standing grants (SPEC §6.1) through the real binary, proxy and operator
//! API: a granted call passes at once for that agent and intent only; uses,
//! condition, expiry and revocation bound it; a DENY still refuses; rules
//! that forbid grants refuse them; grants survive a restart and concurrent
//! calls never exceed `max_uses`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"
rules:
  - name: no_refunds
    resource: stripe.refunds
    decision: DENY
    reason: refunds go through finance
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
  - name: transfers_every_time
    resource: stripe.transfers
    action: create
    decision: REQUIRE_APPROVAL
    grantable: false
    reason: every transfer is looked at
  - name: sql_writes_need_a_human
    resource: sql
    action: [delete, drop]
    decision: REQUIRE_APPROVAL
  - name: rest
    resource: "*"
    decision: ALLOW
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: bob, token: bob-token-22, role: approver}
  - {name: vic, token: viewer-token-1, role: viewer}
agents:
  - {name: bot, token: bot-token-1}
  - {name: other, token: other-token-1}
";

const ALICE: &str = "alice-token-1";
const STRIPE: &str = "api.stripe.com";
const NEON: &str = "ep-x.us-east-2.aws.neon.tech";

async fn world() -> (TestCa, Upstream, SudoMode) {
    api_world(POLICY, OPS, &[STRIPE, NEON]).await
}

fn bot(sm: &SudoMode) -> reqwest::Client {
    agent_client(sm, "bot", "bot-token-1")
}

/// A Stripe call of `client` in the background: (status, x-sudomode-request-id).
fn stripe(
    client: &reqwest::Client,
    path: &str,
    body: String,
) -> tokio::task::JoinHandle<(u16, String)> {
    let req = client
        .post(format!("https://{STRIPE}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    tokio::spawn(async move {
        let r = req.send().await.expect("agent call");
        let id = r
            .headers()
            .get("x-sudomode-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (r.status().as_u16(), id)
    })
}

fn charge(client: &reqwest::Client, amount: u64) -> tokio::task::JoinHandle<(u16, String)> {
    stripe(
        client,
        "/v1/charges",
        format!("amount={amount}&currency=usd"),
    )
}

/// A call that must pass at once (no operator): its status and record.
async fn passes(sm: &SudoMode, call: tokio::task::JoinHandle<(u16, String)>) -> Value {
    let (status, id) = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("a granted call is not held")
        .unwrap();
    assert_eq!(status, 200, "{}", sm.logs());
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    rec
}

/// A call that must be held: the pending record, after which the call is
/// rejected so it ends.
async fn held(sm: &SudoMode, call: tokio::task::JoinHandle<(u16, String)>, n: usize) -> Value {
    let pending = sm.wait_pending(ALICE, n).await;
    let rec = pending[0].clone();
    assert!(!call.is_finished(), "a held call waits");
    let (s, _) = sm
        .api_post(
            &format!("/api/v1/requests/{}/reject", rec["id"].as_str().unwrap()),
            ALICE,
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(call.await.unwrap().0, 403);
    rec
}

async fn approve(sm: &SudoMode, id: &str, body: Value) -> (u16, Value) {
    sm.api_post(&format!("/api/v1/requests/{id}/approve"), ALICE, body)
        .await
}

async fn create_grant(sm: &SudoMode, body: Value) -> Value {
    let (s, g) = sm.api_post("/api/v1/grants", ALICE, body).await;
    assert_eq!(s, 201, "{g}");
    g
}

#[tokio::test]
async fn approving_with_a_grant_lets_that_agent_and_intent_through_only() {
    let (_ca, up, sm) = world().await;
    let bot = bot(&sm);
    let first = charge(&bot, 5000);
    let id = sm.wait_pending(ALICE, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, approved) = approve(
        &sm,
        &id,
        json!({"reason": "routine", "grant": {"for": "1h", "max_uses": 5}}),
    )
    .await;
    assert_eq!(s, 200, "{approved}");
    let grant = &approved["grant"];
    assert_eq!(grant["agent"], "bot");
    assert_eq!(grant["resource"], "stripe.charges");
    assert_eq!(grant["action"], "create");
    assert_eq!(grant["created_by"], "alice");
    assert_eq!(grant["from_request"], id.as_str());
    assert_eq!(grant["max_uses"], 5);
    assert_eq!(grant["uses"], 0);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(approved["approvals"][0]["grant"], grant["id"]);

    // The next charge of the same agent (other arguments: not a retry) passes at once.
    let rec = passes(&sm, charge(&bot, 1234)).await;
    assert_eq!(rec["decision"], "ALLOW");
    assert_eq!(rec["rule"], "charges_need_a_human");
    assert_eq!(rec["grant_id"], grant["id"]);
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains(grant["id"].as_str().unwrap()) && reason.contains("alice"),
        "{reason}"
    );
    let decided = rec["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "request.decided")
        .unwrap();
    assert_eq!(decided["grant_id"], grant["id"]);
    assert_eq!(decided["decision"], "ALLOW");
    assert_eq!(up.requests().len(), 2);

    // Another agent, and another intent of the same agent, are still held.
    let other = agent_client(&sm, "other", "other-token-1");
    held(&sm, charge(&other, 1234), 1).await;
    held(
        &sm,
        stripe(&bot, "/v1/transfers", "amount=5&currency=usd".into()),
        1,
    )
    .await;
    let (_, list) = sm.api_get("/api/v1/grants?active=true", ALICE).await;
    let g = &list["grants"][0];
    assert_eq!(g["uses"], 1, "{list}");
    assert_eq!(g["active"], true);

    // The creation is in the audit, on the approved request's trail.
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert!(
        event_types(&rec).contains(&"grant.created".to_string()),
        "{rec}"
    );
}

#[tokio::test]
async fn uses_condition_expiry_and_revocation_each_bound_a_grant() {
    let (_ca, up, sm) = world().await;
    let bot = bot(&sm);
    let g = create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h",
               "max_uses": 2, "condition": "args.amount <= 1000", "reason": "small charges today"}),
    )
    .await;
    assert_eq!(g["condition"], "args.amount <= 1000");
    assert!(g["from_request"].is_null());
    assert!(g["revoked_at"].is_null());
    passes(&sm, charge(&bot, 500)).await;
    // The condition does not hold: held, and no use is counted.
    held(&sm, charge(&bot, 5000), 1).await;
    passes(&sm, charge(&bot, 700)).await;
    // Both uses spent.
    held(&sm, charge(&bot, 800), 1).await;
    assert_eq!(up.requests().len(), 2);
    let (_, past) = sm.api_get("/api/v1/grants?active=false", ALICE).await;
    assert_eq!(past["grants"][0]["id"], g["id"], "{past}");
    assert_eq!(past["grants"][0]["uses"], 2);

    // Expiry.
    let short = create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "2s"}),
    )
    .await;
    passes(&sm, charge(&bot, 900)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    held(&sm, charge(&bot, 901), 1).await;
    let (_, active) = sm.api_get("/api/v1/grants?active=true", ALICE).await;
    assert!(
        active["grants"].as_array().unwrap().is_empty(),
        "{active} (expired {short})"
    );

    // Revocation.
    let g = create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h"}),
    )
    .await;
    let gid = g["id"].as_str().unwrap();
    passes(&sm, charge(&bot, 902)).await;
    let r = sm
        .api()
        .delete(sm.dashboard_url(&format!("/api/v1/grants/{gid}")))
        .bearer_auth("bob-token-22")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked: Value = r.json().await.unwrap();
    assert_eq!(revoked["revoked_by"], "bob");
    assert!(revoked["revoked_at"].is_string());
    held(&sm, charge(&bot, 903), 1).await;
    let (_, audit) = sm.api_get("/api/v1/audit?limit=1000", ALICE).await;
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "grant.created").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "grant.revoked").count(), 1);
    let (_, verify) = sm.api_get("/api/v1/audit/verify", ALICE).await;
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn grants_never_loosen_a_deny_or_a_rule_that_forbids_them() {
    let (_ca, up, sm) = world().await;
    let bot = bot(&sm);
    // A grant for a denied intent does not make it pass.
    create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.refunds", "action": "create", "for": "1h"}),
    )
    .await;
    let (s, _) = stripe(&bot, "/v1/refunds", "charge=ch_1&amount=5".into())
        .await
        .unwrap();
    assert_eq!(s, 403);
    // A grant for a non-grantable rule's intent does not apply either.
    create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.transfers", "action": "create", "for": "1h"}),
    )
    .await;
    let transfer = stripe(&bot, "/v1/transfers", "amount=5&currency=usd".into());
    let pending = sm.wait_pending(ALICE, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert_ne!(pending[0]["grantable"], true);
    // … and approving it with a grant is a conflict; it stays pending.
    let (s, e) = approve(&sm, &id, json!({"grant": {"for": "1h"}})).await;
    assert_eq!(s, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("transfers_every_time"),
        "{e}"
    );
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert_eq!(rec["status"], "pending");
    assert_eq!(approve(&sm, &id, json!({})).await.0, 200);
    assert_eq!(transfer.await.unwrap().0, 200);

    // Two approvers: no grant either.
    let payout = stripe(&bot, "/v1/payouts", "amount=5&currency=usd".into());
    let id = sm.wait_pending(ALICE, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, e) = approve(&sm, &id, json!({"grant": {"for": "15m"}})).await;
    assert_eq!(s, 409, "{e}");
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert_eq!(rec["status"], "pending");
    assert!(rec["approvals"].as_array().unwrap().is_empty());

    // Bad bodies are refused, never half-read.
    for (body, needle) in [
        (json!({"grant": {"for": "8d"}}), "7 days"),
        (
            json!({"grant": {"for": "1h", "condition": "args.amount >"}}),
            "condition",
        ),
        (json!({"grant": {"for": "1h", "max_uses": 0}}), "max_uses"),
        (json!({"grant": {"for": "1h", "max_use": 3}}), "max_use"),
        (json!({"grnat": {"for": "1h"}}), "grnat"),
    ] {
        let (s, e) = approve(&sm, &id, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    for body in [
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h", "extra": 1}),
        json!({"agent": "nobody", "resource": "stripe.charges", "action": "create", "for": "1h"}),
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h", "condition": "nope == 1"}),
        json!({"agent": "bot", "resource": "stripe.charges", "for": "1h"}),
    ] {
        let (s, e) = sm.api_post("/api/v1/grants", ALICE, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
    }
    // Viewers read grants but cannot make or revoke them.
    let (s, _) = sm
        .api_post(
            "/api/v1/grants",
            "viewer-token-1",
            json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, list) = sm.api_get("/api/v1/grants", "viewer-token-1").await;
    assert_eq!(s, 200);
    assert_eq!(list["grants"].as_array().unwrap().len(), 2);
    let gid = list["grants"][0]["id"].as_str().unwrap().to_string();
    let r = sm
        .api()
        .delete(sm.dashboard_url(&format!("/api/v1/grants/{gid}")))
        .bearer_auth("viewer-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = sm
        .api()
        .delete(sm.dashboard_url("/api/v1/grants/no-such-grant"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, rec) = approve(&sm, &id, json!({})).await;
    assert_eq!(
        (s, rec["status"].as_str()),
        (200, Some("pending")),
        "one of two"
    );
    let (s, _) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/reject"),
            "bob-token-22",
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(payout.await.unwrap().0, 403);
    assert_eq!(up.requests().len(), 1, "only the approved transfer");
}

#[tokio::test]
async fn grants_survive_a_restart() {
    let (ca, up, sm) = world().await;
    create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h", "max_uses": 2}),
    )
    .await;
    passes(&sm, charge(&bot(&sm), 100)).await;
    let sm = sm.restart(Options {
        policy: POLICY,
        extra: OPS,
        resolve: vec![
            (format!("{STRIPE}:443"), up.addr),
            (format!("{NEON}:443"), up.addr),
        ],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    let bot = bot(&sm);
    let rec = passes(&sm, charge(&bot, 101)).await;
    assert_eq!(rec["decision"], "ALLOW");
    held(&sm, charge(&bot, 102), 1).await;
}

#[tokio::test]
async fn concurrent_calls_never_exceed_max_uses() {
    let (_ca, up, sm) = world().await;
    create_grant(
        &sm,
        json!({"agent": "bot", "resource": "stripe.charges", "action": "create", "for": "1h", "max_uses": 3}),
    )
    .await;
    let bot = bot(&sm);
    let calls: Vec<_> = (0..8).map(|i| charge(&bot, 100 + i)).collect();
    // Five are held; three went through.
    let pending = sm.wait_pending(ALICE, 5).await;
    assert_eq!(pending.len(), 5);
    for p in &pending {
        let id = p["id"].as_str().unwrap();
        assert_eq!(
            sm.api_post(&format!("/api/v1/requests/{id}/reject"), ALICE, json!({}))
                .await
                .0,
            200
        );
    }
    let mut passed = 0;
    for c in calls {
        if c.await.unwrap().0 == 200 {
            passed += 1;
        }
    }
    assert_eq!(passed, 3);
    assert_eq!(up.requests().len(), 3);
    let (_, list) = sm.api_get("/api/v1/grants", ALICE).await;
    assert_eq!(list["grants"][0]["uses"], 3);
}

fn sql(sm: &SudoMode, query: &str) -> tokio::task::JoinHandle<(u16, String)> {
    let req = bot(sm)
        .post(format!("https://{NEON}/sql"))
        .header("content-type", "application/json")
        .body(json!({"query": query, "params": []}).to_string());
    tokio::spawn(async move {
        let r = req.send().await.expect("agent call");
        let id = r
            .headers()
            .get("x-sudomode-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (r.status().as_u16(), id)
    })
}

#[tokio::test]
async fn a_request_with_several_intents_needs_a_grant_for_each() {
    let (_ca, _up, sm) = world().await;
    let q = "DELETE FROM sessions WHERE id = 1; DROP TABLE scratch";
    create_grant(
        &sm,
        json!({"agent": "bot", "resource": "sql", "action": "delete", "for": "1h"}),
    )
    .await;
    held(&sm, sql(&sm, q), 1).await;
    let drop = create_grant(
        &sm,
        json!({"agent": "bot", "resource": "sql", "action": "drop", "for": "1h"}),
    )
    .await;
    let rec = passes(&sm, sql(&sm, q)).await;
    assert_eq!(rec["decision"], "ALLOW");
    assert!(rec["grant_id"].is_string(), "{rec}");
    let decided = rec["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "request.decided")
        .unwrap()
        .clone();
    let used: Vec<&str> = decided["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(used.len(), 2, "{decided}");
    assert!(used.contains(&drop["id"].as_str().unwrap()));
    // Both grants counted one use.
    let (_, list) = sm.api_get("/api/v1/grants", ALICE).await;
    for g in list["grants"].as_array().unwrap() {
        assert_eq!(g["uses"], 1, "{g}");
    }
}
