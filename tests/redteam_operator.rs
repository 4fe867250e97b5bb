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

// ------------------------------------------------------------ 20.2 / 20.11 / 20.13 operator API auth

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: vic, token: viewer-token-1, role: viewer}
agents:
  - {name: bot, token: bot-token-1}
";
const HOLD_SHELL: &str = "rules:\n  - name: shell_needs_approval\n    resource: shell\n    decision: REQUIRE_APPROVAL\n    reason: a human decides\n  - name: allow_rest\n    resource: \"*\"\n    decision: ALLOW\n    reason: fine\n";

fn start_ops() -> SudoMode {
    SudoMode::start(Options {
        policy: HOLD_SHELL,
        extra: OPS,
        ..Default::default()
    })
}

/// A dashboard sign-in as the server answers it: a session token the page
/// keeps (and, in the old design, a cookie plus its CSRF token).
struct SignIn {
    token: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl SignIn {
    async fn new(sm: &SudoMode, operator_token: &str) -> SignIn {
        let resp = sm
            .api()
            .post(sm.dashboard_url("/api/v1/session"))
            .json(&serde_json::json!({"token": operator_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        let v: serde_json::Value = resp.json().await.unwrap();
        SignIn {
            token: v["session_token"].as_str().map(String::from),
            cookie,
            csrf: v["csrf_token"].as_str().map(String::from),
        }
    }

    /// The request with whatever this sign-in authenticates with.
    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut rb = rb;
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        if let Some(c) = &self.csrf {
            rb = rb.header("x-csrf-token", c);
        }
        rb
    }
}

async fn govern_shell(sm: &SudoMode) -> String {
    let (s, v) = sm
        .api_post(
            "/v1/govern",
            "bot-token-1",
            serde_json::json!({"resource": "shell", "action": "exec", "args": {"cmd": "reboot"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["request_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn no_cookie_authorises_anything() {
    let sm = start_ops();
    let id = govern_shell(&sm).await;
    let session = SignIn::new(&sm, "alice-token-1").await;
    // Whatever the browser might hold: the cookie the server set, or one
    // carrying the session token. Neither may authorise a request.
    let cookie = session.cookie.clone().unwrap_or_else(|| {
        format!(
            "sudomode_session={}",
            session.token.as_deref().unwrap_or("x")
        )
    });
    let c = sm.api();
    let list = c
        .get(sm.dashboard_url("/api/v1/requests"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 401, "a cookie read the operator API");
    let who = c
        .get(sm.dashboard_url("/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 401, "a cookie identified an operator");
    let mut approve = c
        .post(sm.dashboard_url(&format!("/api/v1/requests/{id}/approve")))
        .header("cookie", &cookie)
        .json(&serde_json::json!({}));
    if let Some(csrf) = &session.csrf {
        approve = approve.header("x-csrf-token", csrf);
    }
    assert_eq!(approve.send().await.unwrap().status(), 401);
    let (_, rec) = sm
        .api_get(&format!("/api/v1/requests/{id}"), "alice-token-1")
        .await;
    assert_eq!(rec["status"], "pending", "{rec}");

    // The session token itself works, as a bearer token, until sign-out.
    let token = session.token.expect("login returns a session token");
    let (s, who) = sm.api_get("/api/v1/session", &token).await;
    assert_eq!(s, 200);
    assert_eq!(who["operator"]["name"], "alice");
    let out = c
        .delete(sm.dashboard_url("/api/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(out.headers().get("set-cookie").is_none());
    assert_eq!(sm.api_get("/api/v1/requests", &token).await.0, 401);
}

#[tokio::test]
async fn sign_out_ends_the_sessions_event_streams() {
    use futures_util::StreamExt;
    let sm = start_ops();
    let session = SignIn::new(&sm, "alice-token-1").await;
    let c = sm.api();
    let resp = session
        .auth(c.get(sm.dashboard_url("/api/v1/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let id = govern_shell(&sm).await;
    let mut seen = String::new();
    while !seen.contains(&id) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("the held request on the stream")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let out = session
        .auth(c.delete(sm.dashboard_url("/api/v1/session")))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    // After sign-out nothing more arrives: the stream ends (keep-alive
    // comments would keep coming every 15 s otherwise).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived the sign-out");
}

#[tokio::test]
async fn wrong_tokens_are_logged_slowed_and_limited() {
    let sm = start_ops();
    let attempts = (0..24).map(|i| {
        let c = sm.api();
        let url = sm.dashboard_url("/api/v1/requests");
        async move {
            c.get(url)
                .bearer_auth(format!("guess-{i:04}-zzzz"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "24 guesses at once were all answered: {statuses:?}"
    );
    // Sign-in guesses count too.
    let login = sm
        .api()
        .post(sm.dashboard_url("/api/v1/session"))
        .json(&serde_json::json!({"token": "guess-login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    let logs = sm.logs();
    assert!(
        logs.contains("failed authentication") && logs.contains("127.0.0.1"),
        "{logs}"
    );
    assert!(!logs.contains("guess-00"), "a guessed token was logged");
    // The limit is per second: the operator gets back in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _) = sm.api_get("/api/v1/requests", "alice-token-1").await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 429);
        assert!(std::time::Instant::now() < deadline, "still limited");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn only_configured_host_names_are_answered() {
    // Open mode: loopback clients are the `default` agent on /v1/govern.
    let sm = SudoMode::start(Options {
        policy: HOLD_SHELL,
        ..Default::default()
    });
    let port = sm.dashboard.port();
    let c = sm.api();
    // A page on a rebinding name (rebind.example → 127.0.0.1) posts from
    // its own origin, with its own Host.
    let rebound = format!("rebind.example:{port}");
    let r = c
        .post(sm.dashboard_url("/v1/govern"))
        .header("host", &rebound)
        .header("origin", format!("http://{rebound}"))
        .json(&serde_json::json!({"resource": "shell", "action": "exec", "args": {"cmd": "x"}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 421 || status == 403, "{status}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["type"].is_string(), "{body}");
    for path in ["/healthz", "/", "/api/v1/requests"] {
        let r = c
            .get(sm.dashboard_url(path))
            .header("host", &rebound)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 421 | 403),
            "{path}: {}",
            r.status()
        );
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = c
            .get(sm.dashboard_url("/healthz"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let admin = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let (_, list) = sm.api_get("/api/v1/requests", admin.trim()).await;
    assert_eq!(list["requests"], serde_json::json!([]), "{list}");
}

// ------------------------------------------------------------ 20.8 bulk denied requests

#[tokio::test]
async fn denied_bulk_requests_do_not_fill_the_disk() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let host = "bulk.example.test";
    let up = Upstream::https(&ca, &[host]).await;
    let sm = SudoMode::start(Options {
        policy: "rules:\n  - name: no_bulk\n    resource: \"*\"\n    decision: DENY\n    reason: refused\n",
        resolve: vec![(format!("{host}:443"), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    let store = sm.path("data/sudomode.redb");
    let before = std::fs::metadata(&store).unwrap().len();
    let client = sm.client();
    let blob = "z".repeat(900 * 1024);
    let body = serde_json::json!({"amount": 5, "destination": "acct_1", "blob": blob}).to_string();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let r = client
            .post(format!("https://{host}/v1/bulk"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        ids.push(
            r.headers()["x-sudomode-request-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    let grown = std::fs::metadata(&store).unwrap().len() - before;
    assert!(
        grown < 20 * 1024 * 1024,
        "40 refused 0.9 MB requests grew the store by {} MB",
        grown / (1024 * 1024)
    );
    assert!(up.requests().is_empty());
    // What is kept says what was cut, how big it was and which body it was.
    let admin = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let (s, rec) = sm
        .api_get(&format!("/api/v1/requests/{}", ids[0]), admin.trim())
        .await;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["args"]["amount"], 5, "small arguments are kept whole");
    assert_eq!(rec["args"]["destination"], "acct_1");
    let marker = &rec["args"]["sudomode_truncated"];
    assert_eq!(marker["body_sha256"], rec["body_sha256"], "{marker}");
    assert!(marker["bytes"].as_u64().unwrap() > 921_600, "{marker}");
    let blob = rec["args"]["blob"].as_str().unwrap();
    assert!(blob.len() < 2048, "{}", blob.len());
    assert!(
        blob.ends_with("[921600 bytes]"),
        "the cut value's size is kept"
    );
    let (s, verify) = sm.api_get("/api/v1/audit/verify", admin.trim()).await;
    assert_eq!(
        (s, &verify["ok"]),
        (200, &serde_json::json!(true)),
        "{verify}"
    );
}

// ------------------------------------------------------------ 20.10 forged log lines

#[tokio::test]
async fn agent_text_cannot_forge_log_lines() {
    let sm = start_ops();
    let forged = "shell\n2030-01-01T00:00:00.000000Z  INFO sudomode::dashboard: FORGED request approved by alice";
    let (s, v) = sm
        .api_post(
            "/v1/govern",
            "bot-token-1",
            serde_json::json!({"resource": forged, "action": "exec\u{1b}[2K\u{202E}", "args": {}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let logs = sm
        .wait_logs("the forged call", |l| l.contains("FORGED"))
        .await;
    for line in logs.lines().filter(|l| l.contains("FORGED")) {
        assert!(
            line.contains("decided") && line.contains("resource=shell\\n2030"),
            "an agent wrote a log line of its own: {line:?}"
        );
    }
    assert!(
        !logs.contains('\u{1b}'),
        "a terminal escape reached the log"
    );
    assert!(
        !logs.contains('\u{202E}'),
        "a bidi override reached the log"
    );
}
