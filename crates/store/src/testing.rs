//! For tests and benchmarks, not for production use: tampering with a closed
//! store file (tests that prove the chain catches it), reading its log
//! chunks, and a request record to start from.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::codec::Interner;
use crate::layout::{self, ChunkIter, DICT, LOG};
use crate::model::{RequestRecord, Status};

fn load_words(db: &Database) -> Vec<Arc<str>> {
    let rtx = db.begin_read().expect("read");
    crate::read_dict(&rtx.open_table(DICT).expect("dict")).expect("dict")
}

/// Rewrites event `seq` as `f` leaves it (the whole event as JSON: changing
/// `hash` stores that hash; a changed `prev_hash` inside a chunk splits the
/// chunk there, since only a chunk's first event stores it), or removes it
/// when `f` returns false.
pub fn tamper_event(path: &Path, seq: u64, f: impl FnOnce(&mut Value) -> bool) {
    let db = Database::open(path).expect("open");
    let words = load_words(&db);
    let mut interner = Interner::load(&words);
    let (first, chunk) = {
        let rtx = db.begin_read().expect("read");
        let log = rtx.open_table(LOG).expect("log");
        let (k, v) = log
            .range(..=seq)
            .expect("range")
            .next_back()
            .expect("chunk")
            .expect("row");
        (k.value(), v.value().to_vec())
    };
    let mut it = ChunkIter::new(first, &chunk).expect("chunk");
    // (first seq, previous hash, bodies): one chunk, or two when a prev_hash
    // edited inside a chunk starts a new one at the edited event.
    let mut parts = vec![(first, chunk[..32].to_vec(), Vec::new())];
    let mut f = Some(f);
    while let Some(ev) = it.next_event().expect("event") {
        if ev.seq != seq {
            parts.last_mut().expect("part").2.push(ev.body.to_vec());
            continue;
        }
        let stored = layout::decode_event(&ev, &words).expect("decode");
        let mut v = serde_json::to_value(&stored).expect("json");
        if !f.take().is_some_and(|f| f(&mut v)) {
            continue;
        }
        let prev = v["prev_hash"].as_str().unwrap_or_default().to_string();
        if prev != stored.prev_hash {
            let prev = hex::decode(prev).expect("hex");
            if ev.seq == first {
                parts[0].1 = prev;
            } else {
                parts.push((ev.seq, prev, Vec::new()));
            }
        }
        parts
            .last_mut()
            .expect("part")
            .2
            .push(encode(&v, &mut interner));
    }
    let wtx = db.begin_write().expect("write");
    {
        let mut log = wtx.open_table(LOG).expect("log");
        for (at, head, bodies) in parts {
            let mut out = head;
            for b in &bodies {
                layout::push_event(&mut out, b);
            }
            log.insert(at, out.as_slice()).expect("insert");
        }
        let mut dict = wtx.open_table(DICT).expect("dict");
        for (id, w) in interner.take_new() {
            dict.insert(id, &*w).expect("dict");
        }
    }
    wtx.commit().expect("commit");
}

fn encode(v: &Value, interner: &mut Interner) -> Vec<u8> {
    layout::encode_event_value(v, interner).expect("encodable event")
}

/// The log's chunks of a closed store file: (first seq, events, bytes).
pub fn log_chunks(path: &Path) -> Vec<(u64, usize, usize)> {
    let db = Database::open(path).expect("open");
    let rtx = db.begin_read().expect("read");
    let log = rtx.open_table(LOG).expect("log");
    log.iter()
        .expect("iter")
        .map(|i| {
            let (k, v) = i.expect("chunk");
            let events = layout::chunk_events(v.value()).expect("chunk");
            (k.value(), events, v.value().len())
        })
        .collect()
}

/// [`record`] in `status`.
pub fn record_as(id: &str, status: Status) -> RequestRecord {
    RequestRecord {
        status,
        ..record(id)
    }
}

/// A request record for tests and benchmarks: an allowed `GET
/// https://api.test/x` by `bot` that nothing has happened to yet. Callers set
/// what they need with struct update syntax
/// (`RequestRecord { status, ..testing::record(id) }`).
pub fn record(id: &str) -> RequestRecord {
    RequestRecord {
        id: id.to_string(),
        created_at: OffsetDateTime::now_utc(),
        agent: "bot".into(),
        method: "GET".into(),
        url: "https://api.test/x".into(),
        headers: Default::default(),
        resource: "http.api.test".into(),
        action: "get".into(),
        args: json!({}),
        decision: "ALLOW".into(),
        rule: None,
        reason: String::new(),
        status: Status::Allowed,
        required_approvals: 1,
        approvals: vec![],
        rejected_by: None,
        rejected_reason: None,
        expires_at: None,
        upstream_status: None,
        completed_at: None,
        intents: vec![],
        retry_key: format!("rk-{id}"),
        body_sha256: "ab".repeat(32),
        policy_version: "v1".into(),
        retry_grant_used: false,
        explicit: false,
        grant_id: None,
        grantable: false,
        approved_args: None,
        edited: false,
        edit: None,
    }
}
