//! `audit.retention` (SPEC §11 "Months of traffic"): a background task that
//! moves events and finished requests older than the retention into archive
//! segments under `<store dir>/archive/`, leaving a checkpoint in the chain.

use std::time::Duration;

use sudomode_store::Storage;
use tokio::sync::watch;

/// How often the task looks for history to archive: a quarter of the
/// retention, between one second and one hour.
pub fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Archives what is older than `retention` now, then every [`interval`],
/// until shutdown.
pub async fn run(storage: Storage, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = interval(retention);
    loop {
        archive_once(&storage, retention).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn archive_once(storage: &Storage, retention: Duration) {
    let Ok(age) = time::Duration::try_from(retention) else {
        return;
    };
    let cutoff = time::OffsetDateTime::now_utc() - age;
    match storage.archive_before(cutoff).await {
        Ok(Some(r)) => tracing::info!(
            segment = %r.segment, events = r.events, requests = r.requests,
            first_seq = r.first_seq, last_seq = r.last_seq,
            "audit history archived"
        ),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "archiving audit history failed; will retry"),
    }
}
