//! MCP tool calls as intents (SPEC §4.9) through the real binary, with the
//! official MCP SDK on both ends: its Streamable HTTP server (uvicorn over TLS
//! with a certificate from the test CA) as the upstream, and its client run by
//! `sudomode exec` as the agent. The server appends every tool it runs to a
//! file, so "never ran" is read from the server's side.
//!
//! Needs the Python test clients (`export PATH=/work/venv/bin:$PATH`, or
//! `scripts/test`, which installs `tests/requirements.txt`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const HOST: &str = "mcp.example.com";
const URL: &str = "https://mcp.example.com/mcp";
const ADMIN: &str = "admin-token-mcp-1";

/// Read-only tools allowed, deletes denied, payments held; the session
/// methods, event stream and session end allowed.
const POLICY: &str = r#"
rules:
  - name: mcp_stream
    resource: "http.mcp.example.com"
    method: [GET, DELETE]
    path: /mcp
    decision: ALLOW
  - name: no_deletes
    resource: "mcp.*.tools"
    action: "delete_*"
    decision: DENY
    reason: deleting is not for agents
  - name: read_only_tools
    resource: "mcp.*.tools"
    action: [read_file, count]
    decision: ALLOW
  - name: payments_need_a_human
    resource: "mcp.*.tools"
    action: [send_payment, handshake]
    decision: REQUIRE_APPROVAL
    reason: payments need a human
  - name: mcp_session
    resource: "mcp.*"
    action: [initialize, "notifications/*", ping, tools/list]
    decision: ALLOW
"#;

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn script(name: &str) -> String {
    format!("{}/tests/mcp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The official SDK's MCP server, over TLS, on 127.0.0.1.
struct McpServer {
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl McpServer {
    async fn start(ca: &TestCa, json_answers: bool) -> McpServer {
        let dir = tempfile::tempdir().unwrap();
        let (chain, key) = ca.leaf(&[HOST]);
        let cert = dir.path().join("leaf.pem");
        let key_path = dir.path().join("leaf-key.pem");
        std::fs::write(&cert, pem("CERTIFICATE", &chain[0])).unwrap();
        std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).unwrap();
        let log = dir.path().join("calls.jsonl");
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script("server.py"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key_path)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if json_answers {
            cmd.arg("--json");
        }
        let mut child = cmd
            .spawn()
            .expect("python3 (export PATH=/work/venv/bin:$PATH)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("the MCP server did not start")
            .unwrap()
            .expect("the MCP server exited");
        let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
            .as_u64()
            .unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        McpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap())),
            log,
            _dir: dir,
            _child: child,
        }
    }

    /// The tools that ran, in order, from the server's own log.
    fn ran(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn ran_tools(&self) -> Vec<String> {
        self.ran()
            .iter()
            .map(|v| v["tool"].as_str().unwrap().to_string())
            .collect()
    }
}

/// SudoMode in front of the MCP server; its config names the proxy address,
/// so `sudomode exec` gives the agent the right environment.
fn sudomode(ca: &TestCa, upstream: SocketAddr, policy: &str, extra: &str) -> SudoMode {
    let port = free_port();
    let extra = format!(
        "proxy:\n  listen: 127.0.0.1:{port}\noperators:\n  - {{name: admin, token: {ADMIN}, role: admin}}\n{extra}"
    );
    SudoMode::start_in_listen(
        tempfile::tempdir().unwrap(),
        Options {
            policy,
            extra: &extra,
            resolve: vec![(format!("{HOST}:443"), upstream)],
            ca_files: vec![ca.pem.clone()],
            ..Default::default()
        },
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:0",
    )
}

/// `sudomode exec -- python3 client.py URL CALLS`: the official MCP client as
/// the agent. Returns its JSON line.
fn agent(sm: &SudoMode, calls: Value) -> tokio::task::JoinHandle<Value> {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.current_dir(sm.dir.path())
        .args(["exec", "-c", "sudomode.yaml", "--", "python3"])
        .arg(script("client.py"))
        .arg(URL)
        .arg(calls.to_string())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("the MCP client hung")
            .expect("sudomode exec");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|_| {
            panic!(
                "client.py: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
}

async fn world(policy: &str, extra: &str, json_answers: bool) -> (TestCa, McpServer, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let server = McpServer::start(&ca, json_answers).await;
    let sm = sudomode(&ca, server.addr, policy, extra);
    (ca, server, sm)
}

async fn requests(sm: &SudoMode, query: &str) -> Vec<Value> {
    let (_, v) = sm
        .api_get(&format!("/api/v1/requests?{query}"), ADMIN)
        .await;
    v["requests"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn allowed_tool_call_runs_and_its_sse_answer_streams_back() {
    let (_ca, server, sm) = world(POLICY, "", false).await;
    let out = agent(
        &sm,
        json!([["read_file", {"path": "/etc/motd"}], ["count", {"n": 3}]]),
    )
    .await
    .unwrap();
    assert_eq!(
        out["tools"],
        json!([
            "count",
            "delete_file",
            "handshake",
            "read_file",
            "send_payment"
        ])
    );
    assert_eq!(out["results"][0]["ok"], true, "{out}");
    assert_eq!(out["results"][0]["text"], "contents of /etc/motd");
    // Progress notifications arrive as separate SSE events before the answer.
    assert_eq!(out["results"][1]["text"], "counted to 3", "{out}");
    assert_eq!(out["results"][1]["progress"], json!([1.0, 2.0, 3.0]));
    assert_eq!(server.ran_tools(), ["read_file", "count"]);
    let read = requests(&sm, "action=read_file").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["resource"], "mcp.mcp.example.com.tools");
    assert_eq!(read[0]["args"], json!({"path": "/etc/motd"}));
    assert_eq!(read[0]["rule"], "read_only_tools");
    assert_eq!(read[0]["status"], "completed");
    let init = requests(&sm, "action=initialize").await;
    assert_eq!(init[0]["resource"], "mcp.mcp.example.com", "{init:?}");
}

#[tokio::test]
async fn json_answers_pass_through() {
    let (_ca, server, sm) = world(POLICY, "", true).await;
    let out = agent(&sm, json!([["read_file", {"path": "/a"}]]))
        .await
        .unwrap();
    assert_eq!(out["results"][0]["text"], "contents of /a", "{out}");
    assert_eq!(server.ran_tools(), ["read_file"]);
}

#[tokio::test]
async fn denied_tool_never_runs_and_the_client_sees_the_reason() {
    let (_ca, server, sm) = world(POLICY, "", false).await;
    let out = agent(
        &sm,
        json!([["delete_file", {"path": "/etc/passwd"}], ["read_file", {"path": "/b"}]]),
    )
    .await
    .unwrap();
    let denied = &out["results"][0];
    assert_eq!(denied["ok"], false, "{out}");
    let message = denied["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("deleting is not for agents") && message.contains("delete_file"),
        "the MCP client shows SudoMode's reason: {out}"
    );
    assert_eq!(denied["data"]["type"], "denied", "{out}");
    assert_eq!(denied["data"]["rule"], "no_deletes", "{out}");
    // The session goes on: the next call runs.
    assert_eq!(out["results"][1]["text"], "contents of /b", "{out}");
    assert_eq!(server.ran_tools(), ["read_file"], "delete_file never ran");
    let rec = requests(&sm, "action=delete_file").await;
    assert_eq!(rec[0]["decision"], "DENY");
    assert_eq!(rec[0]["resource"], "mcp.mcp.example.com.tools");
    assert_eq!(rec[0]["args"]["path"], "/etc/passwd");
}

/// The agent's `send_payment` call, held; checks what the operator sees.
async fn held_payment(
    sm: &SudoMode,
    server: &McpServer,
) -> (tokio::task::JoinHandle<Value>, String) {
    let call = agent(
        sm,
        json!([["send_payment", {"amount": 250, "to": "acct_1"}]]),
    );
    let pending = sm.wait_pending(ADMIN, 1).await;
    let p = &pending[0];
    assert_eq!(p["resource"], "mcp.mcp.example.com.tools");
    assert_eq!(p["action"], "send_payment");
    assert_eq!(p["args"], json!({"amount": 250, "to": "acct_1"}));
    assert!(
        server.ran_tools().is_empty(),
        "nothing runs before a decision"
    );
    (call, p["id"].as_str().unwrap().to_string())
}

/// An operator's `approve` or `reject` through the operator API.
async fn decide(sm: &SudoMode, id: &str, verdict: &str, reason: &str) {
    let (status, body) = sm
        .api_post(
            &format!("/api/v1/requests/{id}/{verdict}"),
            ADMIN,
            json!({"reason": reason}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn held_tool_call_runs_only_after_approval_and_its_result_reaches_the_client() {
    let (_ca, server, sm) = world(POLICY, "", false).await;
    let (call, id) = held_payment(&sm, &server).await;
    decide(&sm, &id, "approve", "invoice 7").await;
    let out = call.await.unwrap();
    assert_eq!(out["results"][0]["ok"], true, "{out}");
    assert_eq!(out["results"][0]["text"], "sent 250 to acct_1");
    assert_eq!(server.ran_tools(), ["send_payment"]);
}

/// The `handshake` tool answers only after the client has received its
/// progress event: it finishes only if the proxy streams the SSE answer of
/// an approved call as it is produced, rather than buffering it.
#[tokio::test]
async fn approved_tool_call_streams_its_sse_events_as_they_happen() {
    let (_ca, server, sm) = world(POLICY, "", false).await;
    let marker = sm.path("progress-seen").display().to_string();
    let call = agent(&sm, json!([["handshake", {"marker": marker}]]));
    let pending = sm.wait_pending(ADMIN, 1).await;
    assert_eq!(pending[0]["action"], "handshake");
    decide(&sm, pending[0]["id"].as_str().unwrap(), "approve", "").await;
    let out = call.await.unwrap();
    assert_eq!(out["results"][0]["text"], "streamed", "{out}");
    assert_eq!(out["results"][0]["progress"], json!([1.0]));
    assert_eq!(server.ran_tools(), ["handshake"]);
}

#[tokio::test]
async fn rejected_tool_call_never_runs() {
    let (_ca, server, sm) = world(POLICY, "", false).await;
    let (call, id) = held_payment(&sm, &server).await;
    decide(&sm, &id, "reject", "not this month").await;
    let out = call.await.unwrap();
    let r = &out["results"][0];
    assert_eq!(r["ok"], false, "{out}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("rejected by admin") && m.contains("not this month")),
        "{out}"
    );
    assert_eq!(r["data"]["type"], "rejected");
    assert!(server.ran_tools().is_empty(), "send_payment never ran");
}

#[tokio::test]
async fn custom_mcp_name_names_the_server() {
    let policy = r#"
rules:
  - name: github_session
    resource: mcp.github
    decision: ALLOW
  - name: github_stream
    resource: "http.*"
    path: /mcp
    decision: ALLOW
  - name: github_reads
    resource: mcp.github.tools
    action: "read_*"
    decision: ALLOW
  - name: github_no_deletes
    resource: mcp.github.tools
    action: "delete_*"
    decision: DENY
    reason: not on github
"#;
    let extra = "intents:\n  - match: {host: mcp.example.com, path: /mcp}\n    mcp: github\n";
    let (_ca, server, sm) = world(policy, extra, false).await;
    let out = agent(
        &sm,
        json!([["read_file", {"path": "/r"}], ["delete_file", {"path": "/r"}]]),
    )
    .await
    .unwrap();
    assert_eq!(out["results"][0]["text"], "contents of /r", "{out}");
    assert!(
        out["results"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not on github")),
        "{out}"
    );
    assert_eq!(server.ran_tools(), ["read_file"]);
    let rec = requests(&sm, "action=delete_file").await;
    assert_eq!(rec[0]["resource"], "mcp.github.tools");
    assert_eq!(rec[0]["rule"], "github_no_deletes");
}

#[tokio::test]
async fn starter_policy_allows_the_session_and_holds_tool_calls() {
    let starter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/default.yaml"
    ))
    .unwrap();
    let (_ca, server, sm) = world(&starter, "", false).await;
    let call = agent(&sm, json!([["read_file", {"path": "/s"}]]));
    let pending = sm.wait_pending(ADMIN, 1).await;
    assert_eq!(pending[0]["action"], "read_file");
    assert_eq!(pending[0]["rule"], "approve_mcp_tool_calls");
    assert!(server.ran_tools().is_empty());
    decide(&sm, pending[0]["id"].as_str().unwrap(), "approve", "").await;
    let out = call.await.unwrap();
    assert_eq!(out["results"][0]["text"], "contents of /s", "{out}");
    let init = requests(&sm, "action=initialize").await;
    assert_eq!(init[0]["rule"], "allow_mcp_session", "{init:?}");
    let list = requests(&sm, "action=tools/list").await;
    assert_eq!(list[0]["decision"], "ALLOW", "{list:?}");
}

// --- Raw JSON-RPC (the SDK never sends these) to a recording stand-in. ---

const RAW_POLICY: &str = r#"
rules:
  - name: no_deletes
    resource: "mcp.*.tools"
    action: "delete_*"
    decision: DENY
    reason: deleting is not for agents
  - name: rest
    resource: "*"
    decision: ALLOW
"#;

async fn post_raw(sm: &SudoMode, body: &str) -> (u16, Value) {
    let r = sm
        .client()
        .post(URL)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    error_body(r).await
}

fn tool_call(id: u32, name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": {"path": "/x"}}})
}

#[tokio::test]
async fn batch_with_one_denied_call_is_refused_whole() {
    let (_ca, up, sm) = api_world(RAW_POLICY, "", &[HOST]).await;
    let batch = json!([tool_call(1, "read_file"), tool_call(2, "delete_file")]);
    let (status, body) = post_raw(&sm, &batch.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "denied");
    assert_eq!(body["error"]["action"], "delete_file");
    assert!(up.requests().is_empty(), "nothing of the batch was sent");
    // The same batch without the delete goes through as sent.
    let ok = json!([tool_call(1, "read_file"), tool_call(2, "read_file")]).to_string();
    let (status, body) = post_raw(&sm, &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.requests()[0].body, ok.as_bytes());
}

#[tokio::test]
async fn a_tool_call_cannot_hide_behind_its_content_type_or_a_method_override() {
    let (_ca, up, sm) = api_world(RAW_POLICY, "", &[HOST]).await;
    let body = tool_call(1, "delete_file").to_string();
    for (content_type, method_override) in [
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        ("application/json", Some("PUT")),
        ("application/json", Some("DELETE")),
    ] {
        let mut req = sm
            .client()
            .post(URL)
            .header("content-type", content_type)
            .body(body.clone());
        if let Some(m) = method_override {
            req = req.header("x-http-method-override", m);
        }
        let (status, err) = error_body(req.send().await.unwrap()).await;
        let case = format!("{content_type} {method_override:?}");
        assert_eq!(status, 403, "{case}: {err}");
        assert_eq!(err["error"]["action"], "delete_file", "{case}: {err}");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn tool_call_without_a_string_name_is_bad_request() {
    let (_ca, up, sm) = api_world(RAW_POLICY, "", &[HOST]).await;
    for params in [json!({"arguments": {}}), json!({"name": 7})] {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params});
        let (status, err) = post_raw(&sm, &body.to_string()).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["type"], "bad_request");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("params.name")),
            "{err}"
        );
        // Also a JSON-RPC error for the request, so MCP clients read it.
        assert_eq!(err["jsonrpc"], "2.0", "{err}");
        assert_eq!(err["id"], 9, "{err}");
        assert_eq!(err["error"]["code"], -32600, "{err}");
    }
    assert!(up.requests().is_empty());
}

#[test]
fn policy_explain_shows_the_tool_intent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "send_payment", "arguments": {"amount": 250, "to": "acct_1"}}});
    let explain = |format: &str| {
        let out = std::process::Command::new(bin())
            .current_dir(dir.path())
            .args(["policy", "explain", "--format", format, "-H"])
            .arg("content-type: application/json")
            .arg("-d")
            .arg(body.to_string())
            .arg(URL)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&explain("json")).unwrap();
    assert_eq!(v["intents"][0]["resource"], "mcp.mcp.example.com.tools");
    assert_eq!(v["intents"][0]["action"], "send_payment");
    assert_eq!(
        v["intents"][0]["args"],
        json!({"amount": 250, "to": "acct_1"})
    );
    assert_eq!(v["decision"], "REQUIRE_APPROVAL");
    assert_eq!(v["rule"], "payments_need_a_human");
    let text = explain("text");
    assert!(
        text.contains("mcp.mcp.example.com.tools send_payment"),
        "{text}"
    );
}
