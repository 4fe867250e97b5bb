//! The compact binary form of JSON values kept on disk (issue 22): a tag per
//! value, varint numbers, object keys and a few repeated values (agent,
//! resource, rule, policy version, …) as ids in a dictionary, 64-digit hex
//! as 32 bytes, UUIDs as 16, RFC 3339 times as nanoseconds. Decoding gives
//! back exactly the JSON it came from (a text form is only chosen when it
//! re-renders identically), so the canonical JSON an event was hashed over
//! is rendered straight from these bytes, without an intermediate tree.
//!
//! Callers pre-encode on their own thread with strings inline
//! ([`Tag::Intern`], odd key lengths); the writer thread swaps them for
//! dictionary ids ([`Interner::finish`]) in the same grammar.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Value tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    Null = 0,
    False = 1,
    True = 2,
    Uint = 3,
    /// `-(n + 1)` for varint `n`.
    Neg = 4,
    Float = 5,
    Str = 6,
    Dict = 7,
    Hex32 = 8,
    Uuid = 9,
    Array = 10,
    Object = 11,
    /// RFC 3339 text that re-renders identically from its Unix nanoseconds.
    Time = 12,
    /// Pre-encoding only: a string the writer puts in the dictionary.
    Intern = 13,
    /// SHA-256 of the empty string (every body-less request's body hash).
    EmptySha = 14,
    /// An object whose key list is one dictionary entry (keys joined by NUL),
    /// then its values: records and events of one kind share their shape.
    Shape = 15,
}

impl Tag {
    fn from_u8(b: u8) -> Option<Tag> {
        use Tag::*;
        Some(match b {
            0 => Null,
            1 => False,
            2 => True,
            3 => Uint,
            4 => Neg,
            5 => Float,
            6 => Str,
            7 => Dict,
            8 => Hex32,
            9 => Uuid,
            10 => Array,
            11 => Object,
            12 => Time,
            13 => Intern,
            14 => EmptySha,
            15 => Shape,
            _ => return None,
        })
    }
}

/// Lower-case hex SHA-256 of no bytes (a request without a body).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Values under these keys repeat across requests: they go in the dictionary.
pub(crate) const INTERNED: [&str; 18] = [
    "accept",
    "accept-encoding",
    "action",
    "agent",
    "content-type",
    "decision",
    "error_type",
    "host",
    "method",
    "operator",
    "policy_version",
    "reason",
    "resource",
    "rule",
    "scheme",
    "status",
    "type",
    "user-agent",
];
/// Longest string or key put in the dictionary.
const MAX_INTERNED_LEN: usize = 200;
/// Entries the dictionary may hold; past it strings stay inline.
const MAX_DICT: usize = 200_000;
/// Shapes (key lists) the dictionary may hold, and the longest one.
const MAX_SHAPES: usize = 20_000;
const MAX_SHAPE_LEN: usize = 1024;
/// Objects nested deeper than this keep their keys one by one (bodies vary).
const MAX_SHAPE_DEPTH: usize = 2;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable stored value: {0}")]
pub(crate) struct CodecError(pub(crate) &'static str);

// ------------------------------------------------------------------ writing

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn put_zigzag(out: &mut Vec<u8>, n: i64) {
    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, tag: Tag, s: &[u8]) {
    out.push(tag as u8);
    put_prefixed(out, s);
}

/// Bytes after their length (read back by [`Reader::bytes`] or [`Reader::text`]).
pub(crate) fn put_prefixed(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn is_lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

fn put_hex(out: &mut Vec<u8>, s: &[u8]) {
    for pair in s.chunks_exact(2) {
        out.push((hex_val(pair[0]) << 4) | hex_val(pair[1]));
    }
}

/// 36-character lower-case hyphenated UUID text.
pub(crate) fn is_uuid_text(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

pub(crate) fn put_uuid_bytes(out: &mut Vec<u8>, s: &str) {
    // The hyphens sit between byte pairs (8-4-4-4-12 digits): skip them, no copy.
    for group in s.as_bytes().split(|c| *c == b'-') {
        put_hex(out, group);
    }
}

/// Unix nanoseconds of `s` when it is RFC 3339 text that formats back identically.
fn exact_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !(20..=35).contains(&b.len()) || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    if t.offset() != time::UtcOffset::UTC || t.format(&Rfc3339).ok()? != s {
        return None;
    }
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// Appends `s` in its most compact exact form; `intern`: may go in the dictionary.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, intern: bool) {
    let b = s.as_bytes();
    if intern && b.len() <= MAX_INTERNED_LEN {
        // Repeated values (a policy version, an agent) cost one id each.
        put_bytes(out, Tag::Intern, b);
    } else if b.len() == 64 && is_lower_hex(b) {
        if s == EMPTY_SHA256 {
            out.push(Tag::EmptySha as u8);
        } else {
            out.push(Tag::Hex32 as u8);
            put_hex(out, b);
        }
    } else if is_uuid_text(s) {
        out.push(Tag::Uuid as u8);
        put_uuid_bytes(out, s);
    } else if let Some(nanos) = exact_time(s) {
        out.push(Tag::Time as u8);
        put_zigzag(out, nanos);
    } else {
        put_bytes(out, Tag::Str, b);
    }
}

/// Appends an optional subject (`agent`, `request_id`, …): null or a string.
pub(crate) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>, intern: bool) {
    match s {
        Some(s) => put_str(out, s, intern),
        None => out.push(Tag::Null as u8),
    }
}

/// Pre-encodes `v`; object keys are written in sorted order (canonical).
pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value, parent_key: Option<&str>) {
    match v {
        Value::Null => out.push(Tag::Null as u8),
        Value::Bool(false) => out.push(Tag::False as u8),
        Value::Bool(true) => out.push(Tag::True as u8),
        Value::Number(n) => put_number(out, n),
        Value::String(s) => put_str(out, s, parent_key.is_some_and(|k| INTERNED.contains(&k))),
        Value::Array(items) => {
            out.push(Tag::Array as u8);
            put_varint(out, items.len() as u64);
            for i in items {
                put_value(out, i, None);
            }
        }
        Value::Object(map) => put_object(out, map),
    }
}

/// Pre-encodes an object with its keys sorted by code point.
pub(crate) fn put_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    if map.len() <= 1 {
        return put_sorted_object(out, map.len(), map.iter().map(|(k, v)| (k.as_str(), v)));
    }
    let mut entries: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    put_sorted_object(out, entries.len(), entries.into_iter());
}

/// Pre-encodes an object from its `len` entries, already in key order.
pub(crate) fn put_sorted_object<'a>(
    out: &mut Vec<u8>,
    len: usize,
    entries: impl Iterator<Item = (&'a str, &'a Value)>,
) {
    out.push(Tag::Object as u8);
    put_varint(out, len as u64);
    for (k, v) in entries {
        put_varint(out, ((k.len() as u64) << 1) | 1);
        out.extend_from_slice(k.as_bytes());
        put_value(out, v, Some(k));
    }
}

fn put_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.push(Tag::Uint as u8);
        put_varint(out, u);
    } else if let Some(i) = n.as_i64() {
        out.push(Tag::Neg as u8);
        put_varint(out, (-(i + 1)) as u64);
    } else {
        out.push(Tag::Float as u8);
        out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
    }
}

// ------------------------------------------------------------------ reading

/// A cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError("length"))?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(CodecError("varint too long"))
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, CodecError> {
        let n = self.varint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    pub(crate) fn len(&mut self) -> Result<usize, CodecError> {
        usize::try_from(self.varint()?).map_err(|_| CodecError("length"))
    }

    fn tag(&mut self) -> Result<Tag, CodecError> {
        Tag::from_u8(self.byte()?).ok_or(CodecError("unknown tag"))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn text(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("not UTF-8"))
    }
}

/// The dictionary as readers see it (id → text).
pub(crate) type Words = [Arc<str>];

fn word(words: &Words, id: u64) -> Result<&str, CodecError> {
    usize::try_from(id)
        .ok()
        .and_then(|i| words.get(i))
        .map(|w| &**w)
        .ok_or(CodecError("unknown dictionary id"))
}

fn hex_text(b: &[u8]) -> String {
    hex::encode(b)
}

pub(crate) fn uuid_text(b: &[u8]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn time_text(nanos: i64) -> Result<String, CodecError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or(CodecError("time"))
}

/// A decoded string: borrowed from the bytes or the dictionary, or rebuilt.
pub(crate) enum Text<'a, 'w> {
    Buf(&'a str),
    Word(&'w str),
    Owned(String),
}

impl Text<'_, '_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Buf(s) | Text::Word(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// Reads a string-like value after its tag.
fn string_after<'a, 'w>(
    r: &mut Reader<'a>,
    tag: Tag,
    words: &'w Words,
) -> Result<Text<'a, 'w>, CodecError> {
    Ok(match tag {
        Tag::Str | Tag::Intern => Text::Buf(r.text()?),
        Tag::Dict => Text::Word(word(words, r.varint()?)?),
        Tag::Hex32 => Text::Owned(hex_text(r.take(32)?)),
        Tag::EmptySha => Text::Word(EMPTY_SHA256),
        Tag::Uuid => Text::Owned(uuid_text(r.take(16)?)),
        Tag::Time => Text::Owned(time_text(r.zigzag()?)?),
        _ => return Err(CodecError("not a string")),
    })
}

/// Reads an optional string (null or a string value).
pub(crate) fn read_opt_str(
    r: &mut Reader<'_>,
    words: &Words,
) -> Result<Option<String>, CodecError> {
    match r.tag()? {
        Tag::Null => Ok(None),
        t => Ok(Some(string_after(r, t, words)?.as_str().to_string())),
    }
}

fn read_key<'a, 'w>(r: &mut Reader<'a>, words: &'w Words) -> Result<Text<'a, 'w>, CodecError> {
    let k = r.varint()?;
    if k & 1 == 1 {
        let n = usize::try_from(k >> 1).map_err(|_| CodecError("length"))?;
        std::str::from_utf8(r.take(n)?)
            .map(Text::Buf)
            .map_err(|_| CodecError("key not UTF-8"))
    } else {
        word(words, k >> 1).map(Text::Word)
    }
}

/// Decodes one value.
pub(crate) fn read_value(r: &mut Reader<'_>, words: &Words) -> Result<Value, CodecError> {
    let tag = r.tag()?;
    Ok(match tag {
        Tag::Null => Value::Null,
        Tag::False => Value::Bool(false),
        Tag::True => Value::Bool(true),
        Tag::Uint => Value::from(r.varint()?),
        Tag::Neg => Value::from(-(r.varint()? as i64) - 1),
        Tag::Float => Value::from(f64::from_le_bytes(
            r.take(8)?.try_into().map_err(|_| CodecError("float"))?,
        )),
        Tag::Array => {
            let n = r.len()?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(read_value(r, words)?);
            }
            Value::Array(items)
        }
        Tag::Object => {
            let n = r.len()?;
            let mut map = Map::new();
            for _ in 0..n {
                let k = read_key(r, words)?.as_str().to_string();
                map.insert(k, read_value(r, words)?);
            }
            Value::Object(map)
        }
        Tag::Shape => {
            let mut map = Map::new();
            for k in shape_keys(r, words)? {
                map.insert(k.to_string(), read_value(r, words)?);
            }
            Value::Object(map)
        }
        t => Value::String(match string_after(r, t, words)? {
            Text::Owned(s) => s,
            other => other.as_str().to_string(),
        }),
    })
}

/// Appends `s` as a JSON string, escaped as serde_json does.
pub(crate) fn render_str(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Renders one value as canonical JSON text (keys are stored sorted).
pub(crate) fn render_value(
    r: &mut Reader<'_>,
    words: &Words,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let tag = r.tag()?;
    match tag {
        Tag::Null => out.extend_from_slice(b"null"),
        Tag::False => out.extend_from_slice(b"false"),
        Tag::True => out.extend_from_slice(b"true"),
        Tag::Uint => out.extend_from_slice(r.varint()?.to_string().as_bytes()),
        Tag::Neg => out.extend_from_slice((-(r.varint()? as i64) - 1).to_string().as_bytes()),
        Tag::Float => {
            let f = f64::from_le_bytes(r.take(8)?.try_into().map_err(|_| CodecError("float"))?);
            let _ = serde_json::to_writer(&mut *out, &f);
        }
        Tag::Array => {
            let n = r.len()?;
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                render_value(r, words, out)?;
            }
            out.push(b']');
        }
        Tag::Object | Tag::Shape => {
            out.push(b'{');
            render_entries(r, tag, words, out, &mut |_, _| {})?;
            out.push(b'}');
        }
        t => render_str(out, string_after(r, t, words)?.as_str()),
    }
    Ok(())
}

/// The keys of a shaped object (after its tag).
fn shape_keys<'w>(
    r: &mut Reader<'_>,
    words: &'w Words,
) -> Result<std::str::Split<'w, char>, CodecError> {
    Ok(word(words, r.varint()?)?.split('\0'))
}

/// Renders an object's entries (after its tag), comma-separated; `before(key,
/// out)` runs ahead of each key (the event renderer slips its own entries in there).
pub(crate) fn render_entries(
    r: &mut Reader<'_>,
    tag: Tag,
    words: &Words,
    out: &mut Vec<u8>,
    before: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Result<(), CodecError> {
    let mut entry = |k: &str, r: &mut Reader<'_>, out: &mut Vec<u8>| {
        before(k, out);
        if !matches!(out.last(), Some(b'{') | None) {
            out.push(b',');
        }
        render_str(out, k);
        out.push(b':');
        render_value(r, words, out)
    };
    match tag {
        Tag::Shape => {
            for k in shape_keys(r, words)? {
                entry(k, r, out)?;
            }
        }
        _ => {
            for _ in 0..r.len()? {
                let k = read_key(r, words)?;
                entry(k.as_str(), r, out)?;
            }
        }
    }
    Ok(())
}

/// `base` (a pre-encoded object, keys inline and sorted) with the values of the
/// keys `with` (another) holds taken from `with`: a row changed in a few fields
/// without encoding the record again. `None` when a key of `with` is not in `base`.
pub(crate) fn patch_object(base: &[u8], with: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    let (mut b, mut w) = (Reader::new(base), Reader::new(with));
    if b.tag()? != Tag::Object || w.tag()? != Tag::Object {
        return Ok(None);
    }
    let n = b.len()?;
    let mut left = w.len()?;
    let mut next = if left > 0 {
        Some(inline_entry(&mut w)?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(base.len() + with.len());
    out.push(Tag::Object as u8);
    put_varint(&mut out, n as u64);
    for _ in 0..n {
        let (key, entry, value_at) = inline_entry(&mut b)?;
        match next {
            Some((k, replacement, at)) if k == key => {
                out.extend_from_slice(&entry[..value_at]);
                out.extend_from_slice(&replacement[at..]);
                left -= 1;
                next = if left > 0 {
                    Some(inline_entry(&mut w)?)
                } else {
                    None
                };
            }
            _ => out.extend_from_slice(entry),
        }
    }
    Ok(next.is_none().then_some(out))
}

/// The next entry of an object whose keys are inline: its key, the whole entry's
/// bytes, and where its value starts in them.
fn inline_entry<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], &'a [u8], usize), CodecError> {
    let start = r.pos;
    let k = r.varint()?;
    if k & 1 == 0 {
        return Err(CodecError("key not inline"));
    }
    let key = r.take(usize::try_from(k >> 1).map_err(|_| CodecError("length"))?)?;
    let value_at = r.pos - start;
    skip_value(r)?;
    Ok((key, &r.buf[start..r.pos], value_at))
}

/// `b`, checked to be UTF-8 text.
fn utf8(b: &[u8]) -> Result<&[u8], CodecError> {
    std::str::from_utf8(b)
        .map(str::as_bytes)
        .map_err(|_| CodecError("text"))
}

/// Reads the tag of an object (plain or shaped).
pub(crate) fn object_tag(r: &mut Reader<'_>) -> Result<Tag, CodecError> {
    match r.tag()? {
        t @ (Tag::Object | Tag::Shape) => Ok(t),
        _ => Err(CodecError("not an object")),
    }
}

/// Skips one value.
pub(crate) fn skip_value(r: &mut Reader<'_>) -> Result<(), CodecError> {
    match r.tag()? {
        Tag::Null | Tag::False | Tag::True | Tag::EmptySha => {}
        Tag::Uint | Tag::Neg | Tag::Dict | Tag::Time => {
            r.varint()?;
        }
        Tag::Float => {
            r.take(8)?;
        }
        Tag::Str | Tag::Intern => {
            let n = r.len()?;
            r.take(n)?;
        }
        Tag::Hex32 => {
            r.take(32)?;
        }
        Tag::Uuid => {
            r.take(16)?;
        }
        Tag::Array => {
            for _ in 0..r.len()? {
                skip_value(r)?;
            }
        }
        Tag::Object => {
            for _ in 0..r.len()? {
                let k = r.varint()?;
                if k & 1 == 1 {
                    r.take(usize::try_from(k >> 1).map_err(|_| CodecError("length"))?)?;
                }
                skip_value(r)?;
            }
        }
        // Skipping needs the key count, which only the dictionary knows.
        Tag::Shape => return Err(CodecError("a shaped object cannot be skipped")),
    }
    Ok(())
}

// --------------------------------------------------------------- dictionary

/// The writer's side of the dictionary: text → id, and the entries added by
/// the transaction in progress (written to the `dict` table with it).
#[derive(Default)]
pub(crate) struct Interner {
    /// Looked up for every interned string and object of every record and
    /// event the writer stores: foldhash (seeded per process) instead of
    /// SipHash, which was most of a lookup's cost.
    /// Keyed by bytes: what the writer reads is only checked to be UTF-8 when it
    /// is new to the dictionary (every entry in it was checked then).
    ids: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    next: u32,
    /// Shapes in the dictionary (bounded by [`MAX_SHAPES`]).
    shapes: usize,
    /// Added since the last [`Interner::take_new`].
    fresh: Vec<(u32, Box<str>)>,
    /// An object's keys joined, reused from object to object.
    joined: Vec<u8>,
}

impl Interner {
    /// The dictionary as stored (ids 0..n in order).
    pub(crate) fn load(words: &Words) -> Self {
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (Box::from(w.as_bytes()), i as u32))
            .collect();
        Interner {
            shapes: words.iter().filter(|w| w.contains('\0')).count(),
            ids,
            next: words.len() as u32,
            fresh: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// The id of `s` (added when new and it fits); `None`: written as text.
    fn id(&mut self, s: &[u8]) -> Result<Option<u32>, CodecError> {
        if let Some(id) = self.ids.get(s) {
            return Ok(Some(*id));
        }
        if s.len() > MAX_INTERNED_LEN || self.next as usize >= MAX_DICT {
            return Ok(None);
        }
        self.add(s).map(Some)
    }

    fn shape_id(&mut self, keys: &[u8]) -> Result<Option<u32>, CodecError> {
        if let Some(id) = self.ids.get(keys) {
            return Ok(Some(*id));
        }
        if keys.len() > MAX_SHAPE_LEN || self.shapes >= MAX_SHAPES || self.next as usize >= MAX_DICT
        {
            return Ok(None);
        }
        let id = self.add(keys)?;
        self.shapes += 1;
        Ok(Some(id))
    }

    fn add(&mut self, s: &[u8]) -> Result<u32, CodecError> {
        let text = std::str::from_utf8(s).map_err(|_| CodecError("text"))?;
        let id = self.next;
        self.next += 1;
        self.ids.insert(Box::from(s), id);
        self.fresh.push((id, Box::from(text)));
        Ok(id)
    }

    /// Entries added by the transaction in progress.
    pub(crate) fn fresh(&self) -> &[(u32, Box<str>)] {
        &self.fresh
    }

    /// Entries added since last asked (to store, and to show readers).
    pub(crate) fn take_new(&mut self) -> Vec<(u32, Box<str>)> {
        std::mem::take(&mut self.fresh)
    }

    /// Forgets entries whose transaction did not commit.
    pub(crate) fn roll_back(&mut self, new: &[(u32, Box<str>)]) {
        for (id, s) in new {
            self.ids.remove(s.as_bytes());
            self.next = self.next.min(*id);
            if s.contains('\0') {
                self.shapes = self.shapes.saturating_sub(1);
            }
        }
    }

    /// Turns pre-encoded bytes into their stored form (one value).
    pub(crate) fn finish(
        &mut self,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        self.finish_at(r, out, 0)
    }

    fn finish_at(
        &mut self,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CodecError> {
        let start = r.pos;
        let tag = r.tag()?;
        match tag {
            Tag::Intern => {
                let s = r.bytes()?;
                match self.id(s)? {
                    Some(id) => {
                        out.push(Tag::Dict as u8);
                        put_varint(out, u64::from(id));
                    }
                    None => put_bytes(out, Tag::Str, utf8(s)?),
                }
            }
            Tag::Array => {
                let n = r.len()?;
                out.push(Tag::Array as u8);
                put_varint(out, n as u64);
                for _ in 0..n {
                    self.finish_at(r, out, depth + 1)?;
                }
            }
            Tag::Object => self.finish_object(r, out, depth)?,
            _ => {
                r.pos = start;
                skip_value(r)?;
                out.extend_from_slice(&r.buf[start..r.pos]);
            }
        }
        Ok(())
    }

    /// An object: shaped when its key list can be one dictionary entry.
    fn finish_object(
        &mut self,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CodecError> {
        let n = r.len()?;
        let at = r.pos;
        let mut joined = std::mem::take(&mut self.joined);
        joined.clear();
        let mut shaped = n >= 2 && depth <= MAX_SHAPE_DEPTH;
        for i in 0..n {
            if !shaped {
                break;
            }
            let k = r.varint()?;
            if k & 1 == 0 {
                shaped = false;
                break;
            }
            let key = r.take(usize::try_from(k >> 1).map_err(|_| CodecError("length"))?)?;
            if key.contains(&0) {
                shaped = false;
                break;
            }
            if i > 0 {
                joined.push(0);
            }
            joined.extend_from_slice(key);
            skip_value(r)?;
        }
        let shape = if shaped {
            self.shape_id(&joined)?
        } else {
            None
        };
        self.joined = joined;
        r.pos = at;
        match shape {
            Some(id) => {
                out.push(Tag::Shape as u8);
                put_varint(out, u64::from(id));
                for _ in 0..n {
                    let k = r.varint()?;
                    r.take(usize::try_from(k >> 1).map_err(|_| CodecError("length"))?)?;
                    self.finish_at(r, out, depth + 1)?;
                }
            }
            None => {
                out.push(Tag::Object as u8);
                put_varint(out, n as u64);
                for _ in 0..n {
                    let k = r.varint()?;
                    if k & 1 == 1 {
                        let len = usize::try_from(k >> 1).map_err(|_| CodecError("length"))?;
                        let key = r.take(len)?;
                        match self.id(key)? {
                            Some(id) => put_varint(out, u64::from(id) << 1),
                            None => {
                                put_varint(out, k);
                                out.extend_from_slice(utf8(key)?);
                            }
                        }
                    } else {
                        put_varint(out, k);
                    }
                    self.finish_at(r, out, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_that_is_not_utf8_is_refused_not_stored() {
        let mut interned = Vec::new();
        put_bytes(&mut interned, Tag::Intern, &[0xff, 0xfe]);
        let mut object = vec![Tag::Object as u8];
        put_varint(&mut object, 2);
        for key in [&b"a"[..], &[0xc3]] {
            put_varint(&mut object, ((key.len() as u64) << 1) | 1);
            object.extend_from_slice(key);
            object.push(Tag::Null as u8);
        }
        for pre in [interned, object] {
            let mut interner = Interner::default();
            let mut out = Vec::new();
            assert!(interner.finish(&mut Reader::new(&pre), &mut out).is_err());
            assert!(interner.take_new().is_empty());
        }
    }

    #[test]
    fn a_uuid_is_its_sixteen_bytes_and_back() {
        let id = "01a2300b-d67f-7224-968d-bc5d759d565b";
        assert!(is_uuid_text(id));
        let mut out = Vec::new();
        put_uuid_bytes(&mut out, id);
        assert_eq!(out.len(), 16);
        assert_eq!(out[..4], [0x01, 0xa2, 0x30, 0x0b]);
        assert_eq!(uuid_text(&out), id);
    }

    fn roundtrip(v: &Value) -> (Value, String, usize) {
        let mut pre = Vec::new();
        put_value(&mut pre, v, None);
        let mut interner = Interner::default();
        let mut stored = Vec::new();
        interner
            .finish(&mut Reader::new(&pre), &mut stored)
            .expect("finish");
        let words: Vec<Arc<str>> = {
            let mut w: Vec<(u32, Box<str>)> = interner.take_new();
            w.sort();
            w.into_iter().map(|(_, s)| Arc::from(s)).collect()
        };
        let back = read_value(&mut Reader::new(&stored), &words).expect("decode");
        let mut text = Vec::new();
        render_value(&mut Reader::new(&stored), &words, &mut text).expect("render");
        (back, String::from_utf8(text).expect("utf8"), stored.len())
    }

    #[test]
    fn every_kind_of_value_comes_back_exactly() {
        let v = json!({
            "z": [1, -1, -9_223_372_036_854_775_808i64, 18_446_744_073_709_551_615u64, 2.5, 1e-7, 0.1],
            "agent": "bot", "decision": "ALLOW", "n": null, "t": true, "f": false,
            "body_sha256": EMPTY_SHA256, "h": "ab".repeat(32), "H": "AB".repeat(32),
            "id": "01a22b69-22bc-778e-83ba-809a9621ffec", "u": "01A22B69-22BC-778E-83BA-809A9621FFEC",
            "at": "2026-11-30T07:44:00.188777603Z", "at2": "2026-11-30T07:44:00.1Z",
            "odd": "2026-11-30T07:44:00+01:00", "esc": "q\"\\\n\u{1}é☕", "": {"": []},
        });
        let (back, text, _) = roundtrip(&v);
        assert_eq!(back, v);
        assert_eq!(text, crate::chain::canonical_json(&v));
    }

    #[test]
    fn hashes_and_ids_are_stored_as_bytes() {
        let v = json!({"policy_version": "ab".repeat(32), "id": "01a22b69-22bc-778e-83ba-809a9621ffec"});
        let (_, _, len) = roundtrip(&v);
        assert!(len < 60, "{len}");
    }
}
