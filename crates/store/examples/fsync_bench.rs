//! Measures the store's commit throughput and latency on this machine.
//!
//! `cargo run --release -p sudomode-store --example fsync_bench [DIR] [SECONDS]`
//! DIR (default: a temp dir under the current directory) must be on the disk you care about.
//! Prints: raw fsync latency of a plain file, single strict commit latency, and decided-request
//! commits/s (one event + one upsert each) with 64 concurrent committers, strict and batched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sudomode_store::{
    Batch, Durability, NewEvent, RequestRecord, Store, StoreOptions, new_request_id,
};

fn decided() -> Batch {
    let id = new_request_id();
    let record = RequestRecord {
        agent: "bench".into(),
        method: "POST".into(),
        url: "https://api.stripe.com/v1/charges".into(),
        resource: "stripe.charges".into(),
        action: "create".into(),
        args: json!({"amount": 1999, "currency": "usd", "description": "bench"}),
        rule: Some("allow-small-charges".into()),
        reason: "amount under limit".into(),
        required_approvals: 0,
        intents: vec![json!({"resource": "stripe.charges", "action": "create"})],
        retry_key: "0".repeat(64),
        body_sha256: "0".repeat(64),
        policy_version: "0".repeat(64),
        ..sudomode_store::testing::record(&id)
    };
    let event = NewEvent::new("request.decided")
        .request(&id)
        .agent("bench")
        .field("resource", "stripe.charges")
        .field("action", "create")
        .field("decision", "ALLOW")
        .field("rule", "allow-small-charges")
        .field("policy_version", "0".repeat(64));
    Batch::one(event, record)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn raw_fsync(dir: &Path, n: usize) -> Vec<Duration> {
    let path = dir.join("raw-fsync.bin");
    let mut f = std::fs::File::create(&path).expect("create");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&[0u8; 4096]).expect("write");
        f.sync_data().expect("fsync");
        out.push(t.elapsed());
    }
    out.sort();
    out
}

async fn concurrent(store: &Store, tasks: usize, secs: u64, strict: bool) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = store.stats();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if strict {
                    store.commit(decided()).await.expect("commit");
                } else {
                    store.commit_batched(decided()).await.expect("enqueue");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("join");
    }
    store.flush().await.expect("flush");
    let elapsed = t0.elapsed().as_secs_f64();
    let commits = store.stats().commits - before.commits;
    (done.load(Ordering::Relaxed) as f64 / elapsed, commits)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("fsync-bench")
        .tempdir_in(&base)
        .expect("tempdir");

    let raw = raw_fsync(dir.path(), 200);
    println!(
        "raw fsync (4 KiB write + fdatasync): p50 {:?}  p99 {:?}",
        percentile(&raw, 0.5),
        percentile(&raw, 0.99)
    );

    let store =
        Store::open(&dir.path().join("strict.redb"), StoreOptions::default()).expect("open");
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        store.commit(decided()).await.expect("commit");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "single strict commit (1 event + 1 upsert), one caller: p50 {:?}  p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let (rate, commits) = concurrent(&store, 64, secs, true).await;
    println!(
        "strict, 64 concurrent committers: {rate:.0} decided requests/s, {:.0} redb commits/s, {:.1} batches per commit",
        commits as f64 / secs as f64,
        rate * secs as f64 / commits.max(1) as f64
    );
    store.close().await.expect("close");
    drop(store);

    let opts = StoreOptions {
        durability: Durability::Batched,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.path().join("batched.redb"), opts).expect("open");
    let (rate, commits) = concurrent(&store, 64, secs, false).await;
    println!(
        "batched, 64 concurrent enqueuers: {rate:.0} decided requests/s, {:.0} redb commits/s, {} fsyncs",
        commits as f64 / secs as f64,
        store.stats().fsyncs
    );
    let report = store.verify().expect("verify");
    println!(
        "batched chain verifies: {} ({} events)",
        report.ok, report.events
    );
    store.close().await.expect("close");
}
