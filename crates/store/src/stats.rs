//! The writers' counters (`Store::stats`, `/metrics`), one set for both
//! backends: the redb writer thread and the PostgreSQL writer task count the
//! same things.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Stats;

#[derive(Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    events: AtomicU64,
    upserts: AtomicU64,
    failed_commits: AtomicU64,
    recoveries: AtomicU64,
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// One group committed: `durable` when it was made durable (fsync'd or
    /// committed in PostgreSQL before anyone was answered).
    pub(crate) fn committed(&self, batches: u64, events: u64, upserts: u64, durable: bool) {
        add(&self.commits, 1);
        add(&self.fsyncs, u64::from(durable));
        add(&self.batches, batches);
        add(&self.events, events);
        add(&self.upserts, upserts);
    }

    pub(crate) fn failed(&self) {
        add(&self.failed_commits, 1);
    }

    pub(crate) fn recovered(&self) {
        add(&self.recoveries, 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            commits: l(&self.commits),
            fsyncs: l(&self.fsyncs),
            batches: l(&self.batches),
            events: l(&self.events),
            upserts: l(&self.upserts),
            failed_commits: l(&self.failed_commits),
            recoveries: l(&self.recoveries),
        }
    }
}
