//! The storage boundary: everything the request phases, the hold registry and
//! the operator API need from the store — commits with their durability, reads,
//! the audit log and its verification, conditional updates of held requests,
//! and the change feed — behind one type. Each backend is a variant of
//! [`Backend`]: redb (one process owns the file) or PostgreSQL (several
//! replicas share one database); no phase knows which.
//!
//! Every method is async: backends whose reads block (redb) run them on the
//! blocking pool, so no caller ever blocks an async worker on the store.
//! Conditional updates run to the end in their own task, so a caller that
//! goes away cannot leave one half done. On redb they are serialised by a
//! lock held until the write is queued (the writer applies the queue in
//! order, and the open index follows the queue), not until it is on disk,
//! so many of them share one fsync.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::Grant;
use crate::error::StoreError;
use crate::model::{
    AuditEvent, Batch, Filter, NewEvent, RequestRecord, Stats, Status, StoreOptions, VerifyReport,
};
use crate::open::RedbBackend;
use crate::postgres::{PeerAsk, Postgres};
use crate::{RowBase, Store, Submitted};

/// How long a commit's caller waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the batch is durable (fsync'd, or committed in PostgreSQL) and
    /// readable.
    Durable,
    /// Until the batch is durable; on redb its records may become readable a
    /// moment later (they wait in a durable journal, [`Wait::Logged`] commits
    /// write fewer pages before answering). For an ALLOW decision about to be
    /// forwarded. PostgreSQL treats it as `Durable`.
    Logged,
    /// Only until the batch is queued; it lands within the flush interval.
    Queued,
}

/// What a conditional update ([`Storage::update_request`]) does with the
/// request as currently stored.
pub enum Update<T> {
    /// Write this record and append these events, atomically; answer `T`.
    Write(Box<RequestRecord>, Vec<NewEvent>, T),
    /// Change nothing; answer `T`.
    Keep(T),
}

/// What [`Storage::insert_pending`] did.
#[derive(Debug)]
pub enum Parked {
    /// The request is now pending.
    Inserted,
    /// An identical request (same retry key) was already pending: join it.
    Existing(Box<RequestRecord>),
}

/// A batch in the queue; [`Sent::done`] waits for what the commit asked.
pub struct Sent {
    storage: Storage,
    submitted: Submitted,
    announced: Vec<RequestRecord>,
    held: Vec<String>,
    base: Option<RowBase>,
}

impl Sent {
    /// The sent record's row, for its ending ([`Storage::commit_now_on`]), when
    /// asked for ([`Storage::send_keeping_base`]) and the backend keeps one.
    pub fn take_base(&mut self) -> Option<RowBase> {
        self.base.take()
    }

    /// Resolves once the batch is durable (for `Wait::Durable`), then announces it.
    pub async fn done(self) -> Result<(), StoreError> {
        if let Err(e) = self.submitted.durable().await {
            if let Backend::Redb(r) = &self.storage.inner.backend
                && !self.held.is_empty()
            {
                r.resync(&self.held);
            }
            return Err(e);
        }
        self.storage.inner.feeds.local(self.announced);
        Ok(())
    }
}

/// The backends.
enum Backend {
    Redb(RedbBackend),
    Postgres(Postgres),
}

/// The change feeds: every change (SSE), this process's own (notifications),
/// and held requests changed by another replica (the hold registry).
pub(crate) struct Feeds {
    changes: broadcast::Sender<Arc<RequestRecord>>,
    own: broadcast::Sender<Arc<RequestRecord>>,
    held_elsewhere: broadcast::Sender<Arc<RequestRecord>>,
    /// Other replicas' questions (`postgres::peers`).
    peer_asks: broadcast::Sender<Arc<PeerAsk>>,
}

/// Other replicas' questions a slow answerer may fall behind by: an ask
/// missed only makes its asker wait out its deadline.
const PEER_ASK_CAPACITY: usize = 64;

/// Announcements a slow subscriber may fall behind by before it misses some.
const CHANGE_FEED_CAPACITY: usize = 4_096;

impl Feeds {
    fn new() -> Self {
        Feeds {
            changes: broadcast::channel(CHANGE_FEED_CAPACITY).0,
            own: broadcast::channel(CHANGE_FEED_CAPACITY).0,
            held_elsewhere: broadcast::channel(CHANGE_FEED_CAPACITY).0,
            peer_asks: broadcast::channel(PEER_ASK_CAPACITY).0,
        }
    }

    /// Another replica's question, to whoever here answers them.
    pub(crate) fn peer_ask(&self, ask: PeerAsk) {
        if self.peer_asks.receiver_count() > 0 {
            let _ = self.peer_asks.send(Arc::new(ask));
        }
    }

    /// Whether records changed elsewhere are wanted: `held` ones by the
    /// registry, any by a change-feed subscriber.
    pub(crate) fn wants_remote(&self, held: bool) -> bool {
        self.changes.receiver_count() > 0 || (held && self.held_elsewhere.receiver_count() > 0)
    }

    fn wants_local(&self) -> bool {
        self.changes.receiver_count() > 0 || self.own.receiver_count() > 0
    }

    fn local(&self, records: Vec<RequestRecord>) {
        for r in records {
            send_both(&self.own, &self.changes, r, true);
        }
    }

    /// Records another replica changed.
    pub(crate) fn remote(&self, records: Vec<RequestRecord>) {
        for r in records {
            let held = r.decision == "REQUIRE_APPROVAL";
            send_both(&self.held_elsewhere, &self.changes, r, held);
        }
    }
}

/// Sends `r` to `first` (when `to_first`) and to `all`, when they have
/// subscribers (one may leave meanwhile: that is normal). Records travel as
/// `Arc`s: shared, not copied, and each feed's ring of 4,096 slots stays a
/// ring of pointers (it is allocated whole when the feed is made).
fn send_both(
    first: &broadcast::Sender<Arc<RequestRecord>>,
    all: &broadcast::Sender<Arc<RequestRecord>>,
    r: RequestRecord,
    to_first: bool,
) {
    let first_wants = to_first && first.receiver_count() > 0;
    let all_wants = all.receiver_count() > 0;
    if !(first_wants || all_wants) {
        return;
    }
    let r = Arc::new(r);
    if first_wants {
        let _ = first.send(r.clone());
    }
    if all_wants {
        let _ = all.send(r);
    }
}

struct Inner {
    backend: Backend,
    feeds: Arc<Feeds>,
}

/// Handle to the storage; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Storage {
    /// Storage on an opened redb [`Store`].
    pub fn redb(store: Store) -> Self {
        Storage {
            inner: Arc::new(Inner {
                backend: Backend::Redb(RedbBackend::new(store)),
                feeds: Arc::new(Feeds::new()),
            }),
        }
    }

    /// Storage in PostgreSQL (`store.postgres`): connects, creates or
    /// migrates the schema, and starts the writer and the change listener.
    /// Errors never contain the connection string.
    pub async fn postgres(url: &str, opts: StoreOptions) -> Result<Self, StoreError> {
        let feeds = Arc::new(Feeds::new());
        let pg = Postgres::open(url, opts, feeds.clone()).await?;
        Ok(Storage {
            inner: Arc::new(Inner {
                backend: Backend::Postgres(pg),
                feeds,
            }),
        })
    }

    /// The redb store, for tools that read it directly.
    pub fn as_redb(&self) -> Option<&Store> {
        match &self.inner.backend {
            Backend::Redb(r) => Some(&r.store),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether other processes change this store too (several replicas):
    /// then held requests must be re-checked, not only announced.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// Every request change as it is committed, this replica's and (with
    /// PostgreSQL) the others' (SSE).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.inner.feeds.changes.subscribe()
    }

    /// Only the changes this process made (notifications: each replica
    /// notifies about its own work, so nothing is sent twice).
    pub fn subscribe_own(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.inner.feeds.own.subscribe()
    }

    /// Held requests changed by another replica (never, with redb).
    pub fn held_elsewhere(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.inner.feeds.held_elsewhere.subscribe()
    }

    /// Other replicas' questions (never, with redb): answer the ones this
    /// replica can with [`Storage::answer_peer`], ignore the rest.
    pub fn peer_asks(&self) -> broadcast::Receiver<Arc<PeerAsk>> {
        self.inner.feeds.peer_asks.subscribe()
    }

    /// Asks the other replicas (`body`: JSON, under 8,000 bytes with its
    /// envelope, else `Invalid`);
    /// the first answer within `within`, or `None` (also with redb, which has
    /// no other replicas).
    pub async fn ask_peers(
        &self,
        body: serde_json::Value,
        within: Duration,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(_) => Ok(None),
            Backend::Postgres(pg) => pg.ask_peers(body, within).await,
        }
    }

    /// Answers another replica's `ask`.
    pub async fn answer_peer(
        &self,
        ask: &PeerAsk,
        body: serde_json::Value,
    ) -> Result<(), StoreError> {
        match &self.inner.backend {
            // An ask only ever comes from PostgreSQL.
            Backend::Redb(_) => Ok(()),
            Backend::Postgres(pg) => pg.answer_peer(ask, body).await,
        }
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
        self.send_keeping_base(batch, wait, false).await
    }

    /// [`Storage::send`]; with `keep_base`, the batch's one record is a request
    /// whose ending will follow, and [`Sent::take_base`] gives its row for it.
    pub async fn send_keeping_base(
        &self,
        batch: Batch,
        wait: Wait,
        keep_base: bool,
    ) -> Result<Sent, StoreError> {
        let announced = self.to_announce(&batch);
        let durable = wait != Wait::Queued;
        let (submitted, held, base) = match &self.inner.backend {
            Backend::Redb(r) => {
                r.track(&batch.upserts);
                let held = held_ids(&batch);
                let (submitted, base) = r.store.submit_keeping_base(batch, wait, keep_base).await?;
                (submitted, held, base)
            }
            Backend::Postgres(p) => (p.submit(batch, durable).await?, Vec::new(), None),
        };
        Ok(Sent {
            storage: self.clone(),
            submitted,
            announced,
            held,
            base,
        })
    }

    /// Queues the batch without waiting, even for room in the queue: for the
    /// one terminal write of a request whose future is being dropped, which
    /// cannot wait and must not be lost.
    pub fn commit_now(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_now_on(batch, None)
    }

    /// [`Storage::commit_now`] of a request's ending: `batch`'s one record is
    /// `base`'s request changed only in its ending fields (status, upstream
    /// status, completion time), and is stored as `base` with those changed.
    pub fn commit_now_on(&self, batch: Batch, base: Option<&RowBase>) -> Result<(), StoreError> {
        let announced = self.to_announce(&batch);
        match &self.inner.backend {
            Backend::Redb(r) => {
                r.track(&batch.upserts);
                r.store.commit_unbounded_on(batch, base)?;
            }
            Backend::Postgres(p) => p.submit_now(batch)?,
        }
        self.inner.feeds.local(announced);
        Ok(())
    }

    /// Copies of the records for the subscribers, only when there are any: with
    /// no dashboard or notifier listening the hot path skips the clone.
    fn to_announce(&self, batch: &Batch) -> Vec<RequestRecord> {
        if !self.inner.feeds.wants_local() {
            return Vec::new();
        }
        batch.upserts.clone()
    }

    /// Runs a blocking read of the redb store on the blocking pool.
    async fn read<T, F>(store: &Store, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Storage(format!("store read task: {e}")))?
    }

    /// One request record.
    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let id = id.to_string();
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, move |s| s.get_request(&id)).await,
            Backend::Postgres(p) => p.get_request(&id).await,
        }
    }

    /// Several request records (those that exist), in no particular order.
    pub async fn get_requests(&self, ids: Vec<String>) -> Result<Vec<RequestRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => {
                Self::read(&r.store, move |s| {
                    let mut out = Vec::with_capacity(ids.len());
                    for id in &ids {
                        out.extend(s.get_request(id)?);
                    }
                    Ok(out)
                })
                .await
            }
            Backend::Postgres(p) => p.get_requests(&ids).await,
        }
    }

    /// A page of requests, newest first, and the cursor of the next page.
    pub async fn list_requests(
        &self,
        filter: Filter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<(Vec<RequestRecord>, Option<String>), StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => {
                Self::read(&r.store, move |s| {
                    s.list_requests(&filter, limit, cursor.as_deref())
                })
                .await
            }
            Backend::Postgres(p) => p.list_requests(&filter, limit, cursor.as_deref()).await,
        }
    }

    /// The audit events of one request, in order.
    pub async fn events_for_request(&self, id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let id = id.to_string();
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, move |s| s.events_for_request(&id)).await,
            Backend::Postgres(p) => p.events_for_request(&id).await,
        }
    }

    /// Requests still open (pending, or approved with the retry unused), oldest first.
    pub async fn open_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Ok(r.open().all()),
            Backend::Postgres(p) => p.open_requests().await,
        }
    }

    /// The newest open request with this retry key (an identical call joins
    /// it while pending, or uses its retry once approved).
    pub async fn find_open(&self, retry_key: &str) -> Result<Option<RequestRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Ok(r.open().find(retry_key).cloned()),
            Backend::Postgres(p) => p.find_open(retry_key).await,
        }
    }

    /// Requests of `agent` pending now.
    pub async fn pending_count(&self, agent: &str) -> Result<usize, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Ok(r.open().pending(agent)),
            Backend::Postgres(p) => p.pending_count(agent).await,
        }
    }

    /// Requests pending now, all agents (PostgreSQL: as of the last check,
    /// at most a second old).
    pub fn pending_total(&self) -> usize {
        match &self.inner.backend {
            Backend::Redb(r) => r.open().pending_total(),
            Backend::Postgres(p) => p.pending_total(),
        }
    }

    /// Open requests whose window ended at `now`: pending past `expires_at`,
    /// approved and unused for longer than `retry_window`.
    pub async fn due_for_expiry(
        &self,
        now: OffsetDateTime,
        retry_window: Duration,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Ok(r.open().due(now, retry_window)),
            Backend::Postgres(p) => p.due_for_expiry(now, retry_window).await,
        }
    }

    /// Records a new pending request with its event — unless an identical one
    /// (same retry key) is pending already, across every replica: then
    /// nothing is written and that one is returned to be joined.
    pub async fn insert_pending(
        &self,
        record: RequestRecord,
        event: NewEvent,
    ) -> Result<Parked, StoreError> {
        let this = self.clone();
        tokio::spawn(async move {
            match &this.inner.backend {
                Backend::Redb(r) => {
                    let sent = {
                        let _one_at_a_time = r.update.lock().await;
                        let existing = r.open().find(&record.retry_key).cloned();
                        if let Some(p) = existing.filter(|p| p.status == Status::Pending) {
                            return Ok(Parked::Existing(Box::new(p)));
                        }
                        this.send(Batch::one(event, record), Wait::Durable).await?
                    };
                    sent.done().await.map(|()| Parked::Inserted)
                }
                Backend::Postgres(p) => {
                    let parked = p.insert_pending(record.clone(), event).await?;
                    if matches!(parked, Parked::Inserted) {
                        this.inner.feeds.local(vec![record]);
                    }
                    Ok(parked)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Storage(format!("store task: {e}")))?
    }

    /// Reads request `id` (None when unknown), lets `f` decide, and writes
    /// what it says together with its events — atomically, across every
    /// replica: no other change of that request comes in between. Runs to
    /// the end even if the caller goes away.
    pub async fn update_request<T, F>(&self, id: &str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Option<RequestRecord>) -> Update<T> + Send + 'static,
    {
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            match &this.inner.backend {
                Backend::Redb(r) => {
                    let (sent, t) = {
                        let _one_at_a_time = r.update.lock().await;
                        let indexed = r.open().get(&id).cloned();
                        let current = match indexed {
                            Some(rec) => Some(rec),
                            None => {
                                // Not open: its last change may still be
                                // queued (a claim just taken); read it
                                // once the queue is written.
                                r.store.flush().await?;
                                this.get_request(&id).await?
                            }
                        };
                        match f(current) {
                            Update::Keep(t) => return Ok(t),
                            Update::Write(record, events, t) => {
                                let batch = Batch {
                                    events,
                                    upserts: vec![*record],
                                };
                                (this.send(batch, Wait::Durable).await?, t)
                            }
                        }
                    };
                    sent.done().await.map(|()| t)
                }
                Backend::Postgres(p) => {
                    let (t, written) = p.update_request(&id, f).await?;
                    if let Some(record) = written {
                        this.inner.feeds.local(vec![record]);
                    }
                    Ok(t)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Storage(format!("store task: {e}")))?
    }

    /// Audit events after `after_seq`, at most `limit`.
    pub async fn audit_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => {
                Self::read(&r.store, move |s| s.audit_after(after_seq, limit)).await
            }
            Backend::Postgres(p) => p.audit_after(after_seq, limit).await,
        }
    }

    /// Recomputes the live hash chain (from the last archived event's hash
    /// when older events were archived).
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, |s| s.verify()).await,
            Backend::Postgres(p) => p.verify().await,
        }
    }

    /// Recomputes the whole history: the archive segments, then the live chain.
    /// PostgreSQL keeps no archives (retention is refused at start), so its
    /// whole history is the live chain.
    pub async fn verify_with_archive(&self) -> Result<VerifyReport, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, |s| s.verify_with_archive()).await,
            Backend::Postgres(p) => p.verify().await,
        }
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
            Backend::Redb(r) => r.store.archive_before(cutoff).await,
            Backend::Postgres(_) => Err(StoreError::Invalid(RETENTION_ON_POSTGRES.into())),
        }
    }

    /// Number of requests per decision.
    pub async fn counts_by_decision(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, |s| s.counts_by_decision()).await,
            Backend::Postgres(p) => p.counts_by_decision().await,
        }
    }

    /// Writes the audit log as JSON Lines into `out` — archived segments
    /// first (redb), then the live log — (blocking: call it from the blocking
    /// pool, inside the runtime); returns how many events.
    pub fn export_blocking(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.export(since, until, out),
            Backend::Postgres(p) => p.export_blocking(since, until, out),
        }
    }

    /// The record as it will be stored — secrets masked where they occur, bulk
    /// arguments truncated — so every view (API, SSE, Slack, webhooks, the
    /// hold registry) is the same one (SPEC §11).
    pub fn redact_record(&self, rec: &mut RequestRecord) {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.redact_record(rec),
            Backend::Postgres(p) => p.redact_record(rec),
        }
    }

    /// Why the store cannot commit right now; `None` when it can (SPEC §13.10).
    pub fn fault(&self) -> Option<String> {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.fault(),
            Backend::Postgres(p) => p.fault(),
        }
    }

    // --- Standing grants (SPEC §6.1). SQL-shaped: a grants table keyed by
    // id; `use_grants` is one conditional update of every row or none.

    /// Stores a new grant with its `grant.created` event, durably.
    pub async fn create_grant(&self, grant: Grant, event: NewEvent) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.create_grant(grant, event).await,
            Backend::Postgres(p) => p.create_grant(grant, event).await,
        }
    }

    /// One grant.
    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => {
                let id = id.to_string();
                Self::read(&r.store, move |s| s.get_grant(&id)).await
            }
            Backend::Postgres(p) => p.get_grant(id).await,
        }
    }

    /// Every grant, newest first.
    pub async fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => Self::read(&r.store, |s| s.list_grants()).await,
            Backend::Postgres(p) => p.list_grants().await,
        }
    }

    /// Grants active at `now` for exactly this agent, resource and action.
    pub async fn active_grants_for(
        &self,
        agent: &str,
        resource: &str,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => {
                let (agent, resource, action) =
                    (agent.to_string(), resource.to_string(), action.to_string());
                Self::read(&r.store, move |s| {
                    s.active_grants_for(&agent, &resource, &action, now)
                })
                .await
            }
            Backend::Postgres(p) => p.active_grants_for(agent, resource, action, now).await,
        }
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
            Backend::Redb(r) => {
                let s = r.store.clone();
                tokio::spawn(async move { s.use_grants(ids, now).await })
            }
            Backend::Postgres(p) => {
                let p = p.clone();
                tokio::spawn(async move { p.use_grants(ids, now).await })
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
            Backend::Redb(r) => r.store.revoke_grant(id, by, now, event).await,
            Backend::Postgres(p) => p.revoke_grant(id, by, now, event).await,
        }
    }

    /// Writer counters.
    pub fn stats(&self) -> Stats {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.stats(),
            Backend::Postgres(p) => p.stats(),
        }
    }

    /// Commits what is queued and stops writing; later commits fail.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Redb(r) => r.store.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }
}

/// Why `audit.retention` is refused with `store.postgres` (also at start).
pub const RETENTION_ON_POSTGRES: &str = "audit.retention is not supported with store.postgres yet: remove audit.retention \
     (PostgreSQL keeps the whole audit log; archive it with your database's own tools)";

/// Ids of the held requests a batch writes (the redb index follows them).
fn held_ids(batch: &Batch) -> Vec<String> {
    batch
        .upserts
        .iter()
        .filter(|r| r.decision == "REQUIRE_APPROVAL")
        .map(|r| r.id.clone())
        .collect()
}
