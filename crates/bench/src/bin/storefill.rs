//! `storefill`: fills an audit store with N requests shaped like the proxy's
//! (issue 22) and reports, as one JSON object: bytes on disk per request,
//! filtered-page latency, `verify` and export throughput, and restart time.
//!
//! Requests go through the store's own write path (the writer thread, group
//! commit, batched durability), two batches per allowed request — decided,
//! then forwarded — as the proxy writes them. The mix: 4 busy agents and a
//! rare one (1%), 50 resources and a rare one (0.5%), 2% DENY, 0.1% held.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{Value, json};
use sudomode_store::{
    Batch, Durability, Filter, NewEvent, RequestRecord, Status, Store, StoreOptions, new_request_id,
};
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "storefill",
    about = "Fill an audit store and measure it (JSON on stdout)"
)]
struct Cli {
    /// Requests to write.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Directory for the store file (kept only with --keep).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Keep the store file.
    #[arg(long)]
    keep: bool,
    /// Times each query is run (the median is reported).
    #[arg(long, default_value_t = 7)]
    repeat: usize,
}

const POLICY: &str = "bbb7f74ef3903989a23ab561d828187c44b276b252932a42a047aee41fc53f4d";
const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Shape {
    agent: String,
    resource: String,
    host: String,
    decision: &'static str,
}

fn shape(i: u64) -> Shape {
    let agent = if i % 100 == 7 {
        "auditor".to_string()
    } else {
        format!("agent-{}", i % 4)
    };
    let (resource, host) = if i % 200 == 3 {
        ("stripe.refunds".to_string(), "api.stripe.com".to_string())
    } else {
        let h = format!("api{}.example.com", i % 50);
        (format!("http.{h}"), h)
    };
    let decision = match i % 1000 {
        0 => "REQUIRE_APPROVAL",
        n if n % 50 == 1 => "DENY",
        _ => "ALLOW",
    };
    Shape {
        agent,
        resource,
        host,
        decision,
    }
}

fn record(id: &str, s: &Shape, i: u64) -> RequestRecord {
    let status = match s.decision {
        "ALLOW" => Status::Allowed,
        "DENY" => Status::Denied,
        _ => Status::Pending,
    };
    let now = OffsetDateTime::now_utc();
    let url = format!("https://{}/v1/items/{}", s.host, i % 997);
    RequestRecord {
        created_at: now,
        agent: s.agent.clone(),
        url,
        resource: s.resource.clone(),
        decision: s.decision.into(),
        rule: Some(format!("rule_{}", s.decision.to_ascii_lowercase())),
        reason: format!("rule rule_{}", s.decision.to_ascii_lowercase()),
        status,
        expires_at: (status == Status::Pending).then(|| now + time::Duration::minutes(10)),
        intents: vec![json!({"resource": s.resource, "action": "get", "args": {}})],
        retry_key: format!("{:064x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15),
        body_sha256: EMPTY_SHA.into(),
        policy_version: POLICY.into(),
        ..sudomode_store::testing::record(id)
    }
}

/// The `request.decided` event as the proxy writes it for a GET.
fn decided(r: &RequestRecord, host: &str) -> NewEvent {
    let path = r.url.split_once(".com").map_or("/", |(_, p)| p);
    NewEvent::new("request.decided")
        .request(r.id.clone())
        .agent(r.agent.clone())
        .field("method", r.method.clone())
        .field("url", r.url.clone())
        .field("resource", r.resource.clone())
        .field("action", r.action.clone())
        .field("args", r.args.clone())
        .field("intents", Value::Array(r.intents.clone()))
        .field("decision", r.decision.clone())
        .field("rule", r.rule.clone())
        .field("reason", r.reason.clone())
        .field("policy_version", r.policy_version.clone())
        .field("body_sha256", r.body_sha256.clone())
        .field("condition_errors", json!([]))
        .field("would_have", json!([]))
        .field(
            "request",
            json!({"headers": {"accept": "*/*", "user-agent": "python-httpx/0.28.1"},
                   "host": host, "method": "GET", "path": path, "port": 443,
                   "query": {}, "scheme": "https"}),
        )
}

fn forwarded(r: &mut RequestRecord, i: u64) -> NewEvent {
    r.status = Status::Completed;
    r.upstream_status = Some(200);
    r.completed_at = Some(OffsetDateTime::now_utc());
    NewEvent::new("request.forwarded")
        .request(r.id.clone())
        .agent(r.agent.clone())
        .field("upstream_status", 200)
        .field("duration_ms", 0.5 + (i % 1000) as f64 / 1000.0)
        .field("request_bytes", 0)
}

async fn fill(store: &Store, n: u64) -> Result<(f64, OffsetDateTime, OffsetDateTime)> {
    let t0 = Instant::now();
    let mut mid = (OffsetDateTime::now_utc(), OffsetDateTime::now_utc());
    for i in 0..n {
        if i == n / 2 {
            mid.0 = OffsetDateTime::now_utc();
        }
        if i == n / 2 + n / 100 {
            mid.1 = OffsetDateTime::now_utc();
        }
        let s = shape(i);
        let id = new_request_id();
        let mut rec = record(&id, &s, i);
        store
            .commit_batched(Batch::one(decided(&rec, &s.host), rec.clone()))
            .await?;
        if s.decision == "ALLOW" {
            let ev = forwarded(&mut rec, i);
            store.commit_batched(Batch::one(ev, rec)).await?;
        }
    }
    store.flush().await?;
    Ok((t0.elapsed().as_secs_f64(), mid.0, mid.1))
}

fn median_ms(store: &Store, f: &Filter, repeat: usize) -> Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let (page, _) = store.list_requests(f, 50, None)?;
        times.push(t.elapsed());
        n = page.len();
    }
    times.sort();
    Ok((times[times.len() / 2].as_secs_f64() * 1000.0, n))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = tempfile_dir(&cli.dir)?;
    let path = dir.join("fill.redb");
    let opts = StoreOptions {
        durability: Durability::Batched,
        ..StoreOptions::default()
    };
    let store = Store::open(&path, opts.clone())?;
    let (fill_s, since, until) = fill(&store, cli.requests).await?;
    store.close().await?;
    drop(store);
    let meta = std::fs::metadata(&path)?;
    let bytes = meta.len();
    // Blocks actually allocated (what `du` reports; the file may be sparse).
    let on_disk = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;

    let t = Instant::now();
    let store = Store::open(&path, opts)?;
    let first = store.list_requests(&Filter::default(), 50, None)?;
    let restart_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(first.0.len() == 50, "listing after restart");

    let filters: Vec<(&str, Filter)> = vec![
        ("none", Filter::default()),
        (
            "agent=auditor (1%)",
            Filter {
                agent: Some("auditor".into()),
                ..Filter::default()
            },
        ),
        (
            "resource=stripe.refunds (0.5%)",
            Filter {
                resource: Some("stripe.refunds".into()),
                ..Filter::default()
            },
        ),
        (
            "decision=DENY (2%)",
            Filter {
                decision: Some("DENY".into()),
                ..Filter::default()
            },
        ),
        (
            "status=pending (0.1%)",
            Filter {
                status: Some(Status::Pending),
                ..Filter::default()
            },
        ),
        (
            "action=delete (no match)",
            Filter {
                action: Some("delete".into()),
                ..Filter::default()
            },
        ),
        (
            "agent=nobody (no match)",
            Filter {
                agent: Some("nobody".into()),
                ..Filter::default()
            },
        ),
        (
            "agent=auditor & decision=DENY",
            Filter {
                agent: Some("auditor".into()),
                decision: Some("DENY".into()),
                ..Filter::default()
            },
        ),
        (
            "time window (1% of history)",
            Filter {
                since: Some(since),
                until: Some(until),
                ..Filter::default()
            },
        ),
    ];
    let mut pages = serde_json::Map::new();
    for (name, f) in &filters {
        let (ms, n) = median_ms(&store, f, cli.repeat)?;
        pages.insert(
            (*name).into(),
            json!({"ms": (ms * 1000.0).round() / 1000.0, "returned": n}),
        );
    }

    let t = Instant::now();
    let report = store.verify()?;
    let verify_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.ok, "verify failed: {report:?}");
    let t = Instant::now();
    let mut sink = std::io::sink();
    let exported = store.export(None, None, &mut sink)?;
    let export_s = t.elapsed().as_secs_f64();
    store.close().await?;
    drop(store);
    if !cli.keep {
        std::fs::remove_dir_all(&dir).ok();
    }
    let out = json!({
        "requests": cli.requests,
        "events": report.events,
        "fill_seconds": round2(fill_s),
        "store_bytes": bytes,
        "store_bytes_on_disk": on_disk,
        "bytes_per_request": round2(on_disk as f64 / cli.requests as f64),
        "apparent_bytes_per_request": round2(bytes as f64 / cli.requests as f64),
        "restart_ms": round2(restart_ms),
        "filtered_page_ms": pages,
        "verify_seconds": round2(verify_s),
        "verify_events_per_s": (report.events as f64 / verify_s).round(),
        "export_seconds": round2(export_s),
        "export_events_per_s": (exported as f64 / export_s).round(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn tempfile_dir(base: &std::path::Path) -> Result<PathBuf> {
    let name = format!("storefill-{}", std::process::id());
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
