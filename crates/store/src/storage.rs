//! The storage boundary: everything the request phases, the hold registry and
//! the operator API need from the store — commits with their durability, reads,
//! the audit log and its verification, and the change feed — behind one type.
//! Each backend (redb today) is a variant of [`Backend`]; a new backend adds a
//! variant here and touches no phase.
//!
//! Every method is async: backends whose reads block (redb) run them on the
//! blocking pool, so no caller ever blocks an async worker on the store.

use std::io::Write;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::Grant;
use crate::error::StoreError;
use crate::model::{AuditEvent, Batch, Filter, NewEvent, RequestRecord, Stats, VerifyReport};
use crate::{Store, Submitted};

/// How long a commit's caller waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the batch is on disk (fsync'd).
    Durable,
    /// Only until the batch is queued; it lands within the flush interval.
    Queued,
}

/// A batch in the queue; [`Sent::done`] waits for what the commit asked.
pub struct Sent {
    storage: Storage,
    submitted: Submitted,
    announced: Vec<RequestRecord>,
}

impl Sent {
    /// Resolves once the batch is durable (for `Wait::Durable`), then announces it.
    pub async fn done(self) -> Result<(), StoreError> {
        self.submitted.durable().await?;
        self.storage.announce(self.announced);
        Ok(())
    }
}

/// The backends.
enum Backend {
    Redb(Store),
}

struct Inner {
    backend: Backend,
    /// Request records as committed (SSE, Slack, webhooks).
    changes: broadcast::Sender<RequestRecord>,
}

/// Handle to the storage; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// Announcements a slow subscriber may fall behind by before it misses some.
const CHANGE_FEED_CAPACITY: usize = 4_096;

impl Storage {
    /// Storage on an opened redb [`Store`].
    pub fn redb(store: Store) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        Storage {
            inner: Arc::new(Inner {
                backend: Backend::Redb(store),
                changes,
            }),
        }
    }

    /// The redb store, for tools that read it directly.
    pub fn as_redb(&self) -> Option<&Store> {
        match &self.inner.backend {
            Backend::Redb(s) => Some(s),
        }
    }

    /// Request changes as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<RequestRecord> {
        self.inner.changes.subscribe()
    }

    /// Appends the batch's events and upserts its records atomically, waiting as
    /// `wait` says; then announces the records to subscribers.
    pub async fn commit(&self, batch: Batch, wait: Wait) -> Result<(), StoreError> {
        self.send(batch, wait).await?.done().await
    }

    /// The first half of [`Storage::commit`]: returns once the batch is queued,
    /// in order. Nothing is written when this future is dropped before it
    /// resolves; once it has, the batch will be committed.
    pub async fn send(&self, batch: Batch, wait: Wait) -> Result<Sent, StoreError> {
        let announced = self.to_announce(&batch);
        let submitted = match &self.inner.backend {
            Backend::Redb(s) => s.submit(batch, wait == Wait::Durable).await?,
        };
        Ok(Sent {
            storage: self.clone(),
            submitted,
            announced,
        })
    }

    /// Queues the batch without waiting, even for room in the queue: for the
    /// one terminal write of a request whose future is being dropped, which
    /// cannot wait and must not be lost.
    pub fn commit_now(&self, batch: Batch) -> Result<(), StoreError> {
        let announced = self.to_announce(&batch);
        match &self.inner.backend {
            Backend::Redb(s) => s.commit_unbounded(batch)?,
        }
        self.announce(announced);
        Ok(())
    }

    /// Copies of the records for the subscribers, only when there are any: with
    /// no dashboard or notifier listening the hot path skips the clone.
    fn to_announce(&self, batch: &Batch) -> Vec<RequestRecord> {
        if self.inner.changes.receiver_count() == 0 {
            return Vec::new();
        }
        batch.upserts.clone()
    }

    fn announce(&self, records: Vec<RequestRecord>) {
        for r in records {
            // A subscriber may have left meanwhile: that is normal.
            let _ = self.inner.changes.send(r);
        }
    }

    /// Runs a blocking read of the redb store on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = match &self.inner.backend {
            Backend::Redb(s) => s.clone(),
        };
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Storage(format!("store read task: {e}")))?
    }

    /// One request record.
    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |s| s.get_request(&id)).await
    }

    /// A page of requests, newest first, and the cursor of the next page.
    pub async fn list_requests(
        &self,
        filter: Filter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<(Vec<RequestRecord>, Option<String>), StoreError> {
        self.read(move |s| s.list_requests(&filter, limit, cursor.as_deref()))
            .await
    }

    /// The audit events of one request, in order.
    pub async fn events_for_request(&self, id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let id = id.to_string();
        self.read(move |s| s.events_for_request(&id)).await
    }

    /// Requests still open (pending, or approved with the retry unused).
    pub async fn open_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        self.read(|s| s.pending_requests()).await
    }

    /// Audit events after `after_seq`, at most `limit`.
    pub async fn audit_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(move |s| s.audit_after(after_seq, limit)).await
    }

    /// Recomputes the live hash chain (from the last archived event's hash
    /// when older events were archived).
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.read(|s| s.verify()).await
    }

    /// Recomputes the whole history: the archive segments, then the live chain.
    pub async fn verify_with_archive(&self) -> Result<VerifyReport, StoreError> {
        self.read(|s| s.verify_with_archive()).await
    }

    /// Retention: moves events older than `cutoff`, and the finished requests
    /// whose events all went with them, into a compressed archive segment and
    /// appends an `audit.archived` checkpoint to the live chain. Open requests
    /// (pending, or approved with the retry unused) are never moved. `None`
    /// when nothing is old enough. (SQL: `COPY (SELECT … WHERE time < $1)`
    /// to the segment, then `DELETE` in the same transaction that inserts
    /// the checkpoint.)
    pub async fn archive_before(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<Option<crate::ArchiveReport>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(s) => s.archive_before(cutoff).await,
        }
    }

    /// Number of requests per decision.
    pub async fn counts_by_decision(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.read(|s| s.counts_by_decision()).await
    }

    /// Writes the audit log as JSON Lines into `out` — archived segments
    /// first, then the live log — (blocking: call it from the blocking pool);
    /// returns how many events.
    pub fn export_blocking(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Redb(s) => s.export(since, until, out),
        }
    }

    /// The record as it will be stored — secrets masked where they occur, bulk
    /// arguments truncated — so every view (API, SSE, Slack, webhooks, the
    /// hold registry) is the same one (SPEC §11).
    pub fn redact_record(&self, rec: &mut RequestRecord) {
        match &self.inner.backend {
            Backend::Redb(s) => s.redact_record(rec),
        }
    }

    /// Why the store cannot commit right now; `None` when it can (SPEC §13.10).
    pub fn fault(&self) -> Option<String> {
        match &self.inner.backend {
            Backend::Redb(s) => s.fault(),
        }
    }

    // --- Standing grants (SPEC §6.1). SQL-shaped: a grants table keyed by
    // id; `use_grants` is one conditional update of every row or none.

    /// Stores a new grant with its `grant.created` event, durably.
    pub async fn create_grant(&self, grant: Grant, event: NewEvent) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Redb(s) => s.create_grant(grant, event).await,
        }
    }

    /// One grant.
    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let id = id.to_string();
        self.read(move |s| s.get_grant(&id)).await
    }

    /// Every grant, newest first.
    pub async fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.read(|s| s.list_grants()).await
    }

    /// Grants active at `now` for exactly this agent, resource and action.
    pub async fn active_grants_for(
        &self,
        agent: &str,
        resource: &str,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        let (agent, resource, action) =
            (agent.to_string(), resource.to_string(), action.to_string());
        self.read(move |s| {
            Ok(s.list_grants()?
                .into_iter()
                .filter(|g| g.covers(&agent, &resource, &action) && g.is_active(now))
                .collect())
        })
        .await
    }

    /// Adds one use to every grant of `ids` when each is still active at
    /// `now` — all or none, atomically (concurrent callers never exceed
    /// `max_uses`). `None` when any was not. Runs to completion even if the
    /// caller goes away, so a use is never half-counted.
    pub async fn use_grants(
        &self,
        ids: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Grant>>, StoreError> {
        let task = match &self.inner.backend {
            Backend::Redb(s) => {
                let s = s.clone();
                tokio::spawn(async move { s.use_grants(ids, now).await })
            }
        };
        task.await
            .map_err(|e| StoreError::Storage(format!("grant use task: {e}")))?
    }

    /// Revokes a grant, durably with the event `event` makes of the revoked
    /// grant. `None` for an unknown grant; a revoked one comes back unchanged.
    pub async fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        now: OffsetDateTime,
        event: impl FnOnce(&Grant) -> NewEvent + Send,
    ) -> Result<Option<Grant>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(s) => s.revoke_grant(id, by, now, event).await,
        }
    }

    /// Writer counters.
    pub fn stats(&self) -> Stats {
        match &self.inner.backend {
            Backend::Redb(s) => s.stats(),
        }
    }

    /// Commits what is queued and stops writing; later commits fail.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Redb(s) => s.close().await,
        }
    }
}
