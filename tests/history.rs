//! History at scale (SPEC §11 "Months of traffic", issue 22), through the real
//! binary: `audit.retention` moves old events and finished requests into
//! archive segments, open requests stay, the listing and its filters keep
//! working, and `audit verify --archive` proves the whole history — from the
//! store, and through a running server — while a damaged segment fails it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{CliOut, Options, SudoMode, cli};
use serde_json::{Value, json};

const POLICY: &str = r#"rules:
  - name: shell_needs_approval
    resource: shell
    action: exec
    decision: REQUIRE_APPROVAL
  - name: no_file_deletes
    resource: file
    action: delete
    decision: DENY
  - name: allow_rest
    resource: "*"
    decision: ALLOW
"#;

const EXTRA: &str = "operators:
  - {name: ada, token: admin-token-1, role: admin}
agents:
  - {name: bot, token: bot-token-1}
audit:
  retention: 2s
";

const ADMIN: &str = "admin-token-1";
const BOT: &str = "bot-token-1";

async fn govern(sm: &SudoMode, resource: &str, action: &str) -> String {
    let resp = sm
        .api()
        .post(sm.dashboard_url("/v1/govern"))
        .bearer_auth(BOT)
        .json(&json!({"resource": resource, "action": action, "args": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["request_id"].as_str().unwrap().to_string()
}

async fn listed(sm: &SudoMode, query: &str) -> Vec<String> {
    let (status, body) = sm
        .api_get(&format!("/api/v1/requests?limit=500{query}"), ADMIN)
        .await;
    assert_eq!(status, 200, "{body}");
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("data/archive"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.to_string_lossy().contains("/audit-"));
    out.sort();
    out
}

fn run(dir: &Path, args: &[&str]) -> CliOut {
    cli(dir, args)
}

/// "ok: N events, head H" → N.
fn events_ok(out: &CliOut) -> u64 {
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout
        .strip_prefix("ok: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", out.all()))
}

#[tokio::test]
async fn retention_archives_history_and_verify_archive_proves_it() {
    let mut sm = SudoMode::start(Options {
        policy: POLICY,
        extra: EXTRA,
        ..Default::default()
    });
    let mut old = Vec::new();
    for _ in 0..4 {
        old.push(govern(&sm, "file", "read").await);
    }
    old.push(govern(&sm, "file", "delete").await);
    let held = govern(&sm, "shell", "exec").await;

    // Within a few seconds the old, finished requests leave the live store;
    // the held one stays, listed and still pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = listed(&sm, "").await;
        if !segments(sm.dir.path()).is_empty() && old.iter().all(|id| !ids.contains(id)) {
            assert!(ids.contains(&held), "{ids:?}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing archived: {}", sm.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(listed(&sm, "&status=pending").await, vec![held.clone()]);
    let (status, rec) = sm.api_get(&format!("/api/v1/requests/{held}"), ADMIN).await;
    assert_eq!((status, rec["status"].as_str()), (200, Some("pending")));
    assert!(listed(&sm, "&decision=DENY").await.is_empty());

    // New history keeps being recorded and listed after the archive.
    let fresh = govern(&sm, "file", "read").await;
    assert!(
        listed(&sm, "&agent=bot&decision=ALLOW")
            .await
            .contains(&fresh)
    );

    // While the server runs, the CLI proves the whole history over its API.
    let dir = sm.dir.path().to_path_buf();
    let server = format!("http://{}", sm.dashboard);
    let running = run(
        &dir,
        &[
            "audit",
            "verify",
            "--archive",
            "-c",
            "sudomode.yaml",
            "--server",
            &server,
        ],
    );
    assert!(events_ok(&running) > 10, "{}", running.all());

    assert!(sm.terminate().success(), "{}", sm.logs());
    let live = run(&dir, &["audit", "verify", "-c", "sudomode.yaml"]);
    let live_events = events_ok(&live);
    let whole = run(
        &dir,
        &["audit", "verify", "--archive", "-c", "sudomode.yaml"],
    );
    let all_events = events_ok(&whole);
    assert!(all_events > live_events, "{} / {}", live.all(), whole.all());

    // The export starts at the first event and holds the checkpoint.
    let export = run(&dir, &["audit", "export", "-c", "sudomode.yaml"]);
    assert_eq!(export.code, 0, "{}", export.all());
    let lines: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, all_events);
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines.iter().any(|e| e["type"] == "audit.archived"));
    let decided_old: Vec<&Value> = lines
        .iter()
        .filter(|e| e["type"] == "request.decided" && e["request_id"] == old[0].as_str())
        .collect();
    assert_eq!(decided_old.len(), 1, "archived events are exported");

    // A damaged segment no longer proves the history.
    let seg = &segments(&dir)[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(seg, bytes).unwrap();
    let bad = run(
        &dir,
        &["audit", "verify", "--archive", "-c", "sudomode.yaml"],
    );
    assert_ne!(bad.code, 0, "{}", bad.all());
}
