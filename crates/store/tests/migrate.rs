//! A store written in the first layout (one JSON line per event, one JSON
//! record per request) opens in the compact layout with its chain intact.

use redb::{Database, TableDefinition};
use serde_json::{Value, json};
use sudomode_store::{
    Filter, GENESIS_HASH, RequestRecord, Status, Store, StoreOptions, canonical_json, event_hash,
};

const V1_EVENTS: TableDefinition<u64, &str> = TableDefinition::new("audit_events");
const V1_REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("requests");
const V1_BY_REQUEST: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_request");
const V1_OPEN: TableDefinition<&str, ()> = TableDefinition::new("open_requests");

fn record(id: &str, status: Status) -> RequestRecord {
    RequestRecord {
        method: "POST".into(),
        url: "https://api.stripe.com/v1/charges".into(),
        resource: "stripe.charges".into(),
        action: "create".into(),
        args: json!({"amount": 12.5, "note": "é\n"}),
        decision: "REQUIRE_APPROVAL".into(),
        rule: Some("big".into()),
        reason: "big".into(),
        status,
        retry_key: "rk".into(),
        ..sudomode_store::testing::record(id)
    }
}

#[tokio::test]
async fn a_first_layout_store_is_moved_with_its_chain_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let ids = ["01a22b69-22bc-778e-83ba-809a9621ffec", "legacy-id"];
    let mut lines = Vec::new();
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut events = txn.open_table(V1_EVENTS).expect("t");
            let mut by_req = txn.open_table(V1_BY_REQUEST).expect("t");
            let mut prev = GENESIS_HASH.to_string();
            for seq in 1..=6u64 {
                let rid = ids[(seq % 2) as usize];
                let mut ev = json!({
                    "seq": seq, "time": format!("2026-01-0{seq}T00:00:00.00000{seq}Z"),
                    "type": "request.decided", "request_id": rid, "agent": "bot",
                    "operator": null, "prev_hash": prev, "decision": "ALLOW",
                    "args": {"amount": 12.5, "x": [1, -2, null, "q\"\\"]},
                });
                let hash = event_hash(&ev);
                ev["hash"] = json!(hash);
                let line = canonical_json(&ev);
                events.insert(seq, line.as_str()).expect("insert");
                by_req.insert((rid, seq), ()).expect("insert");
                lines.push(line);
                prev = hash;
            }
            let mut reqs = txn.open_table(V1_REQUESTS).expect("t");
            let mut open = txn.open_table(V1_OPEN).expect("t");
            for (id, status) in [(ids[0], Status::Pending), (ids[1], Status::Completed)] {
                let json = serde_json::to_string(&record(id, status)).expect("json");
                reqs.insert(id, json.as_str()).expect("insert");
            }
            open.insert(ids[0], ()).expect("insert");
        }
        txn.commit().expect("commit");
    }

    let store = Store::open(&path, StoreOptions::default()).expect("open moves the store");
    let report = store.verify().expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, 6);
    let mut out = Vec::new();
    store.export(None, None, &mut out).expect("export");
    let exported: Vec<&str> = std::str::from_utf8(&out).expect("utf8").lines().collect();
    assert_eq!(exported, lines, "every line comes back byte for byte");
    let held = store.get_request(ids[0]).expect("get").expect("row");
    assert_eq!(held.status, Status::Pending);
    assert_eq!(held.args, json!({"amount": 12.5, "note": "é\n"}));
    assert_eq!(store.pending_requests().expect("open").len(), 1);
    let seqs: Vec<u64> = store
        .events_for_request(ids[1])
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    let pending = Filter {
        status: Some(Status::Pending),
        ..Filter::default()
    };
    let (page, _) = store.list_requests(&pending, 10, None).expect("list");
    assert_eq!(page.len(), 1);
    // The chain continues where it was.
    let c = store
        .commit(sudomode_store::Batch::events(vec![
            sudomode_store::NewEvent::new("server.started"),
        ]))
        .await
        .expect("commit");
    assert_eq!(c.seqs, vec![7]);
    let head: Value = serde_json::from_str(lines.last().expect("line")).expect("json");
    assert_eq!(c.events[0].prev_hash, head["hash"].as_str().expect("hash"));
    assert!(store.verify().expect("verify").ok);
}
