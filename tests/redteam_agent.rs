//! Red-team findings on the agent side (issue 18): a hostile agent behind the
//! proxy trying to spoil the store, or to be judged as something milder than
//! what the upstream executes. Every case runs through the real binary with a
//! recording stand-in upstream as ground truth.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

// ---------------------------------------------------------------------------
// 18.2 — a method override is judged both as the method sent and as the
// override; the strictest decision wins and the original request is forwarded.
// ---------------------------------------------------------------------------

const SUPABASE: &str = "abcd.supabase.co";
const GENERIC: &str = "api.example.com";

fn repo_policy(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// SudoMode on `policy` with every host resolved to one recording upstream,
/// agents `bot` and `support-bot`, and a 1 s approval window.
async fn world(policy: &str, hosts: &[&str]) -> (TestCa, Upstream, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, hosts).await;
    let sm = SudoMode::start(Options {
        policy,
        extra: "agents:\n  - {name: bot, token: bot-token-1}\n  - {name: support-bot, token: support-token-1}\nhold:\n  timeout: 1s\n",
        resolve: hosts
            .iter()
            .map(|h| (format!("{h}:443"), up.addr))
            .collect(),
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    (ca, up, sm)
}

/// Sends `req`; returns (status, error type, rule, forwarded upstream?).
async fn outcome(up: &Upstream, req: reqwest::RequestBuilder) -> (u16, String, String, bool) {
    let before = up.requests().len();
    let resp = req.send().await.unwrap();
    let (status, body) = error_body(resp).await;
    let forwarded = up.requests().len() > before;
    let field = |k: &str| body["error"][k].as_str().unwrap_or("").to_string();
    (status, field("type"), field("rule"), forwarded)
}

#[tokio::test]
async fn stripe_delete_with_a_post_override_is_held() {
    let (_ca, up, sm) = world(&repo_policy("policies/examples/stripe.yaml"), &[STRIPE]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    let url = format!("https://{STRIPE}/v1/customers/cus_123");
    let form = "application/x-www-form-urlencoded";
    let cases = [
        (
            "X-HTTP-Method-Override",
            c.delete(&url).header("X-HTTP-Method-Override", "POST"),
        ),
        (
            "X-HTTP-Method",
            c.delete(&url).header("X-HTTP-Method", "POST"),
        ),
        (
            "X-Method-Override",
            c.delete(&url).header("X-Method-Override", "post"),
        ),
        ("?_method=POST", c.delete(format!("{url}?_method=POST"))),
        (
            "form _method=POST",
            c.delete(&url)
                .header("content-type", form)
                .body("_method=POST"),
        ),
        (
            "POST overridden to DELETE",
            c.post(&url).header("X-HTTP-Method-Override", "DELETE"),
        ),
    ];
    for (label, req) in cases {
        let (status, kind, rule, forwarded) = outcome(&up, req).await;
        assert!(!forwarded, "{label}: forwarded");
        assert_eq!(
            (status, kind.as_str(), rule.as_str()),
            (403, "expired", "stripe_customer_deletes"),
            "{label}: must be held by stripe_customer_deletes"
        );
    }
    // The record shows the method as sent and lists both readings.
    let admin = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let (_, list) = sm
        .api_get("/api/v1/requests?status=expired", admin.trim())
        .await;
    let first = &list["requests"][0];
    assert_eq!(first["method"], "POST", "{first}");
    let readings: Vec<(String, String)> = first["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["action"].to_string(), i["method"].to_string()))
        .collect();
    assert!(
        readings.contains(&("\"update\"".into(), "null".into())),
        "{readings:?}"
    );
    assert!(
        readings.contains(&("\"delete\"".into(), "\"DELETE\"".into())),
        "{readings:?}"
    );
    // Control: a plain update is allowed and forwarded as sent.
    let (status, _, _, forwarded) = outcome(
        &up,
        c.post(&url).header("content-type", form).body("name=x"),
    )
    .await;
    assert_eq!((status, forwarded), (200, true));
    // What is forwarded is the original request, override header and all.
    outcome(&up, c.get(&url).header("X-HTTP-Method-Override", "GET")).await;
    let last = up.requests().pop().unwrap();
    assert_eq!(last.method, "GET");
    assert_eq!(last.header("x-http-method-override"), Some("GET"));
}

#[tokio::test]
async fn postgrest_delete_with_a_patch_override_is_held() {
    let (_ca, up, sm) = world(&repo_policy("policies/examples/database.yaml"), &[SUPABASE]).await;
    let c = agent_client(&sm, "support-bot", "support-token-1");
    let url = format!("https://{SUPABASE}/rest/v1/tickets?id=eq.7");
    let json = "application/json";
    let (status, kind, _, forwarded) = outcome(
        &up,
        c.delete(&url)
            .header("X-HTTP-Method-Override", "PATCH")
            .header("content-type", json)
            .body(r#"{"status":"closed"}"#),
    )
    .await;
    assert!(!forwarded, "DELETE with override PATCH was forwarded");
    assert_eq!((status, kind.as_str()), (403, "expired"));
    // Control: the PATCH itself is a filtered ticket update, allowed.
    let (status, _, _, forwarded) = outcome(
        &up,
        c.patch(&url)
            .header("content-type", json)
            .body(r#"{"status":"closed"}"#),
    )
    .await;
    assert_eq!((status, forwarded), (200, true));
}

const GENERIC_POLICY: &str = r#"rules:
  - name: no_deletes
    resource: "http.*"
    method: DELETE
    decision: DENY
    reason: nothing is deleted
  - name: posts
    resource: "http.*"
    action: post
    decision: ALLOW
  - name: deny_rest
    resource: "*"
    decision: DENY
"#;

#[tokio::test]
async fn generic_delete_with_a_post_override_is_denied() {
    let (_ca, up, sm) = world(GENERIC_POLICY, &[GENERIC]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    let url = format!("https://{GENERIC}/things/1");
    for (label, req) in [
        (
            "DELETE + override POST",
            c.delete(&url).header("X-HTTP-Method-Override", "POST"),
        ),
        (
            "POST + override DELETE",
            c.post(&url).header("X-HTTP-Method", "DELETE").body("a=1"),
        ),
        (
            "DELETE + ?_method=POST",
            c.delete(format!("{url}?_method=POST")),
        ),
    ] {
        let (status, _, rule, forwarded) = outcome(&up, req).await;
        assert!(!forwarded, "{label}: forwarded");
        assert_eq!((status, rule.as_str()), (403, "no_deletes"), "{label}");
    }
    let (status, _, _, forwarded) = outcome(&up, c.post(&url).body("a=1")).await;
    assert_eq!((status, forwarded), (200, true));
}

// ---------------------------------------------------------------------------
// 18.5 — SQL and PostgREST table rules cannot be evaded by spelling.
// ---------------------------------------------------------------------------

const NEON: &str = "ep-calm-sea-123.us-east-2.aws.neon.tech";

fn neon_sql(c: &reqwest::Client, query: &str) -> reqwest::RequestBuilder {
    c.post(format!("https://{NEON}/sql"))
        .json(&json!({"query": query, "params": []}))
}

#[tokio::test]
async fn payment_tokens_cannot_be_read_by_another_spelling() {
    let (_ca, up, sm) = world(
        &repo_policy("policies/examples/database.yaml"),
        &[NEON, SUPABASE],
    )
    .await;
    let c = agent_client(&sm, "support-bot", "support-token-1");
    let mut cases: Vec<(&str, reqwest::RequestBuilder)> = [
        "SELECT * FROM PAYMENT_TOKENS",
        "SELECT * FROM public.payment_tokens",
        "SELECT * FROM tickets, Public.Payment_Tokens",
        "SELECT query_to_xml('select * from payment_tokens', true, false, '')",
        "SELECT table_to_xml('payment_tokens', true, false, '')",
    ]
    .into_iter()
    .map(|q| (q, neon_sql(&c, q)))
    .collect();
    for select in [
        "id,payment_tokens(*)",
        "id,t:payment_tokens!inner(token)",
        "id,orders(id,...payment_tokens(*))",
    ] {
        cases.push((
            select,
            c.get(format!("https://{SUPABASE}/rest/v1/users?select={select}")),
        ));
    }
    for (label, req) in cases {
        let (status, _, rule, forwarded) = outcome(&up, req).await;
        assert!(!forwarded, "{label}: forwarded");
        assert_eq!(
            (status, rule.as_str()),
            (403, "db_no_payment_tokens"),
            "{label}"
        );
    }
    // An upsert is not the insert the support bot may make.
    let (status, _, rule, forwarded) = outcome(
        &up,
        neon_sql(
            &c,
            "INSERT INTO tickets (id, subject) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET subject = 'y'",
        ),
    )
    .await;
    assert_eq!(
        (status, rule.as_str(), forwarded),
        (403, "db_deny_rest", false)
    );
    // Controls: a plain ticket read and insert go through.
    for q in [
        "SELECT * FROM tickets",
        "INSERT INTO tickets (subject) VALUES ('help')",
    ] {
        let (status, _, _, forwarded) = outcome(&up, neon_sql(&c, q)).await;
        assert_eq!((status, forwarded), (200, true), "{q}");
    }
    // The record names the tables as the server resolves them, and the params.
    let admin = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let (_, list) = sm
        .api_get("/api/v1/requests?decision=DENY&limit=500", admin.trim())
        .await;
    let upper = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["args"]["sql"] == "SELECT * FROM PAYMENT_TOKENS")
        .unwrap();
    assert_eq!(upper["args"]["tables"], json!(["payment_tokens"]));
    assert_eq!(upper["args"]["params"], json!([]));
}

#[tokio::test]
async fn starter_holds_a_select_that_calls_side_effect_functions() {
    let (_ca, up, sm) = world(&repo_policy("policies/default.yaml"), &[NEON]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    for (q, want) in [
        ("SELECT lo_unlink(16401)", "approve_sql_functions"),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "approve_sql_functions",
        ),
        (
            "SELECT set_config('log_statement', 'none', false)",
            "approve_sql_functions",
        ),
        ("SELECT nextval('orders_id_seq')", "approve_sql_functions"),
        // The SQL it hands over is judged too: a DROP.
        (
            "SELECT dblink_exec('dbname=prod', 'DROP TABLE users')",
            "approve_destructive_sql",
        ),
    ] {
        let (status, kind, rule, forwarded) = outcome(&up, neon_sql(&c, q)).await;
        assert!(!forwarded, "{q}: forwarded");
        assert_eq!(
            (status, kind.as_str(), rule.as_str()),
            (403, "expired", want),
            "{q}"
        );
    }
    let (status, _, _, forwarded) = outcome(
        &up,
        neon_sql(&c, "SELECT count(*), lower(email) FROM users"),
    )
    .await;
    assert_eq!((status, forwarded), (200, true));
}

// ---------------------------------------------------------------------------
// 18.9 — the starter allows LLM inference only, not management calls.
// ---------------------------------------------------------------------------

const OPENAI: &str = "api.openai.com";

#[tokio::test]
async fn starter_holds_llm_management_calls() {
    let (_ca, up, sm) = world(&repo_policy("policies/default.yaml"), &[OPENAI]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    let url = |p: &str| format!("https://{OPENAI}{p}");
    let cases = [
        ("delete a file", c.delete(url("/v1/files/file-abc123"))),
        (
            "delete a fine-tuned model",
            c.delete(url("/v1/models/ft:gpt-4o-mini:acme::abc123")),
        ),
        (
            "delete a project API key",
            c.delete(url(
                "/v1/organization/projects/proj_abc123/api_keys/key_abc123",
            )),
        ),
        (
            "create a fine-tuning job",
            c.post(url("/v1/fine_tuning/jobs"))
                .json(&json!({"model": "gpt-4o-mini", "training_file": "file-abc123"})),
        ),
    ];
    for (label, req) in cases {
        let (status, kind, rule, forwarded) = outcome(&up, req).await;
        assert!(!forwarded, "{label}: forwarded");
        assert_eq!(
            (status, kind.as_str(), rule.as_str()),
            (403, "expired", "approve_llm_management"),
            "{label}"
        );
    }
    for (label, req) in [
        (
            "chat",
            c.post(url("/v1/chat/completions"))
                .json(&json!({"model": "gpt-4o", "messages": []})),
        ),
        ("model listing", c.get(url("/v1/models"))),
    ] {
        let (status, _, _, forwarded) = outcome(&up, req).await;
        assert_eq!((status, forwarded), (200, true), "{label}");
    }
}

// ---------------------------------------------------------------------------
// 18.3 — an approval binds the URL exactly as sent: S3 keys are literal, so
// `reports//q3.csv`, `x/../q3.csv` and `reports%2Fq3.csv` are other objects.
// ---------------------------------------------------------------------------

const BUCKET: &str = "my-bucket.s3.us-east-1.amazonaws.com";

const S3_POLICY: &str = r#"rules:
  - name: hold_deletes
    resource: aws.s3
    action: DeleteObject
    decision: REQUIRE_APPROVAL
    reason: deleting objects needs a person
  - name: deny_rest
    resource: "*"
    decision: DENY
"#;

fn s3_delete(target: &str) -> Vec<u8> {
    req(
        "DELETE",
        BUCKET,
        target,
        &[
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "x-amz-date: 20260101T000000Z",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ],
        b"",
    )
}

/// Sends a raw DELETE and gives up after `wait` (an SDK timing out), or
/// returns the response.
async fn s3_call(sm: &SudoMode, target: &str, wait: Duration) -> Option<RawResp> {
    let connect = format!("{BUCKET}:443");
    tokio::time::timeout(wait, raw_tls(sm, &connect, BUCKET, &s3_delete(target)))
        .await
        .ok()
}

async fn s3_world() -> (TestCa, Upstream, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[BUCKET]).await;
    let sm = SudoMode::start(Options {
        policy: S3_POLICY,
        extra: "operators:\n  - {name: alice, token: alice-token-1, role: approver}\nhold:\n  retry_window: 30s\n",
        resolve: vec![(format!("{BUCKET}:443"), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    (ca, up, sm)
}

async fn approve(sm: &SudoMode, id: &str) {
    let (s, v) = sm
        .api_post(&format!("/api/v1/requests/{id}/approve"), ADMIN, json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// The request target the upstream received (its URI may be absolute, h2).
fn target(uri: &str) -> String {
    match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
        None => uri.to_string(),
    }
}

fn paths(up: &Upstream) -> Vec<String> {
    up.requests().iter().map(|r| target(&r.uri)).collect()
}

#[tokio::test]
async fn s3_spellings_of_a_key_never_join_a_pending_delete() {
    let (_ca, up, sm) = s3_world().await;
    let short = Duration::from_millis(700);
    assert!(
        s3_call(&sm, "/reports//q3.csv", short).await.is_none(),
        "held"
    );
    let first = sm.wait_pending(ADMIN, 1).await;
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    // Another object, by S3's literal keys: its own pending request.
    assert!(
        s3_call(&sm, "/reports/q3.csv", short).await.is_none(),
        "held"
    );
    let pending = sm.wait_pending(ADMIN, 2).await;
    assert_eq!(pending.len(), 2, "{pending:?}");
    approve(&sm, &first_id).await;
    // The approved one goes through on the agent's retry of the same spelling,
    // the other stays pending and is never sent.
    let r = s3_call(&sm, "/reports//q3.csv", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        s3_call(&sm, "/reports/q3.csv", short).await.is_none(),
        "still held"
    );
    assert_eq!(paths(&up), ["/reports//q3.csv"]);
}

#[tokio::test]
async fn s3_approval_is_not_spent_on_another_spelling() {
    let (_ca, up, sm) = s3_world().await;
    let short = Duration::from_millis(700);
    for (approved, other) in [
        ("/x/../q3.csv", "/q3.csv"),
        ("/reports%2Fq3.csv", "/reports/q3.csv"),
    ] {
        assert!(s3_call(&sm, approved, short).await.is_none(), "held");
        let pending = sm.wait_pending(ADMIN, 1).await;
        let id = pending[0]["id"].as_str().unwrap().to_string();
        approve(&sm, &id).await;
        // A retry spelt differently is another object: held, not forwarded.
        let before = up.requests().len();
        assert!(
            s3_call(&sm, other, short).await.is_none(),
            "{other}: must be held"
        );
        assert_eq!(
            up.requests().len(),
            before,
            "{other} forwarded on {approved}'s approval"
        );
        // The exact retry goes through once, under the approved id.
        let r = s3_call(&sm, approved, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.head);
        assert!(r.head.contains(&id), "{}", r.head);
        assert_eq!(target(&up.requests().last().unwrap().uri), approved);
        // Clear the held other spelling so the next round starts empty.
        let (_, v) = sm.api_get("/api/v1/requests?status=pending", ADMIN).await;
        for p in v["requests"].as_array().unwrap() {
            let pid = p["id"].as_str().unwrap();
            sm.api_post(&format!("/api/v1/requests/{pid}/reject"), ADMIN, json!({}))
                .await;
        }
    }
}

// ---------------------------------------------------------------------------
// 18.8 — bodies read two ways are judged both ways; multipart is decoded.
// ---------------------------------------------------------------------------

const BODY_POLICY: &str = r#"rules:
  - name: no_admin_role
    resource: "*"
    condition: has(args.role) && args.role == "admin"
    decision: DENY
    reason: nobody is made an admin by an agent
  - name: no_big_amounts
    resource: "*"
    condition: has(args.amount) && args.amount > 50000
    decision: DENY
    reason: too much
  - name: allow_rest
    resource: "*"
    decision: ALLOW
"#;

#[tokio::test]
async fn an_untyped_body_is_judged_as_json_and_as_a_form() {
    let (_ca, up, sm) = world(BODY_POLICY, &[GENERIC]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    let url = format!("https://{GENERIC}/users/7");
    let sneaky = r#"{"role":"viewer","x":"&role=admin&y="}"#;
    for (label, ct) in [
        ("no Content-Type", None),
        ("unknown Content-Type", Some("text/plain")),
    ] {
        let mut r = c.post(&url).body(sneaky);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        let (status, _, rule, forwarded) = outcome(&up, r).await;
        assert!(!forwarded, "{label}: forwarded");
        assert_eq!((status, rule.as_str()), (403, "no_admin_role"), "{label}");
    }
    // Typed JSON is read as JSON only: the upstream does the same.
    let (status, _, _, forwarded) = outcome(
        &up,
        c.post(&url)
            .header("content-type", "application/json")
            .body(sneaky),
    )
    .await;
    assert_eq!((status, forwarded), (200, true));
    // An untyped JSON body with nothing a form parser would read: one reading.
    let (status, _, _, forwarded) =
        outcome(&up, c.post(&url).body(r#"{"role":"viewer","n":1}"#)).await;
    assert_eq!((status, forwarded), (200, true));
}

/// One multipart part: field name, `(filename, content type)` for a file, content.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str);

fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, file, value) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some((filename, ct)) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {ct}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[tokio::test]
async fn multipart_fields_are_judged() {
    let (_ca, up, sm) = world(BODY_POLICY, &[GENERIC]).await;
    let c = agent_client(&sm, "bot", "bot-token-1");
    let url = format!("https://{GENERIC}/payments");
    let ct = "multipart/form-data; boundary=XyZ123";
    let big = multipart(
        "XyZ123",
        &[
            ("currency", None, "usd"),
            ("amount", None, "999999"),
            (
                "receipt",
                Some(("r.pdf", "application/pdf")),
                "%PDF-1.4 ...",
            ),
        ],
    );
    let (status, _, rule, forwarded) =
        outcome(&up, c.post(&url).header("content-type", ct).body(big)).await;
    assert!(!forwarded, "multipart amount=999999 forwarded");
    assert_eq!((status, rule.as_str()), (403, "no_big_amounts"));
    // A small one goes through, and its record shows fields and the file.
    let small = multipart(
        "XyZ123",
        &[
            ("amount", None, "100"),
            ("meta[order]", None, "7"),
            (
                "receipt",
                Some(("r.pdf", "application/pdf")),
                "%PDF-1.4 ...",
            ),
        ],
    );
    let (status, _, _, forwarded) =
        outcome(&up, c.post(&url).header("content-type", ct).body(small)).await;
    assert_eq!((status, forwarded), (200, true));
    let admin = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let (_, list) = sm
        .api_get("/api/v1/requests?decision=ALLOW", admin.trim())
        .await;
    assert_eq!(
        list["requests"][0]["args"],
        json!({"amount": 100, "meta": {"order": 7},
               "receipt": {"filename": "r.pdf", "content_type": "application/pdf", "size": 12}})
    );
    // A multipart body that does not end is refused, not guessed at.
    let cut = b"--XyZ123\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n999999".to_vec();
    let (status, kind, _, forwarded) =
        outcome(&up, c.post(&url).header("content-type", ct).body(cut)).await;
    assert_eq!(
        (status, kind.as_str(), forwarded),
        (400, "bad_request", false)
    );
}
