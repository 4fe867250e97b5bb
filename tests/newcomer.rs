//! What a newcomer hits (issue 16), through the real binary and real
//! clients: `sudomode exec` with requests, curl, httpx and undici reaching
//! `/v1/govern` directly; the pending answer after `hold.reply_after` as
//! stripe-python, the OpenAI SDK and boto3 show it; logs that name every
//! refusal under the id the API knows; and the sharp edges of `env`, `run`
//! and the operator API.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "operators:\n  - {name: alice, token: alice-token-1, role: admin}\n";
const HOLD_ALL: &str = "rules:\n  - name: hold_all\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reason: a person decides\n";

// ---------------------------------------------------------------- NO_PROXY

/// SudoMode on fixed ports that its config file names too, so that `sudomode
/// exec -c` hands agents the addresses of this very instance.
fn fixed_ports(policy: &'static str) -> (SudoMode, PathBuf) {
    install_crypto();
    let (p, d) = (free_port(), free_port());
    let extra: &'static str = Box::leak(
        format!("proxy:\n  listen: 127.0.0.1:{p}\ndashboard:\n  listen: 127.0.0.1:{d}\n")
            .into_boxed_str(),
    );
    let sm = SudoMode::start_in_listen(
        tempfile::tempdir().unwrap(),
        Options {
            policy,
            extra,
            ..Default::default()
        },
        &format!("127.0.0.1:{p}"),
        &format!("127.0.0.1:{d}"),
    );
    let config = sm.path("sudomode.yaml");
    (sm, config)
}

/// `sudomode exec -c CONFIG -- CMD…` from a clean environment (no proxy
/// variables of the test runner's own); its last stdout line as JSON.
async fn exec_json(config: &Path, cmd: &[&str], env: &[(&str, &str)]) -> Value {
    let out = exec_out(config, cmd, env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
        panic!(
            "{cmd:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `sudomode exec -c CONFIG -- CMD…` from a clean environment.
async fn exec_out(config: &Path, cmd: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = tokio::process::Command::new(bin());
    c.arg("exec").arg("-c").arg(config).arg("--").args(cmd);
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    c.output().await.unwrap()
}

/// undici and global-agent (pinned in tests/node/package.json), installed
/// once into target/node-clients with npm.
fn node_modules() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/node-clients");
    let modules = dir.join("node_modules");
    if modules.join("undici/package.json").exists() && modules.join("global-agent").exists() {
        return modules;
    }
    // Installed beside, then renamed: tests in other processes may race.
    let staging = root.join(format!("target/node-clients.{}", std::process::id()));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::copy(
        root.join("tests/node/package.json"),
        staging.join("package.json"),
    )
    .unwrap();
    let st = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&staging)
        .status()
        .expect("npm");
    assert!(st.success(), "npm install failed");
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    modules
}

#[tokio::test]
async fn exec_clients_reach_govern_directly_with_no_proxy() {
    let (sm, config) = fixed_ports(ALLOW_ALL);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/newcomer.py");
    let undici = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/govern.cjs");
    let modules = node_modules().display().to_string();
    let port = sm.dashboard.port();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("http://{host}:{port}/v1/govern");
        let body = r#"{"resource":"shell","action":"exec","args":{"command":"ls"}}"#;
        let curl = [
            "sh",
            "-c",
            "curl -sS -X POST -H 'content-type: application/json' -d \"$1\" -w '\\n' \"$2\"",
            "curl",
            body,
            &url,
        ];
        let clients: Vec<(&str, Vec<&str>)> = vec![
            ("curl", curl.to_vec()),
            ("requests", vec!["python3", script, "govern_requests", &url]),
            ("httpx", vec!["python3", script, "govern_httpx", &url]),
            ("undici", vec!["node", undici, &url]),
        ];
        for (name, cmd) in clients {
            let v = exec_json(&config, &cmd, &[("NODE_PATH", &modules)]).await;
            // curl prints the body itself; the scripts wrap it with the status.
            let answer = match name {
                "curl" => v.clone(),
                "undici" => v["body"].clone(),
                _ => v["result"]["body"].clone(),
            };
            assert_eq!(
                answer["status"],
                "ALLOW",
                "{name} via {host}: {v}\n{}",
                sm.logs()
            );
            assert!(answer["request_id"].is_string(), "{name}: {v}");
        }
    }
    assert!(
        !sm.logs().contains("own listeners"),
        "no govern call went through the proxy:\n{}",
        sm.logs()
    );
}

#[tokio::test]
async fn a_dashboard_call_through_the_proxy_says_to_add_the_host_to_no_proxy() {
    install_crypto();
    let sm = SudoMode::start(Options::default());
    let client = sm.client();
    let port = sm.dashboard.port();
    for host in ["127.0.0.1", "localhost"] {
        let r = client
            .post(format!("http://{host}:{port}/v1/govern"))
            .json(&json!({"resource": "shell", "action": "exec", "args": {}}))
            .send()
            .await
            .unwrap();
        let (status, v) = error_body(r).await;
        assert_eq!(status, 403, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "your client sent a call for SudoMode's dashboard through the proxy; add {host} to NO_PROXY"
            )),
            "{msg}"
        );
        assert_eq!(v["error"]["rule"], "sudomode.builtin");
    }
    // The proxy listener itself keeps its own message.
    let r = client
        .get(format!("http://127.0.0.1:{}/", sm.proxy.port()))
        .send()
        .await
        .unwrap();
    let (status, v) = error_body(r).await;
    assert_eq!(status, 403);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not proxy requests to its own listeners"),
        "{v}"
    );
}

// ------------------------------------------------------- env, exec and run

#[test]
fn env_and_exec_export_node_and_global_agent_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sudomode.yaml"), "").unwrap();
    let out = cli(dir.path(), &["env"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for line in [
        "NODE_USE_ENV_PROXY=1",
        "GLOBAL_AGENT_HTTP_PROXY=http://127.0.0.1:8080",
        "GLOBAL_AGENT_HTTPS_PROXY=http://127.0.0.1:8080",
        "GLOBAL_AGENT_NO_PROXY=127.0.0.1,localhost,::1",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.all());
    }
    let out = cli(
        dir.path(),
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$NODE_USE_ENV_PROXY|$GLOBAL_AGENT_HTTPS_PROXY|$GLOBAL_AGENT_NO_PROXY\"",
        ],
    );
    assert_eq!(
        out.stdout.trim(),
        "1|http://127.0.0.1:8080|127.0.0.1,localhost,::1",
        "{}",
        out.all()
    );
}

#[tokio::test]
async fn node_https_with_global_agent_goes_through_sudomode_under_exec() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.example.test"]).await;
    let (p, d) = (free_port(), free_port());
    let extra = format!("proxy:\n  listen: 127.0.0.1:{p}\ndashboard:\n  listen: 127.0.0.1:{d}\n");
    let sm = SudoMode::start_in_listen(
        tempfile::tempdir().unwrap(),
        Options {
            extra: &extra,
            resolve: vec![("api.example.test:443".into(), up.addr)],
            ca_files: vec![ca.pem.clone()],
            ..Default::default()
        },
        &format!("127.0.0.1:{p}"),
        &format!("127.0.0.1:{d}"),
    );
    let modules = node_modules().display().to_string();
    let get = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/get.cjs");
    let v = exec_json(
        &sm.path("sudomode.yaml"),
        &[
            "node",
            "-r",
            "global-agent/bootstrap",
            get,
            "https://api.example.test/hello",
        ],
        &[("NODE_PATH", &modules)],
    )
    .await;
    assert_eq!(v["status"], 200, "{v}\n{}", sm.logs());
    assert!(
        v["request_id"].is_string(),
        "answered through SudoMode: {v}"
    );
    assert_eq!(up.requests().len(), 1);
}

/// SudoMode on fixed ports in front of a stand-in for `host`, which its
/// upstream client trusts; `sudomode exec -c` hands agents this instance.
async fn exec_world(host: &str) -> (TestCa, Upstream, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[host]).await;
    let (p, d) = (free_port(), free_port());
    let extra = format!("proxy:\n  listen: 127.0.0.1:{p}\ndashboard:\n  listen: 127.0.0.1:{d}\n");
    let sm = SudoMode::start_in_listen(
        tempfile::tempdir().unwrap(),
        Options {
            extra: &extra,
            resolve: vec![(format!("{host}:443"), up.addr)],
            ca_files: vec![ca.pem.clone()],
            ..Default::default()
        },
        &format!("127.0.0.1:{p}"),
        &format!("127.0.0.1:{d}"),
    );
    (ca, up, sm)
}

/// The README's client table: git needs nothing beyond `sudomode exec`
/// (`HTTPS_PROXY`, `GIT_SSL_CAINFO`); its smart-HTTP discovery reaches the
/// upstream through SudoMode.
#[tokio::test]
async fn git_goes_through_sudomode_under_exec() {
    let (_ca, up, sm) = exec_world("git.example.test").await;
    let out = exec_out(
        &sm.path("sudomode.yaml"),
        &["git", "ls-remote", "https://git.example.test/team/repo.git"],
        &[("GIT_TERMINAL_PROMPT", "0"), ("GIT_CONFIG_NOSYSTEM", "1")],
    )
    .await;
    let seen = up.requests();
    assert!(
        seen.iter().any(
            |r| r.uri.contains("git.example.test/team/repo.git/info/refs")
                && r.header("user-agent")
                    .is_some_and(|a| a.starts_with("git/"))
        ),
        "git's request never reached the upstream through SudoMode: {seen:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sm.logs()
    );
    assert!(sm.logs().contains("http.git.example.test"), "{}", sm.logs());
}

/// wget reads `https_proxy` but none of the CA variables: without
/// `--ca-certificate` it fails TLS (nothing reaches the upstream), with it
/// the call goes through SudoMode — as the README says.
#[tokio::test]
async fn wget_needs_ca_certificate_under_exec() {
    let (_ca, up, sm) = exec_world("api.example.test").await;
    let config = sm.path("sudomode.yaml");
    let url = "https://api.example.test/hello";
    let bare = exec_out(&config, &["wget", "-q", "-O", "-", url], &[]).await;
    assert!(!bare.status.success(), "{bare:?}");
    assert!(up.requests().is_empty(), "wget without the CA got through");
    let v = exec_json(
        &config,
        &[
            "sh",
            "-c",
            "wget -q -O - --ca-certificate=\"$SSL_CERT_FILE\" \"$1\"",
            "wget",
            url,
        ],
        &[],
    )
    .await;
    assert!(
        v["uri"].as_str().is_some_and(|u| u.ends_with("/hello")),
        "{v}"
    );
    assert_eq!(up.requests().len(), 1);
}

/// The README's quick start, step by step: `sudomode init`, `run`, the
/// Stripe charge with curl under `sudomode exec` is held by the starter
/// policy, the admin token from `data/admin-token` approves it on the
/// dashboard's API, and curl gets the upstream's answer.
#[tokio::test]
async fn the_readme_quick_start_reaches_a_held_call_and_an_approval() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.stripe.com"]).await;
    let dir = tempfile::tempdir().unwrap();
    let init = cli(dir.path(), &["init", "."]);
    assert_eq!(init.code, 0, "{}", init.all());
    let (p, d) = (free_port(), free_port());
    let extra = format!("proxy:\n  listen: 127.0.0.1:{p}\ndashboard:\n  listen: 127.0.0.1:{d}\n");
    // The starter policy (policies/default.yaml from init) decides alone.
    let sm = SudoMode::start_in_listen(
        dir,
        Options {
            policy: "rules: []\n",
            extra: &extra,
            resolve: vec![("api.stripe.com:443".into(), up.addr)],
            ca_files: vec![ca.pem.clone()],
            ..Default::default()
        },
        &format!("127.0.0.1:{p}"),
        &format!("127.0.0.1:{d}"),
    );
    let config = sm.path("sudomode.yaml");
    let curl = tokio::spawn(async move {
        exec_out(
            &config,
            &[
                "curl",
                "-sS",
                "https://api.stripe.com/v1/charges",
                "-u",
                "sk_test_placeholder:",
                "-d",
                "amount=5000",
                "-d",
                "currency=usd",
                "-d",
                "source=tok_visa",
            ],
            &[],
        )
        .await
    });
    let token = std::fs::read_to_string(sm.path("data/admin-token")).unwrap();
    let token = token.trim();
    let pending = sm.wait_pending(token, 1).await;
    assert_eq!(pending[0]["resource"], "stripe.charges", "{pending:?}");
    assert_eq!(pending[0]["args"]["amount"], 5000, "{pending:?}");
    assert!(up.requests().is_empty(), "held, not forwarded");
    let id = pending[0]["id"].as_str().unwrap();
    let (status, v) = sm
        .api_post(&format!("/api/v1/requests/{id}/approve"), token, json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let out = curl.await.unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(answer["body"], "amount=5000&currency=usd&source=tok_visa");
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn env_outside_a_project_warns_that_the_ca_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["env"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(" HTTPS_PROXY="), "{}", out.all());
    assert!(
        out.stderr.contains("warning")
            && out.stderr.contains("ca-bundle.pem")
            && out.stderr.contains("does not exist"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("sudomode init"), "{}", out.all());
    // Inside a project with its CA, no warning.
    let project = tempfile::tempdir().unwrap();
    assert_eq!(cli(project.path(), &["init", "."]).code, 0);
    let out = cli(project.path(), &["env"]);
    assert!(!out.stderr.contains("does not exist"), "{}", out.all());
}

#[test]
fn run_on_a_busy_address_prints_no_admin_token() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    for flag in ["--proxy-listen", "--dashboard-listen"] {
        let dir = tempfile::tempdir().unwrap();
        let out = cli(dir.path(), &["run", flag, &addr]);
        assert_ne!(out.code, 0, "{}", out.all());
        assert!(out.stderr.contains("binding"), "{}", out.all());
        assert!(
            !out.stdout.contains("admin token") && !dir.path().join("data/admin-token").exists(),
            "a token for a server that never ran: {}",
            out.all()
        );
    }
    drop(busy);
}

#[tokio::test]
async fn operator_api_refuses_unknown_fields() {
    install_crypto();
    let sm = SudoMode::start(Options {
        policy: HOLD_ALL,
        extra: ADMIN,
        ..Default::default()
    });
    let client = sm.client();
    let held = tokio::spawn(client.get("http://api.example.test/x").send());
    let pending = sm.wait_pending("alice-token-1", 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    for route in ["approve", "reject"] {
        let (status, v) = sm
            .api_post(
                &format!("/api/v1/requests/{id}/{route}"),
                "alice-token-1",
                json!({"reason": "ok", "resaon": "typo"}),
            )
            .await;
        assert_eq!(status, 400, "{route}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("resaon"),
            "{v}"
        );
    }
    let (_, v) = sm
        .api_get(&format!("/api/v1/requests/{id}"), "alice-token-1")
        .await;
    assert_eq!(v["status"], "pending", "nothing was decided: {v}");
    let r = sm
        .api()
        .post(sm.dashboard_url("/api/v1/session"))
        .json(&json!({"token": "alice-token-1", "remember": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("remember") && !text.contains("alice-token-1"),
        "{text}"
    );
    let (status, _) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/reject"),
            "alice-token-1",
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(status, 200);
    let _ = held.await;
}

// ------------------------------------------------------------ reply_after

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_held_call_is_answered_pending_and_the_identical_retry_goes_through_once_approved() {
    let extra = format!("{ADMIN}hold:\n  reply_after: 1s\n");
    let (_ca, up, sm) = api_world(HOLD_ALL, &extra, &["api.stripe.com"]).await;
    let client = sm.client();
    let charge = || {
        client
            .post("https://api.stripe.com/v1/charges")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("amount=5000&currency=usd")
            .send()
    };
    let r = charge().await.unwrap();
    assert_eq!(r.status(), 503);
    let retry_after: u64 = header(&r, "retry-after").parse().unwrap_or(0);
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    assert_eq!(header(&r, "stripe-should-retry"), "true");
    let answered_as = header(&r, "x-sudomode-request-id");
    let (_, v) = error_body(r).await;
    let id = v["error"]["request_id"].as_str().unwrap().to_string();
    assert_eq!(v["error"]["type"], "pending", "{v}");
    assert_eq!(answered_as, id);
    assert!(
        v["error"]["approval_url"].as_str().unwrap().ends_with(&id),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("waiting for an operator's approval"),
        "{v}"
    );
    let (_, rec) = sm
        .api_get(&format!("/api/v1/requests/{id}"), "alice-token-1")
        .await;
    assert_eq!(rec["status"], "pending", "the request stays pending: {rec}");

    // The identical retry joins the held request.
    let r = charge().await.unwrap();
    assert_eq!(r.status(), 503);
    let (_, v) = error_body(r).await;
    assert_eq!(v["error"]["request_id"], id.as_str(), "{v}");
    assert!(up.requests().is_empty(), "nothing forwarded while pending");

    let (status, _) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let r = charge().await.unwrap();
    assert_eq!(r.status(), 200, "{}", sm.logs());
    assert_eq!(header(&r, "x-sudomode-request-id"), id);
    assert_eq!(up.requests().len(), 1, "forwarded exactly once");
    // Not a Stripe host: no Stripe header on the pending answer.
    let (_ca2, _up2, sm2) = api_world(HOLD_ALL, &extra, &["api.example.test"]).await;
    let r = sm2
        .client()
        .get("https://api.example.test/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "stripe-should-retry"), "");
}

#[tokio::test]
async fn a_rule_sets_its_own_reply_after() {
    // The rule answers after 1 s although the default never does.
    let policy = "rules:\n  - name: quick\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reply_after: 1s\n";
    let extra = format!("{ADMIN}hold:\n  reply_after: 0\n");
    let (_ca, _up, sm) = api_world(policy, &extra, &["api.example.test"]).await;
    let r = sm
        .client()
        .get("https://api.example.test/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", sm.logs());

    // And `reply_after: 0` on a rule holds the call until it is decided.
    let policy = "rules:\n  - name: patient\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reply_after: 0\n";
    let extra = format!("{ADMIN}hold:\n  reply_after: 1s\n");
    let (_ca, up, sm) = api_world(policy, &extra, &["api.example.test"]).await;
    let client = sm.client();
    let call = tokio::spawn(async move { client.get("https://api.example.test/x").send().await });
    let pending = sm.wait_pending("alice-token-1", 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!call.is_finished(), "answered before it was decided");
    let id = pending[0]["id"].as_str().unwrap();
    sm.api_post(
        &format!("/api/v1/requests/{id}/approve"),
        "alice-token-1",
        json!({}),
    )
    .await;
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn the_policy_api_shows_a_rules_reply_after_as_written() {
    let policy = "rules:\n  - name: quick\n    resource: \"*\"\n    action: delete\n    decision: REQUIRE_APPROVAL\n    reply_after: 20s\n  - name: patient\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reply_after: 0\n  - name: plain\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n";
    install_crypto();
    let sm = SudoMode::start(Options {
        policy,
        extra: ADMIN,
        ..Default::default()
    });
    let (status, v) = sm.api_get("/api/v1/policy", "alice-token-1").await;
    assert_eq!(status, 200, "{v}");
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules[0]["reply_after"], "20s", "{v}");
    assert_eq!(rules[1]["reply_after"], "0", "{v}");
    assert!(rules[2].get("reply_after").is_none(), "{v}");
}

#[tokio::test]
async fn sdks_say_the_call_awaits_approval() {
    let extra = format!("{ADMIN}hold:\n  reply_after: 1s\n");
    let hosts = [
        "api.stripe.com",
        "api.openai.com",
        "dynamodb.us-east-1.amazonaws.com",
    ];
    let (_ca, up, sm) = api_world(HOLD_ALL, &extra, &hosts).await;
    for call in ["stripe_charge", "openai_chat", "ddb_scan"] {
        let args: Vec<&str> = if call == "ddb_scan" {
            vec!["aws", call]
        } else {
            vec![call]
        };
        let v = sdk_script(&sm, "newcomer.py", &args, &[]).await;
        assert_eq!(v["ok"], false, "{call}: {v}");
        assert_eq!(v["status"], 503, "{call}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("waiting for an operator's approval") && msg.contains("/#/requests/"),
            "{call}: the SDK's message must say it awaits approval: {v}"
        );
    }
    assert!(up.requests().is_empty());
}

// -------------------------------------------------------------------- logs

/// The `request_id` of every log line with `marker`.
fn logged_ids(logs: &str, marker: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let rest = &l[l.find("request_id=")? + "request_id=".len()..];
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn joined_calls_are_logged_under_the_id_the_api_knows() {
    let (_ca, _up, sm) = api_world(HOLD_ALL, ADMIN, &["api.example.test"]).await;
    let first = tokio::spawn(sm.client().get("https://api.example.test/same").send());
    let pending = sm.wait_pending("alice-token-1", 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let second = tokio::spawn(sm.client().get("https://api.example.test/same").send());
    // Wait until the second call has joined the first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = sm
            .api_get(&format!("/api/v1/requests/{id}"), "alice-token-1")
            .await;
        let joined = v["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["type"].as_str().unwrap_or("").contains("join"))
        });
        if joined {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never joined: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The joined call's line follows its join event; wait for it, then
    // check nothing more was logged.
    let logs = sm
        .wait_logs("a decided line per call", |l| {
            logged_ids(l, " decided").len() >= 2
        })
        .await;
    let ids = logged_ids(&logs, " decided");
    assert_eq!(ids.len(), 2, "one line per call: {logs}");
    for logged in &ids {
        let (status, _) = sm
            .api_get(&format!("/api/v1/requests/{logged}"), "alice-token-1")
            .await;
        assert_eq!(status, 200, "logged id {logged} must be one the API knows");
    }
    sm.api_post(
        &format!("/api/v1/requests/{id}/reject"),
        "alice-token-1",
        json!({}),
    )
    .await;
    let _ = (first.await, second.await);
}

#[tokio::test]
async fn upstream_connect_and_tls_failures_are_logged() {
    install_crypto();
    let ours = TestCa::new("Upstream Test CA");
    let stranger = TestCa::new("Untrusted CA");
    let untrusted = Upstream::https(&stranger, &["tls.example.test"]).await;
    let closed = free_port();
    let sm = SudoMode::start(Options {
        resolve: vec![
            (
                "down.example.test:443".into(),
                format!("127.0.0.1:{closed}").parse().unwrap(),
            ),
            ("tls.example.test:443".into(), untrusted.addr),
        ],
        ca_files: vec![ours.pem.clone()],
        ..Default::default()
    });
    let client = sm.client();
    for host in ["down.example.test", "tls.example.test"] {
        let r = client
            .get(format!("https://{host}/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{host}");
        let id = header(&r, "x-sudomode-request-id");
        let logs = sm.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("forwarding failed") && l.contains(&id))
            .unwrap_or_else(|| panic!("{host}: no log line for {id}:\n{logs}"));
        assert!(
            line.contains("upstream_error") && line.contains(host),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_aws_chunked_upload_is_refused_and_logged_with_why() {
    let (_ca, up, sm) = api_world(ALLOW_ALL, "", &["agent-bucket.s3.amazonaws.com"]).await;
    let r = sm
        .client()
        .put("https://agent-bucket.s3.amazonaws.com/notes/a.txt")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .header("x-amz-decoded-content-length", "11")
        .body("zz\r\nhello world\r\n0\r\n\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let id = header(&r, "x-sudomode-request-id");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Code>InvalidRequest</Code>") && body.contains("aws-chunked"),
        "{body}"
    );
    let logs = sm.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(" decided") && l.contains(&id))
        .unwrap_or_else(|| panic!("no decision line for {id}:\n{logs}"));
    assert!(
        line.contains("bad_request") && line.contains("aws-chunked"),
        "{line}"
    );
    assert!(up.requests().is_empty());
}

/// `THP_enabled` from a `/proc/PID/status` text (Linux 5.0 and later).
fn thp_enabled(status: &str) -> Option<bool> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim() == "1")
}

/// `sudomode run` turns transparent huge pages off for itself (a held call's
/// small objects would otherwise keep whole 2 MiB pages resident), and only
/// for itself: the agent `sudomode exec` starts keeps the system's setting.
#[test]
fn the_server_runs_without_huge_pages_and_exec_agents_keep_theirs() {
    let Some(own) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| thp_enabled(&s))
    else {
        eprintln!("no THP_enabled in /proc/self/status on this kernel: nothing to check");
        return;
    };
    let sm = SudoMode::start(Options::default());
    let server = std::fs::read_to_string(format!("/proc/{}/status", sm.child.id())).unwrap();
    assert_eq!(thp_enabled(&server), Some(false), "{server}");
    let out = std::process::Command::new(bin())
        .arg("exec")
        .arg("-c")
        .arg(sm.path("sudomode.yaml"))
        .args(["--", "cat", "/proc/self/status"])
        .env_remove("MIMALLOC_ALLOW_THP")
        .output()
        .unwrap();
    let child = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{child}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(thp_enabled(&child), Some(own), "{child}");
}
