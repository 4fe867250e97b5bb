//! Measures the standing-grant check a REQUIRE_APPROVAL request pays on the redb store:
//! `active_grants_for` with many grants of other agents and intents in the file.
//!
//! `cargo run --release -p sudomode-store --example grant_lookup [GRANTS] [LOOKUPS]`
//! (defaults 10000 and 500). Creates GRANTS grants spread over 50 agents and 40 intents (one
//! per create, each its own durable commit, as the API makes them), then times LOOKUPS lookups
//! of one agent's intent and prints the median and p99 in microseconds, and how many grants
//! each lookup found.

use std::time::Instant;

use sudomode_store::{Grant, NewEvent, Store, StoreOptions};
use time::OffsetDateTime;

const AGENTS: usize = 50;
const INTENTS: usize = 40;

fn grant(i: usize, now: OffsetDateTime) -> Grant {
    Grant {
        id: sudomode_store::new_request_id(),
        created_at: now,
        created_by: "alice".into(),
        from_request: None,
        agent: format!("agent-{}", i % AGENTS),
        resource: format!("svc{}.things", (i / AGENTS) % INTENTS),
        action: "create".into(),
        condition: None,
        expires_at: now + time::Duration::hours(1),
        max_uses: None,
        uses: 0,
        revoked_at: None,
        revoked_by: None,
        reason: Some("bench".into()),
    }
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let grants: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let lookups: usize = args.next().map_or(Ok(500), |s| s.parse())?;
    let dir = tempfile::tempdir_in(".")?;
    let store = Store::open(&dir.path().join("grants.redb"), StoreOptions::default())?;
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    for i in 0..grants {
        store
            .create_grant(grant(i, now), NewEvent::new("grant.created"))
            .await?;
    }
    let created = started.elapsed();
    let mut times = Vec::with_capacity(lookups);
    let mut found = 0;
    for _ in 0..lookups {
        let t = Instant::now();
        found = store
            .active_grants_for("agent-7", "svc3.things", "create", now)?
            .len();
        times.push(t.elapsed().as_micros());
    }
    times.sort_unstable();
    println!(
        "{grants} grants created in {:.1} s; active_grants_for over {lookups} lookups: \
         median {} µs, p99 {} µs ({found} found each)",
        created.as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
    );
    store.close().await?;
    Ok(())
}
