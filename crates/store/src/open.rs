//! The redb backend's open requests (pending, or approved with the retry
//! unused) kept in memory by the one process that owns the file: found by
//! retry key, counted per agent, swept for expiry; and the lock that makes the
//! storage boundary's conditional updates atomic on a single process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::Store;
use crate::model::{RequestRecord, Status};

/// Requests that can still change because of an operator, a retry or the
/// clock. Everything here is also in the store; this is its index.
#[derive(Default)]
pub(crate) struct OpenIndex {
    /// Boxed: a table keeps room for about twice its entries, and a record
    /// is several hundred bytes inline.
    by_id: HashMap<String, Box<RequestRecord>>,
    /// Retry key → the newest open request with that key.
    by_key: HashMap<String, String>,
    pending_by_agent: HashMap<String, usize>,
}

impl OpenIndex {
    /// Takes the record's new state: kept while open, dropped once not.
    pub(crate) fn apply(&mut self, rec: &RequestRecord) {
        self.remove(&rec.id);
        if !rec.is_open() {
            return;
        }
        if rec.status == Status::Pending {
            *self.pending_by_agent.entry(rec.agent.clone()).or_default() += 1;
        }
        let newer = self
            .by_key
            .get(&rec.retry_key)
            .is_none_or(|id| id.as_str() <= rec.id.as_str());
        if newer {
            self.by_key.insert(rec.retry_key.clone(), rec.id.clone());
        }
        self.by_id.insert(rec.id.clone(), Box::new(rec.clone()));
    }

    pub(crate) fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if old.status == Status::Pending
            && let Some(n) = self.pending_by_agent.get_mut(&old.agent)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending_by_agent.remove(&old.agent);
            }
        }
        // Only if it still points here: a newer request may own the key.
        if self.by_key.get(&old.retry_key).is_some_and(|k| k == id) {
            self.by_key.remove(&old.retry_key);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&RequestRecord> {
        self.by_id.get(id).map(|r| &**r)
    }

    pub(crate) fn find(&self, key: &str) -> Option<&RequestRecord> {
        self.by_key.get(key).and_then(|id| self.get(id))
    }

    pub(crate) fn pending(&self, agent: &str) -> usize {
        self.pending_by_agent.get(agent).copied().unwrap_or(0)
    }

    pub(crate) fn pending_total(&self) -> usize {
        self.pending_by_agent.values().sum()
    }

    /// Open requests whose time is up at `now` (see [`is_due`]).
    pub(crate) fn due(&self, now: OffsetDateTime, retry_window: Duration) -> Vec<RequestRecord> {
        self.by_id
            .values()
            .filter(|r| is_due(r, now, retry_window))
            .map(|r| (**r).clone())
            .collect()
    }

    /// Every open request, oldest first.
    pub(crate) fn all(&self) -> Vec<RequestRecord> {
        let mut v: Vec<RequestRecord> = self.by_id.values().map(|r| (**r).clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// When an approval's retry window starts: its last approval.
pub fn approved_at(r: &RequestRecord) -> Option<OffsetDateTime> {
    (r.status == Status::Approved)
        .then(|| r.approvals.last().map(|a| a.at))
        .flatten()
}

/// A pending request whose approval window ended, or an approval whose
/// retry window lapsed unused: both expire. (Explicit intents have nothing
/// to forward; their approval is never open.)
pub fn is_due(r: &RequestRecord, now: OffsetDateTime, retry_window: Duration) -> bool {
    match r.status {
        Status::Pending => r.expires_at.is_some_and(|e| now >= e),
        Status::Approved => {
            r.is_open()
                && !r.is_explicit()
                && approved_at(r).is_some_and(|at| now - at > retry_window)
        }
        _ => false,
    }
}

/// The redb backend: the store, its open index, and the update lock.
pub(crate) struct RedbBackend {
    pub(crate) store: Store,
    open: Mutex<OpenIndex>,
    /// Held across a conditional update's read and write.
    pub(crate) update: tokio::sync::Mutex<()>,
}

impl RedbBackend {
    pub(crate) fn new(store: Store) -> Self {
        let mut index = OpenIndex::default();
        match store.pending_requests() {
            Ok(open) => open.iter().for_each(|r| index.apply(r)),
            Err(e) => tracing::error!(error = %e, "reading open requests failed"),
        }
        RedbBackend {
            store,
            open: Mutex::new(index),
            update: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn open(&self) -> MutexGuard<'_, OpenIndex> {
        // Every critical section is a map update that cannot panic halfway.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the index in step with the records a batch writes: only held
    /// requests (decision `REQUIRE_APPROVAL`) can be open, so allowed
    /// traffic never takes the lock.
    pub(crate) fn track(&self, records: &[RequestRecord]) {
        let mut held = records
            .iter()
            .filter(|r| r.decision == "REQUIRE_APPROVAL")
            .peekable();
        if held.peek().is_none() {
            return;
        }
        let mut open = self.open();
        held.for_each(|r| open.apply(r));
    }

    /// After a failed commit the records' state is whatever the file says.
    pub(crate) fn resync(&self, ids: &[String]) {
        for id in ids {
            let stored = self.store.get_request(id).ok().flatten();
            let mut open = self.open();
            match stored {
                Some(r) => open.apply(&r),
                None => open.remove(id),
            }
        }
    }
}
