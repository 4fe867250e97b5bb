//! Regression tests for the operator-side red-team findings (issue 20):
//! each one drives the real binary the way the attack did and checks that
//! it no longer works.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Output of one `sudomode …` run.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `sudomode ARGS` in `dir` with exactly the environment given (plus
/// PATH, so `exec` can find its command).
fn run_clean(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
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

// ------------------------------------------------------------ 20.1 exec

const SECRET_CONFIG: &str = r#"proxy:
  listen: 127.0.0.1:18080
dashboard:
  listen: 127.0.0.1:18081
operators:
  - {name: alice, token: "${env:ALICE_TOKEN}", role: approver}
  - {name: ops, token: "${file:ops-token}", role: admin}
agents:
  - {name: billing-bot, token: "${env:BOT_TOKEN}"}
credentials:
  - name: stripe
    hosts: ["api.stripe.com"]
    header: Authorization
    value: "Bearer ${env:STRIPE_KEY}"
"#;

const ALICE_VALUE: &str = "alice-operator-secret-7f3a";
const BOT_VALUE: &str = "bot-agent-token-91c2";
const STRIPE_VALUE: &str = "sk_live_stripe_secret_55d1";
const ADMIN_VALUE: &str = "admin-env-token-c0ffee";

fn secret_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sudomode.yaml"), SECRET_CONFIG).unwrap();
    std::fs::write(dir.path().join("ops-token"), "ops-file-token-3b9e\n").unwrap();
    dir
}

const ALL_SECRETS: [(&str, &str); 4] = [
    ("ALICE_TOKEN", ALICE_VALUE),
    ("BOT_TOKEN", BOT_VALUE),
    ("STRIPE_KEY", STRIPE_VALUE),
    ("SUDOMODE_ADMIN_TOKEN", ADMIN_VALUE),
];

#[test]
fn exec_hands_the_agent_proxy_variables_and_none_of_sudomodes_secrets() {
    let dir = secret_dir();
    let out = run_clean(dir.path(), &["exec", "--", "env"], &ALL_SECRETS);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let env = out.stdout;
    assert!(
        env.contains("HTTPS_PROXY=http://127.0.0.1:18080"),
        "proxy variables: {env}"
    );
    assert!(env.contains("SSL_CERT_FILE="), "{env}");
    for (name, value) in ALL_SECRETS {
        assert!(
            !env.contains(&format!("{name}=")),
            "{name} reached the agent: {env}"
        );
        assert!(
            !env.contains(value),
            "the value of {name} reached the agent"
        );
    }
    assert!(!env.contains("ops-file-token"), "{env}");
}

#[test]
fn exec_for_an_agent_puts_only_its_own_token_in_the_proxy_url() {
    let dir = secret_dir();
    let out = run_clean(
        dir.path(),
        &["exec", "--agent", "billing-bot", "--", "env"],
        &ALL_SECRETS,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let env = out.stdout;
    assert!(
        env.contains(&format!(
            "HTTPS_PROXY=http://billing-bot:{BOT_VALUE}@127.0.0.1:18080"
        )),
        "{env}"
    );
    assert!(!env.contains("BOT_TOKEN="), "{env}");
    for (name, value) in [ALL_SECRETS[0], ALL_SECRETS[2], ALL_SECRETS[3]] {
        assert!(
            !env.contains(value),
            "the value of {name} reached the agent"
        );
    }
}

#[test]
fn env_needs_none_of_the_configs_secrets() {
    let dir = secret_dir();
    std::fs::remove_file(dir.path().join("ops-token")).unwrap();
    let out = run_clean(dir.path(), &["env"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "export HTTP_PROXY=http://127.0.0.1:18080 HTTPS_PROXY=http://127.0.0.1:18080"
        ),
        "{}",
        out.stdout
    );
    // NO_PROXY without ports, and the loopback names (SPEC §3).
    assert!(
        out.stdout
            .contains("export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1"),
        "{}",
        out.stdout
    );
    let out = run_clean(dir.path(), &["exec", "--", "true"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // An agent's own token is what `--agent` truly needs: a missing one is
    // an error that names the key, never a value.
    let out = run_clean(dir.path(), &["env", "--agent", "billing-bot"], &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("agents[0].token"), "{}", out.stderr);
    assert!(out.stderr.contains("BOT_TOKEN"), "{}", out.stderr);
    let out = run_clean(
        dir.path(),
        &["env", "--agent", "billing-bot"],
        &[("BOT_TOKEN", BOT_VALUE)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(BOT_VALUE), "{}", out.stdout);
    let out = run_clean(dir.path(), &["env", "--agent", "nobody"], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
}

#[test]
fn a_newcomers_exec_shows_proxy_variables_and_no_sudomode_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(dir.path(), &["init", "."], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run_clean(
        dir.path(),
        &["exec", "--", "env"],
        &[
            ("SUDOMODE_ADMIN_TOKEN", ADMIN_VALUE),
            ("HOME", "/nonexistent"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("HTTPS_PROXY=http://127.0.0.1:8080"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("NO_PROXY=127.0.0.1,localhost,::1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("HOME=/nonexistent"),
        "the rest is inherited"
    );
    assert!(
        !out.stdout.contains("SUDOMODE_ADMIN_TOKEN"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(ADMIN_VALUE), "{}", out.stdout);
}

// ------------------------------------------------------------ 20.14 config errors, store mode

/// Config errors name the key and never quote a secret reference's value or
/// a token written as a YAML number.
#[test]
fn config_errors_never_quote_a_secrets_value() {
    let secret = "s3cret-value-4711";
    let cases = [
        ("proxy:\n  listen: \"${env:SM_SECRET}\"\n", "proxy.listen"),
        ("hold:\n  timeout: \"${env:SM_SECRET}\"\n", "hold.timeout"),
        (
            "upstream:\n  resolve: {\"api.example.com:443\": \"${env:SM_SECRET}\"}\n",
            "upstream.resolve",
        ),
        (
            "proxy:\n  max_body_bytes: \"${env:SM_SECRET}\"\n",
            "proxy.max_body_bytes",
        ),
    ];
    for (yaml, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sudomode.yaml"), yaml).unwrap();
        let out = run_clean(dir.path(), &["ca", "path"], &[("SM_SECRET", secret)]);
        assert_eq!(out.code, 2, "{yaml}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(key), "{yaml}: {}", out.stderr);
        assert!(!out.stderr.contains(secret), "{yaml}: {}", out.stderr);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sudomode.yaml"),
        "operators:\n  - {name: alice, token: 987654321012, role: admin}\n",
    )
    .unwrap();
    let out = run_clean(dir.path(), &["ca", "path"], &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("operators[0].token"), "{}", out.stderr);
    assert!(!out.stderr.contains("987654321012"), "{}", out.stderr);
}

#[tokio::test]
async fn the_store_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let sm = SudoMode::start(Options::default());
    let mode = |rel: &str| {
        std::fs::metadata(sm.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data/sudomode.redb"), 0o600, "store file");
    assert_eq!(mode("data/admin-token"), 0o600, "admin token");
}
