//! Request rows on their way into the store. A group commit that holds an ALLOW
//! decision about to be forwarded writes its events and, beside them, a journal
//! entry holding the group's rows; its waiter is answered once that commit is
//! durable. The entries are applied to the rows, the open list, the history
//! indexes and the counts by one later transaction, for several groups at once and
//! merged ([`Work::merged`]: a request's decision and its ending become one row
//! write): with the next group that is not split, before a list or count read or
//! any barrier, and within twice the flush interval. Until then readers get those
//! rows by id from [`Unapplied`]. A fault or crash in between leaves the entries in
//! the journal, and the next open applies them: a row is never lost, only late.
//! The applying transaction is not synced by itself (no second fsync per cycle): it
//! becomes durable with the next synced commit, and a crash before that rolls back
//! to a file whose journal still holds the entries.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::RowBase;
use crate::chain::Redactor;
use crate::codec::{self, CodecError, Interner, Reader};
use crate::codec_ser::put_serialize;
use crate::error::StoreError;
use crate::index::{Changes, Field};
use crate::layout::{self, DICT, INDEX, ORPHANS, ROWS, id_key};
use crate::model::{RequestRecord, Status};
use crate::{COUNTS, OPEN_REQUESTS};

/// A map keyed by request id, on the writer's path: foldhash, not SipHash.
pub(crate) type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Journal entries not yet applied: a key per group, in commit order → [`Work`].
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("row_journal");

/// One record to upsert.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) key: Vec<u8>,
    pub(crate) status: Status,
    pub(crate) decision: String,
    pub(crate) agent: String,
    pub(crate) resource: String,
    pub(crate) action: String,
    pub(crate) open: bool,
    /// The record, pre-encoded ([`crate::codec`]).
    pub(crate) pre: Vec<u8>,
}

/// The fields a request's ending changes, serialised as [`RequestRecord`] does.
#[derive(serde::Serialize)]
struct EndingFields<'a> {
    #[serde(with = "time::serde::rfc3339::option")]
    completed_at: Option<time::OffsetDateTime>,
    status: &'a Status,
    upstream_status: Option<u16>,
}

impl Row {
    pub(crate) fn new(rec: &RequestRecord) -> Result<Self, StoreError> {
        let mut pre = Vec::with_capacity(512);
        // The id is the row's key. Encoded from the record itself: building a
        // `serde_json::Value` first cost more than the rest of the encoding.
        put_serialize(&mut pre, rec, Some("id")).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Row::with_pre(rec, pre))
    }

    /// The row of `rec`, a request's ending: `base` (its row as prepared before)
    /// with the ending fields taken from `rec`. `None` when `base` is not a row
    /// holding them. The names the indexes file it under are masked as the
    /// stored record's are.
    pub(crate) fn ending(
        rec: &RequestRecord,
        base: &RowBase,
        r: &Redactor,
    ) -> Result<Option<Self>, StoreError> {
        let invalid = |e: &dyn std::fmt::Display| StoreError::Invalid(e.to_string());
        let mut ending = Vec::with_capacity(48);
        let fields = EndingFields {
            completed_at: rec.completed_at,
            status: &rec.status,
            upstream_status: rec.upstream_status,
        };
        put_serialize(&mut ending, &fields, None).map_err(|e| invalid(&e))?;
        let Some(pre) = codec::patch_object(&base.0, &ending).map_err(|e| invalid(&e))? else {
            return Ok(None);
        };
        let mut row = Row::with_pre(rec, pre);
        for name in [&mut row.agent, &mut row.resource, &mut row.action] {
            r.redact_str(name);
        }
        Ok(Some(row))
    }

    /// The row of `rec` (as stored) from its pre-encoding.
    fn with_pre(rec: &RequestRecord, pre: Vec<u8>) -> Self {
        Row {
            id: rec.id.clone(),
            key: id_key(&rec.id),
            status: rec.status,
            decision: rec.decision.to_ascii_uppercase(),
            agent: rec.agent.clone(),
            resource: rec.resource.clone(),
            action: rec.action.clone(),
            open: rec.is_open(),
            pre,
        }
    }
}

/// What a group leaves for the rows: each record's last upsert with the seqs of
/// its events in the group, and the seqs of requests the group has no upsert for.
#[derive(Default)]
pub(crate) struct Work<'a> {
    pub(crate) upserts: Vec<(Cow<'a, Row>, Vec<u64>)>,
    pub(crate) seqs_only: Vec<(Cow<'a, str>, Vec<u64>)>,
}

/// Journal entries written but not applied yet, oldest first, with their rows: the
/// writer applies them from here, and readers find a waiting row here by request id
/// (`get_request`, `events_for_request`) until they are applied.
#[derive(Clone, Default)]
pub(crate) struct Unapplied(Arc<RwLock<Vec<Arc<Entry>>>>);

/// One journal entry: its key and its rows.
pub(crate) struct Entry {
    pub(crate) key: u64,
    pub(crate) work: Work<'static>,
}

impl Unapplied {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Entry>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, key: u64, work: Work<'static>) {
        self.write().push(Arc::new(Entry { key, work }));
    }

    /// The entries as they are now (the writer applies them without holding the lock).
    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.read().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// They are in the store (applied, or replayed at a reopen).
    pub(crate) fn clear(&self) {
        self.write().clear();
    }

    /// The newest waiting state of request `id`, decoded from its pre-encoding (which
    /// needs no dictionary: it carries its strings and keys inline).
    pub(crate) fn record(&self, id: &str) -> Result<Option<RequestRecord>, CodecError> {
        let entries = self.read();
        let newest = entries
            .iter()
            .rev()
            .flat_map(|e| e.work.upserts.iter().rev())
            .find(|(row, _)| row.id == id);
        newest
            .map(|(row, _)| layout::record_from_body(&row.pre, &[], id))
            .transpose()
    }

    /// The seqs of request `id`'s events that its row does not list yet.
    pub(crate) fn seqs(&self, id: &str) -> Vec<u64> {
        let entries = self.read();
        let mut out = Vec::new();
        for e in entries.iter() {
            let w = &e.work;
            let of_rows = w.upserts.iter().map(|(r, s)| (r.id.as_str(), s));
            for (_, seqs) in of_rows
                .chain(w.seqs_only.iter().map(|(i, s)| (&**i, s)))
                .filter(|(i, _)| *i == id)
            {
                out.extend_from_slice(seqs);
            }
        }
        out
    }
}

/// Bumped when the entry layout changes; an entry of another version is refused.
const VERSION: u8 = 1;

impl<'a> Work<'a> {
    /// Collects a group's rows: several upserts of one record (decided, then forwarded)
    /// collapse into its last, since the transaction is atomic and the earlier ones would
    /// never be seen; the counts and the indexes end the same.
    pub(crate) fn collect(
        rows: impl DoubleEndedIterator<Item = &'a Row>,
        mut seqs_by_id: IdMap<&'a str, Vec<u64>>,
    ) -> Self {
        let mut seen: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            Default::default();
        let mut upserts: Vec<(Cow<'a, Row>, Vec<u64>)> = rows
            .rev()
            .filter(|r| seen.insert(r.id.as_str()))
            .map(|r| {
                let seqs = seqs_by_id.remove(r.id.as_str()).unwrap_or_default();
                (Cow::Borrowed(r), seqs)
            })
            .collect();
        upserts.reverse();
        let seqs_only = seqs_by_id
            .into_iter()
            .map(|(id, seqs)| (Cow::Borrowed(id), seqs))
            .collect();
        Work { upserts, seqs_only }
    }

    /// Several groups' rows as one, in order, to apply in one transaction: a request's
    /// upserts collapse into its last with all their seqs, as within one group. An ALLOW
    /// decision and its ending, journaled by different groups, become one row write.
    pub(crate) fn merged<'p>(parts: impl IntoIterator<Item = &'p Work<'a>>) -> Work<'p>
    where
        'a: 'p,
    {
        // Each request's slot, in order of first appearance: its last row and all its seqs.
        let mut slots: Vec<(&'p str, Option<&'p Row>, Vec<u64>)> = Vec::new();
        let mut at: IdMap<&'p str, usize> = IdMap::default();
        let mut add = |id: &'p str, row: Option<&'p Row>, seqs: &[u64]| {
            let i = *at.entry(id).or_insert_with(|| {
                slots.push((id, None, Vec::new()));
                slots.len() - 1
            });
            let slot = &mut slots[i];
            slot.1 = row.or(slot.1);
            slot.2.extend_from_slice(seqs);
        };
        for part in parts {
            for (row, seqs) in &part.upserts {
                add(row.id.as_str(), Some(&**row), seqs);
            }
            for (id, seqs) in &part.seqs_only {
                add(id, None, seqs);
            }
        }
        let mut out = Work::default();
        for (id, row, seqs) in slots {
            match row {
                Some(row) => out.upserts.push((Cow::Borrowed(row), seqs)),
                None => out.seqs_only.push((Cow::Borrowed(id), seqs)),
            }
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.seqs_only.is_empty()
    }

    /// Keeps the rows past the batches they were borrowed from.
    pub(crate) fn into_owned(self) -> Work<'static> {
        Work {
            upserts: self
                .upserts
                .into_iter()
                .map(|(r, s)| (Cow::Owned(r.into_owned()), s))
                .collect(),
            seqs_only: self
                .seqs_only
                .into_iter()
                .map(|(id, s)| (Cow::Owned(id.into_owned()), s))
                .collect(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let size: usize = self.upserts.iter().map(|(r, _)| r.pre.len() + 128).sum();
        let mut out = Vec::with_capacity(size + 16 + self.seqs_only.len() * 48);
        out.push(VERSION);
        codec::put_varint(&mut out, self.upserts.len() as u64);
        for (row, seqs) in &self.upserts {
            out.push(layout::status_code(row.status));
            out.push(u8::from(row.open));
            for s in [
                &row.id,
                &row.decision,
                &row.agent,
                &row.resource,
                &row.action,
            ] {
                codec::put_prefixed(&mut out, s.as_bytes());
            }
            codec::put_prefixed(&mut out, &row.pre);
            layout::put_seqs(&mut out, seqs);
        }
        codec::put_varint(&mut out, self.seqs_only.len() as u64);
        for (id, seqs) in &self.seqs_only {
            codec::put_prefixed(&mut out, id.as_bytes());
            layout::put_seqs(&mut out, seqs);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Work<'static>, CodecError> {
        let mut r = Reader::new(bytes);
        if r.byte()? != VERSION {
            return Err(CodecError("journal entry version"));
        }
        let n = r.len()?;
        let mut upserts = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let status = layout::status_of(r.byte()?)?;
            let open = r.byte()? != 0;
            let id = read_text(&mut r)?;
            let row = Row {
                key: id_key(&id),
                id,
                status,
                open,
                decision: read_text(&mut r)?,
                agent: read_text(&mut r)?,
                resource: read_text(&mut r)?,
                action: read_text(&mut r)?,
                pre: r.bytes()?.to_vec(),
            };
            upserts.push((Cow::Owned(row), layout::read_seqs(&mut r)?));
        }
        let n = r.len()?;
        let mut seqs_only = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let id = read_text(&mut r)?;
            seqs_only.push((Cow::Owned(id), layout::read_seqs(&mut r)?));
        }
        if !r.at_end() {
            return Err(CodecError("journal entry: trailing bytes"));
        }
        Ok(Work { upserts, seqs_only })
    }
}

fn read_text(r: &mut Reader<'_>) -> Result<String, CodecError> {
    Ok(r.text()?.to_string())
}

/// Writes a journal entry; its key follows the last one (entries are removed in
/// key order once applied, or at the next open).
pub(crate) fn journal(txn: &WriteTransaction, work: &Work<'_>) -> Result<u64, StoreError> {
    let mut table = txn.open_table(JOURNAL)?;
    let key = table.last()?.map_or(0, |(k, _)| k.value() + 1);
    table.insert(key, work.encode().as_slice())?;
    Ok(key)
}

/// Applies a group's rows: rows, open list, indexes, counts and orphaned seqs.
/// The dictionary words it adds are left in `interner` for the caller to store.
pub(crate) fn apply(
    txn: &WriteTransaction,
    work: &Work<'_>,
    interner: &mut Interner,
) -> Result<(), StoreError> {
    let mut tables = RowTables {
        rows: txn.open_table(ROWS)?,
        open: txn.open_table(OPEN_REQUESTS)?,
        deltas: Deltas::new(),
        postings: Changes::default(),
    };
    for (row, seqs) in &work.upserts {
        tables.upsert(row, seqs, interner)?;
    }
    let mut orphans = txn.open_table(ORPHANS)?;
    for (id, seqs) in &work.seqs_only {
        if !tables.append_seqs(id, seqs)? {
            for s in seqs {
                orphans.insert((&**id, *s), ())?;
            }
        }
    }
    tables.postings.apply(&mut txn.open_table(INDEX)?)?;
    apply_deltas(&mut txn.open_table(COUNTS)?, tables.deltas)
}

/// At open: applies what the journal still holds (a fault or crash came between
/// a group's two transactions), then empties it. Returns how many entries it applied.
pub(crate) fn replay(db: &Database) -> Result<usize, StoreError> {
    let txn = db.begin_write()?;
    let mut entries = Vec::new();
    {
        let journal = txn.open_table(JOURNAL)?;
        for item in journal.iter()? {
            let (k, v) = item?;
            let work =
                Work::decode(v.value()).map_err(|e| StoreError::corrupt("row_journal", e))?;
            entries.push((k.value(), work));
        }
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let words = crate::read_dict(&txn.open_table(DICT)?)?;
    let mut interner = Interner::load(&words);
    apply(
        &txn,
        &Work::merged(entries.iter().map(|(_, w)| w)),
        &mut interner,
    )?;
    {
        let mut dict = txn.open_table(DICT)?;
        for (id, w) in interner.take_new() {
            dict.insert(id, &*w)?;
        }
        let mut journal = txn.open_table(JOURNAL)?;
        for (k, _) in &entries {
            journal.remove(*k)?;
        }
    }
    txn.commit()?;
    Ok(entries.len())
}

/// The tables a row write touches, and what it changes in counts and indexes.
struct RowTables<'t> {
    rows: Table<'t, &'static [u8], &'static [u8]>,
    open: Table<'t, &'static str, ()>,
    deltas: Deltas,
    postings: Changes,
}

impl RowTables<'_> {
    /// Inserts or replaces a request row, adding the group's event seqs to it.
    fn upsert(
        &mut self,
        row: &Row,
        seqs: &[u64],
        interner: &mut Interner,
    ) -> Result<(), StoreError> {
        let mut body = Vec::with_capacity(row.pre.len());
        interner
            .finish(&mut Reader::new(&row.pre), &mut body)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let old = self
            .rows
            .get(row.key.as_slice())?
            .map(|g| g.value().to_vec());
        let old = old.as_deref().map(layout::decode_row_head);
        let (was_open, mut all_seqs) = match &old {
            Some(Ok(h)) => {
                bump(&mut self.deltas, h.status.as_str(), h.decision, -1);
                if h.status != row.status {
                    self.postings
                        .remove(Field::Status, h.status.as_str(), &row.key);
                    self.postings
                        .add(Field::Status, row.status.as_str(), &row.key);
                }
                (h.open, h.seqs.clone())
            }
            Some(Err(e)) => {
                // An undecodable old row may have been open: clear the index to be safe.
                tracing::error!(id = %row.id, error = %e, "undecodable stored request replaced");
                (true, Vec::new())
            }
            None => {
                let k = &row.key;
                self.postings.add(Field::Agent, &row.agent, k);
                self.postings.add(Field::Resource, &row.resource, k);
                self.postings.add(Field::Action, &row.action, k);
                self.postings.add(Field::Decision, &row.decision, k);
                self.postings.add(Field::Status, row.status.as_str(), k);
                (false, Vec::new())
            }
        };
        all_seqs.extend_from_slice(seqs);
        bump(&mut self.deltas, row.status.as_str(), &row.decision, 1);
        let stored = layout::encode_row(row.status, row.open, &row.decision, &all_seqs, &body);
        self.rows.insert(row.key.as_slice(), stored.as_slice())?;
        if row.open && !was_open {
            self.open.insert(row.id.as_str(), ())?;
        } else if !row.open && was_open {
            self.open.remove(row.id.as_str())?;
        }
        Ok(())
    }

    /// Adds event seqs to an existing row; false when the request has no row.
    fn append_seqs(&mut self, id: &str, seqs: &[u64]) -> Result<bool, StoreError> {
        let key = id_key(id);
        let Some(old) = self.rows.get(key.as_slice())?.map(|g| g.value().to_vec()) else {
            return Ok(false);
        };
        let h =
            layout::decode_row_head(&old).map_err(|e| StoreError::corrupt("request_rows", e))?;
        let mut all = h.seqs.clone();
        all.extend_from_slice(seqs);
        let stored = layout::encode_row(h.status, h.open, h.decision, &all, h.body);
        self.rows.insert(key.as_slice(), stored.as_slice())?;
        Ok(true)
    }
}

/// Counter keys in the `counts` table.
pub(crate) fn status_key(s: &str) -> String {
    format!("status:{s}")
}

pub(crate) fn decision_key(d: &str) -> String {
    format!("decision:{d}")
}

/// Count changes within one transaction, applied once at its end.
type Deltas = HashMap<String, i64>;

fn apply_deltas(counts: &mut Table<&str, u64>, deltas: Deltas) -> Result<(), StoreError> {
    for (key, d) in deltas {
        if d == 0 {
            continue;
        }
        let cur = counts.get(key.as_str())?.map_or(0, |g| g.value());
        let new = cur.saturating_add_signed(d);
        counts.insert(key.as_str(), new)?;
    }
    Ok(())
}

fn bump(deltas: &mut Deltas, status: &str, decision: &str, by: i64) {
    for key in [
        status_key(status),
        decision_key(&decision.to_ascii_uppercase()),
    ] {
        *deltas.entry(key).or_insert(0) += by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Batch, Filter, NewEvent, StoreOptions};
    use crate::testing::record_as as record;
    use crate::{Store, Wait};

    fn row(id: &str, status: Status) -> Row {
        Row::new(&record(id, status)).expect("row")
    }

    #[test]
    fn an_ending_patched_onto_its_decision_s_row_is_the_row_encoded_whole() {
        let r = Redactor::new(vec!["sk_test_1".into()]);
        let mut decided = record("01a2300b-d67f-7224-968d-bc5d759d565b", Status::Allowed);
        decided.url = "https://api.test/x?key=sk_test_1".into();
        decided.args = serde_json::json!({"b": [1, {"z": null}], "a": "sk_test_1"});
        decided.intents = vec![serde_json::json!({"resource": "http.api.test", "args": {}})];
        let stored = |rec: &RequestRecord| {
            let mut rec = rec.clone();
            crate::stored_view(&r, &mut rec);
            Row::new(&rec).expect("row")
        };
        let base = RowBase(Arc::from(stored(&decided).pre.as_slice()));
        let now = time::OffsetDateTime::now_utc();
        for (status, upstream) in [
            (Status::Completed, Some(201)),
            (Status::Failed, None),
            (Status::Cancelled, None),
        ] {
            let ended = RequestRecord {
                status,
                upstream_status: upstream,
                completed_at: Some(now),
                ..decided.clone()
            };
            let patched = Row::ending(&ended, &base, &r)
                .expect("patch")
                .expect("some");
            assert_eq!(patched, stored(&ended), "{status:?}");
        }
        // A base that is not a row with those fields is not patched.
        let other = RowBase(Arc::from(&[codec::Tag::Object as u8, 0][..]));
        assert_eq!(Row::ending(&decided, &other, &r).expect("patch"), None);
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let (a, b) = (row("a", Status::Allowed), row("b", Status::Pending));
        let work = Work {
            upserts: vec![(Cow::Borrowed(&a), vec![3, 9]), (Cow::Borrowed(&b), vec![])],
            seqs_only: vec![(Cow::Borrowed("c"), vec![4, 5, 6])],
        };
        let back = Work::decode(&work.encode()).expect("decode");
        assert_eq!(back.upserts.len(), 2);
        assert_eq!(*back.upserts[0].0, a);
        assert_eq!(back.upserts[0].1, vec![3, 9]);
        assert_eq!(*back.upserts[1].0, b);
        assert!(back.upserts[1].1.is_empty());
        assert_eq!(back.seqs_only, vec![(Cow::Borrowed("c"), vec![4, 5, 6])]);
    }

    #[test]
    fn merged_entries_keep_each_request_s_last_row_with_all_its_seqs() {
        let (a1, a2, b) = (
            row("a", Status::Allowed),
            row("a", Status::Completed),
            row("b", Status::Pending),
        );
        let first = Work {
            upserts: vec![(Cow::Borrowed(&a1), vec![1]), (Cow::Borrowed(&b), vec![2])],
            seqs_only: vec![(Cow::Borrowed("c"), vec![3])],
        };
        let second = Work {
            upserts: vec![(Cow::Borrowed(&a2), vec![5])],
            seqs_only: vec![(Cow::Borrowed("b"), vec![4]), (Cow::Borrowed("c"), vec![6])],
        };
        let merged = Work::merged([&first, &second]);
        let ups: Vec<(&str, Status, &[u64])> = merged
            .upserts
            .iter()
            .map(|(r, s)| (r.id.as_str(), r.status, s.as_slice()))
            .collect();
        assert_eq!(
            ups,
            [
                ("a", Status::Completed, &[1, 5][..]),
                ("b", Status::Pending, &[2, 4][..])
            ]
        );
        assert_eq!(merged.seqs_only, vec![(Cow::Borrowed("c"), vec![3, 6])]);
    }

    #[test]
    fn a_damaged_entry_is_refused() {
        let a = row("a", Status::Allowed);
        let work = Work {
            upserts: vec![(Cow::Borrowed(&a), vec![1])],
            seqs_only: Vec::new(),
        };
        let bytes = work.encode();
        let mut other_version = bytes.clone();
        other_version[0] = VERSION + 1;
        assert!(Work::decode(&other_version).is_err());
        assert!(Work::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(Work::decode(&longer).is_err());
    }

    fn decided(id: &str) -> NewEvent {
        NewEvent::new("request.decided").request(id).agent("bot")
    }

    fn open_flushing_every(dir: &std::path::Path, every: std::time::Duration) -> Store {
        let opts = StoreOptions {
            flush_interval: every,
            ..StoreOptions::default()
        };
        Store::open(&dir.join("s.redb"), opts).expect("open")
    }

    /// An ALLOW decision as the proxy writes it: answered once logged.
    async fn logged(store: &Store, id: &str) {
        let batch = Batch::one(decided(id), record(id, Status::Allowed));
        let sent = store.submit(batch, Wait::Logged).await.expect("queue");
        sent.durable().await.expect("durable");
    }

    /// What a crash between a split group's two transactions leaves: its events
    /// committed, its rows only in the journal. The next open applies them.
    #[tokio::test]
    async fn the_next_open_applies_what_the_journal_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, StoreOptions::default()).expect("open");
        store
            .commit(Batch::one(decided("old"), record("old", Status::Allowed)))
            .await
            .expect("commit");
        store.close().await.expect("close");
        drop(store);
        let (old_done, fresh) = (row("old", Status::Completed), row("new", Status::Denied));
        {
            let db = crate::slot::open_db(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            let work = Work {
                upserts: vec![
                    (Cow::Borrowed(&old_done), Vec::new()),
                    (Cow::Borrowed(&fresh), Vec::new()),
                ],
                seqs_only: Vec::new(),
            };
            journal(&txn, &work).expect("journal");
            txn.commit().expect("commit");
        }
        let store = Store::open(&path, StoreOptions::default()).expect("reopen");
        let old = store.get_request("old").expect("get").expect("row");
        assert_eq!(old.status, Status::Completed);
        let new = store.get_request("new").expect("get").expect("row");
        assert_eq!(new.status, Status::Denied);
        let counts = store.counts_by_status().expect("counts");
        assert_eq!(counts.get(&Status::Completed).copied(), Some(1));
        assert_eq!(counts.get(&Status::Allowed).copied().unwrap_or(0), 0);
        assert_eq!(counts.get(&Status::Denied).copied(), Some(1));
        let filter = Filter {
            status: Some(Status::Denied),
            ..Filter::default()
        };
        let (listed, _) = store.list_requests(&filter, 10, None).expect("list");
        assert_eq!(
            listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert!(store.verify().expect("verify").ok);
        store.close().await.expect("close");
        drop(store);
        let db = crate::slot::open_db(&path).expect("db");
        let rtx = redb::ReadableDatabase::begin_read(&db).expect("read");
        let left = rtx
            .open_table(JOURNAL)
            .expect("journal")
            .iter()
            .expect("iter")
            .count();
        assert_eq!(left, 0, "the journal is emptied once applied");
    }

    /// While a logged commit's row waits, readers get it by id (record and events) from
    /// memory, and the timer applies it without any reader.
    #[tokio::test]
    async fn a_waiting_row_is_read_by_id_and_applied_by_the_timer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_flushing_every(dir.path(), std::time::Duration::from_millis(400));
        logged(&store, "w").await;
        let started = std::time::Instant::now();
        let waiting = store.get_request("w").expect("get").expect("by id at once");
        assert_eq!(waiting.status, Status::Allowed);
        let events = store.events_for_request("w").expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "request.decided");
        if started.elapsed() < std::time::Duration::from_millis(150) {
            assert!(
                !store.inner.unapplied.is_empty(),
                "applied before the timer"
            );
        }
        let deadline = started + std::time::Duration::from_secs(5);
        while !store.inner.unapplied.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never applied");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(store.events_for_request("w").expect("events").len(), 1);
        let r = store
            .get_request("w")
            .expect("get")
            .expect("from the store");
        assert_eq!(r.status, Status::Allowed);
        // Read from the waiting entry, it was the record as the store keeps it.
        assert_eq!(
            serde_json::to_value(&waiting).expect("json"),
            serde_json::to_value(&r).expect("json")
        );
    }

    /// Lists and counts apply the waiting rows first: a request its agent was answered
    /// about is listed and counted at once.
    #[tokio::test]
    async fn lists_and_counts_include_waiting_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_flushing_every(dir.path(), std::time::Duration::from_secs(60));
        logged(&store, "a").await;
        logged(&store, "b").await;
        assert!(!store.inner.unapplied.is_empty(), "the rows wait");
        let (listed, _) = store
            .list_requests(&Filter::default(), 10, None)
            .expect("list");
        assert_eq!(listed.len(), 2);
        assert!(store.inner.unapplied.is_empty());
        let counts = store.counts_by_status().expect("counts");
        assert_eq!(counts.get(&Status::Allowed).copied(), Some(2));
        logged(&store, "c").await;
        let counts = store.counts_by_decision().expect("counts");
        assert_eq!(counts.get("ALLOW").copied(), Some(3));
    }

    /// An ALLOW decision and its ending, journaled by two split groups, are applied
    /// as one row: the ending's, with both events, counted and listed once.
    #[tokio::test]
    async fn a_decision_and_its_ending_waiting_together_are_one_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_flushing_every(dir.path(), std::time::Duration::from_secs(60));
        logged(&store, "a").await;
        let ended = NewEvent::new("request.completed").request("a").agent("bot");
        let sent = store
            .submit(
                Batch::one(ended, record("a", Status::Completed)),
                Wait::Logged,
            )
            .await
            .expect("queue");
        sent.durable().await.expect("durable");
        assert_eq!(store.inner.unapplied.len(), 2, "both wait in the journal");
        let waiting = store.get_request("a").expect("get").expect("by id");
        assert_eq!(waiting.status, Status::Completed);
        let counts = store.counts_by_status().expect("counts");
        assert!(store.inner.unapplied.is_empty());
        assert_eq!(counts.get(&Status::Completed).copied(), Some(1));
        assert_eq!(counts.get(&Status::Allowed).copied().unwrap_or(0), 0);
        let counts = store.counts_by_decision().expect("counts");
        assert_eq!(counts.get("ALLOW").copied(), Some(1));
        for (status, n) in [(Status::Allowed, 0), (Status::Completed, 1)] {
            let filter = Filter {
                status: Some(status),
                ..Filter::default()
            };
            let (listed, _) = store.list_requests(&filter, 10, None).expect("list");
            assert_eq!(listed.len(), n, "{status:?}");
        }
        let kinds: Vec<String> = store
            .events_for_request("a")
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["request.decided", "request.completed"]);
        assert!(store.verify().expect("verify").ok);
    }

    /// A logged commit is answered before its rows are applied; they are there
    /// once any later commit that reads back is answered, with counts and indexes.
    #[tokio::test]
    async fn logged_commits_are_readable_after_the_next_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).expect("open");
        let mut sent = Vec::new();
        for i in 0..40 {
            let id = format!("r{i:02}");
            let batch = Batch::one(decided(&id), record(&id, Status::Allowed));
            sent.push(store.submit(batch, Wait::Logged).await.expect("queue"));
        }
        for s in sent {
            s.durable().await.expect("durable");
        }
        store
            .commit(Batch::events(vec![decided("r00")]))
            .await
            .expect("commit");
        for i in 0..40 {
            let r = store.get_request(&format!("r{i:02}")).expect("get");
            assert_eq!(r.map(|r| r.status), Some(Status::Allowed));
        }
        let counts = store.counts_by_status().expect("counts");
        assert_eq!(counts.get(&Status::Allowed).copied(), Some(40));
        let filter = Filter {
            agent: Some(crate::testing::record("x").agent),
            ..Filter::default()
        };
        let (listed, _) = store.list_requests(&filter, 100, None).expect("list");
        assert_eq!(listed.len(), 40);
        assert!(store.verify().expect("verify").ok);
    }
}
