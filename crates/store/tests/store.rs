//! Integration tests of the store: chain, tamper detection, group commit, restart, listing,
//! redaction, export agreement with an independent Python verifier, batched durability.

use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sudomode_store::{
    Approval, Batch, Durability, Filter, GENESIS_HASH, NewEvent, RequestRecord, Status, Store,
    StoreError, StoreOptions, Wait, canonical_json, event_hash, new_request_id, verify_lines,
    verify_lines_partial,
};
use time::OffsetDateTime;

fn tmp() -> tempfile::TempDir {
    // On the target dir's disk (not tmpfs), so fsync costs what it costs.
    tempfile::Builder::new()
        .prefix("store-test")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
}

fn open(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).expect("open")
}

fn record(id: &str, agent: &str, status: Status, decision: &str) -> RequestRecord {
    RequestRecord {
        agent: agent.to_string(),
        method: "POST".into(),
        url: "https://api.stripe.com/v1/charges".into(),
        resource: "stripe.charges".into(),
        action: "create".into(),
        args: json!({"amount": 5000, "currency": "usd"}),
        decision: decision.to_string(),
        rule: Some("big-charges".into()),
        reason: "amount over limit".into(),
        status,
        intents: vec![json!({"resource": "stripe.charges", "action": "create"})],
        ..sudomode_store::testing::record(id)
    }
}

fn decided(id: &str, agent: &str) -> NewEvent {
    NewEvent::new("request.decided")
        .request(id)
        .agent(agent)
        .field("decision", "ALLOW")
}

async fn write_events(store: &Store, n: usize) {
    for i in 0..n {
        store
            .commit(Batch::events(vec![decided(&format!("r{i}"), "bot")]))
            .await
            .expect("commit");
    }
}

fn export_string(store: &Store) -> String {
    let mut out = Vec::new();
    store.export(None, None, &mut out).expect("export");
    String::from_utf8(out).expect("utf8")
}

/// Rewrites one stored event (the store must be closed); `false` removes it.
fn tamper(path: &Path, seq: u64, f: impl FnOnce(&mut Value) -> bool) {
    sudomode_store::testing::tamper_event(path, seq, f);
}

fn edit_line(line: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut v: Value = serde_json::from_str(line).expect("json");
    f(v.as_object_mut().expect("object"));
    v.to_string()
}

#[test]
fn known_vector_canonical_form_and_hash() {
    let ev = json!({
        "seq": 1, "time": "2026-01-01T00:00:00Z", "type": "request.decided",
        "request_id": "r1", "agent": "bot", "operator": null, "decision": "ALLOW",
        "amount": 12.5, "note": "café ☕ \"q\"\n", "prev_hash": GENESIS_HASH,
        "hash": "ignored"
    });
    let mut without = ev.clone();
    without.as_object_mut().expect("obj").remove("hash");
    let text = canonical_json(&without);
    // Written out by hand: keys sorted, no whitespace, raw UTF-8, JSON escapes only.
    let by_hand = concat!(
        r#"{"agent":"bot","amount":12.5,"decision":"ALLOW","note":"café ☕ \"q\"\n","#,
        r#""operator":null,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
        r#""request_id":"r1","seq":1,"time":"2026-01-01T00:00:00Z","type":"request.decided"}"#
    );
    assert_eq!(text, by_hand);
    // Computed independently with Python's hashlib over json.dumps(sort_keys=True, ...).
    let expected = "5d843eda65319431fae442814c427c32c13ef2b443e5052b06cc2eaf2b3b0f08";
    assert_eq!(hex::encode(Sha256::digest(by_hand.as_bytes())), expected);
    assert_eq!(event_hash(&ev), expected);
}

#[tokio::test]
async fn stored_event_hash_matches_hand_computation() {
    let dir = tmp();
    let store = open(&dir.path().join("s.redb"));
    let c = store
        .commit(Batch::events(vec![
            NewEvent::new("server.started").field("version", "0.1.0"),
        ]))
        .await
        .expect("commit");
    assert_eq!(c.seqs, vec![1]);
    let ev = &c.events[0];
    let by_hand = format!(
        r#"{{"agent":null,"operator":null,"prev_hash":"{GENESIS_HASH}","request_id":null,"seq":1,"time":"{}","type":"server.started","version":"0.1.0"}}"#,
        ev.time
    );
    assert_eq!(ev.hash, hex::encode(Sha256::digest(by_hand.as_bytes())));
    assert_eq!(ev.prev_hash, GENESIS_HASH);
    // The exported line is the canonical form plus the hash, and equals the stored event.
    let line = export_string(&store);
    let expected_line = format!(
        r#"{}"hash":"{}",{}"#,
        &by_hand[..by_hand.find(r#""operator""#).expect("operator")],
        ev.hash,
        &by_hand[by_hand.find(r#""operator""#).expect("operator")..]
    );
    assert_eq!(line.trim_end(), expected_line);
    assert_eq!(store.event(1).expect("read").as_ref(), Some(ev));
    let t = OffsetDateTime::parse(&ev.time, &time::format_description::well_known::Rfc3339)
        .expect("rfc3339 time");
    assert_eq!(t.offset(), time::UtcOffset::UTC);
    assert_eq!(
        ev.time.len(),
        "2026-01-01T00:00:00.000000Z".len(),
        "{}",
        ev.time
    );
}

#[tokio::test]
async fn verify_detects_tampered_content() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    write_events(&store, 5).await;
    let report = store.verify().expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, 5);
    assert_eq!(report.head_hash, store.head().expect("head").1);
    store.close().await.expect("close");
    drop(store);

    tamper(&path, 3, |v| {
        v["decision"] = json!("DENY");
        true
    });
    let store = open(&path);
    let report = store.verify().expect("verify");
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(3), "{report:?}");
    assert_eq!(report.events, 5);
}

#[tokio::test]
async fn verify_detects_rehashed_event_prev_hash_and_deletion() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    write_events(&store, 6).await;
    store.close().await.expect("close");
    drop(store);

    // Content changed and its own hash recomputed: the next event's link breaks.
    tamper(&path, 2, |v| {
        v["decision"] = json!("DENY");
        v["hash"] = json!(event_hash(v));
        true
    });
    {
        let store = open(&path);
        assert_eq!(store.verify().expect("verify").first_bad_seq, Some(3));
    }
    // prev_hash edited (on top of that): seq 2 is now the first bad one.
    tamper(&path, 2, |v| {
        v["prev_hash"] = json!("f".repeat(64));
        true
    });
    {
        let store = open(&path);
        assert_eq!(store.verify().expect("verify").first_bad_seq, Some(2));
    }
}

#[tokio::test]
async fn verify_detects_deleted_event() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    write_events(&store, 6).await;
    let full = export_string(&store);
    store.close().await.expect("close");
    drop(store);
    tamper(&path, 4, |_| false);
    let store = open(&path);
    let report = store.verify().expect("verify");
    assert_eq!(report.first_bad_seq, Some(4), "{report:?}");
    assert_eq!(report.events, 5);

    // Same on exported lines: deletion, edit, prev_hash edit, garbage.
    let lines: Vec<&str> = full.lines().collect();
    let rejoin = |ls: Vec<String>| ls.join("\n");
    let ok = verify_lines(Cursor::new(full.clone())).expect("verify");
    assert!(ok.ok && ok.events == 6, "{ok:?}");

    let mut del: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    del.remove(1);
    let r = verify_lines(Cursor::new(rejoin(del))).expect("verify");
    assert_eq!(r.first_bad_seq, Some(2));

    let mut first_gone: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    first_gone.remove(0);
    let r = verify_lines(Cursor::new(rejoin(first_gone.clone()))).expect("verify");
    assert_eq!(r.first_bad_seq, Some(1), "genesis required");
    let r = verify_lines_partial(Cursor::new(rejoin(first_gone))).expect("verify");
    assert!(r.ok, "a partial export verifies from its anchor: {r:?}");

    let mut edited: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    edited[4] = edit_line(&edited[4], |m| {
        m.insert("agent".into(), json!("mallory"));
    });
    let r = verify_lines(Cursor::new(rejoin(edited))).expect("verify");
    assert_eq!(r.first_bad_seq, Some(5));

    let mut garbage: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    garbage[2] = "{not json".into();
    let r = verify_lines(Cursor::new(rejoin(garbage))).expect("verify");
    assert_eq!(r.first_bad_seq, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_fsyncs() {
    let dir = tmp();
    let store = open(&dir.path().join("s.redb"));
    let before = store.stats();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let id = new_request_id();
            store
                .commit(Batch::one(
                    decided(&id, &format!("agent{i}")),
                    record(&id, "bot", Status::Allowed, "ALLOW"),
                ))
                .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let c = t.await.expect("join").expect("commit");
        seqs.extend(c.seqs);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
    let s = store.stats();
    let commits = s.commits - before.commits;
    eprintln!(
        "64 concurrent commits: {commits} redb commits, {} fsyncs",
        s.fsyncs - before.fsyncs
    );
    assert!(
        commits < 32,
        "64 concurrent commits took {commits} redb commits"
    );
    assert_eq!(s.events - before.events, 64);
    assert_eq!(s.upserts - before.upserts, 64);
    assert!(store.verify().expect("verify").ok);
    assert_eq!(store.counts_by_decision().expect("counts")["ALLOW"], 64);
}

/// Strict durability commits small groups, often one request at a time: each
/// group appends to the log's last chunk while it has room (also across a
/// reopen), so chunks fill their page instead of one small chunk per commit.
#[tokio::test]
async fn small_commits_fill_the_last_chunk() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    for _ in 0..2 {
        let store = open(&path);
        for _ in 0..150 {
            let id = new_request_id();
            store
                .commit(Batch::one(
                    decided(&id, "bot"),
                    record(&id, "bot", Status::Allowed, "ALLOW"),
                ))
                .await
                .expect("commit");
        }
        store.close().await.expect("close");
    }
    let chunks = sudomode_store::testing::log_chunks(&path);
    let events: usize = chunks.iter().map(|c| c.1).sum();
    let bytes: usize = chunks.iter().map(|c| c.2).sum();
    // server events are not written by the store itself: exactly our 300.
    assert_eq!(events, 300);
    assert!(
        chunks.len() <= bytes / 3_000 + 1,
        "300 one-event commits left {} chunks ({bytes} bytes): {chunks:?}",
        chunks.len()
    );
    // Chunks are contiguous: each starts where the one before ended.
    for w in chunks.windows(2) {
        assert_eq!(w[0].0 + w[0].1 as u64, w[1].0, "{chunks:?}");
    }
    let store = open(&path);
    let r = store.verify().expect("verify");
    assert!(r.ok && r.events == 300, "{r:?}");
    let after = store.audit_after(0, 1000).expect("after");
    assert_eq!(after.len(), 300);
    for w in after.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(store.audit_after(137, 2).expect("after")[0].seq, 138);
}

#[tokio::test]
async fn reopen_continues_the_chain() {
    let dir = tmp();
    let path = dir.path().join("nested/dir/s.redb");
    let head;
    {
        let store = open(&path);
        write_events(&store, 3).await;
        head = store.head().expect("head");
        assert_eq!(head.0, 3);
        store.close().await.expect("close");
        assert!(matches!(
            store.commit(Batch::events(vec![decided("x", "bot")])).await,
            Err(StoreError::Closed)
        ));
    }
    let store = open(&path);
    let c = store
        .commit(Batch::events(vec![
            decided("r9", "bot"),
            decided("r9", "bot"),
        ]))
        .await
        .expect("commit");
    assert_eq!(c.seqs, vec![4, 5]);
    assert_eq!(c.events[0].prev_hash, head.1);
    assert_eq!(c.events[1].prev_hash, c.events[0].hash);
    let r = store.verify().expect("verify");
    assert!(r.ok && r.events == 5, "{r:?}");
    assert_eq!(store.events_for_request("r9").expect("events").len(), 2);
    assert_eq!(store.audit_after(3, 10).expect("after").len(), 2);
    assert_eq!(store.audit_after(0, 2).expect("after")[1].seq, 2);
}

#[tokio::test]
async fn second_open_is_locked() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    match Store::open(&path, StoreOptions::default()) {
        Err(StoreError::Locked { path: p }) => assert_eq!(p, path),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, opened twice"),
    }
    drop(store);
    let _again = open(&path); // the last handle dropped released the file
}

#[tokio::test]
async fn list_filters_and_cursor_paging_newest_first() {
    let dir = tmp();
    let store = open(&dir.path().join("s.redb"));
    let mut ids = Vec::new();
    for i in 0..12 {
        // Ids are minted (UUIDv7) when a request arrives, just before its `created_at`.
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_000 + i, 0);
        let id = uuid::Uuid::new_v7(ts).to_string();
        let (status, decision) = match i % 3 {
            0 => (Status::Pending, "REQUIRE_APPROVAL"),
            1 => (Status::Allowed, "ALLOW"),
            _ => (Status::Denied, "DENY"),
        };
        let agent = if i % 2 == 0 { "alpha" } else { "beta" };
        let mut rec = record(&id, agent, status, decision);
        rec.created_at = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000 + i);
        store
            .commit(Batch::one(decided(&id, agent), rec))
            .await
            .expect("commit");
        ids.push(id);
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let all = Filter::default();
    let (p1, c1) = store.list_requests(&all, 5, None).expect("list");
    let (p2, c2) = store.list_requests(&all, 5, c1.as_deref()).expect("list");
    let (p3, c3) = store.list_requests(&all, 5, c2.as_deref()).expect("list");
    let got: Vec<String> = p1
        .iter()
        .chain(&p2)
        .chain(&p3)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(got, newest_first);
    assert!(c1.is_some() && c2.is_some());
    assert_eq!(c3, None);
    let (exact, c) = store.list_requests(&all, 12, None).expect("list");
    assert_eq!((exact.len(), c), (12, None));

    let pending = Filter {
        status: Some(Status::Pending),
        ..Filter::default()
    };
    let (p, c) = store.list_requests(&pending, 3, None).expect("list");
    assert_eq!(
        p.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids[9].clone(), ids[6].clone(), ids[3].clone()]
    );
    let (p_rest, c_rest) = store
        .list_requests(&pending, 3, c.as_deref())
        .expect("list");
    assert_eq!(p_rest.len(), 1);
    assert_eq!(c_rest, None);
    assert_eq!(p_rest[0].id, ids[0]);

    let f = Filter {
        agent: Some("beta".into()),
        decision: Some("allow".into()),
        ..Filter::default()
    };
    let (p, _) = store.list_requests(&f, 50, None).expect("list");
    let want: Vec<String> = [7, 1].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(p.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), want);

    let f = Filter {
        since: Some(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_003)),
        until: Some(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_006)),
        resource: Some("stripe.charges".into()),
        action: Some("create".into()),
        ..Filter::default()
    };
    let (p, _) = store.list_requests(&f, 50, None).expect("list");
    assert_eq!(
        p.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids[5].clone(), ids[4].clone(), ids[3].clone()]
    );
    let f = Filter {
        resource: Some("aws.s3".into()),
        ..Filter::default()
    };
    assert!(
        store
            .list_requests(&f, 50, None)
            .expect("list")
            .0
            .is_empty()
    );

    // Counts and the open index follow status changes.
    let by_status = store.counts_by_status().expect("counts");
    assert_eq!(by_status[&Status::Pending], 4);
    assert_eq!(store.pending_requests().expect("pending").len(), 4);
    let mut rec = store.get_request(&ids[0]).expect("get").expect("some");
    rec.status = Status::Approved;
    rec.approvals.push(Approval {
        operator: "alice".into(),
        at: OffsetDateTime::now_utc(),
        reason: Some("ok".into()),
        grant: None,
    });
    store
        .commit(Batch::one(
            NewEvent::new("request.approved")
                .request(&rec.id)
                .operator("alice"),
            rec.clone(),
        ))
        .await
        .expect("commit");
    let by_status = store.counts_by_status().expect("counts");
    assert_eq!(
        (by_status[&Status::Pending], by_status[&Status::Approved]),
        (3, 1)
    );
    assert_eq!(
        store.counts_by_decision().expect("c")["REQUIRE_APPROVAL"],
        4
    );
    let open_now = store.pending_requests().expect("pending");
    assert_eq!(open_now.len(), 4, "approved with unused grant stays open");
    assert_eq!(
        store
            .find_open_by_retry_key(&rec.retry_key)
            .expect("find")
            .map(|r| r.id),
        Some(rec.id.clone())
    );
    rec.retry_grant_used = true;
    rec.status = Status::Completed;
    rec.upstream_status = Some(200);
    store
        .commit(Batch {
            events: vec![],
            upserts: vec![rec.clone()],
        })
        .await
        .expect("commit");
    assert_eq!(store.pending_requests().expect("pending").len(), 3);
    assert_eq!(
        store.find_open_by_retry_key(&rec.retry_key).expect("find"),
        None
    );
    assert_eq!(store.get_request(&rec.id).expect("get"), Some(rec.clone()));
    let trail = store.events_for_request(&rec.id).expect("events");
    assert_eq!(
        trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["request.decided", "request.approved"]
    );
}

#[tokio::test]
async fn record_json_has_spec_field_names() {
    let rec = record("id1", "bot", Status::Pending, "REQUIRE_APPROVAL");
    let v = serde_json::to_value(&rec).expect("json");
    for k in [
        "id",
        "created_at",
        "agent",
        "method",
        "url",
        "resource",
        "action",
        "args",
        "decision",
        "rule",
        "reason",
        "status",
        "required_approvals",
        "approvals",
        "rejected_by",
        "expires_at",
        "upstream_status",
        "completed_at",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["status"], "pending");
    assert_eq!(v["expires_at"], Value::Null);
    assert!(v["created_at"].as_str().expect("str").ends_with('Z'));
    assert_eq!("PENDING".parse::<Status>(), Ok(Status::Pending));
}

#[tokio::test]
async fn redacts_credential_headers_and_secrets() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let secret = "sk_live_SUPERSECRET_123";
    let store = open(&path);
    store.set_secrets(vec![secret.to_string()]);
    let id = new_request_id();
    let mut rec = record(&id, "bot", Status::Pending, "REQUIRE_APPROVAL");
    rec.args = json!({"description": format!("pay with {secret}"), "amount": 1});
    rec.url = format!("https://api.example.com/v1?key={secret}");
    let ev = decided(&id, "bot")
        .field(
            "headers",
            json!({"Authorization": "Bearer abc", "COOKIE": "s=1", "Content-Type": "application/json",
                   "nested": {"X-Api-Key": "k", "x-amz-security-token": "t"}}),
        )
        .field("header_list", json!([["Proxy-Authorization", "Basic xyz"], ["Accept", "*/*"]]))
        .field("note", format!("leaked {secret} here"));
    let c = store.commit(Batch::one(ev, rec)).await.expect("commit");
    let stored = &c.events[0].fields;
    assert_eq!(
        stored["headers"],
        json!({"Authorization": "[redacted]", "COOKIE": "[redacted]", "Content-Type": "application/json",
               "nested": {"X-Api-Key": "[redacted]", "x-amz-security-token": "[redacted]"}})
    );
    assert_eq!(
        stored["header_list"],
        json!([["Proxy-Authorization", "[redacted]"], ["Accept", "*/*"]])
    );
    // Masked where it occurs; the rest of each value stays readable.
    assert_eq!(stored["note"], "leaked [redacted] here");
    let got = store.get_request(&id).expect("get").expect("some");
    assert_eq!(got.args["description"], "pay with [redacted]");
    assert_eq!(got.url, "https://api.example.com/v1?key=[redacted]");
    assert!(store.verify().expect("verify").ok);
    let export = export_string(&store);
    assert!(!export.contains(secret) && !export.contains("Bearer abc"));
    store.close().await.expect("close");
    drop(store);
    let raw = std::fs::read(&path).expect("read db");
    let find = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!find(secret.as_bytes()), "secret reached the database file");
    assert!(
        !find(b"Bearer abc"),
        "authorization header reached the database file"
    );
}

#[tokio::test]
async fn reserved_field_names_are_refused() {
    let dir = tmp();
    let store = open(&dir.path().join("s.redb"));
    let ev = NewEvent::new("request.decided").field("hash", "x");
    assert!(matches!(
        store.commit(Batch::events(vec![ev])).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.head().expect("head").0, 0);
}

#[tokio::test]
async fn python_verifier_agrees_with_rust() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 absent: skipping");
        return;
    }
    let dir = tmp();
    let store = open(&dir.path().join("s.redb"));
    let tricky = [
        json!({"s": "plain"}),
        json!({"s": "é日本🎉 \u{1f}\u{7f}\u{2028} \t\n\r\u{8}\u{c} \\ \" / <>&'"}),
        json!({"f": 12.5, "g": 0.1, "h": 100.0, "i": -0.0, "j": 1e-7, "k": 0.00003, "l": 1.5e300,
               "m": 1e16, "n": 123456789.125}),
        json!({"big": u64::MAX, "neg": i64::MIN, "z": 0, "t": true, "n": null}),
        json!({"nested": {"b": [3, {"z": 1, "a": [{}]}], "a": {"é": 1, "e": 2, "Z": 3}}}),
        json!({"": "empty key", "key with space": [[], {}]}),
    ];
    let mut events = Vec::new();
    for (i, fields) in tricky.iter().enumerate() {
        let mut ev = NewEvent::new("test.tricky").request(format!("r{i}"));
        if let Value::Object(m) = fields {
            ev.fields = m.clone().into();
        }
        events.push(ev);
    }
    events.push(NewEvent::new("policy.loaded").operator("ops"));
    store.commit(Batch::events(events)).await.expect("commit");
    let export = export_string(&store);
    let rust = verify_lines(Cursor::new(export.clone())).expect("verify");
    assert!(rust.ok, "{rust:?}");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/verify_export.py");
    let run = |text: &str| -> (bool, Value) {
        let file = dir.path().join("export.jsonl");
        std::fs::write(&file, text).expect("write");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&file)
            .output()
            .expect("python3");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.success(), report)
    };
    let (ok, report) = run(&export);
    assert!(ok, "python says {report}");
    assert_eq!(report["head_hash"], json!(rust.head_hash));
    assert_eq!(report["events"], json!(rust.events));

    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    lines[3] = edit_line(&lines[3], |m| {
        m.insert("big".into(), json!(1));
    });
    let tampered = lines.join("\n");
    let rust = verify_lines(Cursor::new(tampered.clone())).expect("verify");
    let (ok, report) = run(&tampered);
    assert!(!ok);
    assert_eq!(rust.first_bad_seq, Some(4));
    assert_eq!(report["first_bad_seq"], json!(4));
}

#[tokio::test]
async fn batched_mode_commits_without_waiting() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    let store = Store::open(
        &path,
        StoreOptions {
            durability: Durability::Batched,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    for i in 0..20 {
        let id = format!("b{i}");
        store
            .commit_batched(Batch::one(
                decided(&id, "bot"),
                record(&id, "bot", Status::Allowed, "ALLOW"),
            ))
            .await
            .expect("enqueue");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let visible =
            store.head().expect("head").0 == 20 && store.get_request("b19").expect("get").is_some();
        let s = store.stats();
        if visible && s.fsyncs >= 1 && s.events == 20 {
            break; // committed, then made durable by the timer flush
        }
        assert!(
            Instant::now() < deadline,
            "batched commits did not land: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A strict commit after batched ones keeps the order and the chain.
    let c = store
        .commit(Batch::events(vec![decided("s", "bot")]))
        .await
        .expect("commit");
    assert_eq!(c.seqs, vec![21]);
    store.flush().await.expect("flush");
    assert!(store.verify().expect("verify").ok);
}

#[tokio::test]
async fn drop_without_close_keeps_queued_batches() {
    let dir = tmp();
    let path = dir.path().join("s.redb");
    {
        let store = open(&path);
        for i in 0..10 {
            store
                .commit_batched(Batch::events(vec![decided(&format!("d{i}"), "bot")]))
                .await
                .expect("enqueue");
        }
        // dropped here: Drop stops the writer after committing what is queued
    }
    let store = open(&path);
    let r = store.verify().expect("verify");
    assert!(r.ok && r.events == 10, "{r:?}");
}

const CRASH_DIR_ENV: &str = "SUDOMODE_STORE_CRASH_DIR";
const CRASH_BATCHED_ENV: &str = "SUDOMODE_STORE_CRASH_BATCHED";
const CRASH_LOGGED_ENV: &str = "SUDOMODE_STORE_CRASH_LOGGED";

/// Child half of `kill_9_mid_write_leaves_a_consistent_chain`: commits strictly forever and
/// prints each acknowledged seq.
#[tokio::test]
#[ignore = "run as a child process by kill_9_mid_write_leaves_a_consistent_chain"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let batched = std::env::var_os(CRASH_BATCHED_ENV).is_some();
    let logged = std::env::var_os(CRASH_LOGGED_ENV).is_some();
    let opts = StoreOptions {
        durability: if batched {
            Durability::Batched
        } else {
            Durability::Strict
        },
        ..StoreOptions::default()
    };
    let store = Store::open(&Path::new(&dir).join("s.redb"), opts).expect("open");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let batch = Batch::one(
                    decided(&id, "bot"),
                    record(&id, "bot", Status::Allowed, "ALLOW"),
                );
                if batched {
                    store.commit_batched(batch).await.expect("enqueue");
                    if i % 10 == 0 {
                        println!("acked 0");
                    }
                } else if logged {
                    // Answered before its row is applied: the row waits in the journal.
                    let sent = store.submit(batch, Wait::Logged).await.expect("queue");
                    sent.durable().await.expect("commit");
                    println!("acked 0");
                } else {
                    let c = store.commit(batch).await.expect("commit");
                    println!("acked {}", c.seqs[0]);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[test]
fn kill_9_mid_write_leaves_a_consistent_chain() {
    crash_and_check(Crash::Strict);
}

#[test]
fn kill_9_mid_batched_writes_leaves_a_consistent_chain() {
    crash_and_check(Crash::Batched);
}

/// Strict commits answered once their events and the journal of their rows are durable
/// (`Wait::Logged`): a kill between that commit and the one applying the rows leaves the
/// rows in the journal, applied at the next open. Every request in the log has its row.
#[test]
fn kill_9_mid_logged_writes_loses_no_row() {
    crash_and_check(Crash::Logged);
}

#[derive(PartialEq)]
enum Crash {
    Strict,
    Batched,
    Logged,
}

fn crash_and_check(mode: Crash) {
    let dir = tmp();
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args([
        "--ignored",
        "--exact",
        "crash_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CRASH_DIR_ENV, dir.path());
    match mode {
        Crash::Batched => cmd.env(CRASH_BATCHED_ENV, "1"),
        Crash::Logged => cmd.env(CRASH_LOGGED_ENV, "1"),
        Crash::Strict => &mut cmd,
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut max_acked = 0u64;
    let mut acks = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Batched work is made durable within the flush interval (20 ms): kill
    // only after a few of those have passed, or nothing may be on disk yet.
    let mut first_ack: Option<Instant> = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(n) = line.strip_prefix("acked ") {
            acks += 1;
            first_ack.get_or_insert_with(Instant::now);
            max_acked = max_acked.max(n.trim().parse().expect("seq"));
        }
        let settled = first_ack.is_some_and(|t| t.elapsed() >= Duration::from_millis(100));
        if (acks >= 300 && settled) || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(acks >= 300, "child acknowledged only {acks} commits");

    let store = open(&dir.path().join("s.redb"));
    let r = store.verify().expect("verify");
    assert!(r.ok, "{r:?}");
    assert!(r.events > 0, "nothing survived");
    assert!(
        r.events >= max_acked,
        "acknowledged seq {max_acked} lost: {} events",
        r.events
    );
    // Every record written with an event is there too (same transaction).
    let head = store.head().expect("head").0;
    assert_eq!(head, r.events);
    let last = store.event(head).expect("event").expect("some");
    let rid = last.request_id.expect("request id");
    assert!(store.get_request(&rid).expect("get").is_some());
    if mode == Crash::Logged {
        for seq in 1..=head {
            let ev = store.event(seq).expect("event").expect("some");
            let rid = ev.request_id.expect("request id");
            let row = store.get_request(&rid).expect("get");
            assert!(row.is_some(), "event {seq}: request {rid} has no row");
        }
        let counted: u64 = store.counts_by_decision().expect("counts").values().sum();
        assert_eq!(counted, head, "one decided request per event");
    }
    // And the chain continues after the crash.
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let c = rt
        .block_on(store.commit(Batch::events(vec![decided("after", "bot")])))
        .expect("commit");
    assert_eq!(c.seqs, vec![head + 1]);
    assert!(store.verify().expect("verify").ok);
}
