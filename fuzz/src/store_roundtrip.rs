//! Store write→read round trip (SPEC §13.7): whatever the recorder accepts,
//! listing, one record, the request's events, the audit export and
//! verification, and a restart's restore of pending requests can read back.
//!
//! Included by path from `crates/store/tests/roundtrip.rs`, so it may only use
//! `sudomode_store`, `serde_json`, `tokio`, `tempfile` and `time`.

use serde_json::{Map, Value, json};
use sudomode_store::{Batch, Filter, NewEvent, RequestRecord, Status, Store, StoreOptions};

/// Nesting the byte program may build: far past any reader's limit.
pub const MAX_BUILD_DEPTH: usize = 300;

/// Builds a JSON value from bytes read as a small program (open array, open
/// object, scalar, close), iteratively, nested up to [`MAX_BUILD_DEPTH`].
pub fn value_from_bytes(data: &[u8]) -> Value {
    // Each frame: the open container and, for an object, the key of the next value.
    let mut stack: Vec<(Value, String)> = vec![(Value::Object(Map::new()), "v".into())];
    let mut bytes = data.iter().copied();
    while let Some(b) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let key = format!("k{}", arg % 7);
        match b % 8 {
            0 | 1 if stack.len() < MAX_BUILD_DEPTH => stack.push((json!([]), key)),
            2 | 3 if stack.len() < MAX_BUILD_DEPTH => stack.push((json!({}), key)),
            4 => put(&mut stack, json!(i64::from(arg) - 100)),
            5 => put(
                &mut stack,
                json!(["a\"b", "é", "[{", "x\u{0}y", "}]"][arg as usize % 5]),
            ),
            6 if stack.len() > 1 => close(&mut stack),
            _ => put(
                &mut stack,
                [json!(null), json!(true), json!(0.5)][arg as usize % 3].clone(),
            ),
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map(|(v, _)| v).unwrap_or(Value::Null)
}

fn put(stack: &mut [(Value, String)], v: Value) {
    if let Some((top, key)) = stack.last_mut() {
        match top {
            Value::Array(a) => a.push(v),
            Value::Object(m) => {
                m.insert(key.clone(), v);
            }
            _ => {}
        }
    }
}

fn close(stack: &mut Vec<(Value, String)>) {
    if let Some((v, key)) = stack.pop() {
        if let Some((Value::Object(m), _)) = stack.last_mut() {
            m.insert(key, v);
        } else {
            put(stack, v);
        }
    }
}

fn record(id: &str, args: Value) -> RequestRecord {
    RequestRecord {
        id: id.to_string(),
        created_at: time::OffsetDateTime::now_utc(),
        agent: "bot".into(),
        method: "POST".into(),
        url: "https://api.example.com/x".into(),
        resource: "http.api.example.com".into(),
        action: "post".into(),
        args: args.clone(),
        decision: "REQUIRE_APPROVAL".into(),
        rule: Some("hold".into()),
        reason: "held".into(),
        status: Status::Pending,
        required_approvals: 1,
        approvals: vec![],
        rejected_by: None,
        rejected_reason: None,
        expires_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        upstream_status: None,
        completed_at: None,
        intents: vec![json!({"resource": "http.api.example.com", "action": "post", "args": args})],
        retry_key: format!("rk-{id}"),
        body_sha256: "ab".repeat(32),
        policy_version: "v1".into(),
        retry_grant_used: false,
        explicit: false,
        headers: Default::default(),
        grant_id: None,
        grantable: false,
        approved_args: None,
        edited: false,
        edit: None,
    }
}

fn check_reads(store: &Store, id: &str) {
    let got = store.get_request(id).expect("get_request");
    assert!(got.is_some(), "record {id} missing");
    for filter in [
        Filter::default(),
        Filter {
            status: Some(Status::Pending),
            ..Filter::default()
        },
        Filter {
            agent: Some("bot".into()),
            ..Filter::default()
        },
    ] {
        store
            .list_requests(&filter, 0, None)
            .expect("list_requests");
    }
    assert!(!store.events_for_request(id).expect("events").is_empty());
    store.audit_after(0, 500).expect("audit_after");
    let report = store.verify().expect("verify");
    assert!(report.ok, "verify: {report:?}");
    let mut out = Vec::new();
    store.export(None, None, &mut out).expect("export");
    let lines = sudomode_store::verify_lines(std::io::Cursor::new(out)).expect("verify_lines");
    assert!(lines.ok, "verify_lines: {lines:?}");
    let restored = store.pending_requests().expect("pending_requests");
    assert!(restored.iter().any(|r| r.id == id), "not restored");
}

/// Records `args` as the recorder does (a held record and its decision
/// event), then reads everything back, before and after reopening the store.
pub fn roundtrip_value(args: Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let id = sudomode_store::new_request_id();
    {
        let store = Store::open(&path, StoreOptions::default()).expect("open");
        let event = NewEvent::new("request.decided")
            .request(id.clone())
            .agent("bot")
            .field("args", args.clone())
            .field("intents", json!([{"args": args.clone()}]));
        let accepted = rt.block_on(store.commit(Batch::one(event, record(&id, args))));
        if accepted.is_err() {
            // Refusing to write is fine (the caller fails closed); spoiling is not.
            return;
        }
        check_reads(&store, &id);
        rt.block_on(store.close()).expect("close");
    }
    let store = Store::open(&path, StoreOptions::default()).expect("reopen");
    check_reads(&store, &id);
}

/// Fuzz entry: the bytes both as a value-building program and, when they
/// parse, as the JSON an agent could post to `/v1/govern`.
pub fn store_roundtrip(data: &[u8]) {
    roundtrip_value(value_from_bytes(data));
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        roundtrip_value(v);
    }
}
