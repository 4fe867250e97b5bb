//! The single writer thread: drains the queue into one redb write transaction per group,
//! commits (fsync) once, then answers every waiter — group commit.
//!
//! Ordering: batches are applied in queue order, so seqs follow the order in which `commit`
//! calls reached the queue. A failed group fails every batch in it and leaves the chain head
//! where it was (redb transactions are atomic). In `Batched` durability, groups holding only
//! `commit_batched` work commit with `redb::Durability::None` and an empty durable commit
//! follows within `flush_interval`; a group with any strict waiter is always fsync'd (which
//! also makes every earlier non-durable commit durable).
//!
//! Split groups: when a waiter asked only for its records to be on disk (`Wait::Logged`, an
//! ALLOW decision about to be forwarded) and no waiter in the group reads back, the group's
//! rows go to a journal entry beside its events and that commit answers those waiters. The
//! rows are applied later, several groups' at once and merged, so that a request's decision
//! and its ending, journaled by different groups, are one row write ([`crate::rows`]): with
//! the next group that is not split, before a flush, a prune, a list or count read or the
//! stop, after [`MAX_DEFERRED`] groups, and within twice `flush_interval`. That
//! transaction commits with `redb::Durability::None` (the journal keeps its rows safe)
//! and becomes durable with the next fsync'd commit, or the flush within `flush_interval`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::Thread;
use std::time::{Duration, Instant};

use redb::{ReadableTable, Table};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::archive::PreparedPrune;
use crate::chain::PreparedEvent;
use crate::codec::Interner;
use crate::error::StoreError;
use crate::layout::{self, DICT, LOG, MAX_CHUNK_BYTES, MAX_CHUNK_EVENTS, SharedWords};
use crate::model::{Committed, Durability};
pub(crate) use crate::rows::Row;
use crate::rows::{self, Work};
use crate::slot::DbSlot;

/// What [`Writer::write`] returns: per batch what was committed, and for a split group
/// the journal entry (key, rows) still to apply.
type WriteOut = (Vec<Committed>, Option<(u64, Work<'static>)>);

/// Reply channel of a strict commit.
pub(crate) type CommitReply = oneshot::Sender<Result<Committed, StoreError>>;

/// A batch validated, redacted and serialised on the caller's thread.
pub(crate) struct Prepared {
    pub(crate) events: Vec<PreparedEvent>,
    /// Records as the writer needs them: their JSON and what the counts and the open index
    /// need (the record itself is dropped on the caller's thread).
    pub(crate) upserts: Vec<Row>,
    /// The events kept their fields, so the writer can hand the stored events back.
    pub(crate) keep_fields: bool,
    /// Its waiter is answered once the events and the rows' journal entry are durable,
    /// before the rows are applied ([`crate::rows`]): an ALLOW decision about to be
    /// forwarded, which needs its record on disk but nobody reading it back.
    pub(crate) early: bool,
    /// Standing grants to write.
    pub(crate) grants: Vec<crate::grants::GrantRow>,
}

/// A message to the writer.
pub(crate) enum Msg {
    /// Write a batch; `reply` is `None` for `commit_batched`.
    Commit {
        batch: Prepared,
        reply: Option<CommitReply>,
        /// A place in the bounded queue; `None` for terminal writes that may
        /// not wait (`Store::commit_unbounded`).
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// Make everything queued before it durable, then answer.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Apply the rows still waiting, then answer (a reader of lists or counts).
    ApplyRows(std::sync::mpsc::Sender<()>),
    /// Remove what an archive run moved and append its checkpoint.
    Prune(PreparedPrune, oneshot::Sender<Result<(), StoreError>>),
    /// Commit everything queued, make it durable, answer and stop.
    Shutdown(Option<oneshot::Sender<Result<(), StoreError>>>),
}

impl Msg {
    /// Whether someone waits for the writer to act on it: everything but a
    /// `commit_batched`-style batch or a request's ending.
    fn is_waited(&self) -> bool {
        !matches!(self, Msg::Commit { reply: None, .. })
    }
}

/// The sending side of the writer's queue. A message someone waits for also
/// unparks the writer, which sleeps parked while it gathers work nobody waits for
/// ([`Writer::gather`]); the rest only queue: waking the writer for every
/// request's ending and `Batched` decision cost each sender a futex wake and the
/// writer a context switch (bench/PROFILE.md, stop 41).
pub(crate) struct WriterTx {
    tx: Sender<Msg>,
    writer: Thread,
}

impl WriterTx {
    pub(crate) fn new(tx: Sender<Msg>, writer: Thread) -> Self {
        WriterTx { tx, writer }
    }

    /// Queues `msg`; [`StoreError::Closed`] once the writer has stopped.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let waited = msg.is_waited();
        self.tx.send(msg).map_err(|_| StoreError::Closed)?;
        if waited {
            // After the send: the writer drains its queue after every park, so a
            // message queued before this unpark is never missed.
            self.writer.unpark();
        }
        Ok(())
    }
}

/// Writer configuration and state; lives on the writer thread.
pub(crate) struct Writer {
    pub(crate) slot: Arc<DbSlot>,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) stats: Arc<crate::stats::Counters>,
    pub(crate) durability: Durability,
    pub(crate) flush_interval: Duration,
    pub(crate) max_group: usize,
    pub(crate) head_seq: u64,
    pub(crate) head_hash: String,
    pub(crate) last_time: OffsetDateTime,
    /// The dictionary: the writer's map, and the readers' copy.
    pub(crate) interner: Interner,
    pub(crate) words: SharedWords,
    /// Set while non-durable commits await a flush: when the first of them happened.
    pub(crate) dirty_since: Option<Instant>,
    /// Set while the store is faulted and being reopened.
    pub(crate) recovery: Option<Recovery>,
    /// Batches nobody waits on that arrived (or failed) during a fault: written
    /// once the store is back, so nothing decided before the fault is lost.
    pub(crate) replay: Vec<Prepared>,
    /// Journal entries of split groups not applied yet (shared with readers).
    pub(crate) unapplied: rows::Unapplied,
    /// When the oldest of `unapplied` was written.
    pub(crate) deferred_since: Option<Instant>,
}

/// Reopen attempts after a fault, with growing gaps.
pub(crate) struct Recovery {
    since: Instant,
    next_try: Instant,
    backoff: Duration,
}

/// Longest gap between reopen attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most unwaited batches kept for replay during a fault (a bound on memory).
const MAX_REPLAY: usize = 100_000;
/// Most split groups whose rows wait to be applied (a bound on memory and on the
/// transaction that applies them). The longer rows wait, the more of them are written
/// once instead of twice; under load the timer ([`Writer::rows_due`]) comes first.
const MAX_DEFERRED: usize = 256;

type Pending = (Prepared, Option<CommitReply>, Option<OwnedSemaphorePermit>);

impl Writer {
    /// Runs until `Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self) {
        let mut shutdown_reply = None;
        let mut stopping = false;
        while !stopping {
            if let Some(r) = &self.recovery {
                let wait = r.next_try.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(wait) {
                    Ok(m) => {
                        self.handle_faulted(m, &mut stopping, &mut shutdown_reply);
                    }
                    Err(RecvTimeoutError::Timeout) => self.try_reopen(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                continue;
            }
            let first = match self.next_timer() {
                Some(at) => match self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.on_timer();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let started = Instant::now();
            let mut group = vec![first];
            while group.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            self.gather(&mut group, started);
            let mut commits: Vec<Pending> = Vec::new();
            for msg in group {
                match msg {
                    Msg::Commit {
                        batch,
                        reply,
                        _permit,
                    } => commits.push((batch, reply, _permit)),
                    Msg::Flush(reply) => {
                        self.commit_group(std::mem::take(&mut commits), true, started);
                        self.apply_deferred();
                        let _ = reply.send(self.flush());
                    }
                    Msg::ApplyRows(reply) => {
                        self.commit_group(std::mem::take(&mut commits), false, started);
                        self.apply_deferred();
                        let _ = reply.send(());
                    }
                    Msg::Prune(p, reply) => {
                        self.commit_group(std::mem::take(&mut commits), true, started);
                        self.apply_deferred();
                        let _ = reply.send(self.prune(p));
                    }
                    Msg::Shutdown(reply) => {
                        stopping = true;
                        shutdown_reply = reply;
                    }
                }
            }
            if stopping {
                // Take whatever raced in behind the shutdown too: never drop a batch.
                while let Ok(m) = self.rx.try_recv() {
                    if let Msg::Commit {
                        batch,
                        reply,
                        _permit,
                    } = m
                    {
                        commits.push((batch, reply, _permit));
                    }
                }
            }
            self.commit_group(commits, false, started);
            // Under constant load the queue never idles long enough for the timers above.
            self.on_timer();
        }
        self.apply_deferred();
        let result = self.flush();
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(result);
        }
    }

    /// When the writer must wake without a message: to apply deferred rows, or to make
    /// non-durable commits durable.
    fn next_timer(&self) -> Option<Instant> {
        match (self.rows_due(), self.flush_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the deferred rows must be applied. Nobody waits for them (readers by id get
    /// them from memory, lists and counts have them applied first), so the bound is only
    /// on memory and on how much the journal replays after a crash.
    fn rows_due(&self) -> Option<Instant> {
        self.deferred_since.map(|t| t + self.flush_interval * 2)
    }

    /// When the non-durable commits must be made durable.
    fn flush_due(&self) -> Option<Instant> {
        self.dirty_since.map(|t| t + self.flush_interval)
    }

    /// Does what is due of [`Writer::next_timer`]; a failed flush is retried next time.
    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.rows_due().is_some_and(|at| at <= now) {
            self.apply_deferred();
        }
        if self.flush_due().is_some_and(|at| at <= now) {
            let _ = self.flush();
        }
    }

    /// While the group holds only `commit_batched` work (nobody waits on it), keeps
    /// collecting for a short window (a quarter of `flush_interval`, at most 5 ms) before
    /// committing: fewer, larger transactions; a request's decided and forwarded records
    /// often land in the same group and are written once; and in `Strict` durability the
    /// after-the-fact records ride along with the next strict commit's fsync instead of
    /// costing one of their own ahead of it. The window counts towards `flush_interval`
    /// (the flush timer starts at `started`). Anything with a waiter (strict commit, flush,
    /// shutdown) ends the window at once: its sender unparks this thread ([`WriterTx`]),
    /// which sleeps parked meanwhile, so the work nobody waits for queues without waking it.
    fn gather(&mut self, group: &mut Vec<Msg>, started: Instant) {
        if group.iter().any(Msg::is_waited) {
            return;
        }
        let deadline = started + (self.flush_interval / 4).min(Duration::from_millis(5));
        loop {
            let now = Instant::now();
            if now >= deadline || group.len() >= self.max_group {
                return;
            }
            // Returns early on an unpark, or spuriously: either way the queue is looked at.
            std::thread::park_timeout(deadline - now);
            while group.len() < self.max_group {
                let Ok(m) = self.rx.try_recv() else { break };
                let waited = m.is_waited();
                group.push(m);
                if waited {
                    return;
                }
            }
        }
    }

    /// While faulted: waited work fails at once (its caller refuses the
    /// request), unwaited batches are kept for replay.
    fn handle_faulted(
        &mut self,
        msg: Msg,
        stopping: &mut bool,
        shutdown_reply: &mut Option<oneshot::Sender<Result<(), StoreError>>>,
    ) {
        let unavailable = || StoreError::Unavailable(self.slot.fault().unwrap_or_default());
        match msg {
            Msg::Commit {
                batch,
                reply: Some(reply),
                ..
            } => {
                drop(batch);
                let _ = reply.send(Err(unavailable()));
            }
            Msg::Commit { batch, .. } => self.keep_for_replay(batch),
            Msg::Flush(reply) | Msg::Prune(_, reply) => {
                let _ = reply.send(Err(unavailable()));
            }
            // Reads fail anyway while faulted.
            Msg::ApplyRows(reply) => {
                let _ = reply.send(());
            }
            Msg::Shutdown(reply) => {
                *stopping = true;
                *shutdown_reply = reply;
            }
        }
    }

    fn keep_for_replay(&mut self, batch: Prepared) {
        if self.replay.len() >= MAX_REPLAY {
            tracing::error!(
                "audit store: too many records queued during a fault; dropping the oldest"
            );
            self.replay.remove(0);
        }
        self.replay.push(batch);
    }

    /// A commit failed: take the database out of service until it reopens.
    fn enter_fault(&mut self, why: &str) {
        if self.recovery.is_some() {
            return;
        }
        tracing::error!(error = %why, "audit store fault: refusing what needs the store until it recovers");
        if let Some(db) = self.slot.take(why) {
            // Readers finish their short transactions; the file's lock is only
            // released once the last handle is gone.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Arc::strong_count(&db) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(db);
        }
        self.dirty_since = None;
        let now = Instant::now();
        self.recovery = Some(Recovery {
            since: now,
            next_try: now + Duration::from_millis(100),
            backoff: Duration::from_millis(100),
        });
    }

    /// One reopen attempt; on success the chain continues from its head and
    /// the batches kept during the fault are written.
    fn try_reopen(&mut self) {
        let Some(r) = &mut self.recovery else { return };
        let reopened = crate::slot::open_db(self.slot.path()).and_then(|db| {
            let head = crate::init_tables(&db)?;
            Ok((db, head))
        });
        match reopened {
            Ok((db, head)) => {
                if head.seq != self.head_seq || head.hash != self.head_hash {
                    tracing::warn!(
                        seq = head.seq,
                        head_seq = self.head_seq,
                        "audit store head moved during the fault; continuing from the file's head"
                    );
                }
                (self.head_seq, self.head_hash) = (head.seq, head.hash);
                self.last_time = self.last_time.max(head.time);
                self.interner = Interner::load(&head.words);
                layout::reset(&self.words, None, Some(head.words));
                let down = r.since.elapsed();
                // Opening applied the journal, deferred rows included.
                self.applied();
                self.slot.put(Arc::new(db));
                self.recovery = None;
                self.stats.recovered();
                tracing::info!(
                    after_ms = down.as_millis() as u64,
                    replayed = self.replay.len(),
                    "audit store recovered"
                );
                let replay: Vec<Pending> = std::mem::take(&mut self.replay)
                    .into_iter()
                    .map(|b| (b, None, None))
                    .collect();
                self.commit_group(replay, true, Instant::now());
            }
            Err(e) => {
                r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                r.next_try = Instant::now() + r.backoff;
                tracing::debug!(error = %e, "audit store still unavailable");
            }
        }
    }

    /// Makes earlier non-durable commits durable with an empty fsync'd commit.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.dirty_since.is_none() {
            return Ok(());
        }
        if self.recovery.is_some() {
            return Err(StoreError::Unavailable(
                self.slot.fault().unwrap_or_default(),
            ));
        }
        let txn = self.slot.get()?.begin_write()?;
        txn.commit()?;
        self.count_commit((0, 0, 0), true, Instant::now());
        Ok(())
    }

    /// Counts a commit of (batches, events, upserts) and keeps `dirty_since`: a durable
    /// commit makes every earlier one durable; a non-durable one wants a flush within
    /// `flush_interval` of `since`, or of the oldest one still waiting.
    fn count_commit(
        &mut self,
        (batches, events, upserts): (u64, u64, u64),
        durable: bool,
        since: Instant,
    ) {
        self.stats.committed(batches, events, upserts, durable);
        if durable {
            self.dirty_since = None;
        } else {
            self.dirty_since.get_or_insert(since);
        }
    }

    /// Writes `group` in one transaction and answers its waiters. `force_durable` for barriers.
    /// `started`: when the group's first message was taken (the flush timer counts from it).
    fn commit_group(&mut self, group: Vec<Pending>, force_durable: bool, started: Instant) {
        if group.is_empty() {
            return;
        }
        let durable = force_durable
            || self.durability == Durability::Strict
            || group.iter().any(|(_, reply, _)| reply.is_some())
            || self.flush_due().is_some_and(|at| at <= Instant::now());
        // Split when every waiter only needs its records on disk: one that reads back
        // would need the rows applied right after, a second fsync.
        let mut waiters = group
            .iter()
            .filter(|(_, reply, _)| reply.is_some())
            .peekable();
        let split = waiters.peek().is_some() && waiters.all(|(batch, _, _)| batch.early);
        let saved = (self.head_seq, self.head_hash.clone(), self.last_time);
        let mut batches = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for (batch, reply, permit) in group {
            let wanted = reply.is_some() && batch.keep_fields;
            batches.push((batch, wanted));
            replies.push((reply, permit));
        }
        let n_batches = batches.len() as u64;
        let n_events: u64 = batches.iter().map(|b| b.0.events.len() as u64).sum();
        let n_upserts: u64 = batches.iter().map(|b| b.0.upserts.len() as u64).sum();
        if self.recovery.is_some() {
            let why = self.slot.fault().unwrap_or_default();
            for ((batch, _), (reply, _)) in batches.into_iter().zip(replies) {
                match reply {
                    Some(reply) => {
                        let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                    }
                    None => self.keep_for_replay(batch),
                }
            }
            return;
        }
        match self.write(&batches, durable, split) {
            Ok((results, journal)) => {
                self.count_commit((n_batches, n_events, n_upserts), durable, started);
                match journal {
                    // Readers get the rows by id before anyone hears of them.
                    Some((key, work)) => self.defer(key, work),
                    // The group applied every deferred row with its own.
                    None => self.applied(),
                }
                // In a split group nobody reads back, so every waiter is answered now.
                for ((reply, _permit), committed) in replies.into_iter().zip(results) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(committed));
                    }
                }
                if self.unapplied.len() >= MAX_DEFERRED {
                    self.apply_deferred();
                }
            }
            Err(e) => {
                (self.head_seq, self.head_hash, self.last_time) = saved;
                self.stats.failed();
                let msg = e.to_string();
                tracing::error!(error = %msg, batches = n_batches, "audit store group commit failed");
                // The transaction rolled back: waiters are refused, the rest is
                // written again once the store is back.
                let mut kept = Vec::new();
                for ((batch, _), (reply, _permit)) in batches.into_iter().zip(replies) {
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(Err(StoreError::Commit(msg.clone())));
                        }
                        None => kept.push(batch),
                    }
                }
                self.enter_fault(&msg);
                for b in kept {
                    self.keep_for_replay(b);
                }
            }
        }
    }

    /// The next event time: (Unix µs, text), never earlier than the last.
    fn next_time(&mut self) -> (i64, String) {
        let now = OffsetDateTime::now_utc();
        if now > self.last_time {
            self.last_time = now;
        }
        let micros = (self.last_time.unix_timestamp_nanos() / 1000) as i64;
        (micros, layout::time_text(micros))
    }

    /// Writes the batches in one transaction. `bool`: build the stored events for a waiter.
    /// `split`: the rows go to the journal, returned with its key, to be applied later.
    fn write(
        &mut self,
        batches: &[(Prepared, bool)],
        durable: bool,
        split: bool,
    ) -> Result<WriteOut, StoreError> {
        self.in_txn(durable, |w, txn| {
            let (out, work) = w.append_events(txn, batches)?;
            if split && !work.is_empty() {
                let key = rows::journal(txn, &work)?;
                Ok((out, Some((key, work.into_owned()))))
            } else {
                // With the rows deferred by earlier groups, in order.
                w.apply_rows_in(txn, Some(&work))?;
                Ok((out, None))
            }
        })
    }

    /// Keeps a split group's rows to apply later; readers find them meanwhile.
    fn defer(&mut self, key: u64, work: Work<'static>) {
        self.unapplied.push(key, work);
        self.deferred_since.get_or_insert_with(Instant::now);
    }

    /// Applies every deferred journal entry in one transaction, not synced by itself: its
    /// pages reach the disk with the next fsync'd commit (a strict group's, or the flush it
    /// schedules), and a crash before that leaves the entries in the journal. A failure
    /// faults the store; the entries stay in the journal and are applied when it reopens.
    fn apply_deferred(&mut self) {
        if self.unapplied.is_empty() || self.recovery.is_some() {
            return;
        }
        match self.in_txn(false, |w, txn| w.apply_rows_in(txn, None)) {
            Ok(()) => {
                self.count_commit((0, 0, 0), false, Instant::now());
                self.applied();
            }
            Err(e) => {
                self.stats.failed();
                let msg = e.to_string();
                tracing::error!(error = %msg, "audit store: applying request rows failed");
                self.enter_fault(&msg);
            }
        }
    }

    /// Applies the deferred entries, then `own` (a group's rows), inside `txn`, merged
    /// ([`Work::merged`]), and removes the entries from the journal.
    fn apply_rows_in(
        &mut self,
        txn: &redb::WriteTransaction,
        own: Option<&Work<'_>>,
    ) -> Result<(), StoreError> {
        let entries = self.unapplied.entries();
        if entries.is_empty() {
            return match own {
                Some(work) => rows::apply(txn, work, &mut self.interner),
                None => Ok(()),
            };
        }
        let merged = Work::merged(entries.iter().map(|e| &e.work).chain(own));
        rows::apply(txn, &merged, &mut self.interner)?;
        let mut journal = txn.open_table(rows::JOURNAL)?;
        for e in &entries {
            journal.remove(e.key)?;
        }
        Ok(())
    }

    /// The deferred rows are in the store (applied, or replayed at a reopen).
    fn applied(&mut self) {
        if self.deferred_since.take().is_some() {
            self.unapplied.clear();
        }
    }

    /// Runs `f` in a write transaction with the dictionary words it adds, and commits.
    /// On failure the words are forgotten again (the transaction rolled back).
    fn in_txn<T>(
        &mut self,
        durable: bool,
        f: impl FnOnce(&mut Self, &redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let words_before = layout::snapshot(&self.words).len();
        let result = (|| {
            let mut txn = self.slot.get()?.begin_write()?;
            if !durable {
                txn.set_durability(redb::Durability::None)?;
            }
            let out = f(self, &txn)?;
            self.store_words(&txn)?;
            txn.commit()?;
            Ok(out)
        })();
        match result {
            Ok(out) => {
                self.interner.take_new();
                Ok(out)
            }
            Err(e) => {
                let fresh = self.interner.take_new();
                self.interner.roll_back(&fresh);
                layout::reset(&self.words, Some(words_before), None);
                Err(e)
            }
        }
    }

    /// Stores the dictionary words the transaction added, and shows them to readers.
    fn store_words(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let fresh = self.interner.fresh();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut dict = txn.open_table(DICT)?;
        for (id, w) in fresh {
            dict.insert(*id, &**w)?;
        }
        // Readers may decode the new rows as soon as the commit lands.
        layout::append(
            &self.words,
            fresh.iter().map(|(_, w)| std::sync::Arc::from(&**w)),
        );
        Ok(())
    }

    /// The archive run's removal and checkpoint, in one durable transaction.
    fn prune(&mut self, p: PreparedPrune) -> Result<(), StoreError> {
        if self.recovery.is_some() {
            return Err(StoreError::Unavailable(
                self.slot.fault().unwrap_or_default(),
            ));
        }
        let saved = (self.head_seq, self.head_hash.clone(), self.last_time);
        let result = self.in_txn(true, move |w, txn| {
            crate::archive::remove(txn, &p, &w.words)?;
            let batches = [(p.checkpoint, false)];
            let (_, work) = w.append_events(txn, &batches)?;
            rows::apply(txn, &work, &mut w.interner)
        });
        match result {
            Ok(()) => {
                self.count_commit((0, 0, 0), true, Instant::now());
                Ok(())
            }
            Err(e) => {
                (self.head_seq, self.head_hash, self.last_time) = saved;
                Err(e)
            }
        }
    }

    /// Appends the batches' events (and their standing grants) inside `txn`; returns
    /// what they leave for the rows.
    fn append_events<'b>(
        &mut self,
        txn: &redb::WriteTransaction,
        batches: &'b [(Prepared, bool)],
    ) -> Result<(Vec<Committed>, Work<'b>), StoreError> {
        let mut out = Vec::with_capacity(batches.len());
        let mut seqs_by_id: rows::IdMap<&str, Vec<u64>> = rows::IdMap::default();
        {
            let mut log = txn.open_table(LOG)?;
            let mut chunk = ChunkBuf::resume(&log, self.head_seq)?
                .unwrap_or_else(|| ChunkBuf::new(self.head_seq + 1, &self.head_hash));
            // One text and one body buffer for the group's events.
            let (mut text, mut body) = (String::new(), Vec::new());
            for (batch, wanted) in batches {
                let wanted = *wanted;
                let mut committed = Committed::default();
                for ev in &batch.events {
                    let seq = self.head_seq + 1;
                    let (micros, time) = self.next_time();
                    let digest = ev.seal_hash(&mut text, seq, &time, &self.head_hash);
                    ev.body(&mut body, micros, &digest, &mut self.interner)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    if chunk.events == MAX_CHUNK_EVENTS
                        || (chunk.events > 0 && chunk.bytes.len() + body.len() > MAX_CHUNK_BYTES)
                    {
                        chunk.flush(&mut log)?;
                        chunk = ChunkBuf::new(seq, &self.head_hash);
                    }
                    layout::push_event(&mut chunk.bytes, &body);
                    chunk.events += 1;
                    if let Some(rid) = ev.request_id() {
                        seqs_by_id.entry(rid).or_default().push(seq);
                    }
                    let mut hex = [0u8; 64];
                    // 32 bytes always fit 64 digits; hex digits are ASCII.
                    let _ = hex::encode_to_slice(digest, &mut hex);
                    let hash = std::str::from_utf8(&hex).unwrap_or_default();
                    self.head_seq = seq;
                    committed.seqs.push(seq);
                    if wanted {
                        let prev = std::mem::replace(&mut self.head_hash, hash.to_string());
                        committed.events.push(ev.clone().into_event(
                            seq,
                            time,
                            prev,
                            hash.to_string(),
                        ));
                    } else {
                        self.head_hash.clear();
                        self.head_hash.push_str(hash);
                    }
                }
                out.push(committed);
            }
            chunk.flush(&mut log)?;
        }
        crate::grants::insert_rows(txn, batches)?;
        let rows = batches.iter().flat_map(|(b, _)| b.upserts.iter());
        Ok((out, Work::collect(rows, seqs_by_id)))
    }
}

/// The chunk of events being built by a group commit.
struct ChunkBuf {
    first: u64,
    events: usize,
    bytes: Vec<u8>,
}

impl ChunkBuf {
    fn new(first: u64, prev_hash: &str) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        let mut prev = [0u8; 32];
        // The head hash is always 64 hex digits (written by this writer or read from the log).
        let _ = hex::decode_to_slice(prev_hash, &mut prev);
        bytes.extend_from_slice(&prev);
        ChunkBuf {
            first,
            events: 0,
            bytes,
        }
    }

    /// The log's last chunk, to be extended, when it ends at `head_seq` and
    /// has room: small group commits (strict durability, light traffic) then
    /// still fill whole chunks, and a chunk fills its page instead of leaving
    /// most of it empty (issue 22). `None`: start a new chunk.
    fn resume(log: &Table<u64, &[u8]>, head_seq: u64) -> Result<Option<Self>, StoreError> {
        let Some((k, v)) = log.last()? else {
            return Ok(None);
        };
        let (first, bytes) = (k.value(), v.value());
        if bytes.len() >= MAX_CHUNK_BYTES {
            return Ok(None);
        }
        // An unreadable tail is left as it is (`audit verify` reports it): the
        // log goes on in a new chunk rather than refusing every commit.
        let Ok(events) = layout::chunk_events(bytes) else {
            return Ok(None);
        };
        let ends_at_head = events > 0 && first.checked_add(events as u64 - 1) == Some(head_seq);
        if !ends_at_head || events >= MAX_CHUNK_EVENTS {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(bytes);
        Ok(Some(ChunkBuf {
            first,
            events,
            bytes: buf,
        }))
    }

    fn flush(&self, log: &mut Table<u64, &[u8]>) -> Result<(), StoreError> {
        if self.events > 0 {
            log.insert(self.first, self.bytes.as_slice())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::model::{Batch, Durability, NewEvent, Status, StoreOptions};
    use crate::testing::record_as as record;

    /// Decided then completed, queued back to back in batched mode (so usually folded into
    /// one group and written once): the record, the counts and the chain end as if each
    /// upsert had been applied in turn.
    #[tokio::test]
    async fn repeated_upserts_in_one_group_end_in_the_last_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("s.redb"),
            StoreOptions {
                durability: Durability::Batched,
                ..StoreOptions::default()
            },
        )
        .expect("open");
        for i in 0..50 {
            let id = format!("r{i:02}");
            for (kind, status) in [
                ("request.decided", Status::Allowed),
                ("request.forwarded", Status::Completed),
            ] {
                let ev = NewEvent::new(kind).request(id.clone()).agent("bot");
                store
                    .commit_batched(Batch::one(ev, record(&id, status)))
                    .await
                    .expect("queue");
            }
        }
        store.flush().await.expect("flush");
        for i in 0..50 {
            let r = store.get_request(&format!("r{i:02}")).expect("get");
            assert_eq!(r.map(|r| r.status), Some(Status::Completed));
        }
        let counts = store.counts_by_status().expect("counts");
        assert_eq!(counts.get(&Status::Completed).copied(), Some(50));
        assert_eq!(counts.get(&Status::Allowed).copied().unwrap_or(0), 0);
        assert_eq!(store.stats().upserts, 100);
        let report = store.verify().expect("verify");
        assert!(report.ok, "{report:?}");
        assert_eq!(report.events, 100);
        assert!(store.pending_requests().expect("open").is_empty());
    }
}
