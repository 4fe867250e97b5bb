//! Retention: archiving old events and finished requests into segments, the
//! checkpoint in the live chain, and verifying the whole history again.

use std::io::{Cursor, Read};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sudomode_store::{
    ARCHIVED_EVENT, Batch, Filter, NewEvent, RequestRecord, Status, Store, StoreOptions,
    new_request_id, verify_lines,
};
use time::OffsetDateTime;

fn record(id: &str, agent: &str, status: Status) -> RequestRecord {
    RequestRecord {
        agent: agent.into(),
        url: format!("https://api.test/items/{id}"),
        decision: if status == Status::Pending {
            "REQUIRE_APPROVAL".into()
        } else {
            "ALLOW".into()
        },
        rule: Some("r".into()),
        reason: "rule r".into(),
        status,
        intents: vec![json!({"resource": "http.api.test", "action": "get", "args": {}})],
        ..sudomode_store::testing::record(id)
    }
}

/// One finished request (decided, then forwarded) or a held one.
async fn request(store: &Store, agent: &str, held: bool) -> String {
    let id = new_request_id();
    let status = if held {
        Status::Pending
    } else {
        Status::Allowed
    };
    let mut rec = record(&id, agent, status);
    let ev = NewEvent::new("request.decided")
        .request(id.clone())
        .agent(agent)
        .field("decision", rec.decision.clone());
    store
        .commit(Batch::one(ev, rec.clone()))
        .await
        .expect("decided");
    if !held {
        rec.status = Status::Completed;
        rec.upstream_status = Some(200);
        let ev = NewEvent::new("request.forwarded")
            .request(id.clone())
            .agent(agent)
            .field("upstream_status", 200);
        store.commit(Batch::one(ev, rec)).await.expect("forwarded");
    }
    id
}

fn export(store: &Store) -> String {
    let mut out = Vec::new();
    store.export(None, None, &mut out).expect("export");
    String::from_utf8(out).expect("utf8")
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_string(&mut s)
        .expect("gunzip");
    s
}

#[tokio::test]
async fn archive_moves_old_history_and_the_whole_chain_still_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data").join("s.redb");
    let store = Store::open(&path, StoreOptions::default()).expect("open");
    let mut old = Vec::new();
    for i in 0..20 {
        old.push(request(&store, if i % 2 == 0 { "a" } else { "b" }, false).await);
    }
    let held = request(&store, "a", true).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recent = request(&store, "a", false).await;
    let before = export(&store);
    let total = before.lines().count() as u64;

    let report = store
        .archive_before(cutoff)
        .await
        .expect("archive")
        .expect("something to archive");
    assert_eq!(report.first_seq, 1);
    assert_eq!(report.events, 41, "20 × 2 events and the held request's");
    assert_eq!(report.requests, 20, "the held request stays live");

    // The live store keeps the held and the recent request, not the archived ones.
    assert!(store.get_request(&old[0]).expect("get").is_none());
    assert!(store.get_request(&held).expect("get").is_some());
    assert!(store.get_request(&recent).expect("get").is_some());
    let (page, _) = store
        .list_requests(&Filter::default(), 50, None)
        .expect("list");
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![recent.as_str(), held.as_str()]);
    let agent_a = Filter {
        agent: Some("a".into()),
        ..Filter::default()
    };
    assert_eq!(
        store
            .list_requests(&agent_a, 50, None)
            .expect("list")
            .0
            .len(),
        2
    );
    assert_eq!(store.pending_requests().expect("open").len(), 1);

    // The live chain verifies from its anchor; the whole history from the first event.
    let live = store.verify().expect("verify");
    assert!(live.ok, "{live:?}");
    let whole = store.verify_with_archive().expect("verify");
    assert!(whole.ok, "{whole:?}");
    assert_eq!(whole.events, total + 1, "every event plus the checkpoint");

    // The export reads the archive too, so it verifies from genesis, and the
    // checkpoint names the segment's last hash and SHA-256.
    let after = export(&store);
    assert_eq!(after.lines().count() as u64, total + 1);
    assert!(after.starts_with(before.lines().next().expect("first")));
    assert!(verify_lines(Cursor::new(after.clone())).expect("verify").ok);
    let checkpoint: Value = after
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|v| v["type"] == ARCHIVED_EVENT)
        .expect("checkpoint");
    let seg = store
        .archive_dir()
        .join(checkpoint["segment"].as_str().expect("name"));
    assert_eq!(checkpoint["last_hash"], json!(report.last_hash));
    assert_eq!(
        checkpoint["sha256"],
        json!(sudomode_store::file_sha256(&seg).expect("sha"))
    );
    assert_eq!(gunzip(&seg).lines().count(), 41);
    let requests_seg = store
        .archive_dir()
        .join(checkpoint["requests_segment"].as_str().expect("name"));
    let archived: Vec<Value> = gunzip(&requests_seg)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(archived.len(), 20);
    assert!(archived.iter().all(|r| r["status"] == "completed"));

    // The independent Python verifier agrees on the exported whole history.
    if Command::new("python3").arg("--version").output().is_ok() {
        let file = dir.path().join("export.jsonl");
        std::fs::write(&file, &after).expect("write");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_export.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(&file)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Reopened, the chain continues from the checkpoint; a second run with
    // the same cutoff finds nothing new to move.
    store.close().await.expect("close");
    drop(store);
    let store = Store::open(&path, StoreOptions::default()).expect("reopen");
    request(&store, "b", false).await;
    assert!(store.verify().expect("verify").ok);
    assert!(store.verify_with_archive().expect("verify").ok);

    // A segment changed on disk no longer matches its checkpoint.
    let mut bytes = std::fs::read(&seg).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, bytes).expect("write");
    let bad = store.verify_with_archive();
    assert!(
        bad.map(|r| !r.ok).unwrap_or(true),
        "a damaged segment fails"
    );
}
