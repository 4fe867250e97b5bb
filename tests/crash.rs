//! Crash consistency (SPEC §11, §13.1, §6 "Restart"): SIGKILL SudoMode in the
//! middle of load, restart it in the same directory, and check that the
//! audit chain verifies, that everything the upstream received has a
//! recorded ALLOW decision, and that no held request vanished.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sudomode_store::{Filter, Status, Store, StoreOptions};

const ADMIN: &str = "crash-test-admin-token";

const POLICY: &str = r#"rules:
  - name: allow_items
    resource: http.allowed.test
    decision: ALLOW
    reason: load
  - name: hold_everything_held
    resource: http.held.test
    decision: REQUIRE_APPROVAL
    reason: needs a human
  - name: deny_rest
    resource: "*"
    decision: DENY
    reason: nothing else
"#;

fn opts(up: &Upstream) -> Options<'static> {
    Options {
        policy: POLICY,
        extra: "hold:\n  timeout: 10m\n",
        resolve: vec![
            ("allowed.test:80".into(), up.addr),
            ("held.test:80".into(), up.addr),
        ],
        env: vec![("SUDOMODE_ADMIN_TOKEN".into(), ADMIN.into())],
        ..Default::default()
    }
}

async fn pending_urls(sm: &SudoMode) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = sm.dashboard_url("/api/v1/requests?status=pending&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = sm
            .api()
            .get(&url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in v["requests"].as_array().cloned().unwrap_or_default() {
            out.insert(
                r["url"].as_str().unwrap_or("").to_string(),
                r["id"].as_str().unwrap_or("").to_string(),
            );
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn all_records(store: &Store) -> Vec<sudomode_store::RequestRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store
            .list_requests(&Filter::default(), 500, cursor.as_deref())
            .unwrap();
        out.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_nothing_and_lets_nothing_through_unrecorded() {
    install_crypto();
    let up = Upstream::http().await;
    let sm = SudoMode::start(opts(&up));
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sm.proxy_url()).unwrap())
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // Held requests: each agent connection stays open while pending.
    const HELD: usize = 25;
    let mut held = Vec::new();
    for n in 0..HELD {
        let c = client.clone();
        held.push(tokio::spawn(async move {
            c.get(format!("http://held.test/held/{n}"))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    // Allowed load from 8 agents, every URL unique.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (c, stop, counter, ok) = (client.clone(), stop.clone(), counter.clone(), ok.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match c.get(format!("http://allowed.test/item/{n}")).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    // Wait for every held request to be pending and for real load.
    let t = Instant::now();
    let seen_pending = loop {
        let p = pending_urls(&sm).await;
        if p.len() == HELD && ok.load(Ordering::Relaxed) >= 200 {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "only {} pending, {} ok",
            p.len(),
            ok.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A few more held requests fired right before the kill: whatever was
    // recorded must survive, whatever was not must not have been sent.
    for n in HELD..HELD + 10 {
        let c = client.clone();
        held.push(tokio::spawn(async move {
            c.get(format!("http://held.test/held/{n}"))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;

    // SIGKILL mid-load.
    let in_flight_before = ok.load(Ordering::Relaxed);
    let mut sm = sm.restart_prep();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    for h in held {
        h.abort();
    }
    let received = up.requests();
    eprintln!(
        "{in_flight_before} allowed requests answered before the kill; upstream received {}",
        received.len()
    );
    assert!(
        received.iter().all(|r| !r.uri.contains("/held/")),
        "a held request reached the upstream"
    );

    // Restart in the same directory: pending requests are still pending.
    sm = sm.restart(opts(&up));
    let after = pending_urls(&sm).await;
    for (url, id) in &seen_pending {
        assert_eq!(
            after.get(url),
            Some(id),
            "pending request {url} vanished after restart"
        );
    }
    assert_eq!(sm.terminate().code(), Some(0), "{}", sm.logs());

    // The audit chain verifies (CLI, store not in use any more).
    let out = std::process::Command::new(bin())
        .args(["audit", "verify", "-c"])
        .arg(sm.path("sudomode.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // And directly through the store.
    let store = Store::open(&sm.path("data/sudomode.redb"), StoreOptions::default()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.ok, "{report:?}");
    let records = all_records(&store);
    let by_url: BTreeMap<&str, &sudomode_store::RequestRecord> =
        records.iter().map(|r| (r.url.as_str(), r)).collect();
    let mut missing = Vec::new();
    for r in &received {
        // The plain-HTTP stand-in sees origin-form `/item/N`.
        let url = format!(
            "http://allowed.test{}",
            r.uri.trim_start_matches("http://allowed.test")
        );
        match by_url.get(url.as_str()) {
            Some(rec) if rec.decision == "ALLOW" => {
                let events = store.events_for_request(&rec.id).unwrap();
                if !events.iter().any(|e| e.kind == "request.decided") {
                    missing.push(format!("{url}: no request.decided event"));
                }
            }
            Some(rec) => missing.push(format!("{url}: recorded as {}", rec.decision)),
            None => missing.push(format!("{url}: no record at all")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} forwarded without a durable ALLOW:\n{}",
        missing.len(),
        missing.join("\n")
    );
    // Every held request that reached the store is still pending (or expired).
    let held_records: Vec<_> = records
        .iter()
        .filter(|r| r.url.contains("/held/"))
        .collect();
    assert!(held_records.len() >= HELD);
    for r in &held_records {
        assert!(
            matches!(r.status, Status::Pending | Status::Expired),
            "{} is {:?}",
            r.url,
            r.status
        );
    }
    let urls: BTreeSet<&str> = held_records.iter().map(|r| r.url.as_str()).collect();
    for url in seen_pending.keys() {
        assert!(urls.contains(url.as_str()), "{url} missing from the store");
    }
}

trait KillNow {
    /// SIGKILL now, keeping the directory for `restart`.
    fn restart_prep(self) -> Self;
}

impl KillNow for SudoMode {
    fn restart_prep(mut self) -> Self {
        self.kill9();
        self
    }
}
