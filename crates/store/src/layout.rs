//! What the tables hold and how their rows are laid out (issue 22).
//!
//! - `log`: the audit log in chunks of at most [`MAX_CHUNK_EVENTS`] and
//!   [`MAX_CHUNK_BYTES`], keyed by the chunk's first seq; a group commit
//!   appends to the last chunk while it has room, so chunks fill their page
//!   however small the groups (strict durability commits small groups). A chunk is the
//!   previous event's hash (32 bytes) then, per event, its length and body:
//!   time (µs), type, request id, agent, operator, its hash (32 bytes) and
//!   its fields ([`crate::codec`]). `prev_hash` and `seq` are implied by the
//!   position, so the canonical line is rendered, never stored.
//! - `request_rows`: request id key ([`id_key`]) → status, open flag,
//!   decision, the seqs of the request's events, and the record.
//! - `request_index`: postings for the history filters ([`crate::index`]).
//! - `dict`: the codec's dictionary; `meta`: format version and archive state.

use std::sync::Arc;

use redb::TableDefinition;
use serde_json::Value;

use crate::codec::{self, CodecError, Reader, Words};
use crate::model::{AuditEvent, RequestRecord, Status};

/// first seq → chunk of events.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// id key → request row.
pub(crate) const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("request_rows");
/// posting block key → ids.
pub(crate) const INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("request_index");
/// id → dictionary text.
pub(crate) const DICT: TableDefinition<u32, &str> = TableDefinition::new("dict");
/// name → value.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (request id, seq) → (): events of requests that have no row.
pub(crate) const ORPHANS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("audit_by_request");

/// `meta` key: the last archived event, (seq BE, hash): the live log's anchor.
pub(crate) const ARCHIVED_HEAD: &str = "archived_head";

/// Most events in one chunk: a single event is found by skipping at most these.
pub(crate) const MAX_CHUNK_EVENTS: usize = 256;
/// A chunk is closed before it grows past this: a chunk then fits one 4 KiB
/// page (redb gives a larger value a power-of-two run of pages, wasting the rest).
pub(crate) const MAX_CHUNK_BYTES: usize = 3_900;

/// The sortable key of a request id: a UUID as its 16 bytes (tag 0), any other
/// text as itself (tag 1).
pub(crate) fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    if codec::is_uuid_text(id) {
        k.push(0);
        codec::put_uuid_bytes(&mut k, id);
    } else {
        k.push(1);
        k.extend_from_slice(id.as_bytes());
    }
    k
}

/// The id an [`id_key`] stands for.
pub(crate) fn id_of_key(k: &[u8]) -> String {
    match k.split_first() {
        Some((0, rest)) if rest.len() == 16 => codec::uuid_text(rest),
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

/// Key of the oldest UUIDv7 id of millisecond `ms` (time bounds of a listing).
pub(crate) fn uuid_key_at_ms(ms: u64) -> Vec<u8> {
    let mut k = vec![0u8; 17];
    k[1..7].copy_from_slice(&ms.to_be_bytes()[2..8]);
    k
}

// ------------------------------------------------------------------ events

/// One event inside a chunk, borrowed.
pub(crate) struct RawEvent<'a> {
    pub(crate) seq: u64,
    pub(crate) body: &'a [u8],
    pub(crate) prev_hash: [u8; 32],
}

/// Walks a chunk's events.
pub(crate) struct ChunkIter<'a> {
    r: Reader<'a>,
    seq: u64,
    prev: [u8; 32],
}

impl<'a> ChunkIter<'a> {
    pub(crate) fn new(first_seq: u64, chunk: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(chunk);
        let prev: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| CodecError("chunk head"))?;
        Ok(ChunkIter {
            r,
            seq: first_seq,
            prev,
        })
    }

    pub(crate) fn next_event(&mut self) -> Result<Option<RawEvent<'a>>, CodecError> {
        if self.r.at_end() {
            return Ok(None);
        }
        let n = self.r.len()?;
        let body = self.r.take(n)?;
        let hash = event_hash_bytes(body)?;
        let ev = RawEvent {
            seq: self.seq,
            body,
            prev_hash: self.prev,
        };
        self.prev = hash;
        self.seq += 1;
        Ok(Some(ev))
    }
}

/// How many events a chunk holds (its bodies are skipped, not decoded).
pub(crate) fn chunk_events(chunk: &[u8]) -> Result<usize, CodecError> {
    let mut r = Reader::new(chunk);
    r.take(32)?;
    let mut n = 0;
    while !r.at_end() {
        let len = r.len()?;
        r.take(len)?;
        n += 1;
    }
    Ok(n)
}

/// Appends one event body to a chunk.
pub(crate) fn push_event(chunk: &mut Vec<u8>, body: &[u8]) {
    codec::put_varint(chunk, body.len() as u64);
    chunk.extend_from_slice(body);
}

/// The parts of an event body before its fields.
struct Head<'a> {
    micros: i64,
    kind: Option<String>,
    request_id: Option<String>,
    agent: Option<String>,
    operator: Option<String>,
    hash: [u8; 32],
    rest: Reader<'a>,
}

fn head<'a>(body: &'a [u8], words: &Words) -> Result<Head<'a>, CodecError> {
    let mut r = Reader::new(body);
    let micros = r.zigzag()?;
    let kind = codec::read_opt_str(&mut r, words)?;
    let request_id = codec::read_opt_str(&mut r, words)?;
    let agent = codec::read_opt_str(&mut r, words)?;
    let operator = codec::read_opt_str(&mut r, words)?;
    let hash = r.take(32)?.try_into().map_err(|_| CodecError("hash"))?;
    Ok(Head {
        micros,
        kind,
        request_id,
        agent,
        operator,
        hash,
        rest: r,
    })
}

/// The stored hash of an event body, without decoding the rest.
pub(crate) fn event_hash_bytes(body: &[u8]) -> Result<[u8; 32], CodecError> {
    let mut r = Reader::new(body);
    r.zigzag()?;
    for _ in 0..4 {
        codec::skip_value(&mut r)?;
    }
    r.take(32)?.try_into().map_err(|_| CodecError("hash"))
}

/// Event time text from its stored microseconds. Every event and every exported
/// line needs one: the text up to the second is kept per thread and reused while the
/// second lasts, so most calls only write the six fractional digits.
pub(crate) fn time_text(micros: i64) -> String {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let secs = micros.div_euclid(1_000_000);
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let full = time_text_whole(micros);
            // `YYYY-MM-DDTHH:MM:SS.ffffffZ`; other shapes (years past 9999) are not kept.
            let Some(prefix) = full
                .get(..20)
                .filter(|p| full.len() == 27 && p.ends_with('.'))
            else {
                return full;
            };
            *cell = (secs, prefix.to_string());
        }
        let mut out = String::with_capacity(27);
        out.push_str(&cell.1);
        let mut digits = [b'0'; 6];
        let mut frac = micros.rem_euclid(1_000_000);
        for d in digits.iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.extend(digits.iter().map(|d| char::from(*d)));
        out.push('Z');
        out
    })
}

/// [`time_text`], formatted whole.
fn time_text_whole(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    crate::chain::format_time(t)
}

/// The event's canonical JSON (keys sorted), with or without its `hash`.
pub(crate) fn render_event(
    ev: &RawEvent<'_>,
    words: &Words,
    with_hash: bool,
) -> Result<Vec<u8>, CodecError> {
    let mut h = head(ev.body, words)?;
    let hash = hex::encode(h.hash);
    let prev = hex::encode(ev.prev_hash);
    let time = time_text(h.micros);
    let seq = ev.seq.to_string();
    let opt = |s: &Option<String>| -> Vec<u8> {
        let mut o = Vec::new();
        match s {
            Some(s) => codec::render_str(&mut o, s),
            None => o.extend_from_slice(b"null"),
        }
        o
    };
    let quoted = |s: &str| -> Vec<u8> {
        let mut o = Vec::new();
        codec::render_str(&mut o, s);
        o
    };
    let mut slots: Vec<(&str, Vec<u8>)> = vec![
        ("agent", opt(&h.agent)),
        ("operator", opt(&h.operator)),
        ("prev_hash", quoted(&prev)),
        ("request_id", opt(&h.request_id)),
        ("seq", seq.into_bytes()),
        ("time", quoted(&time)),
        ("type", opt(&h.kind)),
    ];
    if with_hash {
        slots.insert(1, ("hash", quoted(&hash)));
    }
    let mut out = Vec::with_capacity(ev.body.len() * 3 + 256);
    out.push(b'{');
    let mut next = 0;
    let mut emit = |upto: Option<&str>, out: &mut Vec<u8>| {
        while next < slots.len() && upto.is_none_or(|k| slots[next].0 < k) {
            if out.len() > 1 {
                out.push(b',');
            }
            codec::render_str(out, slots[next].0);
            out.push(b':');
            out.extend_from_slice(&slots[next].1);
            next += 1;
        }
    };
    let r = &mut h.rest;
    let tag = codec::object_tag(r)?;
    codec::render_entries(r, tag, words, &mut out, &mut |k, out| emit(Some(k), out))?;
    emit(None, &mut out);
    out.push(b'}');
    Ok(out)
}

/// The stored event, decoded.
pub(crate) fn decode_event(ev: &RawEvent<'_>, words: &Words) -> Result<AuditEvent, CodecError> {
    let mut h = head(ev.body, words)?;
    let fields = match codec::read_value(&mut h.rest, words)? {
        Value::Object(m) => m,
        _ => return Err(CodecError("event fields")),
    };
    Ok(AuditEvent {
        seq: ev.seq,
        time: time_text(h.micros),
        kind: h.kind.unwrap_or_default(),
        request_id: h.request_id,
        agent: h.agent,
        operator: h.operator,
        fields,
        prev_hash: hex::encode(ev.prev_hash),
        hash: hex::encode(h.hash),
    })
}

/// Unix microseconds of an event (for time-bounded exports and retention).
pub(crate) fn event_micros(body: &[u8]) -> Result<i64, CodecError> {
    Reader::new(body).zigzag()
}

// -------------------------------------------------------------------- rows

/// A stored request row, decoded up to its record.
pub(crate) struct RowHead<'a> {
    pub(crate) status: Status,
    pub(crate) open: bool,
    pub(crate) decision: &'a str,
    pub(crate) seqs: Vec<u64>,
    pub(crate) body: &'a [u8],
}

pub(crate) fn status_code(s: Status) -> u8 {
    Status::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

pub(crate) fn status_of(code: u8) -> Result<Status, CodecError> {
    Status::ALL
        .get(usize::from(code))
        .copied()
        .ok_or(CodecError("status"))
}

/// Lays out a row: header, seqs, and the (finished) record body.
pub(crate) fn encode_row(
    status: Status,
    open: bool,
    decision: &str,
    seqs: &[u64],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16 + seqs.len() * 3);
    out.push(status_code(status));
    out.push(u8::from(open));
    codec::put_prefixed(&mut out, decision.as_bytes());
    put_seqs(&mut out, seqs);
    out.extend_from_slice(body);
    out
}

/// A rising list of seqs: its length, then each as the gap from the one before.
pub(crate) fn put_seqs(out: &mut Vec<u8>, seqs: &[u64]) {
    codec::put_varint(out, seqs.len() as u64);
    let mut last = 0;
    for s in seqs {
        codec::put_varint(out, s.saturating_sub(last));
        last = *s;
    }
}

/// Reads what [`put_seqs`] wrote.
pub(crate) fn read_seqs(r: &mut Reader<'_>) -> Result<Vec<u64>, CodecError> {
    let count = r.len()?;
    let mut seqs = Vec::with_capacity(count.min(64));
    let mut last = 0u64;
    for _ in 0..count {
        last = last.saturating_add(r.varint()?);
        seqs.push(last);
    }
    Ok(seqs)
}

pub(crate) fn decode_row_head(row: &[u8]) -> Result<RowHead<'_>, CodecError> {
    let mut r = Reader::new(row);
    let status = status_of(r.byte()?)?;
    let open = r.byte()? != 0;
    let decision = r.text()?;
    let seqs = read_seqs(&mut r)?;
    Ok(RowHead {
        status,
        open,
        decision,
        seqs,
        body: &row[r.pos..],
    })
}

/// The record a row holds (its id is the row's key, not stored again).
pub(crate) fn decode_record(
    row: &[u8],
    words: &Words,
    id: &str,
) -> Result<RequestRecord, CodecError> {
    record_from_body(decode_row_head(row)?.body, words, id)
}

/// A record from its encoded body: a row's, or a pre-encoding (with no words).
pub(crate) fn record_from_body(
    body: &[u8],
    words: &Words,
    id: &str,
) -> Result<RequestRecord, CodecError> {
    let mut v = codec::read_value(&mut Reader::new(body), words)?;
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), Value::String(id.to_string()));
    }
    serde_json::from_value(v).map_err(|_| CodecError("record shape"))
}

/// The shared dictionary, read side: readers take the current snapshot and
/// hold no lock while they read (a long export never holds up the writer).
pub(crate) type SharedWords = Arc<std::sync::RwLock<Arc<Vec<Arc<str>>>>>;

/// The dictionary as it is now.
pub(crate) fn snapshot(words: &SharedWords) -> Arc<Vec<Arc<str>>> {
    words
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Appends new entries (copy on write: rare once the names are known).
pub(crate) fn append(words: &SharedWords, new: impl Iterator<Item = Arc<str>>) {
    let mut w = words
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut v = Vec::clone(&w);
    v.extend(new);
    *w = Arc::new(v);
}

/// Drops entries past `len` (their transaction did not commit), or replaces them all.
pub(crate) fn reset(words: &SharedWords, keep: Option<usize>, all: Option<Vec<Arc<str>>>) {
    let mut w = words
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let v = match (all, keep) {
        (Some(all), _) => all,
        (None, Some(n)) => w.iter().take(n).cloned().collect(),
        (None, None) => return,
    };
    *w = Arc::new(v);
}

/// The stored body of an event given as its JSON (seq, prev_hash ignored;
/// `hash` kept as given): for moving logs of the first layout, and tests.
pub(crate) fn encode_event_value(
    v: &Value,
    interner: &mut codec::Interner,
) -> Result<Vec<u8>, CodecError> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let time = time::OffsetDateTime::parse(
        s("time").unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| CodecError("event time"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(s("hash").unwrap_or_default(), &mut hash)
        .map_err(|_| CodecError("event hash"))?;
    let mut pre = Vec::new();
    codec::put_str(&mut pre, s("type").unwrap_or_default(), true);
    codec::put_opt_str(&mut pre, s("request_id"), false);
    codec::put_opt_str(&mut pre, s("agent"), true);
    codec::put_opt_str(&mut pre, s("operator"), true);
    let fields: serde_json::Map<String, Value> = v
        .as_object()
        .ok_or(CodecError("event is not an object"))?
        .iter()
        .filter(|(k, _)| !crate::chain::RESERVED_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    codec::put_object(&mut pre, &fields);
    let mut body = Vec::with_capacity(pre.len() + 48);
    codec::put_zigzag(&mut body, (time.unix_timestamp_nanos() / 1000) as i64);
    let mut r = Reader::new(&pre);
    for _ in 0..4 {
        interner.finish(&mut r, &mut body)?;
    }
    body.extend_from_slice(&hash);
    interner.finish(&mut r, &mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_text_reusing_the_second_is_the_text_formatted_whole() {
        let now = 1_764_567_011_905_544_i64;
        let mut samples = vec![
            0,
            -1,
            -1_000_000,
            999_999,
            1_000_000,
            now,
            now + 1,
            now + 999_999,
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999Z
            253_402_300_800_000_000, // year 10000: another shape
            -62_167_219_200_000_000, // 0000-01-01
        ];
        samples.extend((0..2_000).map(|i| now + i * 7_919));
        for m in samples {
            assert_eq!(time_text(m), time_text_whole(m), "{m}");
        }
    }
}
