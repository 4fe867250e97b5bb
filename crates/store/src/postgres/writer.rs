//! This replica's group commit into PostgreSQL: one task drains the queue
//! into one transaction per group (one chain-head lock and one commit for
//! many requests), then answers every waiter. Every group commits with
//! `synchronous_commit = off`, so the chain head, which all replicas queue
//! on, is not locked while the WAL is flushed; a strict group is answered
//! only after a synchronous commit right behind it (this replica's row in
//! `sudomode_replicas`) has flushed the WAL past it. Groups nobody waits on
//! are durable within PostgreSQL's WAL writer delay.
//!
//! While the database is away, waited work fails at once (its caller refuses
//! the request) and unwaited batches are kept; the task probes with backoff
//! and, once the database answers, writes what it kept and clears the fault.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::Shared;
use super::append::{
    Appender, CHANNEL, FLUSH_SQL, HEAD_SQL, INSERT_SQL, LOCK_SQL, NOTIFY_SQL, payloads,
};
use super::connect::Failure;
use super::rows::{RequestColumns, RequestRow, UPSERT_MANY_SQL};
use crate::chain::PreparedEvent;
use crate::error::StoreError;
use crate::model::Committed;
use crate::writer::CommitReply;

/// A batch ready for the database.
pub(super) struct PgBatch {
    pub(super) events: Vec<PreparedEvent>,
    pub(super) rows: Vec<RequestRow>,
}

pub(super) enum Msg {
    Commit {
        batch: PgBatch,
        reply: Option<CommitReply>,
        _permit: Option<OwnedSemaphorePermit>,
    },
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
}

/// Most batches in one transaction.
const MAX_GROUP: usize = 1024;
/// Most unwaited batches kept while the database is away.
const MAX_REPLAY: usize = 100_000;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Pending = (PgBatch, Option<CommitReply>);

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::UnboundedReceiver<Msg>,
    pub(super) replay: Vec<PgBatch>,
    pub(super) backoff: Duration,
}

impl Writer {
    pub(super) async fn run(mut self) {
        loop {
            let first = if self.shared.fault().is_some() {
                match tokio::time::timeout(self.backoff, self.rx.recv()).await {
                    Err(_) => {
                        self.try_recover().await;
                        continue;
                    }
                    Ok(None) => return,
                    Ok(Some(m)) => m,
                }
            } else {
                // A fault another path reported wakes the writer to probe.
                let faulted = self.shared.faulted.notified();
                tokio::select! {
                    m = self.rx.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                    () = faulted => continue,
                }
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match self.rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            let mut commits: Vec<Pending> = Vec::with_capacity(group.len());
            let mut shutdown = None;
            for m in group {
                match m {
                    Msg::Commit { batch, reply, .. } => commits.push((batch, reply)),
                    Msg::Shutdown(reply) => shutdown = Some(reply),
                }
            }
            self.commit_group(commits).await;
            if let Some(reply) = shutdown {
                while let Ok(Msg::Commit { batch, reply, .. }) = self.rx.try_recv() {
                    self.commit_group(vec![(batch, reply)]).await;
                }
                if self.shared.fault().is_some() {
                    self.try_recover().await;
                }
                let kept = self.replay.len();
                let result = match kept {
                    0 => Ok(()),
                    n => Err(StoreError::Unavailable(format!(
                        "{n} records could not be written before shutdown: the database is away"
                    ))),
                };
                let _ = reply.send(result);
                return;
            }
        }
    }

    async fn commit_group(&mut self, group: Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        if let Some(why) = self.shared.fault() {
            for (batch, reply) in group {
                match reply {
                    Some(r) => {
                        let _ = r.send(Err(StoreError::Unavailable(why.clone())));
                    }
                    None => self.keep(batch),
                }
            }
            return;
        }
        let durable = group.iter().any(|(_, r)| r.is_some());
        let stats = &self.shared.stats;
        match self.write(&group, durable).await {
            Ok(seqs) => {
                let events = group.iter().map(|(b, _)| b.events.len() as u64).sum();
                let upserts = group.iter().map(|(b, _)| b.rows.len() as u64).sum();
                stats.committed(group.len() as u64, events, upserts, durable);
                for ((_, reply), seqs) in group.into_iter().zip(seqs) {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(Committed {
                            seqs,
                            events: Vec::new(),
                        }));
                    }
                }
            }
            Err(f) if !f.fault && group.len() > 1 => {
                // One batch the database refuses must not sink the others.
                for one in group {
                    Box::pin(self.commit_group(vec![one])).await;
                }
            }
            Err(f) if !f.fault => {
                stats.failed();
                let msg = self.shared.scrub(&f.message);
                tracing::error!(error = %msg, "PostgreSQL refused a batch; it was not written");
                for (_, reply) in group {
                    if let Some(r) = reply {
                        let _ = r.send(Err(StoreError::Commit(msg.clone())));
                    }
                }
            }
            Err(f) => {
                stats.failed();
                let msg = self.shared.scrub(&f.message);
                tracing::error!(error = %msg, batches = group.len(), "PostgreSQL group commit failed");
                for (batch, reply) in group {
                    match reply {
                        Some(r) => {
                            let _ = r.send(Err(StoreError::Commit(msg.clone())));
                        }
                        // Never lose what already happened: written once the
                        // database is back (or, for a refused statement, retried).
                        None => self.keep(batch),
                    }
                }
                self.shared.report(&Failure {
                    message: msg,
                    fault: true,
                });
            }
        }
    }

    /// One transaction: lock the head, append every event, upsert every
    /// record (the last state of each), notify, commit. The head stays
    /// locked for two round trips, as every replica's appends wait on it:
    /// BEGIN with the lock, then the writes with COMMIT, each pipelined;
    /// a durable group's flush follows the COMMIT in the same round trip.
    async fn write(&self, group: &[Pending], durable: bool) -> Result<Vec<Vec<u64>>, Failure> {
        let client = self.shared.pool.get().await?;
        let written = self.pipelined(&client, group, durable).await;
        if written.is_err() {
            // It may still be inside the failed transaction: never reused.
            drop(deadpool_postgres::Object::take(client));
        }
        written
    }

    async fn pipelined(
        &self,
        client: &deadpool_postgres::Client,
        group: &[Pending],
        durable: bool,
    ) -> Result<Vec<Vec<u64>>, Failure> {
        let lock = client.prepare_cached(LOCK_SQL).await?;
        let insert = client.prepare_cached(INSERT_SQL).await?;
        let move_head = client.prepare_cached(HEAD_SQL).await?;
        let upsert = client.prepare_cached(&UPSERT_MANY_SQL).await?;
        let notify = client.prepare_cached(NOTIFY_SQL).await?;
        let flush = client.prepare_cached(FLUSH_SQL).await?;
        let begin = "BEGIN; SET LOCAL synchronous_commit = off";
        // Futures polled in order send in order: one round trip for both.
        let c: &tokio_postgres::Client = client;
        let ((), row) = futures_util::try_join!(c.batch_execute(begin), c.query_one(&lock, &[]))?;
        let mut head = Appender::from_head(&row);
        let mut seqs = Vec::with_capacity(group.len());
        for (batch, _) in group {
            seqs.push(batch.events.iter().map(|e| head.seal(e)).collect());
        }
        // Several upserts of one record in a group collapse into its last:
        // PostgreSQL refuses to change a row twice in one statement.
        let rows: Vec<&RequestRow> = group.iter().flat_map(|(b, _)| b.rows.iter()).collect();
        let mut seen = HashSet::with_capacity(rows.len());
        let mut cols = RequestColumns::default();
        let mut changed = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            if seen.insert(r.id.as_str()) {
                cols.push(r);
                changed.push((r.id.as_str(), r.held));
            }
        }
        let notes = payloads(&self.shared.replica, changed.into_iter());
        // A failed statement aborts the transaction, so the COMMIT behind
        // it rolls back; the first error is what the caller sees.
        futures_util::try_join!(
            head.insert_on(c, &insert),
            head.move_on(c, &move_head),
            async {
                match cols.is_empty() {
                    true => Ok(0),
                    false => c.execute(&upsert, &cols.params()).await,
                }
            },
            async {
                match notes.is_empty() {
                    true => Ok(0),
                    false => c.execute(&notify, &[&CHANNEL, &notes]).await,
                }
            },
            c.batch_execute("COMMIT"),
            async {
                // WAL is flushed in order: this commit's flush covers the
                // group's. Run even when the group failed; then harmless.
                if durable {
                    c.execute(&flush, &[&self.shared.replica]).await
                } else {
                    Ok(0)
                }
            },
        )?;
        Ok(seqs)
    }

    fn keep(&mut self, batch: PgBatch) {
        if self.replay.len() >= MAX_REPLAY {
            tracing::error!(
                "PostgreSQL store: too many records kept during a fault; dropping the oldest"
            );
            self.replay.remove(0);
        }
        self.replay.push(batch);
    }

    /// One probe; on success writes what was kept and clears the fault.
    async fn try_recover(&mut self) {
        let since = Instant::now();
        let probe = async {
            let client = self.shared.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<(), Failure>(())
        };
        if let Err(f) = probe.await {
            tracing::debug!(error = %self.shared.scrub(&f.message), "PostgreSQL still unavailable");
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return;
        }
        let kept: Vec<Pending> = std::mem::take(&mut self.replay)
            .into_iter()
            .map(|b| (b, None))
            .collect();
        let n = kept.len();
        let mut chunks = chunks(kept).into_iter();
        while let Some(chunk) = chunks.next() {
            if let Err(f) = self.write(&chunk, true).await {
                tracing::warn!(error = %self.shared.scrub(&f.message), "PostgreSQL store: replay failed; retrying");
                self.replay = chunk
                    .into_iter()
                    .chain(chunks.flatten())
                    .map(|(b, _)| b)
                    .collect();
                return;
            }
        }
        self.backoff = Duration::from_millis(100);
        self.shared.recovered();
        tracing::info!(
            replayed = n,
            after_ms = since.elapsed().as_millis() as u64,
            "audit store recovered (PostgreSQL)"
        );
    }
}

fn chunks(mut all: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out = Vec::new();
    while all.len() > MAX_GROUP {
        let rest = all.split_off(MAX_GROUP);
        out.push(std::mem::replace(&mut all, rest));
    }
    if !all.is_empty() {
        out.push(all);
    }
    out
}
