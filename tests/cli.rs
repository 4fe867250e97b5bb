//! The `policy` and `audit` commands of the real binary: check, explain, test, verify, export
//! (against a stopped server's store, a tampered export, and a running server's API).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `sudomode ARGS` in `dir` with a clean environment for config and tokens.
fn sudomode(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SUDOMODE_CONFIG")
        .env_remove("SUDOMODE_ADMIN_TOKEN")
        .env("SUDOMODE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_file(rel: &str) -> String {
    repo().join(rel).display().to_string()
}

const BAD_POLICY: &str = r#"rules:
  - name: big_charges
    resource: stripe.charges
    action: create
    condition: args.amount > 50 and args.currency == "usd"
    decision: REQUIRE_APPROVAL
  - name: big_charges
    resource: "*"
    decision: DENY
"#;

const FAILING_TESTS: &str = r#"rules:
  - name: allow_reads
    resource: "*"
    action: retrieve
    decision: ALLOW
tests:
  - name: a read is allowed
    request: {url: "https://api.stripe.com/v1/charges/ch_1"}
    expect: ALLOW
    rule: allow_reads
  - name: a charge is allowed
    request: {method: POST, url: "https://api.stripe.com/v1/charges", body: "amount=5"}
    expect: ALLOW
"#;

#[test]
fn policy_check_valid_and_invalid() {
    let ok = sudomode(
        &repo(),
        &[
            "policy",
            "check",
            "policies/default.yaml",
            "policies/examples/stripe.yaml",
        ],
        &[],
    );
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(
        ok.stdout.contains("ok: policies/default.yaml:"),
        "{}",
        ok.all()
    );
    assert!(ok.stdout.contains("version "), "{}", ok.all());

    // Without FILES: the policy the config names.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/a.yaml"), ALLOW_ALL).unwrap();
    let ok = sudomode(dir.path(), &["policy", "check"], &[]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stdout.contains("1 rules"), "{}", ok.all());

    std::fs::write(dir.path().join("bad.yaml"), BAD_POLICY).unwrap();
    let bad = sudomode(dir.path(), &["policy", "check", "bad.yaml"], &[]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    let lines: Vec<&str> = bad.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bad.yaml:5:") && l.contains("big_charges") && l.contains("&&")),
        "{}",
        bad.all()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("bad.yaml:7:")
            && l.contains("big_charges")
            && l.contains("duplicate")),
        "{}",
        bad.all()
    );
    // The configured policy set is checked too when it is broken.
    std::fs::write(dir.path().join("policies/b.yaml"), BAD_POLICY).unwrap();
    let bad = sudomode(dir.path(), &["policy", "check"], &[]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stdout.contains("b.yaml:7:"), "{}", bad.all());
}

#[test]
fn policy_explain_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let policy = repo_file("policies/examples/original-sudomode.yaml");
    std::fs::write(
        dir.path().join("sm.yaml"),
        format!("policies: [{policy:?}]\n"),
    )
    .unwrap();
    let args = [
        "policy",
        "explain",
        "-c",
        "sm.yaml",
        "--format",
        "json",
        "-X",
        "POST",
        "-d",
        "amount=5000&currency=usd",
    ];
    let out = sudomode(
        dir.path(),
        &[&args[..], &["https://api.stripe.com/v1/charges"]].concat(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    assert_eq!(v["decision"], "REQUIRE_APPROVAL");
    assert_eq!(v["rule"], "require_approval_high_amount");
    assert_eq!(v["reason"], "High-value charge requires approval");
    assert_eq!(v["intents"][0]["resource"], "stripe.charges");
    assert_eq!(v["intents"][0]["action"], "create");
    assert_eq!(v["intents"][0]["args"]["amount"], 5000);
    let considered = v["considered"].as_array().unwrap();
    assert_eq!(considered.len(), 3, "{v}");
    assert_eq!(considered[0]["rule"], "allow_read");
    assert_eq!(considered[0]["matched"], false);
    assert!(considered[0]["why"].as_str().is_some_and(|w| !w.is_empty()));
    assert_eq!(considered[2]["matched"], true);

    // Text, with -d @file (implies POST) and --agent.
    std::fs::write(dir.path().join("body.txt"), "amount=20&currency=usd").unwrap();
    let out = sudomode(
        dir.path(),
        &[
            "policy",
            "explain",
            "-c",
            "sm.yaml",
            "--agent",
            "billing-bot",
            "-d",
            "@body.txt",
            "https://api.stripe.com/v1/charges",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("stripe.charges create"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains("decision: ALLOW (rule: allow_low_amount)"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("billing-bot"), "{}", out.all());

    // A request that cannot be mapped: exit 1, said so.
    let out = sudomode(
        dir.path(),
        &[
            "policy",
            "explain",
            "-c",
            "sm.yaml",
            "-H",
            "Content-Encoding: bogus",
            "-d",
            "x=1",
            "https://api.stripe.com/v1/charges",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("could not be mapped"), "{}", out.all());
    // Bad usage: exit 2.
    let out = sudomode(
        dir.path(),
        &[
            "policy",
            "explain",
            "-c",
            "sm.yaml",
            "api.stripe.com/v1/charges",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
}

#[test]
fn policy_test_passes_and_fails() {
    let examples: Vec<String> = std::fs::read_dir(repo().join("policies/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(!examples.is_empty());
    let mut args = vec![
        "policy".to_string(),
        "test".into(),
        "policies/default.yaml".into(),
    ];
    args.extend(examples);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sudomode(&repo(), &args, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(" passed, 0 failed"), "{}", out.all());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("failing.yaml"), FAILING_TESTS).unwrap();
    let out = sudomode(dir.path(), &["policy", "test", "failing.yaml"], &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    let fail = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_default();
    assert!(fail.contains("failing.yaml:11"), "{}", out.all());
    assert!(fail.contains("a charge is allowed"), "{}", out.all());
    assert!(
        !out.stdout.contains("\"a read is allowed\""),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .contains("1 passed, 1 failed"),
        "{}",
        out.all()
    );

    // A file that does not load is a failure too.
    std::fs::write(dir.path().join("bad.yaml"), BAD_POLICY).unwrap();
    let out = sudomode(dir.path(), &["policy", "test", "bad.yaml"], &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("bad.yaml:7:"), "{}", out.all());
}

fn export_lines(out: &Out) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn audit_verify_and_export_a_stopped_servers_store() {
    let mut sm = SudoMode::start(Options::default());
    let status = sm.terminate();
    assert!(status.success(), "{}", sm.logs());
    let dir = sm.dir.path();

    let out = sudomode(dir, &["audit", "verify", "-c", "sudomode.yaml"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.starts_with("ok: 3 events, head "),
        "{}",
        out.all()
    );
    let head = out.stdout.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(head.len(), 64);

    let out = sudomode(dir, &["audit", "export", "-c", "sudomode.yaml"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let events = export_lines(&out);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["policy.loaded", "server.started", "server.stopped"]);
    assert_eq!(events[2]["hash"], head.as_str());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
    }

    // The untouched copy verifies; one changed field fails at that seq.
    std::fs::write(dir.join("export.jsonl"), &out.stdout).unwrap();
    let ok = sudomode(dir, &["audit", "verify", "--file", "export.jsonl"], &[]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stdout.contains(&head), "{}", ok.all());
    let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    let mut second: Value = serde_json::from_str(&lines[1]).unwrap();
    second["version"] = Value::String("9.9.9".into());
    lines[1] = serde_json::to_string(&second).unwrap();
    std::fs::write(dir.join("tampered.jsonl"), lines.join("\n") + "\n").unwrap();
    let bad = sudomode(dir, &["audit", "verify", "--file", "tampered.jsonl"], &[]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stdout.starts_with("FAILED at seq 2"), "{}", bad.all());
    // A deleted event is caught too.
    lines.remove(1);
    std::fs::write(dir.join("deleted.jsonl"), lines.join("\n") + "\n").unwrap();
    let bad = sudomode(dir, &["audit", "verify", "--file", "deleted.jsonl"], &[]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stdout.starts_with("FAILED at seq 2"), "{}", bad.all());

    // Time bounds.
    let none = sudomode(
        dir,
        &[
            "audit",
            "export",
            "-c",
            "sudomode.yaml",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
        &[],
    );
    assert_eq!(none.code, 0, "{}", none.all());
    assert_eq!(none.stdout, "");
    let all = sudomode(
        dir,
        &[
            "audit",
            "export",
            "-c",
            "sudomode.yaml",
            "--until",
            "2999-01-01T00:00:00+02:00",
        ],
        &[],
    );
    assert_eq!(export_lines(&all).len(), 3, "{}", all.all());
    let bad = sudomode(
        dir,
        &[
            "audit",
            "export",
            "-c",
            "sudomode.yaml",
            "--since",
            "yesterday",
        ],
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("--since"), "{}", bad.all());

    // No store at all: a clear error, no store created.
    let empty = tempfile::tempdir().unwrap();
    let out = sudomode(empty.path(), &["audit", "verify"], &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("no audit store"), "{}", out.all());
    assert!(!empty.path().join("data").exists());
}

/// A config for the CLI that points at the running server's real dashboard address (the
/// harness starts it on port 0) and, by default, at the same store.
fn cli_config(sm: &SudoMode) -> &'static str {
    std::fs::write(
        sm.path("cli.yaml"),
        format!("dashboard:\n  listen: \"{}\"\n", sm.dashboard),
    )
    .unwrap();
    "cli.yaml"
}

#[test]
fn audit_verify_and_export_through_a_running_server() {
    let token = "test-admin-token-0123456789";
    let sm = SudoMode::start(Options {
        env: vec![("SUDOMODE_ADMIN_TOKEN".into(), token.into())],
        ..Default::default()
    });
    let dir = sm.dir.path();
    let cfg = cli_config(&sm);

    let out = sudomode(
        dir,
        &["audit", "verify", "-c", cfg],
        &[("SUDOMODE_ADMIN_TOKEN", token)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.starts_with("ok: 2 events, head "),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("running server"), "{}", out.all());

    let out = sudomode(
        dir,
        &["audit", "export", "-c", cfg],
        &[("SUDOMODE_ADMIN_TOKEN", token)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let types: Vec<String> = export_lines(&out)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["policy.loaded", "server.started"]);

    // --server overrides the configured address.
    let url = sm.dashboard_url("");
    let out = sudomode(
        dir,
        &["audit", "verify", "-c", "sudomode.yaml", "--server", &url],
        &[("SUDOMODE_ADMIN_TOKEN", token)],
    );
    assert_eq!(out.code, 0, "{}", out.all());

    // A wrong token is refused, clearly.
    let out = sudomode(
        dir,
        &["audit", "verify", "-c", cfg],
        &[("SUDOMODE_ADMIN_TOKEN", "wrong")],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("401"), "{}", out.all());
    // No token at all (no operators, no generated token file): says what to set.
    let out = sudomode(dir, &["audit", "verify", "-c", cfg], &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("SUDOMODE_ADMIN_TOKEN"), "{}", out.all());
}

#[test]
fn audit_verify_uses_the_generated_admin_token() {
    // No operator and no SUDOMODE_ADMIN_TOKEN: `run` writes data/admin-token, which the CLI reads.
    let sm = SudoMode::start(Options::default());
    assert!(sm.path("data/admin-token").exists());
    let cfg = cli_config(&sm);
    let out = sudomode(sm.dir.path(), &["audit", "verify", "-c", cfg], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.starts_with("ok: 2 events"), "{}", out.all());
}
