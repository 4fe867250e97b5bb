//! Intents and policy through the running proxy, driven by official SDKs.

mod common;

use common::*;
use serde_json::Value;

const HOSTS: &[&str] = &[
    "api.stripe.com",
    "dynamodb.us-east-1.amazonaws.com",
    "ec2.us-east-1.amazonaws.com",
    "ep-cool-1.us-east-2.aws.neon.tech",
];

/// The original SudoMode example policy plus AWS and SQL rules.
const POLICY: &str = r#"
rules:
  - name: allow_read
    resource: "*"
    action: [read, retrieve, list, select, "List*", "Get*", "Describe*"]
    decision: ALLOW
  - name: deny_delete
    resource: "*"
    action: [delete, "Delete*", drop, "Terminate*"]
    decision: DENY
    reason: Delete operations are not allowed
  - name: require_approval_high_amount
    resource: stripe.charges
    action: create
    condition: args.amount > 50
    decision: REQUIRE_APPROVAL
    reason: High-value charge requires approval
    timeout: 2s
  - name: allow_low_amount
    resource: stripe.charges
    action: create
    condition: args.amount <= 50
    decision: ALLOW
"#;

#[tokio::test]
async fn stripe_sdk_small_charge_forwarded_large_held_delete_denied() {
    let (_ca, up, sm) = api_world(POLICY, "", HOSTS).await;
    let small = sdk_agent(&sm, "stripe_small_charge", &[]).await;
    assert_eq!(small["ok"], true, "{small}");
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].body).contains("amount=30"));

    // Large: held for approval; nobody approves within the 2 s window.
    let big = sdk_agent(&sm, "stripe_big_charge", &[]).await;
    assert_eq!(big["ok"], false, "{big}");
    assert_eq!(big["status"], 403, "{big}");
    assert_eq!(
        up.requests().len(),
        1,
        "a held charge must not reach Stripe"
    );

    let del = sdk_agent(&sm, "stripe_delete_customer", &[]).await;
    assert_eq!(del["status"], 403, "{del}");
    assert!(
        del["message"]
            .as_str()
            .unwrap()
            .contains("Delete operations are not allowed"),
        "{del}"
    );
    assert_eq!(up.requests().len(), 1);

    // The raw JSON body names the rule and reason (what a non-SDK agent sees).
    let resp = sm
        .client()
        .delete("https://api.stripe.com/v1/customers/cus_9")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "denied");
    assert_eq!(body["error"]["rule"], "deny_delete");
    assert_eq!(body["error"]["resource"], "stripe.customers");
    assert_eq!(body["error"]["action"], "delete");
    assert_eq!(body["error"]["reason"], "Delete operations are not allowed");
}

#[tokio::test]
async fn boto3_dynamodb_list_allowed_delete_denied_and_ec2_terminate_mapped() {
    let (_ca, up, sm) = api_world(POLICY, "", HOSTS).await;
    let list = sdk_agent(&sm, "ddb_list_tables", &[]).await;
    assert_eq!(list["ok"], true, "{list}\n{}", sm.logs());
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("x-amz-target"),
        Some("DynamoDB_20120810.ListTables")
    );

    let del = sdk_agent(&sm, "ddb_delete_table", &[]).await;
    assert_eq!(del["ok"], false, "{del}");
    assert_eq!(del["status"], 403, "{del}");
    let term = sdk_agent(&sm, "ec2_terminate", &[]).await;
    // EC2 answers in its own XML error format: boto3 raises with
    // SudoMode's message, naming the operation and rule.
    assert_eq!(term["ok"], false, "{term}");
    let msg = term["message"].as_str().unwrap();
    assert!(
        msg.contains("TerminateInstances") && msg.contains("deny_delete"),
        "{term}"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "denied AWS calls must not reach AWS"
    );

    // The audit names the exact AWS operations.
    let logs = sm.logs();
    assert!(
        logs.contains("resource=aws.dynamodb action=DeleteTable")
            || logs.contains("action=DeleteTable"),
        "{logs}"
    );
    assert!(
        logs.contains("resource=aws.ec2 action=TerminateInstances"),
        "{logs}"
    );
}

#[tokio::test]
async fn multi_statement_sql_is_judged_by_its_drop() {
    let (_ca, up, sm) = api_world(POLICY, "", HOSTS).await;
    let client = sm.client();
    let ok = client
        .post("https://ep-cool-1.us-east-2.aws.neon.tech/sql")
        .json(&serde_json::json!({"query": "SELECT 1", "params": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let resp = client
        .post("https://ep-cool-1.us-east-2.aws.neon.tech/sql")
        .json(&serde_json::json!({"query": "SELECT 1; DROP TABLE users", "params": []}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["resource"], "sql");
    assert_eq!(body["error"]["action"], "drop");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn hot_reload_applies_valid_changes_and_keeps_the_last_good_policy() {
    let allow = "rules:\n  - {name: allow_all, resource: \"*\", decision: ALLOW}\n";
    let (_ca, up, sm) = api_world(allow, "", HOSTS).await;
    let client = sm.client();
    let url = "https://api.stripe.com/v1/customers/cus_1";
    assert_eq!(client.get(url).send().await.unwrap().status(), 200);

    let policy_file = sm.path("policies/test.yaml");
    std::fs::write(
        &policy_file,
        "rules:\n  - {name: deny_all, resource: \"*\", decision: DENY, reason: frozen}\n",
    )
    .unwrap();
    let status = poll_status(&client, url, 403).await;
    assert_eq!(status, 403, "valid change was not applied");
    let forwarded = up.requests().len();

    // An invalid change is refused; the deny policy stays in force.
    std::fs::write(
        &policy_file,
        "rules:\n  - {name: broken, resource: \"*\", decision: MAYBE}\n",
    )
    .unwrap();
    sm.wait_logs("the reload error", |l| l.contains("policy change refused"))
        .await;
    let resp = client.get(url).send().await.unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["rule"], "deny_all");
    assert_eq!(
        up.requests().len(),
        forwarded,
        "nothing forwarded after the deny policy took effect"
    );
}

async fn poll_status(client: &reqwest::Client, url: &str, want: u16) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = client.get(url).send().await.unwrap().status().as_u16();
        if s == want || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn encoded_and_overridden_requests_are_judged_as_executed() {
    let (_ca, up, sm) = api_world(POLICY, "", HOSTS).await;
    let client = sm.client();
    let deny_cases: Vec<reqwest::RequestBuilder> = vec![
        client
            .get("https://api.stripe.com//v1//customers/cus_1")
            .header("x-http-method-override", "DELETE"),
        client
            .post("https://api.stripe.com/v1/customers/cus_1")
            .header("X-HTTP-Method-Override", "DELETE"),
        client.post("https://api.stripe.com/v1/customers/cus_1?_method=DELETE"),
        client.delete("https://api.stripe.com/v1/charges/../customers/cus_1"),
        client.delete("https://api.stripe.com/v1/%63ustomers/cus_1"),
    ];
    for req in deny_cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(status == 403 || status == 400, "status {status}");
    }
    // A gzip-encoded charge without Content-Type is still judged by its amount.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"amount": 999999, "currency": "usd"}"#)
        .unwrap();
    let resp = client
        .post("https://api.stripe.com/v1/charges")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["rule"], "require_approval_high_amount",
        "{body}"
    );
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    let _: Value = body;
}
