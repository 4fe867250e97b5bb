//! Canonical JSON, event hashing, redaction and chain verification.
//!
//! **Canonical form.** An event is a JSON object; its canonical JSON is the object with keys
//! sorted by code point at every depth, no whitespace, UTF-8, strings escaped as serde_json
//! does (only `"`, `\` and control characters; `\b \f \n \r \t` short forms, others
//! `\u00xx`), numbers as serde_json writes them (integers in decimal; floats in shortest
//! round-trip form, which agrees with Python's `json.dumps` for magnitudes between 1e-4 and
//! 1e16 — keep audit floats in that range or send them as strings). That is exactly
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` in Python.
//!
//! `hash` = lower-case hex SHA-256 of the canonical JSON of the event **without** its `hash`
//! key; `prev_hash` is the previous event's `hash`, 64 zeros for `seq` 1.
//!
//! **Nulls.** `request_id`, `agent` and `operator` are always present, `null` when absent, so
//! every event has the same top-level shape; type-specific fields are hashed exactly as given
//! (a `null` field stays `null`). Exported lines are stored canonical (keys sorted, `hash`
//! included), so a verifier needs nothing but the lines.
//!
//! **Redaction** happens before hashing: any object key named (case-insensitive, `_` = `-`)
//! `authorization`, `proxy-authorization`, `cookie`, `set-cookie`, `x-api-key` or
//! `x-amz-security-token` has its value replaced by `"[redacted]"` at any depth, as does the
//! value of `[name, value]` pairs and `{"name", "value"}` objects naming those headers; and
//! every occurrence of a configured secret inside a string is replaced by `[redacted]`, the
//! rest of the string kept (an agent must not be able to blank its own URL by putting its
//! token in it).

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::codec;
use crate::fields::Fields;
use crate::model::{AuditEvent, NewEvent, VerifyReport};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Replacement for redacted values.
pub const REDACTED: &str = "[redacted]";

/// Top-level names the store sets itself; `NewEvent::fields` may not use them.
pub const RESERVED_FIELDS: [&str; 8] = [
    "seq",
    "time",
    "type",
    "request_id",
    "agent",
    "operator",
    "prev_hash",
    "hash",
];

const SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];

/// `value` with object keys sorted recursively (by code point).
pub fn canonicalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(canonical_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        other => other,
    }
}

fn canonical_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(k, v)| (k, canonicalize(v)))
        .collect()
}

/// Canonical JSON text of `value` (see the module doc).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(&mut out, value);
    into_string(out)
}

/// Appends the canonical JSON of `value` to `out`, sorting keys by reference (no copy of
/// the value): the same text as `canonicalize(value.clone()).to_string()`.
pub(crate) fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) if map.len() <= 1 => write_sorted_object(out, map.iter()),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_sorted_object(out, entries.into_iter());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, v);
            }
            out.push(b']');
        }
        // Writing JSON scalars into a Vec cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// Appends an object whose entries come in key order.
fn write_sorted_object<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, k);
        out.push(b':');
        write_canonical(out, v);
    }
    out.push(b'}');
}

/// Appends `s` as a JSON string (serde_json's escaping).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The bytes written by the functions above are UTF-8 by construction.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Hex SHA-256 of the canonical JSON of `event` minus any `hash` key.
pub fn event_hash(event: &Value) -> String {
    let mut v = event.clone();
    if let Value::Object(map) = &mut v {
        map.remove("hash");
    }
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// Event time text: RFC3339 UTC with exactly six fractional digits
/// (`2026-11-23T21:13:25.807080Z`), so times of the same width sort as text.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    const FMT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let t = t.to_offset(time::UtcOffset::UTC);
    // Formatting only fails for years outside 0..=9999; fall back to plain RFC3339 then.
    t.format(FMT)
        .or_else(|_| t.format(&Rfc3339))
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Whether `name` is a credential header name.
pub fn is_sensitive_name(name: &str) -> bool {
    SENSITIVE_HEADERS.iter().any(|h| {
        h.len() == name.len()
            && h.bytes().zip(name.bytes()).all(|(a, b)| {
                let b = if b == b'_' { b'-' } else { b };
                a == b.to_ascii_lowercase()
            })
    })
}

/// Scrubs credential headers and secret values (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty strings are ignored).
    pub fn new(secrets: Vec<String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Masks every occurrence of a secret in the string with `[redacted]`.
    pub fn redact_str(&self, s: &mut String) {
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                *s = s.replace(secret.as_str(), REDACTED);
            }
        }
    }

    /// Redacts `value` in place, recursively.
    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.redact_str(s),
            Value::Array(items) => {
                let pair_named = items.len() == 2
                    && matches!(&items[0], Value::String(n) if is_sensitive_name(n));
                for (i, item) in items.iter_mut().enumerate() {
                    if pair_named && i == 1 {
                        *item = Value::String(REDACTED.to_string());
                    } else {
                        self.redact(item);
                    }
                }
            }
            Value::Object(map) => self.redact_map(map),
            _ => {}
        }
    }

    /// Redacts an object's values in place, recursively.
    pub fn redact_map(&self, map: &mut Map<String, Value>) {
        let named = matches!(map.get("name"), Some(Value::String(n)) if is_sensitive_name(n));
        self.redact_entries(named, map.iter_mut().map(|(k, v)| (k.as_str(), v)));
    }

    /// Redacts an event's fields as the object they become.
    pub(crate) fn redact_fields(&self, fields: &mut Fields) {
        let named = matches!(fields.get("name"), Some(Value::String(n)) if is_sensitive_name(n));
        self.redact_entries(named, fields.iter_mut());
    }

    /// An object's entries; `named`: its `name` names a credential header.
    fn redact_entries<'v>(
        &self,
        named: bool,
        entries: impl Iterator<Item = (&'v str, &'v mut Value)>,
    ) {
        for (k, v) in entries {
            if is_sensitive_name(k) || (named && k == "value") {
                *v = Value::String(REDACTED.to_string());
            } else {
                self.redact(v);
            }
        }
    }
}

/// Checks a new event before it is queued.
pub(crate) fn validate(ev: &NewEvent) -> Result<(), String> {
    if ev.kind.is_empty() {
        return Err("event type is empty".into());
    }
    if let Some(k) = ev.fields.names().find(|k| RESERVED_FIELDS.contains(k)) {
        return Err(format!(
            "event field {k:?} is reserved (event type {:?})",
            ev.kind
        ));
    }
    Ok(())
}

/// Top-level entries the writer fills in at seal time, in sorted key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Agent,
    Hash,
    Operator,
    PrevHash,
    RequestId,
    Seq,
    Time,
    Type,
}

const SLOTS: [(&str, Slot); 8] = [
    ("agent", Slot::Agent),
    ("hash", Slot::Hash),
    ("operator", Slot::Operator),
    ("prev_hash", Slot::PrevHash),
    ("request_id", Slot::RequestId),
    ("seq", Slot::Seq),
    ("time", Slot::Time),
    ("type", Slot::Type),
];

/// One piece of an event's canonical text: pre-rendered `"key":value` pairs of its fields
/// (already comma-joined), or a slot.
#[derive(Debug, Clone)]
enum Piece {
    /// A range of [`PreparedEvent::fields_text`].
    Fields(std::ops::Range<usize>),
    Slot(Slot),
}

/// An event validated, redacted and canonicalised on the caller's thread, with its
/// canonical text laid out in key order, so the writer only fills the slots and hashes.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    kind: String,
    request_id: Option<String>,
    agent: Option<String>,
    operator: Option<String>,
    fields: Map<String, Value>,
    pieces: Vec<Piece>,
    /// The canonical text of the fields, in runs between slots ([`Piece::Fields`]).
    fields_text: String,
    fixed_len: usize,
    /// Type, request id, agent, operator and fields, pre-encoded ([`crate::codec`]).
    pre: Vec<u8>,
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json escapes only control characters, `"` and `\\`.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let mut buf = Vec::with_capacity(s.len() + 8);
        write_json_str(&mut buf, s);
        out.push_str(&into_string(buf));
    }
}

fn push_json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

impl PreparedEvent {
    /// `ev` must already be validated (no reserved field names) and redacted.
    /// `keep_fields`: keep the (canonicalised) fields for [`PreparedEvent::into_event`];
    /// otherwise only the canonical text is kept.
    pub(crate) fn new(mut ev: NewEvent, keep_fields: bool) -> Self {
        ev.fields.sort();
        let mut pre = Vec::with_capacity(256);
        codec::put_str(&mut pre, &ev.kind, true);
        codec::put_opt_str(&mut pre, ev.request_id.as_deref(), false);
        codec::put_opt_str(&mut pre, ev.agent.as_deref(), true);
        codec::put_opt_str(&mut pre, ev.operator.as_deref(), true);
        codec::put_sorted_object(&mut pre, ev.fields.len(), ev.fields.iter());
        let mut pieces: Vec<Piece> = Vec::with_capacity(2 * SLOTS.len() + 1);
        let mut slots = SLOTS.iter().peekable();
        // Every run of fields between two slots in one buffer, the pieces its ranges.
        let mut text: Vec<u8> = Vec::with_capacity(2 * pre.len() + 64);
        let mut run = 0;
        let flush = |run: &mut usize, text: &Vec<u8>, pieces: &mut Vec<Piece>| {
            if *run < text.len() {
                pieces.push(Piece::Fields(*run..text.len()));
                *run = text.len();
            }
        };
        for (k, v) in ev.fields.iter() {
            while let Some((_, slot)) = slots.next_if(|(name, _)| *name < k) {
                flush(&mut run, &text, &mut pieces);
                pieces.push(Piece::Slot(*slot));
            }
            if run < text.len() {
                text.push(b',');
            }
            write_json_str(&mut text, k);
            text.push(b':');
            write_canonical(&mut text, v);
        }
        flush(&mut run, &text, &mut pieces);
        let fields = if keep_fields {
            canonical_map(ev.fields.into_map())
        } else {
            Map::new()
        };
        pieces.extend(slots.map(|(_, slot)| Piece::Slot(*slot)));
        let fixed_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Fields(r) => r.len() + 1,
                Piece::Slot(_) => 24,
            })
            .sum();
        PreparedEvent {
            kind: ev.kind,
            request_id: ev.request_id,
            agent: ev.agent,
            operator: ev.operator,
            fields,
            pieces,
            fields_text: into_string(text),
            fixed_len,
            pre,
        }
    }

    /// The stored body of this event (time, subjects, hash, fields) into `out`,
    /// cleared first: a writer keeps one buffer for all its events.
    pub(crate) fn body(
        &self,
        out: &mut Vec<u8>,
        micros: i64,
        hash: &[u8; 32],
        interner: &mut codec::Interner,
    ) -> Result<(), codec::CodecError> {
        out.clear();
        codec::put_zigzag(out, micros);
        let mut r = codec::Reader::new(&self.pre);
        for _ in 0..4 {
            interner.finish(&mut r, out)?;
        }
        out.extend_from_slice(hash);
        interner.finish(&mut r, out)
    }

    /// The request this event concerns.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Hash and canonical line (hash included) of this event at `seq` (the
    /// PostgreSQL backend stores this line).
    pub(crate) fn seal(&self, seq: u64, time: &str, prev_hash: &str) -> (String, String) {
        let mut text = String::new();
        let hash_at = self.text(&mut text, seq, time, prev_hash);
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let hash = hex::encode(digest);
        let mut line = String::with_capacity(text.len() + 76);
        line.push_str(&text[..hash_at]);
        line.push_str(",\"hash\":\"");
        line.push_str(&hash);
        line.push('"');
        line.push_str(&text[hash_at..]);
        (hash, line)
    }

    /// The canonical text without `hash` into `text` (cleared first); returns the
    /// offset where `,"hash":…` belongs.
    fn text(&self, text: &mut String, seq: u64, time: &str, prev_hash: &str) -> usize {
        text.clear();
        text.reserve(self.fixed_len + 256);
        // Byte offset where `,"hash":"…"` goes: "agent" sorts before it and "operator" after,
        // so it is never the first or last entry.
        let mut hash_at = 0;
        text.push('{');
        for piece in &self.pieces {
            let slot = match piece {
                Piece::Fields(r) => {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    text.push_str(self.fields_text.get(r.clone()).unwrap_or_default());
                    continue;
                }
                Piece::Slot(Slot::Hash) => {
                    hash_at = text.len();
                    continue;
                }
                Piece::Slot(slot) => *slot,
            };
            if text.len() > 1 {
                text.push(',');
            }
            match slot {
                Slot::Agent => {
                    text.push_str("\"agent\":");
                    push_json_opt(text, self.agent.as_deref());
                }
                Slot::Operator => {
                    text.push_str("\"operator\":");
                    push_json_opt(text, self.operator.as_deref());
                }
                Slot::PrevHash => {
                    text.push_str("\"prev_hash\":");
                    push_json_str(text, prev_hash);
                }
                Slot::RequestId => {
                    text.push_str("\"request_id\":");
                    push_json_opt(text, self.request_id.as_deref());
                }
                Slot::Seq => {
                    text.push_str("\"seq\":");
                    // Writing into a String cannot fail.
                    let _ = write!(text, "{seq}");
                }
                Slot::Time => {
                    text.push_str("\"time\":");
                    push_json_str(text, time);
                }
                Slot::Type => {
                    text.push_str("\"type\":");
                    push_json_str(text, &self.kind);
                }
                Slot::Hash => {}
            }
        }
        text.push('}');
        hash_at
    }

    /// Hash of this event at `seq` (what [`PreparedEvent::seal`] computes), as
    /// bytes; the text is built in `scratch`, which a writer keeps between events.
    pub(crate) fn seal_hash(
        &self,
        scratch: &mut String,
        seq: u64,
        time: &str,
        prev_hash: &str,
    ) -> [u8; 32] {
        self.text(scratch, seq, time, prev_hash);
        Sha256::digest(scratch.as_bytes()).into()
    }

    /// The stored event, once sealed.
    pub(crate) fn into_event(
        self,
        seq: u64,
        time: String,
        prev_hash: String,
        hash: String,
    ) -> AuditEvent {
        AuditEvent {
            seq,
            time,
            kind: self.kind,
            request_id: self.request_id,
            agent: self.agent,
            operator: self.operator,
            fields: self.fields,
            prev_hash,
            hash,
        }
    }
}

/// Incremental chain verifier, fed one event at a time in sequence order.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    from_genesis: bool,
    last_seq: Option<u64>,
    last_hash: String,
    events: u64,
    first_bad: Option<(u64, String)>,
}

impl ChainVerifier {
    /// `from_genesis`: the first event must be seq 1 with 64-zero `prev_hash`; otherwise the
    /// first event's `prev_hash` and seq are trusted as the anchor (partial exports).
    pub(crate) fn new(from_genesis: bool) -> Self {
        ChainVerifier {
            from_genesis,
            last_seq: None,
            last_hash: GENESIS_HASH.to_string(),
            events: 0,
            first_bad: None,
        }
    }

    fn expected_seq(&self) -> u64 {
        self.last_seq.map_or(1, |s| s + 1)
    }

    fn bad(&mut self, seq: u64, why: String) {
        if self.first_bad.is_none() {
            self.first_bad = Some((seq, why));
        }
    }

    /// Feeds one event's JSON text.
    pub(crate) fn feed_line(&mut self, line: &str) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => self.feed(&v),
            Err(e) => {
                self.events += 1;
                let seq = self.expected_seq();
                self.bad(seq, format!("event after seq {seq} is not JSON: {e}"));
                self.last_seq = Some(seq);
            }
        }
    }

    /// Feeds one parsed event.
    pub(crate) fn feed(&mut self, v: &Value) {
        self.events += 1;
        let expected = self.expected_seq();
        let seq = v.get("seq").and_then(Value::as_u64);
        let prev = v.get("prev_hash").and_then(Value::as_str);
        let hash = v.get("hash").and_then(Value::as_str);
        let (Some(seq), Some(prev), Some(hash)) = (seq, prev, hash) else {
            self.bad(
                expected,
                format!("event {expected} lacks seq, prev_hash or hash"),
            );
            self.last_seq = Some(expected);
            return;
        };
        let anchor = self.last_seq.is_none() && !self.from_genesis;
        if !anchor && seq != expected {
            let why = if seq > expected {
                format!("events {expected}..{} are missing", seq - 1)
            } else {
                format!("seq {seq} follows {}", expected - 1)
            };
            self.bad(expected, why);
        } else if !anchor && prev != self.last_hash {
            self.bad(
                seq,
                format!("event {seq}: prev_hash does not match event {}", seq - 1),
            );
        }
        let computed = event_hash(v);
        if computed != hash {
            self.bad(seq, format!("event {seq}: hash does not match its content"));
        }
        self.last_seq = Some(seq);
        self.last_hash = hash.to_string();
    }

    /// Feeds one stored event: its seq, links and the hash recomputed from its content.
    pub(crate) fn feed_stored(&mut self, seq: u64, prev: &str, stored: &str, computed: &str) {
        self.events += 1;
        let expected = self.expected_seq();
        let anchor = self.last_seq.is_none() && !self.from_genesis;
        if !anchor && seq != expected {
            self.bad(
                expected,
                format!("events {expected}..{} are missing", seq.saturating_sub(1)),
            );
        } else if !anchor && prev != self.last_hash {
            self.bad(
                seq,
                format!(
                    "event {seq}: prev_hash does not match event {}",
                    seq.saturating_sub(1)
                ),
            );
        }
        if computed != stored {
            self.bad(seq, format!("event {seq}: hash does not match its content"));
        }
        self.last_seq = Some(seq);
        self.last_hash = stored.to_string();
    }

    /// Feeds an event that could not be decoded.
    pub(crate) fn feed_broken(&mut self, why: String) {
        self.events += 1;
        let seq = self.expected_seq();
        self.bad(seq, format!("event {seq}: {why}"));
        self.last_seq = Some(seq);
    }

    /// Starts after an archived prefix: the next event is `seq`, linked to `hash`.
    pub(crate) fn anchor(&mut self, last_seq: u64, hash: &str) {
        if last_seq > 0 {
            self.last_seq = Some(last_seq);
        }
        self.last_hash = hash.to_string();
    }

    /// The report.
    pub(crate) fn finish(self) -> VerifyReport {
        let (first_bad_seq, problem) = match self.first_bad {
            Some((s, p)) => (Some(s), Some(p)),
            None => (None, None),
        };
        VerifyReport {
            ok: first_bad_seq.is_none(),
            events: self.events,
            head_hash: self.last_hash,
            first_bad_seq,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_line_is_the_canonical_form() {
        let ev = NewEvent::new("request.decided")
            .request("r1")
            .field("zeta", json!({"b": 1, "a": [2.5, "x\u{1}"]}))
            .field("Alpha", "é")
            .field("hashish", true)
            .field("ha", json!(null))
            .field("zz", json!([]))
            .field("operatorz", 1)
            .field("", 0);
        let p = PreparedEvent::new(ev, true);
        let (hash, line) = p.seal(7, "2026-01-01T00:00:00Z", GENESIS_HASH);
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(line, canonical_json(&v));
        assert_eq!(hash, event_hash(&v));
        assert_eq!(v["hash"], json!(hash));
        assert_eq!(v["operator"], Value::Null);
        assert_eq!(v["seq"], json!(7));
        // No fields at all.
        let (hash, line) =
            PreparedEvent::new(NewEvent::new("server.started"), false).seal(1, "t", GENESIS_HASH);
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(line, canonical_json(&v));
        assert_eq!(hash, event_hash(&v));
    }

    #[test]
    fn lines_agree_with_and_without_kept_fields() {
        let make = || {
            NewEvent::new("request.decided")
                .request("r\"1")
                .agent("a\u{7}")
                .field(
                    "request",
                    json!({"headers": {"b": "x", "a": "y\n"}, "m": [3, 1.5]}),
                )
                .field("args", json!({"z": {"y": null, "x": true}}))
        };
        let kept = PreparedEvent::new(make(), true).seal(3, "t", GENESIS_HASH);
        let lean = PreparedEvent::new(make(), false).seal(3, "t", GENESIS_HASH);
        assert_eq!(kept, lean);
        let v: Value = serde_json::from_str(&kept.1).expect("json");
        assert_eq!(kept.1, canonicalize(v.clone()).to_string());
        assert_eq!(kept.1, canonical_json(&v));
    }

    #[test]
    fn fields_in_any_order_and_given_twice_hash_as_the_object_they_make() {
        let ordered = NewEvent::new("request.decided")
            .request("r1")
            .field("args", json!({"b": 1, "a": []}))
            .field("decision", "DENY")
            .field("url", "https://x/");
        let shuffled = NewEvent::new("request.decided")
            .request("r1")
            .field("url", "https://x/")
            .field("decision", "ALLOW")
            .field(String::from("args"), json!({"a": [], "b": 1}))
            .field("decision", "DENY");
        let a = PreparedEvent::new(ordered, false).seal(7, "t", GENESIS_HASH);
        let b = PreparedEvent::new(shuffled, true).seal(7, "t", GENESIS_HASH);
        assert_eq!(a, b);
        let v: Value = serde_json::from_str(&a.1).expect("json");
        assert_eq!(v["decision"], "DENY");
        assert_eq!(a.0, event_hash(&v));
        assert_eq!(a.1, canonical_json(&v));
    }

    #[test]
    fn sorts_keys_recursively_despite_preserve_order() {
        let v = json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn sensitive_names() {
        assert!(is_sensitive_name("Authorization"));
        assert!(is_sensitive_name("X-AMZ-Security-Token"));
        assert!(is_sensitive_name("x_api_key"));
        assert!(!is_sensitive_name("authorizations"));
        assert!(!is_sensitive_name("content-type"));
    }

    #[test]
    fn masks_secrets_where_they_occur() {
        let r = Redactor::new(vec!["tok".into(), "tok-long-1".into()]);
        let mut s = "https://h/p?a=tok-long-1&b=tok&c=x".to_string();
        r.redact_str(&mut s);
        assert_eq!(s, "https://h/p?a=[redacted]&b=[redacted]&c=x");
        let mut again = s.clone();
        r.redact_str(&mut again);
        assert_eq!(again, s, "idempotent");
    }

    #[test]
    fn redacts_pairs_and_name_value_objects() {
        let r = Redactor::new(vec!["sk_live_123".into(), String::new()]);
        let mut v = json!({
            "headers": [["Cookie", "a=b"], ["Accept", "x"]],
            "h2": [{"name": "x-api-key", "value": "k"}],
            "note": "key is sk_live_123!",
            "ok": "fine"
        });
        r.redact(&mut v);
        assert_eq!(
            v,
            json!({
                "headers": [["Cookie", "[redacted]"], ["Accept", "x"]],
                "h2": [{"name": "x-api-key", "value": "[redacted]"}],
                "note": "key is [redacted]!",
                "ok": "fine"
            })
        );
    }
}
