//! Store faults (SPEC §13.10): with the store on a small filesystem that fills
//! up, SudoMode refuses what needs the store (nothing is forwarded), says so
//! on `/healthz`, and recovers by itself once there is room — without a
//! restart, with the chain intact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-123";

/// A tmpfs mounted for the test; unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn health(sm: &SudoMode) -> (u16, Value) {
    let r = sm
        .api()
        .get(sm.dashboard_url("/healthz"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_full_disk_fails_closed_reports_unhealthy_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("data"), "6m") else {
        eprintln!("SKIPPED: this test needs to mount a tmpfs (run as root with mount(8))");
        return;
    };
    let up = Upstream::http().await;
    let sm = SudoMode::start_in(
        dir,
        Options {
            resolve: vec![("api.test:80".into(), up.addr)],
            env: vec![("SUDOMODE_ADMIN_TOKEN".into(), ADMIN.into())],
            ..Default::default()
        },
    );
    install_crypto();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sm.proxy_url()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let body = serde_json::json!({"blob": "x".repeat(20_000)}).to_string();
    let post = || {
        client
            .post("http://api.test/upload")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };

    // Fill the disk until the store refuses.
    let mut refused = None;
    for _ in 0..3_000 {
        let resp = post().await.unwrap();
        if resp.status() != 200 {
            refused = Some(error_body(resp).await);
            break;
        }
    }
    let (status, err) = refused.expect("the 6 MiB disk never filled up");
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"]["type"], "store_unavailable", "{err}");
    let (hs, hv) = health(&sm).await;
    assert_eq!(hs, 503, "{hv}");
    assert_eq!(hv["status"], "unavailable");
    assert!(hv["reason"].as_str().unwrap().contains("store"), "{hv}");

    // While faulted nothing is forwarded.
    let forwarded = up.requests().len();
    for _ in 0..3 {
        let (s, e) = error_body(post().await.unwrap()).await;
        assert_eq!(
            (s, e["error"]["type"].as_str()),
            (503, Some("store_unavailable"))
        );
    }
    assert_eq!(up.requests().len(), forwarded, "nothing went upstream");

    // Room again: it recovers without a restart.
    fs.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (hs, hv) = health(&sm).await;
        if hs == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {hv}\n{}",
            sm.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().len(), forwarded + 1);

    let (_, v) = sm.api_get("/api/v1/audit/verify", ADMIN).await;
    assert_eq!(v["ok"], true, "{v}");
    let metrics = sm
        .api()
        .get(sm.dashboard_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(counter("sudomode_store_errors_total") >= 1, "{metrics}");
    assert!(counter("sudomode_store_recoveries_total") >= 1, "{metrics}");
    // The counter moves just before the line is written.
    let logs = sm
        .wait_logs("the recovery", |l| l.contains("audit store recovered"))
        .await;
    assert!(logs.contains("audit store fault"), "{logs}");
}
