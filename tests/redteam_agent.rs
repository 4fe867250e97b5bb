//! Red-team findings on the agent side (issue 18): a hostile agent behind the
//! proxy trying to spoil the store, or to be judged as something milder than
//! what the upstream executes. Every case runs through the real binary with a
//! recording stand-in upstream as ground truth.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const STRIPE: &str = "api.stripe.com";
const DENIED_HOST: &str = "denied.example";

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
agents:
  - {name: bot, token: bot-token-1}
hold:
  retry_window: 30s
";
const ADMIN: &str = "alice-token-1";

/// Runs the CLI in `dir`; returns (exit code, stdout + stderr).
fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SUDOMODE_CONFIG")
        .env_remove("SUDOMODE_ADMIN_TOKEN")
        .env("SUDOMODE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `{"a":[[…1…]]}`: `depth` nested containers in all.
fn deep_json(depth: usize) -> String {
    format!(
        "{{\"a\":{}1{}}}",
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

// ---------------------------------------------------------------------------
// 18.1 — one request must not spoil the store.
// ---------------------------------------------------------------------------

const DEEP_POLICY: &str = r#"rules:
  - name: hold_refunds
    resource: stripe.refunds
    action: create
    decision: REQUIRE_APPROVAL
    timeout: 2s
    reason: refunds need a person
  - name: hold_explicit
    resource: "deep.*"
    decision: REQUIRE_APPROVAL
    reason: explicit intents need a person
  - name: deny_rest
    resource: "*"
    decision: DENY
    reason: everything else
"#;

/// Everything that reads the store answers: listing (every filter), one
/// record, the audit verification through the API and the CLI.
async fn store_reads_back(sm: &SudoMode) {
    for q in [
        "",
        "?status=pending",
        "?status=denied",
        "?decision=DENY",
        "?agent=bot",
    ] {
        let (s, v) = sm.api_get(&format!("/api/v1/requests{q}"), ADMIN).await;
        assert_eq!(s, 200, "/api/v1/requests{q}: {v}\n{}", sm.logs());
        for r in v["requests"].as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            let (s, one) = sm.api_get(&format!("/api/v1/requests/{id}"), ADMIN).await;
            assert_eq!(s, 200, "{one}");
        }
    }
    let (s, v) = sm.api_get("/api/v1/audit/verify", ADMIN).await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let (s, v) = sm
        .api_get("/api/v1/audit?after_seq=0&limit=500", ADMIN)
        .await;
    assert_eq!(s, 200, "{v}");
    std::fs::write(
        sm.path("cli.yaml"),
        format!("dashboard:\n  listen: \"{}\"\n", sm.dashboard),
    )
    .unwrap();
    let (code, out) = cli(
        sm.dir.path(),
        &["audit", "verify", "-c", "cli.yaml"],
        &[("SUDOMODE_ADMIN_TOKEN", ADMIN)],
    );
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn deep_json_cannot_spoil_the_store() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[STRIPE, DENIED_HOST]).await;
    let opts = || Options {
        policy: DEEP_POLICY,
        extra: OPS,
        resolve: vec![
            (format!("{STRIPE}:443"), up.addr),
            (format!("{DENIED_HOST}:443"), up.addr),
        ],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    };
    let sm = SudoMode::start(opts());
    let body = deep_json(126);
    assert_eq!(body.len(), 257);
    let client = agent_client(&sm, "bot", "bot-token-1");

    // Through the proxy: to a denied host and to a rule that would hold it.
    for url in [
        format!("https://{DENIED_HOST}/anything"),
        format!("https://{STRIPE}/v1/refunds"),
    ] {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, err) = error_body(resp).await;
        assert_eq!(status, 400, "{url}: {err}");
        assert_eq!(err["error"]["type"], "bad_request", "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("64 levels"),
            "{err}"
        );
    }
    // Untyped, and just past the limit: refused too; 64 deep is judged.
    let resp = client
        .post(format!("https://{STRIPE}/v1/refunds"))
        .body(deep_json(65))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .post(format!("https://{STRIPE}/v1/refunds"))
        .header("content-type", "application/json")
        .body(deep_json(64))
        .send()
        .await
        .unwrap();
    let (status, err) = error_body(resp).await;
    assert_eq!(
        (status, &err["error"]["type"]),
        (403, &json!("expired")),
        "held: {err}"
    );
    assert!(up.requests().is_empty(), "nothing may reach the upstream");

    // Explicit intents carry the agent's own JSON straight into the store:
    // nested as deep as the API accepts, and held so it is restored later.
    let deep_args: Value = serde_json::from_str(&deep_json(126)).unwrap();
    let resp = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .bearer_auth("bot-token-1")
        .json(&json!({"resource": "deep.things", "action": "create", "args": deep_args}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "REQUIRE_APPROVAL", "{v}");
    let govern_id = v["request_id"].as_str().unwrap().to_string();

    store_reads_back(&sm).await;
    let (s, one) = sm
        .api_get(&format!("/api/v1/requests/{govern_id}"), ADMIN)
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["status"], "pending", "{one}");

    // The CLI on the stopped server's store, then a restart that restores
    // the held requests.
    let mut sm = sm;
    assert!(sm.terminate().success(), "{}", sm.logs());
    let (code, out) = cli(
        sm.dir.path(),
        &["audit", "verify", "-c", "sudomode.yaml"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let sm = sm.restart(opts());
    store_reads_back(&sm).await;
    let pending = sm.wait_pending(ADMIN, 1).await;
    assert!(
        pending.iter().any(|r| r["id"] == govern_id.as_str()),
        "{pending:?}"
    );
}
