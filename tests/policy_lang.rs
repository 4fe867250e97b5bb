//! The policy language through the real binary: path variants against DENY rules, condition
//! size bounds, what reload errors may quote, the original SudoMode's Python-spelled
//! conditions, shadowed rules, unknown names, and `policy check | explain | test` output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A project with the shipped starter policy and one more policy file beside it.
fn starter_with(file: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        repo().join("policies/default.yaml"),
        dir.path().join("policies/default.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies").join(file), yaml).unwrap();
    dir
}

const ALLOW_CUSTOMERS: &str = "rules:\n  - name: allow_customers\n    resource: stripe.customers\n    action: create\n    decision: ALLOW\n";

/// Starts `sudomode run` on `dir`'s `sudomode.yaml` and waits until it exits or prints its
/// proxy address. `Err(stdout+stderr)` when it started (it is stopped again).
fn run_expecting_exit(dir: &Path) -> Result<i32, String> {
    let out_path = dir.join("run.out");
    let err_path = dir.join("run.err");
    let mut child = Command::new(bin())
        .args([
            "run",
            "-c",
            "sudomode.yaml",
            "--proxy-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .env_remove("SUDOMODE_CONFIG")
        .env("SUDOMODE_ADMIN_TOKEN", "admin-token-for-run-test")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(status.code().unwrap_or(-1));
        }
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        if out.contains("proxy:") || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err(format!("--- stdout\n{out}--- stderr\n{err}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const OPERATORS: &str = "operators:\n  - {name: vic, token: viewer-token-1, role: viewer}\n  - {name: ada, token: admin-token-1, role: admin}\n";
const VIEWER: &str = "viewer-token-1";
const ADMIN: &str = "admin-token-1";

// ---------------------------------------------------------------------------
// 18.7: path variants must not pass DENY / REQUIRE_APPROVAL rules.

const PATH_POLICY: &str = r#"
rules:
  - name: deny_admin
    resource: "*"
    path: ["/admin", "/admin/*"]
    decision: DENY
    reason: the admin area is off limits
  - name: approve_ops
    resource: "*"
    path: "/ops/*"
    decision: REQUIRE_APPROVAL
    reason: operations need a human
  - name: allow_reports
    resource: "*"
    path: "/reports/*"
    decision: ALLOW
  - name: allow_public
    resource: "*"
    path: "/public/*"
    decision: ALLOW
  - name: deny_rest
    resource: "*"
    decision: DENY
    reason: not listed
"#;

#[tokio::test]
async fn path_variants_are_judged_by_deny_and_approval_rules() {
    let (_ca, up, sm) = api_world(PATH_POLICY, OPERATORS, &["api.example.com"]).await;
    let client = sm.client();
    for path in [
        "/ADMIN/users",
        "/Admin/users",
        "/admin;jsessionid=1/users",
        "/admin;/users",
        "/ADMIN;x=1/users",
        "/Admin;",
    ] {
        let resp = client
            .get(format!("https://api.example.com{path}"))
            .send()
            .await
            .unwrap();
        let (status, body) = error_body(resp).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["rule"], "deny_admin", "{path}: {body}");
    }
    assert!(
        up.requests().is_empty(),
        "a path variant of /admin reached the upstream: {:?}",
        up.requests()
    );

    // ALLOW rules keep exact matching: a variant never becomes easier to pass.
    for path in ["/REPORTS/q3", "/reports;x=1/q3"] {
        let resp = client
            .get(format!("https://api.example.com{path}"))
            .send()
            .await
            .unwrap();
        let (status, body) = error_body(resp).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["rule"], "deny_rest", "{path}: {body}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // REQUIRE_APPROVAL: `/OPS;v=2/restart` is held by approve_ops, not denied as "not listed".
    let held = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post("https://api.example.com/OPS;v=2/restart")
                .json(&json!({"now": true}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let pending = sm.wait_pending(ADMIN, 1).await;
    assert_eq!(pending[0]["rule"], "approve_ops", "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let (status, body) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/reject"),
            ADMIN,
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(held.await.unwrap().unwrap(), 403);
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // Control: an allowed path does reach the upstream.
    let ok = client
        .get("https://api.example.com/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(up.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// 20.9: a condition too large or too deep is refused at validation, never a crash.

fn plus_chain(terms: usize, limit: u64) -> String {
    format!("{} > {limit}", vec!["args.amount"; terms].join(" + "))
}

fn chain_policy(terms: usize) -> String {
    condition_policy(&plus_chain(terms, 1_000_000))
}

fn condition_policy(condition: &str) -> String {
    format!(
        "rules:\n  - name: big_sum\n    resource: \"*\"\n    condition: \"{condition}\"\n    decision: DENY\n    reason: sum too big\n  - name: allow_all\n    resource: \"*\"\n    decision: ALLOW\n"
    )
}

#[test]
fn oversized_conditions_are_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    // The red-team's chain: 1,500 `+` terms.
    let huge = format!("{} > 0", vec!["1"; 1_500].join(" + "));
    std::fs::write(dir.path().join("huge.yaml"), condition_policy(&huge)).unwrap();
    let out = cli(dir.path(), &["policy", "check", "huge.yaml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("huge.yaml:4:") && l.contains("big_sum") && l.contains("deep")),
        "{}",
        out.all()
    );
    // Just past the bound: refused too, with the same message.
    std::fs::write(dir.path().join("over.yaml"), chain_policy(127)).unwrap();
    let out = cli(dir.path(), &["policy", "check", "over.yaml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("big_sum"), "{}", out.all());
    // The largest accepted chain passes.
    std::fs::write(dir.path().join("max.yaml"), chain_policy(126)).unwrap();
    let out = cli(dir.path(), &["policy", "check", "max.yaml"]);
    assert_eq!(out.code, 0, "{}", out.all());

    // `run` refuses to start on the huge one (exit 2, naming the file).
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        dir.path().join("huge.yaml"),
        dir.path().join("policies/huge.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("sudomode.yaml"), "policies: [policies]\n").unwrap();
    match run_expecting_exit(dir.path()) {
        Ok(code) => assert_eq!(code, 2),
        Err(out) => panic!("run started on a condition it cannot judge safely:\n{out}"),
    }
    let err = std::fs::read_to_string(dir.path().join("run.err")).unwrap();
    assert!(
        err.contains("huge.yaml") && err.contains("big_sum"),
        "{err}"
    );
}

#[tokio::test]
async fn the_largest_accepted_condition_is_judged_without_crashing() {
    let policy = chain_policy(126);
    let (_ca, up, sm) = api_world(&policy, "", &["api.example.com"]).await;
    let client = sm.client();
    let resp = client
        .post("https://api.example.com/pay")
        .json(&json!({"amount": 10_000}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403, "{body}\n{}", sm.logs());
    assert_eq!(body["error"]["rule"], "big_sum", "{body}");
    let resp = client
        .post("https://api.example.com/pay")
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", sm.logs());
    assert_eq!(up.requests().len(), 1);
    let health = sm
        .api()
        .get(sm.dashboard_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

// ---------------------------------------------------------------------------
// 20.7: reload errors never quote a file dropped or linked into policies/.

async fn wait_reload_error(sm: &SudoMode, containing: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = sm.api_get("/api/v1/policy", VIEWER).await;
        assert_eq!(status, 200, "{v}");
        if let Some(e) = v["last_error"].as_str()
            && e.contains(containing)
        {
            return e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no reload error naming {containing}: {v}\n{}",
            sm.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_reload_ok(sm: &SudoMode) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = sm.api_get("/api/v1/policy", VIEWER).await;
        if v["last_error"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "reload never recovered: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn audit_text(sm: &SudoMode) -> String {
    let r = sm
        .api()
        .get(sm.dashboard_url("/api/v1/audit/export"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn reload_errors_do_not_leak_dropped_or_linked_files() {
    let sm = SudoMode::start(Options {
        extra: OPERATORS,
        ..Default::default()
    });
    // A file that is not a policy at all, dropped into policies/.
    let secret = "sk_live_51DroppedSecretValue0123456789";
    std::fs::write(sm.path("policies/zz-notes.yaml"), secret).unwrap();
    let e = wait_reload_error(&sm, "zz-notes.yaml").await;
    assert!(!e.contains(secret), "last_error quotes the file: {e}");
    assert!(!e.contains("51Dropped"), "last_error quotes the file: {e}");
    std::fs::remove_file(sm.path("policies/zz-notes.yaml")).unwrap();
    wait_reload_ok(&sm).await;

    // A symlink to a file outside the policy directory (an operator token) is refused unread.
    let token = "operator-token-ADMIN-0123456789abcdef";
    std::fs::write(sm.path("operator.token"), format!("{token}\n")).unwrap();
    std::os::unix::fs::symlink(sm.path("operator.token"), sm.path("policies/zz-link.yaml"))
        .unwrap();
    let e = wait_reload_error(&sm, "zz-link.yaml").await;
    assert!(!e.contains(token), "last_error quotes the linked file: {e}");
    assert!(
        e.contains("outside the policy directory"),
        "the refusal says why: {e}"
    );

    let audit = audit_text(&sm).await;
    assert!(audit.contains("policy.reload_failed"), "{audit}");
    assert!(!audit.contains(secret), "the audit quotes the file");
    assert!(!audit.contains(token), "the audit quotes the linked file");
    let logs = sm.logs();
    assert!(!logs.contains(secret) && !logs.contains(token), "{logs}");
}

// ---------------------------------------------------------------------------
// Issue 19: a policy file written for the original SudoMode loads as is.

const ORIGINAL_FORMAT: &str = r#"# A policies.yaml as the original SudoMode reads it: Python conditions.
rules:
  - name: "allow_database_read"
    description: "Allow read actions on database resources"
    resource: "database"
    action: "read"
    decision: "ALLOW"
    reason: "Read operations are safe and allowed"

  - name: "deny_database_delete"
    description: "Block delete actions on database resources"
    resource: "database"
    action: "delete"
    decision: "DENY"
    reason: "Delete operations on database are forbidden"

  - name: "allow_small_refund"
    resource: "payment"
    action: "issue_refund"
    condition: "args.amount <= 20"
    decision: "ALLOW"
    reason: "Low-value refund auto-approved"

  - name: "require_approval_mid_refund"
    resource: "payment"
    action: "issue_refund"
    condition: "args.amount > 20 and args.amount <= 100"
    decision: "REQUIRE_APPROVAL"
    reason: "Mid-value refund requires manager approval"

  - name: "deny_high_refund"
    resource: "payment"
    action: "issue_refund"
    condition: "args.amount > 100"
    decision: "DENY"
    reason: "Hard limit exceeded"

  - name: "allow_seasoning_note"
    resource: "kitchen"
    action: "note"
    condition: "args.text == 'salt and pepper' and not args.urgent"
    decision: "ALLOW"
    reason: "Seasoning notes are fine"

  - name: "allow_small_or_vip_order"
    resource: "kitchen"
    action: "order"
    condition: "not args.qty > 10 or args.vip == True"
    decision: "ALLOW"
    reason: "Small orders, or any order for a VIP"

  - name: "default_deny"
    description: "Default deny all unmatched requests"
    resource: "*"
    action: "*"
    decision: "DENY"
    reason: "No matching policy found - default deny"
"#;

#[test]
fn original_format_passes_check_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yaml"), ORIGINAL_FORMAT).unwrap();
    let out = cli(dir.path(), &["policy", "check", "policies.yaml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let all = out.all();
    let warning = |rule: &str| {
        all.lines()
            .filter(|l| l.contains("warning") && l.contains(rule) && l.contains("Python"))
            .count()
    };
    // Once per rule, with the CEL spelling.
    assert_eq!(warning("require_approval_mid_refund"), 1, "{all}");
    assert!(
        all.contains("args.amount > 20 && args.amount <= 100"),
        "{all}"
    );
    assert_eq!(warning("allow_seasoning_note"), 1, "{all}");
    assert!(
        all.contains("args.text == 'salt and pepper' && !args.urgent"),
        "{all}"
    );
    assert_eq!(warning("allow_small_or_vip_order"), 1, "{all}");
    assert!(
        all.contains("!(args.qty > 10) || args.vip == true"),
        "{all}"
    );
    assert_eq!(warning("allow_small_refund"), 0, "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("policies.yaml:") && l.contains("require_approval_mid_refund")),
        "warnings name file and line: {all}"
    );
}

async fn govern(sm: &SudoMode, resource: &str, action: &str, args: Value) -> Value {
    let r = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .json(&json!({"resource": resource, "action": action, "args": args}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", sm.logs());
    r.json().await.unwrap()
}

#[tokio::test]
async fn original_format_runs_and_decides_as_python_would() {
    let sm = SudoMode::start(Options {
        policy: ORIGINAL_FORMAT,
        ..Default::default()
    });
    assert!(
        sm.logs().contains("require_approval_mid_refund"),
        "run warns about the Python spelling: {}",
        sm.logs()
    );
    let cases = [
        ("database", "read", json!({}), "ALLOW"),
        ("database", "delete", json!({}), "DENY"),
        ("payment", "issue_refund", json!({"amount": 10}), "ALLOW"),
        (
            "payment",
            "issue_refund",
            json!({"amount": 50}),
            "REQUIRE_APPROVAL",
        ),
        (
            "payment",
            "issue_refund",
            json!({"amount": 100}),
            "REQUIRE_APPROVAL",
        ),
        ("payment", "issue_refund", json!({"amount": 500}), "DENY"),
        // `and` inside a string literal stays text.
        (
            "kitchen",
            "note",
            json!({"text": "salt and pepper", "urgent": false}),
            "ALLOW",
        ),
        (
            "kitchen",
            "note",
            json!({"text": "salt and pepper", "urgent": true}),
            "DENY",
        ),
        (
            "kitchen",
            "note",
            json!({"text": "salt", "urgent": false}),
            "DENY",
        ),
        // Python: (not (qty > 10)) or (vip == True).
        ("kitchen", "order", json!({"qty": 5, "vip": false}), "ALLOW"),
        ("kitchen", "order", json!({"qty": 50, "vip": true}), "ALLOW"),
        ("kitchen", "order", json!({"qty": 50, "vip": false}), "DENY"),
        ("shell", "exec", json!({}), "DENY"),
    ];
    for (resource, action, args, want) in cases {
        let v = govern(&sm, resource, action, args.clone()).await;
        assert_eq!(v["status"], want, "{resource} {action} {args}: {v}");
    }
}

// ---------------------------------------------------------------------------
// 16.5: rules shadowed by an earlier unconditional rule are reported.

#[test]
fn rules_after_the_starter_catch_all_are_reported() {
    let dir = starter_with("myrules.yaml", ALLOW_CUSTOMERS);
    let out = cli(dir.path(), &["policy", "check"]);
    let all = out.all();
    let line = all
        .lines()
        .find(|l| l.contains("warning") && l.contains("allow_customers"))
        .unwrap_or_else(|| panic!("no shadowing warning:\n{all}"));
    assert!(line.contains("myrules.yaml:2:"), "{line}");
    assert!(line.contains("deny_everything_else"), "{line}");
    assert!(line.contains("never"), "{line}");
    assert_eq!(out.code, 0, "{all}");

    // The starter's catch-all tells the truth about where rules go.
    let explain = cli(
        dir.path(),
        &[
            "policy",
            "explain",
            "-X",
            "POST",
            "-d",
            "email=a@example.com",
            "https://api.stripe.com/v1/customers",
        ],
    );
    assert!(
        explain.stdout.contains("00-") && explain.stdout.contains("before default.yaml"),
        "{}",
        explain.all()
    );
}

#[test]
fn run_warns_about_shadowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/a-catch-all.yaml"),
        "rules:\n  - name: deny_all\n    resource: \"*\"\n    decision: DENY\n",
    )
    .unwrap();
    let sm = SudoMode::start_in(dir, Options::default());
    let logs = sm.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("allow_all") && l.contains("deny_all") && l.contains("never")),
        "{logs}"
    );
}

// ---------------------------------------------------------------------------
// 16.6: `policy check` reports everything it can in one run.

const PYTHONISMS: &str = r#"rules:
  - name: all_at_once
    resource: stripe.charges
    action: create
    condition: "args.a == None or not args.b"
    decision: DENY
  - name: typo_resource
    resource: stripe.customer
    decision: ALLOW
  - name: typo_action
    resource: stripe.customers
    action: creat
    decision: ALLOW
  - name: not_cel_one
    resource: "*"
    condition: "args.x = 5"
    decision: DENY
  - name: not_cel_two
    resource: "*"
    condition: "args.y === 1"
    decision: DENY
"#;

#[test]
fn check_reports_every_problem_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PYTHONISMS).unwrap();
    let out = cli(dir.path(), &["policy", "check", "p.yaml"]);
    let all = out.all();
    assert_eq!(out.code, 1, "{all}");
    // Both errors, with file, line and rule.
    assert!(
        all.lines()
            .any(|l| l.starts_with("p.yaml:16:") && l.contains("not_cel_one")),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("p.yaml:20:") && l.contains("not_cel_two")),
        "{all}"
    );
    // Every Python spelling of one condition in one warning.
    let py = all
        .lines()
        .find(|l| l.contains("all_at_once"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(py.contains("warning"), "{py}");
    assert!(py.contains("args.a == null || !args.b"), "{py}");
    // Names no mapping produces, with the closest real one.
    let res = all
        .lines()
        .find(|l| l.contains("typo_resource"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        res.contains("warning") && res.contains("stripe.customers"),
        "{res}"
    );
    let act = all
        .lines()
        .find(|l| l.contains("typo_action"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        act.contains("warning") && act.contains("\"create\""),
        "{act}"
    );
}

#[test]
fn explain_takes_a_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "rules:\n  - name: allow_customer_create\n    resource: stripe.customers\n    action: create\n    decision: ALLOW\n",
    )
    .unwrap();
    let out = cli(
        dir.path(),
        &[
            "policy",
            "explain",
            "--policy",
            "mine.yaml",
            "--format",
            "json",
            "-d",
            "email=a@example.com",
            "https://api.stripe.com/v1/customers",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["rule"], "allow_customer_create", "{v}");
}

// ---------------------------------------------------------------------------
// 16.10 (part): `policy test` messages and the version hash.

#[test]
fn policy_test_failures_name_the_deciding_rule_once() {
    let dir = starter_with("00-mine.yaml", ALLOW_CUSTOMERS);
    let out = cli(dir.path(), &["policy", "test"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let fail = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("creating a Stripe customer is denied"))
        .unwrap_or_else(|| panic!("{}", out.all()));
    assert!(
        !fail.contains("allow_customers: rule allow_customers"),
        "{fail}"
    );
    assert!(fail.contains("expected DENY"), "{fail}");
    assert!(
        fail.contains("rule allow_customers") && fail.contains("00-mine.yaml:2"),
        "{fail}"
    );
}

#[test]
fn policy_version_does_not_depend_on_how_the_path_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/x.yaml"), ALLOW_ALL).unwrap();
    let abs = dir.path().join("policies/x.yaml").display().to_string();
    let version = |p: &str| {
        let out = cli(dir.path(), &["policy", "check", p]);
        assert_eq!(out.code, 0, "{}", out.all());
        out.stdout
            .split("version ")
            .nth(1)
            .unwrap_or_else(|| panic!("{}", out.all()))
            .trim()
            .to_string()
    };
    let v = version("policies/x.yaml");
    assert_eq!(version("./policies/x.yaml"), v);
    assert_eq!(version("policies//x.yaml"), v);
    assert_eq!(version(&abs), v);
    assert_eq!(version("policies"), v);
}
