//! Approve with edits (SPEC §6.2) through the real binary: the edited call is
//! judged again, forwarded exactly once in the body's own format, and the
//! agent learns it was edited; what cannot be edited is refused.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
rules:
  - name: no_huge_charges
    resource: stripe.charges
    condition: args.amount > 100000
    decision: DENY
    reason: far too much
  - name: charges_need_a_human
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
  - name: customer_changes_need_a_human
    resource: stripe.customers
    action: update
    decision: REQUIRE_APPROVAL
  - name: payouts_need_two
    resource: stripe.payouts
    decision: REQUIRE_APPROVAL
    approvals: 2
  - name: sql_deletes
    resource: sql
    action: delete
    decision: REQUIRE_APPROVAL
  - name: api_writes
    resource: http.api.example.com
    action: post
    decision: REQUIRE_APPROVAL
  - name: shell
    resource: shell
    decision: REQUIRE_APPROVAL
  - name: dynamodb_writes
    resource: aws.dynamodb
    decision: REQUIRE_APPROVAL
  - name: rest
    resource: "*"
    decision: ALLOW
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
agents:
  - {name: bot, token: bot-token-1}
hold:
  retry_window: 60s
";

const ALICE: &str = "alice-token-1";
const STRIPE: &str = "api.stripe.com";
const NEON: &str = "ep-x.us-east-2.aws.neon.tech";
const API: &str = "api.example.com";
const DDB: &str = "dynamodb.us-east-1.amazonaws.com";

async fn world() -> (TestCa, Upstream, SudoMode) {
    api_world(POLICY, OPS, &[STRIPE, NEON, API, DDB]).await
}

/// (status, headers, body) of an agent call made in the background.
type Answer = (u16, reqwest::header::HeaderMap, String);

fn call(req: reqwest::RequestBuilder) -> tokio::task::JoinHandle<Answer> {
    tokio::spawn(async move {
        let r = req.send().await.expect("agent call");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap_or_default())
    })
}

fn form_post(client: &reqwest::Client, path: &str, body: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("https://{STRIPE}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
}

async fn pending_id(sm: &SudoMode) -> String {
    sm.wait_pending(ALICE, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn approve(sm: &SudoMode, id: &str, body: Value) -> (u16, Value) {
    sm.api_post(&format!("/api/v1/requests/{id}/approve"), ALICE, body)
        .await
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The raw `key=value` pairs of a form body (untouched pairs keep their bytes).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn an_edited_charge_reaches_upstream_once_with_the_edited_amount() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let agent = call(form_post(
        &bot,
        "/v1/charges",
        "amount=5000&currency=usd&metadata[order]=7&description=refund%20for%20order",
    ));
    let id = pending_id(&sm).await;
    let (s, rec) = approve(
        &sm,
        &id,
        json!({"edits": {"amount": 2500}, "reason": "half is enough"}),
    )
    .await;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["edited"], true);
    assert_eq!(rec["args"]["amount"], 5000, "the proposed args are kept");
    assert_eq!(rec["approved_args"]["amount"], 2500);
    assert_eq!(rec["approved_args"]["metadata"]["order"], 7);

    let (status, headers, _) = agent.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-sudomode-edited"], "true");
    let got = up.requests();
    assert_eq!(got.len(), 1, "forwarded exactly once");
    let pairs = form_pairs(&got[0].body);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("amount"), Some("2500"));
    assert_eq!(get("currency"), Some("usd"));
    assert_eq!(get("metadata[order]"), Some("7"));
    assert_eq!(get("description"), Some("refund%20for%20order"));
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    if let Some(len) = got[0].header("content-length") {
        assert_eq!(len, got[0].body.len().to_string());
    }

    // The approval event carries the patch and the edited body's hash.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let full = loop {
        let (_, r) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
        if r["status"] == "completed" || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(full["status"], "completed", "{full}");
    let ev = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "request.approved")
        .unwrap()
        .clone();
    assert_eq!(ev["edits"], json!({"amount": 2500}));
    assert_eq!(ev["edited_body_sha256"], sha256_hex(&got[0].body));
}

#[tokio::test]
async fn an_edit_the_policy_denies_is_refused_and_the_request_stays_pending() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let body = "amount=5000&currency=usd";
    let agent = call(form_post(&bot, "/v1/charges", body));
    let id = pending_id(&sm).await;
    let (s, e) = approve(&sm, &id, json!({"edits": {"amount": 250000}})).await;
    assert_eq!(s, 409, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no_huge_charges"), "{msg}");
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert_eq!(rec["status"], "pending");
    assert!(rec["approvals"].as_array().unwrap().is_empty());
    assert!(up.requests().is_empty());
    // An unknown field in the body is refused, not ignored.
    let (s, e) = approve(&sm, &id, json!({"edit": {"amount": 1}})).await;
    assert_eq!(s, 400, "{e}");
    // Approved as proposed: the original bytes go.
    assert_eq!(approve(&sm, &id, json!({})).await.0, 200);
    let (status, headers, _) = agent.await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get("x-sudomode-edited").is_none());
    assert_eq!(up.requests()[0].body, body.as_bytes());
}

async fn not_editable(sm: &SudoMode, edits: Value) {
    let id = pending_id(sm).await;
    let (s, e) = approve(sm, &id, json!({ "edits": edits })).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["type"], "not_editable", "{e}");
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert_eq!(rec["status"], "pending");
    let (s, _) = sm
        .api_post(&format!("/api/v1/requests/{id}/reject"), ALICE, json!({}))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn sql_path_parameters_two_approvers_and_explicit_intents_are_not_editable() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");

    let sql = call(
        bot.post(format!("https://{NEON}/sql"))
            .header("content-type", "application/json")
            .body(json!({"query": "DELETE FROM t WHERE id = 1", "params": []}).to_string()),
    );
    not_editable(&sm, json!({"sql": "DELETE FROM t WHERE id = 2"})).await;
    assert_eq!(sql.await.unwrap().0, 403);

    let customer = call(form_post(
        &bot,
        "/v1/customers/cus_1",
        "email=a@example.com",
    ));
    not_editable(&sm, json!({"id": "cus_2"})).await;
    assert_eq!(customer.await.unwrap().0, 403);

    let payout = call(form_post(&bot, "/v1/payouts", "amount=5&currency=usd"));
    not_editable(&sm, json!({"amount": 4})).await;
    assert_eq!(payout.await.unwrap().0, 403);

    let govern = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .bearer_auth("bot-token-1")
        .json(&json!({"resource": "shell", "action": "exec", "args": {"cmd": "ls"}}))
        .send()
        .await
        .unwrap();
    let g: Value = govern.json().await.unwrap();
    assert_eq!(g["status"], "REQUIRE_APPROVAL", "{g}");
    not_editable(&sm, json!({"cmd": "rm -rf /"})).await;
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_json_edit_removes_a_null_field_and_stays_json() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let original =
        json!({"name": "report", "note": "drop me", "copies": 3, "opts": {"a": 1, "b": 2}});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(original.to_string().as_bytes()).unwrap();
    let agent = call(
        bot.post(format!("https://{API}/v1/jobs"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().unwrap()),
    );
    let id = pending_id(&sm).await;
    let (s, rec) = approve(
        &sm,
        &id,
        json!({"edits": {"note": null, "copies": 1, "opts": {"b": null, "c": true}}}),
    )
    .await;
    assert_eq!(s, 200, "{rec}");
    let (status, headers, _) = agent.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-sudomode-edited"], "true");
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].header("content-encoding").is_none(), "{:?}", got[0]);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_slice(&got[0].body).expect("still JSON");
    assert_eq!(
        sent,
        json!({"name": "report", "copies": 1, "opts": {"a": 1, "c": true}})
    );
    assert_eq!(rec["approved_args"], sent);
}

#[tokio::test]
async fn the_retry_of_an_agent_that_gave_up_forwards_the_edited_call() {
    let (_ca, up, sm) = world().await;
    let impatient = {
        install_crypto();
        let ca = reqwest::Certificate::from_pem(sm.ca_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://bot:bot-token-1@{}", sm.proxy)).unwrap())
            .tls_certs_only([ca])
            .timeout(Duration::from_millis(1500))
            .build()
            .unwrap()
    };
    let body = "amount=900&currency=eur";
    let first = form_post(&impatient, "/v1/charges", body).send().await;
    assert!(first.is_err(), "the agent gives up while the call is held");
    let id = pending_id(&sm).await;
    let (s, _) = approve(&sm, &id, json!({"edits": {"amount": 800}})).await;
    assert_eq!(s, 200);
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let (status, headers, _) = call(form_post(&bot, "/v1/charges", body)).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-sudomode-edited"], "true");
    assert_eq!(headers["x-sudomode-request-id"], id.as_str());
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"amount=800&currency=eur");
    // Exactly once: a second retry is held anew.
    let again = call(form_post(&bot, "/v1/charges", body));
    let pending = sm.wait_pending(ALICE, 1).await;
    assert_ne!(pending[0]["id"], id.as_str());
    let pid = pending[0]["id"].as_str().unwrap();
    sm.api_post(&format!("/api/v1/requests/{pid}/reject"), ALICE, json!({}))
        .await;
    assert_eq!(again.await.unwrap().0, 403);
    assert_eq!(up.requests().len(), 1);
}

/// The agent signed this AWS call itself (no `aws` credential re-signs it):
/// a changed body would not match its signature, so it is not editable.
#[tokio::test]
async fn an_aws_call_the_agent_signed_is_not_editable() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let put = call(
        bot.post(format!("https://{DDB}/"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-date", "20240101T000000Z")
            .header("x-amz-target", "DynamoDB_20120810.PutItem")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            )
            .body(r#"{"TableName":"users","Item":{"id":{"S":"1"}}}"#),
    );
    let id = pending_id(&sm).await;
    let (s, e) = approve(&sm, &id, json!({"edits": {"TableName": "admins"}})).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["type"], "not_editable", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("signed"),
        "{e}"
    );
    let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
    assert_eq!(rec["status"], "pending", "{rec}");
    let (s, _) = sm
        .api_post(&format!("/api/v1/requests/{id}/reject"), ALICE, json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(put.await.unwrap().0, 403);
    assert!(up.requests().is_empty());
}

/// A multipart body is judged field by field but not written back: an edit
/// of it is `not_editable`, and the request stays pending.
#[tokio::test]
async fn a_multipart_body_is_not_editable() {
    let (_ca, up, sm) = world().await;
    let bot = agent_client(&sm, "bot", "bot-token-1");
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ--\r\n";
    let post = call(
        bot.post(format!("https://{API}/v1/notes"))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body),
    );
    not_editable(&sm, json!({"note": "changed"})).await;
    assert_eq!(post.await.unwrap().0, 403);
    assert!(up.requests().is_empty());
}
