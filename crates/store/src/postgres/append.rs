//! Appending to the one hash chain from any replica: a transaction locks
//! the chain head row first, seals its events after the head (the same
//! canonical lines and hashes as redb, `chain.rs`), inserts them and moves
//! the head — so `seq` has no gaps or duplicates and every `prev_hash`
//! links, whichever replica wrote. It then tells the other replicas which
//! requests changed (NOTIFY, delivered on commit).

use deadpool_postgres::Transaction;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::{Client, Row, Statement};

use super::connect::Failure;
use crate::chain::{PreparedEvent, format_time};

/// The LISTEN/NOTIFY channel of request changes.
pub(super) const CHANNEL: &str = "sudomode_changes";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7_000;

/// Reads and locks the chain head until the transaction ends.
pub(super) const LOCK_SQL: &str =
    "SELECT seq, hash, at FROM sudomode_chain_head WHERE id = 1 FOR UPDATE";
/// Inserts sealed events (arrays of seq, request id, time, line).
pub(super) const INSERT_SQL: &str = "INSERT INTO sudomode_audit (seq, request_id, at, line) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[])";
/// Moves the head.
pub(super) const HEAD_SQL: &str =
    "UPDATE sudomode_chain_head SET seq = $1, hash = $2, at = $3 WHERE id = 1";
/// Flushes the WAL past the commit before it: this replica's row, updated
/// in a transaction of its own that commits synchronously (a transaction
/// that writes nothing would not wait for the flush; a row per replica, so
/// replicas never wait on each other's row).
pub(super) const FLUSH_SQL: &str = "INSERT INTO sudomode_replicas (replica, flushed_at) \
     VALUES ($1, now()) ON CONFLICT (replica) DO UPDATE SET flushed_at = EXCLUDED.flushed_at";
/// Sends NOTIFY payloads.
pub(super) const NOTIFY_SQL: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// The chain head, locked by this transaction, and the events sealed after it.
pub(super) struct Appender {
    seq: u64,
    hash: String,
    last: OffsetDateTime,
    seqs: Vec<i64>,
    request_ids: Vec<Option<String>>,
    ats: Vec<OffsetDateTime>,
    lines: Vec<String>,
}

impl Appender {
    /// Locks the chain head until the transaction ends. Every writer takes
    /// this lock before any request row, so writers never deadlock.
    pub(super) async fn lock(tx: &Transaction<'_>) -> Result<Self, Failure> {
        let stmt = tx.prepare_cached(LOCK_SQL).await?;
        let row = tx.query_one(&stmt, &[]).await?;
        Ok(Self::from_head(&row))
    }

    /// The head as [`LOCK_SQL`] read it.
    pub(super) fn from_head(row: &Row) -> Self {
        let seq: i64 = row.get(0);
        Appender {
            seq: u64::try_from(seq).unwrap_or(0),
            hash: row.get(1),
            last: row.get(2),
            seqs: Vec::new(),
            request_ids: Vec::new(),
            ats: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Seals `ev` as the next event; returns its seq.
    pub(super) fn seal(&mut self, ev: &PreparedEvent) -> u64 {
        // Times never go backwards along the chain, whatever the replicas' clocks say.
        let now = OffsetDateTime::now_utc();
        if now > self.last {
            self.last = now;
        }
        let time = format_time(self.last);
        // The stored text is what the chain hashed (microseconds): keep the
        // head at that precision so the next comparison matches it.
        if let Ok(t) = OffsetDateTime::parse(&time, &Rfc3339) {
            self.last = t;
        }
        self.seq += 1;
        let (hash, line) = ev.seal(self.seq, &time, &self.hash);
        self.hash = hash;
        self.seqs.push(i64::try_from(self.seq).unwrap_or(i64::MAX));
        self.request_ids.push(ev.request_id().map(str::to_string));
        self.ats.push(self.last);
        self.lines.push(line);
        self.seq
    }

    /// Inserts the sealed events and moves the head.
    pub(super) async fn finish(self, tx: &Transaction<'_>) -> Result<(), Failure> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let insert = tx.prepare_cached(INSERT_SQL).await?;
        let head = tx.prepare_cached(HEAD_SQL).await?;
        self.insert_on(tx.client(), &insert).await?;
        self.move_on(tx.client(), &head).await?;
        Ok(())
    }

    /// Inserts the sealed events with [`INSERT_SQL`] (nothing when none).
    /// Sent when first polled, so several of these pipeline on one client.
    pub(super) async fn insert_on(
        &self,
        client: &Client,
        insert: &Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.lines.is_empty() {
            return Ok(0);
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&self.seqs, &self.request_ids, &self.ats, &self.lines];
        client.execute(insert, &params).await
    }

    /// Moves the head with [`HEAD_SQL`] (nothing when no event was sealed).
    pub(super) async fn move_on(
        &self,
        client: &Client,
        head: &Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.lines.is_empty() {
            return Ok(0);
        }
        let seq = i64::try_from(self.seq).unwrap_or(i64::MAX);
        client.execute(head, &[&seq, &self.hash, &self.last]).await
    }
}

/// Tells the other replicas (on commit) which requests changed: payloads
/// `<replica>;h<id>,o<id>,…` — `h` for held requests.
pub(super) async fn notify<'a>(
    tx: &Transaction<'_>,
    replica: &str,
    changed: impl Iterator<Item = (&'a str, bool)>,
) -> Result<(), Failure> {
    let payloads = payloads(replica, changed);
    if payloads.is_empty() {
        return Ok(());
    }
    let stmt = tx.prepare_cached(NOTIFY_SQL).await?;
    tx.execute(&stmt, &[&CHANNEL, &payloads]).await?;
    Ok(())
}

/// The NOTIFY payloads (see [`notify`]) naming `changed`.
pub(super) fn payloads<'a>(
    replica: &str,
    changed: impl Iterator<Item = (&'a str, bool)>,
) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for (id, held) in changed {
        if current.len() + id.len() + 2 > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        current.push_str(if current.is_empty() { "" } else { "," });
        current.push(if held { 'h' } else { 'o' });
        current.push_str(id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
        .into_iter()
        .map(|p| format!("{replica};{p}"))
        .collect()
}

/// The ids and held flags of a notification from another replica; `None`
/// for this replica's own.
pub(super) fn parse_payload<'a>(payload: &'a str, own: &str) -> Option<Vec<(&'a str, bool)>> {
    let (replica, list) = payload.split_once(';')?;
    if replica == own {
        return None;
    }
    Some(
        list.split(',')
            .filter_map(|e| match e.split_at_checked(1)? {
                ("h", id) => Some((id, true)),
                ("o", id) => Some((id, false)),
                _ => None,
            })
            .collect(),
    )
}
