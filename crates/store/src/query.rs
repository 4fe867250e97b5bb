//! Reads: requests, listings, audit events, export and chain verification.
//!
//! Every method opens one redb read transaction, so it sees a consistent snapshot that
//! includes every commit that had resolved when it started. They are synchronous and cheap
//! except `export` and `verify`, which stream the whole log (use `spawn_blocking` for those).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::chain::{ChainVerifier, GENESIS_HASH};
use crate::codec::{CodecError, Words};
use crate::error::StoreError;
use crate::index::{Field, Postings, Probe};
use crate::layout::{self, ChunkIter, LOG, ORPHANS, ROWS, RawEvent, id_key};
use crate::model::{AuditEvent, Filter, RequestRecord, Status, VerifyReport};
use crate::rows::{decision_key, status_key};
use crate::{COUNTS, OPEN_REQUESTS, Store};

/// Largest page `list_requests` returns.
pub const MAX_LIMIT: usize = 500;
/// Page size when the caller passes 0.
pub const DEFAULT_LIMIT: usize = 50;

/// The page size `list_requests` serves for a caller's `limit`: 0 → the
/// default, anything larger than the cap → the cap.
pub(crate) fn page_limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

/// How much earlier than its `created_at` a request's id may have been made
/// (ids are minted when the request arrives; it is judged once its body is read).
const ID_SLACK_MS: u64 = 10 * 60 * 1000;

type LogTable = ReadOnlyTable<u64, &'static [u8]>;
type RowTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

fn corrupt(table: &'static str) -> impl Fn(CodecError) -> StoreError {
    move |e| StoreError::corrupt(table, e)
}

fn get_record(
    t: &RowTable,
    words: &Words,
    key: &[u8],
) -> Result<Option<RequestRecord>, StoreError> {
    match t.get(key)? {
        Some(g) => layout::decode_record(g.value(), words, &layout::id_of_key(key))
            .map(Some)
            .map_err(corrupt("request_rows")),
        None => Ok(None),
    }
}

/// The last event's (seq, hash, µs), or (0, genesis, 0) for an empty log.
pub(crate) fn last_event(log: &LogTable) -> Result<(u64, String, i64), StoreError> {
    let Some(item) = log.last()? else {
        return Ok((0, GENESIS_HASH.to_string(), 0));
    };
    let (k, v) = item;
    let mut it = ChunkIter::new(k.value(), v.value()).map_err(corrupt("log"))?;
    let mut last = None;
    while let Some(ev) = it.next_event().map_err(corrupt("log"))? {
        let hash = layout::event_hash_bytes(ev.body).map_err(corrupt("log"))?;
        let micros = layout::event_micros(ev.body).map_err(corrupt("log"))?;
        last = Some((ev.seq, hex::encode(hash), micros));
    }
    Ok(last.unwrap_or((0, GENESIS_HASH.to_string(), 0)))
}

/// Calls `f` on every event with `seq >= from`, in order, until it returns false.
pub(crate) fn each_event(
    log: &LogTable,
    from: u64,
    f: &mut dyn FnMut(&RawEvent<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let start = match log.range(..=from)?.next_back() {
        Some(item) => item?.0.value(),
        None => 0,
    };
    for item in log.range(start..)? {
        let (k, v) = item?;
        let mut it = ChunkIter::new(k.value(), v.value()).map_err(corrupt("log"))?;
        while let Some(ev) = it.next_event().map_err(corrupt("log"))? {
            if ev.seq >= from && !f(&ev)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn event_at(log: &LogTable, words: &Words, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
    let mut found = None;
    each_event(log, seq, &mut |ev| {
        if ev.seq == seq {
            found = Some(layout::decode_event(ev, words).map_err(corrupt("log"))?);
        }
        Ok(false)
    })?;
    Ok(found)
}

impl Store {
    /// The dictionary as it is now (no lock is held while it is used).
    pub(crate) fn words(&self) -> std::sync::Arc<Vec<std::sync::Arc<str>>> {
        layout::snapshot(&self.inner.words)
    }

    /// One request record.
    pub fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        if let Some(rec) = self
            .inner
            .unapplied
            .record(id)
            .map_err(corrupt("row_journal"))?
        {
            return Ok(Some(rec));
        }
        let rtx = self.inner.slot.get()?.begin_read()?;
        get_record(&rtx.open_table(ROWS)?, &self.words(), &id_key(id))
    }

    /// Requests matching `filter`, newest first (descending id), at most `limit` (0 → 50,
    /// capped at 500), starting after `cursor` (the `next_cursor` of the previous page).
    /// Returns the page and the cursor of the next one, `None` at the end. Filters on agent,
    /// resource, action, decision and status walk their indexes; time bounds narrow the
    /// range of ids; a page costs in proportion to what it reads, not to the history.
    pub fn list_requests(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<RequestRecord>, Option<String>), StoreError> {
        self.sync_rows();
        let limit = page_limit(limit);
        let rtx = self.inner.slot.get()?.begin_read()?;
        let rows = rtx.open_table(ROWS)?;
        let postings = rtx.open_table(layout::INDEX)?;
        let words = self.words();
        let until_key = filter
            .until
            .map(|t| layout::uuid_key_at_ms(unix_ms(t).saturating_add(1)));
        let lower = filter
            .since
            .map(|t| layout::uuid_key_at_ms(unix_ms(t).saturating_sub(ID_SLACK_MS)));
        let mut out = Vec::new();
        let mut more = false;
        let mut take = |key: &[u8]| -> Result<bool, StoreError> {
            if let Some(rec) = get_record(&rows, &words, key)?
                && filter.matches(&rec)
            {
                if out.len() == limit {
                    more = true;
                    return Ok(false);
                }
                out.push(rec);
            }
            Ok(true)
        };
        let driver = choose_driver(&postings, &indexed(filter))?;
        let walk = |below: Option<&[u8]>| -> Result<KeyWalk<'_>, StoreError> {
            Ok(match &driver {
                Some((d, _)) => KeyWalk::Postings(Postings::new(&postings, d.0, &d.1, below)?),
                None => KeyWalk::Rows(Box::new(match below {
                    Some(b) => rows.range::<&[u8]>(..b)?,
                    None => rows.range::<&[u8]>(..)?,
                })),
            })
        };
        let mut probes: Vec<Probe> = driver
            .iter()
            .flat_map(|d| d.1.iter())
            .map(|(f, v)| Probe::new(*f, v))
            .collect();
        let mut keys = walk(cursor.map(id_key).as_deref())?;
        while let Some(key) = keys.next_key()? {
            // UUIDv7 ids (tag 0) sort by time: jump below `until`, stop under `since`.
            if key[0] == 0 {
                if let Some(u) = until_key.as_deref().filter(|u| key.as_slice() >= *u) {
                    keys = walk(Some(u))?;
                    continue;
                }
                if lower.as_deref().is_some_and(|l| key.as_slice() < l) {
                    break;
                }
            }
            let mut all = true;
            for probe in probes.iter_mut() {
                if !probe.contains(&postings, &key)? {
                    all = false;
                    break;
                }
            }
            if all && !take(&key)? {
                break;
            }
        }
        let next = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Requests that are pending, or approved with their retry grant unused (restart
    /// recovery), oldest first.
    pub fn pending_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let rows = rtx.open_table(ROWS)?;
        let open = rtx.open_table(OPEN_REQUESTS)?;
        let words = self.words();
        let mut out = Vec::new();
        for item in open.iter()? {
            let (k, _) = item?;
            if let Some(rec) = get_record(&rows, &words, &id_key(k.value()))?
                && rec.is_open()
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The newest open request (see [`Store::pending_requests`]) with this retry key.
    pub fn find_open_by_retry_key(&self, key: &str) -> Result<Option<RequestRecord>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let rows = rtx.open_table(ROWS)?;
        let open = rtx.open_table(OPEN_REQUESTS)?;
        let words = self.words();
        for item in open.iter()?.rev() {
            let (k, _) = item?;
            if let Some(rec) = get_record(&rows, &words, &id_key(k.value()))?
                && rec.retry_key == key
            {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Number of requests per status (every status present, zeros included).
    pub fn counts_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.sync_rows();
        let rtx = self.inner.slot.get()?.begin_read()?;
        let counts = rtx.open_table(COUNTS)?;
        let mut out = BTreeMap::new();
        for s in Status::ALL {
            let n = counts
                .get(status_key(s.as_str()).as_str())?
                .map_or(0, |g| g.value());
            out.insert(s, n);
        }
        Ok(out)
    }

    /// Number of requests per decision (`ALLOW`, `DENY`, `REQUIRE_APPROVAL` always present).
    pub fn counts_by_decision(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.sync_rows();
        let rtx = self.inner.slot.get()?.begin_read()?;
        let counts = rtx.open_table(COUNTS)?;
        let mut out: BTreeMap<String, u64> = ["ALLOW", "DENY", "REQUIRE_APPROVAL"]
            .into_iter()
            .map(|d| (d.to_string(), 0))
            .collect();
        let prefix = decision_key("");
        for item in counts.range::<&str>(prefix.as_str()..)? {
            let (k, v) = item?;
            let Some(d) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            out.insert(d.to_string(), v.value());
        }
        Ok(out)
    }

    /// Audit events of one request, in seq order.
    pub fn events_for_request(&self, id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        // Taken before the snapshot: seqs leave it only once their row is applied,
        // so they are in one or the other (or both; deduplicated below).
        let unapplied = self.inner.unapplied.seqs(id);
        let rtx = self.inner.slot.get()?.begin_read()?;
        let rows = rtx.open_table(ROWS)?;
        let log = rtx.open_table(LOG)?;
        let words = self.words();
        let mut seqs = match rows.get(id_key(id).as_slice())? {
            Some(g) => {
                layout::decode_row_head(g.value())
                    .map_err(corrupt("request_rows"))?
                    .seqs
            }
            None => Vec::new(),
        };
        for item in rtx.open_table(ORPHANS)?.range((id, 0)..=(id, u64::MAX))? {
            seqs.push(item?.0.value().1);
        }
        seqs.extend(unapplied);
        seqs.sort_unstable();
        seqs.dedup();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(ev) = event_at(&log, &words, seq)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with `seq > after_seq`, in seq order.
    pub fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let log = rtx.open_table(LOG)?;
        let words = self.words();
        let mut out = Vec::new();
        let Some(start) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        each_event(&log, start, &mut |ev| {
            out.push(layout::decode_event(ev, &words).map_err(corrupt("log"))?);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// One event by seq.
    pub fn event(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        event_at(&rtx.open_table(LOG)?, &self.words(), seq)
    }

    /// The last committed event's seq and hash (0 and 64 zeros when empty).
    pub fn head(&self) -> Result<(u64, String), StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let (seq, hash, _) = last_event(&rtx.open_table(LOG)?)?;
        Ok((seq, hash))
    }

    /// Writes events with `since <= time < until` as JSON Lines (the canonical lines,
    /// `hash` included); returns how many. A full export (no bounds) verifies with
    /// [`verify_lines`]; a bounded one with [`verify_lines_partial`].
    pub fn export(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let log = rtx.open_table(LOG)?;
        let words = self.words();
        let since_us = since.map(unix_us);
        let until_us = until.map(unix_us);
        // Archived events first: a full export verifies from the first event.
        let in_window = |line: &str| {
            if since.is_none() && until.is_none() {
                return true;
            }
            let t = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("time").and_then(|t| t.as_str()).map(str::to_string))
                .and_then(|t| {
                    OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
                });
            t.is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
        };
        let mut n = crate::archive::export_archives(&self.archive_dir(), &in_window, out)?;
        each_event(&log, 0, &mut |ev| {
            let t = layout::event_micros(ev.body).map_err(corrupt("log"))?;
            if since_us.is_some_and(|s| t < s) {
                return Ok(true);
            }
            if until_us.is_some_and(|u| t >= u) {
                return Ok(false); // times never decrease along the chain
            }
            let line = layout::render_event(ev, &words, true).map_err(corrupt("log"))?;
            out.write_all(&line).map_err(StoreError::Stream)?;
            out.write_all(b"\n").map_err(StoreError::Stream)?;
            n += 1;
            Ok(true)
        })?;
        out.flush().map_err(StoreError::Stream)?;
        Ok(n)
    }

    /// Recomputes every hash and link of the stored chain, streaming it.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let log = rtx.open_table(LOG)?;
        let words = self.words();
        let mut v = ChainVerifier::new(true);
        if let Some((seq, hash)) = self.archived_anchor(&rtx)? {
            v.anchor(seq, &hash);
        }
        each_event(&log, 0, &mut |ev| {
            feed_stored(&mut v, ev, &words);
            Ok(true)
        })?;
        Ok(v.finish())
    }
}

impl Store {
    /// The last archived event (seq, hash), when older events were archived.
    pub(crate) fn archived_anchor(
        &self,
        rtx: &redb::ReadTransaction,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let meta = rtx.open_table(layout::META)?;
        let Some(v) = meta.get(layout::ARCHIVED_HEAD)? else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() != 40 {
            return Err(StoreError::corrupt("meta", "archived head"));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&v[..8]);
        Ok(Some((u64::from_be_bytes(seq), hex::encode(&v[8..]))))
    }
}

/// Feeds one stored event to the verifier: its hash is recomputed from the
/// canonical text rendered from the stored bytes.
pub(crate) fn feed_stored(v: &mut ChainVerifier, ev: &RawEvent<'_>, words: &Words) {
    match (
        layout::render_event(ev, words, false),
        layout::event_hash_bytes(ev.body),
    ) {
        (Ok(text), Ok(stored)) => {
            let computed = hex::encode(Sha256::digest(&text));
            v.feed_stored(
                ev.seq,
                &hex::encode(ev.prev_hash),
                &hex::encode(stored),
                &computed,
            );
        }
        (Err(e), _) | (_, Err(e)) => v.feed_broken(e.to_string()),
    }
}

fn unix_us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn unix_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The filter's indexed (field, value) pairs.
fn indexed(filter: &Filter) -> Vec<(Field, String)> {
    let mut out = Vec::new();
    if let Some(a) = &filter.agent {
        out.push((Field::Agent, a.clone()));
    }
    if let Some(r) = &filter.resource {
        out.push((Field::Resource, r.clone()));
    }
    if let Some(a) = &filter.action {
        out.push((Field::Action, a.clone()));
    }
    if let Some(d) = &filter.decision {
        out.push((Field::Decision, d.to_ascii_uppercase()));
    }
    if let Some(s) = filter.status {
        out.push((Field::Status, s.as_str().to_string()));
    }
    out
}

type Pair = (Field, String);

/// The rarest indexed value drives the walk; the others are checked per id.
fn choose_driver(
    postings: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    wanted: &[Pair],
) -> Result<Option<(Pair, Vec<Pair>)>, StoreError> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut best = 0;
    let mut best_n = usize::MAX;
    for (i, (f, v)) in wanted.iter().enumerate() {
        let n = Postings::blocks(postings, *f, v)?;
        if n < best_n {
            (best, best_n) = (i, n);
        }
    }
    let mut others = wanted.to_vec();
    let driver = others.remove(best);
    Ok(Some((driver, others)))
}

/// Request keys, newest first: from the rows themselves or from an index.
enum KeyWalk<'t> {
    Rows(Box<redb::Range<'t, &'static [u8], &'static [u8]>>),
    Postings(Postings<'t, ReadOnlyTable<&'static [u8], &'static [u8]>>),
}

impl KeyWalk<'_> {
    fn next_key(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            KeyWalk::Rows(r) => match r.next_back() {
                Some(item) => Ok(Some(item?.0.value().to_vec())),
                None => Ok(None),
            },
            KeyWalk::Postings(p) => p.next_id(),
        }
    }
}

fn verify_stream(reader: impl BufRead, from_genesis: bool) -> Result<VerifyReport, StoreError> {
    let mut v = ChainVerifier::new(from_genesis);
    for line in reader.lines() {
        let line = line.map_err(StoreError::Stream)?;
        if line.trim().is_empty() {
            continue;
        }
        v.feed_line(&line);
    }
    Ok(v.finish())
}

/// Verifies an exported JSON Lines stream holding the whole log (it must start at seq 1).
/// Blank lines are ignored. Deleting events at the end cannot be detected from the lines
/// alone: compare `head_hash` with a copy kept elsewhere.
pub fn verify_lines(reader: impl BufRead) -> Result<VerifyReport, StoreError> {
    verify_stream(reader, true)
}

/// Like [`verify_lines`] for a partial export (`--since`): the first event's seq and
/// `prev_hash` are taken on trust as the anchor.
pub fn verify_lines_partial(reader: impl BufRead) -> Result<VerifyReport, StoreError> {
    verify_stream(reader, false)
}
