//! Moves a store of the first layout (one canonical JSON line per event in
//! `audit_events`, one JSON record per request in `requests`) into the
//! compact layout ([`crate::layout`]), once, at open, in one transaction.
//! Every event is re-rendered from its new form and compared with the line
//! it came from, so the chain's hashes are kept exactly; a line that would
//! not come back identical stops the move and leaves the store as it was.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::codec::{CodecError, Interner};
use crate::error::StoreError;
use crate::index::{Changes, Field};
use crate::layout::{self, DICT, INDEX, LOG, MAX_CHUNK_BYTES, MAX_CHUNK_EVENTS, ORPHANS, ROWS};
use crate::model::RequestRecord;
use crate::rows::Row;

const V1_EVENTS: TableDefinition<u64, &str> = TableDefinition::new("audit_events");
const V1_REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("requests");

/// Whether the file holds the first layout.
pub(crate) fn needed(db: &Database) -> Result<bool, StoreError> {
    let rtx = db.begin_read()?;
    Ok(rtx.open_table(V1_EVENTS).is_ok() || rtx.open_table(V1_REQUESTS).is_ok())
}

fn bad(what: &str) -> impl Fn(CodecError) -> StoreError + '_ {
    move |e| {
        StoreError::Storage(format!(
            "moving the audit log to the compact layout: {what}: {e}"
        ))
    }
}

/// Moves everything over (see the module docs).
pub(crate) fn run(db: &Database) -> Result<(), StoreError> {
    let mut words: Vec<Arc<str>> = Vec::new();
    let mut interner = Interner::default();
    let txn = db.begin_write()?;
    {
        let old_events = txn.open_table(V1_EVENTS)?;
        let mut log = txn.open_table(LOG)?;
        let mut chunk: Vec<u8> = Vec::new();
        let mut first = 0;
        let mut events = 0;
        let mut prev = [0u8; 32];
        for item in old_events.iter()? {
            let (k, v) = item?;
            let (seq, line) = (k.value(), v.value());
            let value: Value =
                serde_json::from_str(line).map_err(|e| StoreError::corrupt("audit_events", e))?;
            let body = layout::encode_event_value(&value, &mut interner).map_err(bad("event"))?;
            // Ids are handed out in order, so the new words append.
            words.extend(interner.take_new().into_iter().map(|(_, w)| Arc::from(w)));
            let raw = layout::RawEvent {
                seq,
                body: &body,
                prev_hash: prev,
            };
            let again = layout::render_event(&raw, &words, true).map_err(bad("event"))?;
            if again != line.as_bytes() {
                return Err(StoreError::Storage(format!(
                    "moving the audit log to the compact layout: event {seq} would not render back identically; the store was left as it was"
                )));
            }
            if events == MAX_CHUNK_EVENTS
                || (events > 0 && chunk.len() + body.len() > MAX_CHUNK_BYTES)
            {
                log.insert(first, chunk.as_slice())?;
                events = 0;
            }
            if events == 0 {
                chunk = prev.to_vec();
                first = seq;
            }
            layout::push_event(&mut chunk, &body);
            events += 1;
            prev = layout::event_hash_bytes(&body).map_err(bad("event"))?;
        }
        if events > 0 {
            log.insert(first, chunk.as_slice())?;
        }
        move_rows(&txn, &mut interner, &mut words)?;
        let mut dict = txn.open_table(DICT)?;
        for (i, w) in words.iter().enumerate() {
            dict.insert(i as u32, &**w)?;
        }
    }
    txn.delete_table(V1_EVENTS)?;
    txn.delete_table(V1_REQUESTS)?;
    txn.commit()?;
    tracing::info!("audit store moved to the compact layout");
    Ok(())
}

/// Records: each becomes a row with its event seqs (from the old by-request
/// index, whose entries then go) and its index entries.
fn move_rows(
    txn: &redb::WriteTransaction,
    interner: &mut Interner,
    words: &mut Vec<Arc<str>>,
) -> Result<(), StoreError> {
    let old = txn.open_table(V1_REQUESTS)?;
    let mut rows = txn.open_table(ROWS)?;
    let mut by_request = txn.open_table(ORPHANS)?;
    let mut postings = Changes::default();
    for item in old.iter()? {
        let (k, v) = item?;
        let rec: RequestRecord =
            serde_json::from_str(v.value()).map_err(|e| StoreError::corrupt("requests", e))?;
        let row = Row::new(&rec)?;
        let id = k.value();
        let seqs: Vec<u64> = by_request
            .range((id, 0)..=(id, u64::MAX))?
            .map(|i| i.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for s in &seqs {
            by_request.remove((id, *s))?;
        }
        let mut body = Vec::with_capacity(row.pre.len());
        interner
            .finish(&mut crate::codec::Reader::new(&row.pre), &mut body)
            .map_err(bad("record"))?;
        words.extend(interner.take_new().into_iter().map(|(_, w)| Arc::from(w)));
        let stored = layout::encode_row(row.status, row.open, &row.decision, &seqs, &body);
        rows.insert(row.key.as_slice(), stored.as_slice())?;
        let key = &row.key;
        postings.add(Field::Agent, &row.agent, key);
        postings.add(Field::Resource, &row.resource, key);
        postings.add(Field::Action, &row.action, key);
        postings.add(Field::Decision, &row.decision, key);
        postings.add(Field::Status, row.status.as_str(), key);
    }
    postings.apply(&mut txn.open_table(INDEX)?)?;
    Ok(())
}
