//! SudoMode's store: request records and the append-only, hash-chained audit log, in redb.
//!
//! One writer thread owns every write. Callers hand it [`Batch`]es through a bounded queue;
//! it folds whatever is queued into one redb transaction and one fsync (group commit), then
//! answers each caller. [`Store::commit`] resolves once the batch is durable;
//! [`Store::commit_batched`] only enqueues. Reads use redb read transactions on the caller's
//! thread and see every commit that has resolved (read-your-writes).
//!
//! Ids: use [`new_request_id`] (UUIDv7 text). Requests are keyed by id, so descending key
//! order is newest first and a listing cursor is simply the last id returned.
//!
//! Canonical form, hashing, null handling and redaction: see [`chain`].

mod archive;
pub mod chain;
mod codec;
mod codec_ser;
mod depth;
mod error;
mod fields;
mod grants;
mod index;
mod large;
mod layout;
mod migrate;
mod model;
mod open;
pub mod postgres;
mod query;
mod rows;
mod slot;
mod stats;
mod storage;
#[doc(hidden)]
pub mod testing;
mod writer;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use slot::DbSlot;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, oneshot};

pub use archive::{
    ARCHIVED_EVENT, ArchiveReport, ArchiveVerifier, archive_dir, file_sha256, segments,
};
pub use chain::{GENESIS_HASH, REDACTED, Redactor, canonical_json, event_hash};
pub use codec::EMPTY_SHA256;
pub use depth::{MAX_STORED_DEPTH, TOO_DEEP};
pub use error::StoreError;
pub use fields::Fields;
pub use grants::Grant;
pub use large::{MAX_ARGS_BYTES, TRUNCATED_KEY};
pub use model::{
    Approval, AuditEvent, Batch, Committed, Durability, EditRecord, Filter, NewEvent,
    RequestRecord, Stats, Status, StoreOptions, VerifyReport,
};
pub use open::{approved_at, is_due};
pub use postgres::PeerAsk;
pub use query::{DEFAULT_LIMIT, MAX_LIMIT, verify_lines, verify_lines_partial};
pub use storage::{Parked, RETENTION_ON_POSTGRES, Sent, Storage, Update, Wait};

use stats::Counters;
use writer::{Msg, Prepared, Writer, WriterTx};

/// id → (): requests that are pending, or approved with the retry grant unused.
pub(crate) const OPEN_REQUESTS: TableDefinition<&str, ()> = TableDefinition::new("open_requests");
/// `status:<s>` / `decision:<d>` → number of requests.
pub(crate) const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");

/// A new request id: a UUIDv7 string (sorts by creation time).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A batch in the writer's queue (see [`Store::submit`]).
pub struct Submitted {
    rx: Option<oneshot::Receiver<Result<Committed, StoreError>>>,
}

impl Submitted {
    /// Resolves once the batch is on disk (at once for a batch not submitted durable).
    pub async fn durable(self) -> Result<(), StoreError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.await.map_err(|_| StoreError::Closed)?.map(|_| ()),
        }
    }
}

/// A request's row as the store prepared it (pre-encoded), kept by the caller
/// so that the request's ending is stored as this row with its ending fields
/// changed ([`Storage::commit_now_on`]), without encoding the record again.
#[derive(Clone, Debug)]
pub struct RowBase(pub(crate) Arc<[u8]>);

/// Handle to the store; cheap to clone. The last clone dropped stops the writer (after
/// committing what is queued) and releases the file.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) slot: Arc<DbSlot>,
    /// The codec's dictionary (id → text), for readers.
    pub(crate) words: layout::SharedWords,
    tx: WriterTx,
    permits: Arc<Semaphore>,
    redactor: RwLock<Arc<Redactor>>,
    pub(crate) stats: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Serialises grant read-check-writes (see [`grants`]).
    grant_lock: tokio::sync::Mutex<()>,
    /// Rows committed but not applied yet, by id ([`rows`]).
    pub(crate) unapplied: rows::Unapplied,
}

impl Store {
    /// Opens (creating if needed, with its parent directory) the store at `path` and starts
    /// the writer. Fails with [`StoreError::Locked`] when another process has it open.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        private_file(path)?;
        let db = slot::open_db(path)?;
        let head = init_tables(&db)?;
        let slot = Arc::new(DbSlot::new(db, path));
        let words: layout::SharedWords = Arc::new(RwLock::new(Arc::new(head.words.clone())));
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Counters::default());
        let unapplied = rows::Unapplied::default();
        let writer = Writer {
            slot: slot.clone(),
            rx,
            stats: stats.clone(),
            durability: opts.durability,
            flush_interval: opts.flush_interval,
            max_group: opts.max_group.max(1),
            head_seq: head.seq,
            head_hash: head.hash,
            last_time: head.time,
            interner: codec::Interner::load(&head.words),
            words: words.clone(),
            dirty_since: None,
            recovery: None,
            replay: Vec::new(),
            unapplied: unapplied.clone(),
            deferred_since: None,
        };
        let thread = std::thread::Builder::new()
            .name("sudomode-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let tx = WriterTx::new(tx, thread.thread().clone());
        Ok(Store {
            inner: Arc::new(Inner {
                slot,
                words,
                tx,
                permits: Arc::new(Semaphore::new(
                    opts.queue_capacity.clamp(1, Semaphore::MAX_PERMITS),
                )),
                redactor: RwLock::new(Arc::new(Redactor::new(opts.secrets))),
                stats,
                thread: Mutex::new(Some(thread)),
                grant_lock: tokio::sync::Mutex::new(()),
                unapplied,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.inner.slot.path()
    }

    /// Why the store cannot commit right now; `None` when healthy (SPEC §13.10).
    pub fn fault(&self) -> Option<String> {
        self.inner.slot.fault()
    }

    /// Replaces the secret values that must never be written: from now on any string in an
    /// event or record containing one is stored as `"[redacted]"`.
    pub fn set_secrets(&self, secrets: Vec<String>) {
        let r = Arc::new(Redactor::new(secrets));
        // A poisoned lock only means a panic elsewhere mid-assignment of an Arc: the value
        // inside is still a whole Arc, so taking it is sound.
        *self
            .inner
            .redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = r;
    }

    /// The record as it will be stored: secrets masked, bulk arguments
    /// truncated. Every view (API, SSE, Slack, webhooks) is this one.
    pub fn redact_record(&self, rec: &mut RequestRecord) {
        stored_view(&self.redactor(), rec);
    }

    fn redactor(&self) -> Arc<Redactor> {
        self.inner
            .redactor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Validates, bounds (nesting, see [`depth`]), redacts, canonicalises and serialises a
    /// batch on the caller's thread, so the writer only hashes and inserts.
    /// `keep_fields`: the writer will hand the stored events back (strict commits).
    fn prepare(&self, batch: Batch, keep_fields: bool) -> Result<Prepared, StoreError> {
        self.prepare_on(batch, keep_fields, None)
    }

    /// [`Store::prepare`]; with `base`, a batch's one record is the request
    /// `base` was prepared for, changed only in its ending fields (status,
    /// upstream status, completion time: nothing to redact or bound).
    fn prepare_on(
        &self,
        batch: Batch,
        keep_fields: bool,
        base: Option<&RowBase>,
    ) -> Result<Prepared, StoreError> {
        let r = self.redactor();
        let events = prepare_events(&r, batch.events, keep_fields)?;
        let patched = match (base, batch.upserts.as_slice()) {
            (Some(base), [rec]) => rows::Row::ending(rec, base, &r)?,
            _ => None,
        };
        let upserts = match patched {
            Some(row) => vec![row],
            None => prepare_records(&r, batch.upserts)?
                .iter()
                .map(rows::Row::new)
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Prepared {
            events,
            upserts,
            keep_fields,
            early: false,
            grants: Vec::new(),
        })
    }

    /// Queues a prepared batch and waits until it is durable.
    async fn commit_prepared(&self, batch: Prepared) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(batch, Some(tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)?.map(|_| ())
    }

    async fn enqueue(
        &self,
        batch: Prepared,
        reply: Option<writer::CommitReply>,
    ) -> Result<(), StoreError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        self.inner.tx.send(Msg::Commit {
            batch,
            reply,
            _permit: Some(permit),
        })
    }

    /// Appends the batch's events and upserts its records atomically; resolves once they are
    /// on disk (fsync'd), with the seqs assigned. Waits while the queue is full.
    pub async fn commit(&self, batch: Batch) -> Result<Committed, StoreError> {
        let batch = self.prepare(batch, true)?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(batch, Some(tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`Store::commit`] (resolves once the batch is on disk) but without building the
    /// stored events for the caller: for callers that only need durability.
    pub async fn commit_durable(&self, batch: Batch) -> Result<(), StoreError> {
        let batch = self.prepare(batch, false)?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(batch, Some(tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)?.map(|_| ())
    }

    /// Queues the batch and returns without waiting for the commit (it lands within
    /// `flush_interval`, durably). Waits only while the queue is full; never drops.
    pub async fn commit_batched(&self, batch: Batch) -> Result<(), StoreError> {
        let batch = self.prepare(batch, false)?;
        self.enqueue(batch, None).await
    }

    /// Queues the batch (waiting only for room in the queue) and returns once it
    /// is in the writer's queue, in order; [`Submitted::durable`] then waits
    /// for what `wait` asks. Splitting the two lets a caller act between
    /// "queued" and "on disk" without being cancelled in between.
    pub async fn submit(&self, batch: Batch, wait: Wait) -> Result<Submitted, StoreError> {
        Ok(self.submit_keeping_base(batch, wait, false).await?.0)
    }

    /// [`Store::submit`]; with `keep_base`, also the [`RowBase`] of the batch's
    /// one record, for its ending.
    pub async fn submit_keeping_base(
        &self,
        batch: Batch,
        wait: Wait,
        keep_base: bool,
    ) -> Result<(Submitted, Option<RowBase>), StoreError> {
        let mut batch = self.prepare(batch, false)?;
        batch.early = wait == Wait::Logged;
        let base = match batch.upserts.as_slice() {
            [row] if keep_base => Some(RowBase(Arc::from(row.pre.as_slice()))),
            _ => None,
        };
        let submitted = if wait != Wait::Queued {
            let (tx, rx) = oneshot::channel();
            self.enqueue(batch, Some(tx)).await?;
            Submitted { rx: Some(rx) }
        } else {
            self.enqueue(batch, None).await?;
            Submitted { rx: None }
        };
        Ok((submitted, base))
    }

    /// Queues the batch at once, without waiting for room in the bounded queue:
    /// for the rare terminal write that cannot wait (a request whose future is
    /// being dropped). Lands within `flush_interval`, like `commit_batched`.
    pub fn commit_unbounded(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_unbounded_on(batch, None)
    }

    /// [`Store::commit_unbounded`] of a request's ending, stored as `base`
    /// (see [`RowBase`]) with the ending fields changed.
    pub fn commit_unbounded_on(
        &self,
        batch: Batch,
        base: Option<&RowBase>,
    ) -> Result<(), StoreError> {
        if self.inner.permits.is_closed() {
            return Err(StoreError::Closed);
        }
        let batch = self.prepare_on(batch, false, base)?;
        self.inner.tx.send(Msg::Commit {
            batch,
            reply: None,
            _permit: None,
        })
    }

    /// Removes what an archive run moved and appends its checkpoint, durably.
    pub(crate) async fn prune(&self, p: archive::Prune) -> Result<(), StoreError> {
        let checkpoint = self.prepare(Batch::events(vec![p.checkpoint]), false)?;
        let (tx, rx) = oneshot::channel();
        let msg = Msg::Prune(
            archive::PreparedPrune {
                upto_seq: p.upto_seq,
                last_hash: p.last_hash,
                rows: p.rows,
                checkpoint,
            },
            tx,
        );
        self.inner.tx.send(msg)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Resolves once everything queued before it is committed and durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.send(Msg::Flush(tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Before reading lists or counts: rows still waiting to be applied ([`rows`]) are
    /// applied first, so a request its agent was already answered about is listed.
    pub(crate) fn sync_rows(&self) {
        if self.inner.unapplied.is_empty() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        if self.inner.tx.send(Msg::ApplyRows(tx)).is_ok() {
            // Bounded: a writer stuck on a fault must not hang readers; they read what is there.
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Commits and fsyncs everything queued, then stops the writer; later writes fail with
    /// [`StoreError::Closed`]. Reads keep working until the last clone is dropped.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.permits.close();
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Shutdown(Some(tx))).is_err() {
            return Ok(()); // already stopped
        }
        let result = rx.await.unwrap_or(Ok(()));
        self.inner.join();
        result
    }

    /// Writer counters (commits, fsyncs, events, …).
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }
}

impl Inner {
    fn join(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            // The writer answers Shutdown as its last act, so this does not wait on I/O.
            if h.join().is_err() {
                tracing::error!("audit store writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.permits.close();
        let _ = self.tx.send(Msg::Shutdown(None));
        self.join();
    }
}

/// Creates the store file owner-only (0600, its new directories 0700) before
/// redb opens it: it holds every request's arguments. An existing file
/// readable by others is narrowed to 0600.
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io(parent))?;
    }
    // redb initialises an empty file as a new database.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let perms = file.metadata().map_err(io(path))?.permissions();
    if perms.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    Ok(())
}

/// Validates, truncates, redacts and canonicalises events on the caller's
/// thread (every backend), so the writer only seals and inserts them.
pub(crate) fn prepare_events(
    r: &Redactor,
    events: Vec<NewEvent>,
    keep_fields: bool,
) -> Result<Vec<chain::PreparedEvent>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for mut ev in events {
        ev.fields.sort();
        chain::validate(&ev).map_err(StoreError::Invalid)?;
        truncate_event_args(&mut ev);
        if depth::clip_event_fields(&mut ev.fields) {
            tracing::warn!(event = %ev.kind, "event values nested too deeply were clipped");
        }
        r.redact_fields(&mut ev.fields);
        for s in [&mut ev.request_id, &mut ev.agent, &mut ev.operator]
            .into_iter()
            .flatten()
        {
            r.redact_str(s);
        }
        out.push(chain::PreparedEvent::new(ev, keep_fields));
    }
    Ok(out)
}

/// Records as stored (see [`Store::redact_record`]).
pub(crate) fn prepare_records(
    r: &Redactor,
    records: Vec<RequestRecord>,
) -> Result<Vec<RequestRecord>, StoreError> {
    let mut out = Vec::with_capacity(records.len());
    for mut rec in records {
        if rec.id.is_empty() {
            return Err(StoreError::Invalid("request id is empty".into()));
        }
        stored_view(r, &mut rec);
        out.push(rec);
    }
    Ok(out)
}

/// Bulk `args` (and each intent's) of a `request.decided`-style event.
fn truncate_event_args(ev: &mut NewEvent) {
    let sha = ev
        .fields
        .get("body_sha256")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(args) = ev.fields.get_mut("args") {
        large::truncate_args(args, &sha);
    }
    if let Some(serde_json::Value::Array(intents)) = ev.fields.get_mut("intents") {
        for i in intents.iter_mut().filter_map(|i| i.get_mut("args")) {
            large::truncate_args(i, &sha);
        }
    }
}

pub(crate) fn stored_view(r: &Redactor, rec: &mut RequestRecord) {
    if depth::clip_record(rec) {
        tracing::warn!(request_id = %rec.id, "record values nested too deeply were clipped");
    }
    large::truncate_args(&mut rec.args, &rec.body_sha256);
    if let Some(a) = &mut rec.approved_args {
        let sha = rec.edit.as_ref().map_or("", |e| e.body_sha256.as_str());
        large::truncate_args(a, sha);
    }
    for i in rec.intents.iter_mut().filter_map(|i| i.get_mut("args")) {
        large::truncate_args(i, &rec.body_sha256);
    }
    redact_record(r, rec);
}

fn redact_record(r: &Redactor, rec: &mut RequestRecord) {
    for s in [
        &mut rec.agent,
        &mut rec.method,
        &mut rec.url,
        &mut rec.resource,
        &mut rec.action,
        &mut rec.reason,
    ] {
        r.redact_str(s);
    }
    for s in [
        &mut rec.rule,
        &mut rec.rejected_by,
        &mut rec.rejected_reason,
    ]
    .into_iter()
    .flatten()
    {
        r.redact_str(s);
    }
    for a in &mut rec.approvals {
        r.redact_str(&mut a.operator);
        if let Some(reason) = &mut a.reason {
            r.redact_str(reason);
        }
    }
    r.redact(&mut rec.args);
    if let Some(a) = &mut rec.approved_args {
        r.redact(a);
    }
    if let Some(e) = &mut rec.edit {
        r.redact(&mut e.patch);
    }
    for v in rec.headers.values_mut() {
        r.redact_str(v);
    }
    for i in &mut rec.intents {
        r.redact(i);
    }
}

/// The codec's dictionary as stored (ids 0..n in order).
pub(crate) fn read_dict(
    dict: &impl ReadableTable<u32, &'static str>,
) -> Result<Vec<Arc<str>>, StoreError> {
    let mut words = Vec::new();
    for item in dict.iter()? {
        let (k, v) = item?;
        if k.value() as usize != words.len() {
            return Err(StoreError::corrupt("dict", "ids are not contiguous"));
        }
        words.push(Arc::from(v.value()));
    }
    Ok(words)
}

/// What [`init_tables`] finds: the chain head and the dictionary.
pub(crate) struct Head {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) time: OffsetDateTime,
    pub(crate) words: Vec<Arc<str>>,
}

/// Creates missing tables, moves a store of the first layout over, and reads
/// the chain head and the dictionary.
pub(crate) fn init_tables(db: &Database) -> Result<Head, StoreError> {
    if migrate::needed(db)? {
        migrate::run(db)?;
    }
    {
        let wtx = db.begin_write()?;
        wtx.open_table(layout::LOG)?;
        wtx.open_table(layout::ROWS)?;
        wtx.open_table(layout::INDEX)?;
        wtx.open_table(layout::DICT)?;
        wtx.open_table(layout::META)?;
        wtx.open_table(layout::ORPHANS)?;
        wtx.open_table(OPEN_REQUESTS)?;
        wtx.open_table(COUNTS)?;
        wtx.open_table(rows::JOURNAL)?;
        grants::ensure_index(&wtx)?;
        wtx.commit()?;
    }
    let replayed = rows::replay(db)?;
    if replayed > 0 {
        tracing::warn!(
            entries = replayed,
            "audit store: applied request rows left in the journal by a crash or fault"
        );
    }
    let rtx = db.begin_read()?;
    let words = read_dict(&rtx.open_table(layout::DICT)?)?;
    let (seq, hash, micros) = query::last_event(&rtx.open_table(layout::LOG)?)?;
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(Head {
        seq,
        hash,
        time,
        words,
    })
}
