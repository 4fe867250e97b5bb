//! Several replicas on one PostgreSQL database (SPEC §15): two real
//! `sudomode run` processes share held requests, the retry grant and one
//! audit chain; the database going away fails closed and recovers.
//!
//! The database: `SUDOMODE_TEST_POSTGRES` (scripts/test starts a throwaway
//! server), else a cluster of the test's own (see `common::Pg`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"
rules:
  - name: no_huge_charges
    resource: stripe.charges
    action: create
    condition: args.amount > 100000
    decision: DENY
    reason: far too much
  - name: charges_need_a_human
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
    reason: money movement
  - name: refunds_expire_fast
    resource: stripe.refunds
    action: create
    decision: REQUIRE_APPROVAL
    timeout: 1s
    reason: refunds
  - name: read
    resource: "*"
    action: [retrieve, list, get]
    decision: ALLOW
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: bob, token: bob-token-22, role: approver}
agents:
  - {name: bot, token: bot-token-1}
hold:
  retry_window: 30s
";

const ALICE: &str = "alice-token-1";
/// A password in the URL: trust authentication ignores it, and it must
/// never appear in logs, errors or API output.
const DB_PASSWORD: &str = "Db-Pa55word-9f3e";

struct World {
    _ca: TestCa,
    up: Upstream,
    a: SudoMode,
    b: SudoMode,
}

fn opts(up: &Upstream, ca: &TestCa) -> Options<'static> {
    Options {
        policy: POLICY,
        resolve: vec![("api.stripe.com:443".into(), up.addr)],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    }
}

fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1)
}

/// Two replicas, A and B, on the database `pg`, sharing one CA.
async fn world(pg: &Pg) -> World {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.stripe.com"]).await;
    let url = with_password(&pg.url);
    let a = SudoMode::replica(&url, None, opts(&up, &ca), OPS);
    let b = SudoMode::replica(&url, Some(&a), opts(&up, &ca), OPS);
    World { _ca: ca, up, a, b }
}

fn bot(sm: &SudoMode, timeout: Duration) -> reqwest::Client {
    agent_client_timeout(sm, "bot", "bot-token-1", timeout)
}

fn post(
    client: &reqwest::Client,
    path: &str,
    body: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let req = client
        .post(format!("https://api.stripe.com{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    tokio::spawn(req.send())
}

async fn approve(sm: &SudoMode, id: &str) -> (u16, Value) {
    sm.api_post(&format!("/api/v1/requests/{id}/approve"), ALICE, json!({}))
        .await
}

async fn reject(sm: &SudoMode, id: &str) -> (u16, Value) {
    sm.api_post(&format!("/api/v1/requests/{id}/reject"), ALICE, json!({}))
        .await
}

async fn request(sm: &SudoMode, id: &str) -> Value {
    sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await.1
}

/// Waits until `f` holds, or fails with `what`.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `sudomode ARGS` in a replica's directory, with its database URL.
fn cli_with_db(sm: &SudoMode, url: &str, args: &[&str]) -> CliOut {
    cli_env(sm.dir.path(), args, &[("SUDOMODE_DATABASE_URL", url)])
}

fn no_password(sm: &SudoMode) {
    let logs = sm.logs();
    assert!(!logs.contains(DB_PASSWORD), "the password is in the logs");
}

/// An allowed read of charge `ch_N`; its request id.
async fn read_charge(client: &reqwest::Client, n: usize) -> String {
    let resp = client
        .get(format!("https://api.stripe.com/v1/charges/ch_{n}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-sudomode-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The statuses of a listing's rows, in order.
fn statuses(list: &Value) -> Vec<String> {
    list["requests"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["status"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn b_lists_and_counts_a_call_in_flight_on_a_beside_the_finished_ones() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let client = bot(&w.a, Duration::from_secs(30));
    for n in 0..3 {
        read_charge(&client, n).await;
    }
    // Their endings are queued: until B sees them, one of them could pass
    // for the call in flight below.
    eventually("B lists the three calls as ended", || async {
        let (_, v) =
            w.b.api_get("/api/v1/requests?status=completed", ALICE)
                .await;
        statuses(&v).len() == 3
    })
    .await;
    // Answered by the upstream after 4 s: in flight on A meanwhile.
    let slow = tokio::spawn(
        client
            .get("https://api.stripe.com/v1/charges/ch_slow")
            .header("x-stand-in-delay-ms", "4000")
            .send(),
    );
    eventually("B lists the call in flight on A", || async {
        let (_, v) = w.b.api_get("/api/v1/requests?status=allowed", ALICE).await;
        statuses(&v) == ["allowed"]
    })
    .await;
    for filter in [
        "agent=bot",
        "resource=stripe.charges",
        "decision=ALLOW",
        "action=retrieve",
    ] {
        let (_, v) =
            w.b.api_get(&format!("/api/v1/requests?{filter}"), ALICE)
                .await;
        assert_eq!(
            statuses(&v),
            ["allowed", "completed", "completed", "completed"],
            "{filter}: {v}"
        );
    }
    let (_, v) =
        w.b.api_get("/api/v1/requests?status=completed", ALICE)
            .await;
    assert_eq!(statuses(&v), ["completed"; 3], "{v}");
    // Pages across both parts: the call in flight is the newest.
    let (_, first) =
        w.b.api_get("/api/v1/requests?agent=bot&limit=2", ALICE)
            .await;
    assert_eq!(statuses(&first), ["allowed", "completed"], "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, rest) =
        w.b.api_get(
            &format!("/api/v1/requests?agent=bot&limit=2&cursor={cursor}"),
            ALICE,
        )
        .await;
    assert_eq!(statuses(&rest), ["completed", "completed"], "{rest}");
    let (_, stats) = w.b.api_get("/api/v1/stats", ALICE).await;
    assert_eq!(stats["by_decision"]["ALLOW"], 4, "{stats}");

    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    eventually("the call has ended in B's listing", || async {
        let (_, v) =
            w.b.api_get("/api/v1/requests?status=completed", ALICE)
                .await;
        statuses(&v).len() == 4
    })
    .await;
    let (_, v) = w.b.api_get("/api/v1/requests?status=allowed", ALICE).await;
    assert_eq!(statuses(&v), Vec::<String>::new(), "{v}");
    let (_, stats) = w.b.api_get("/api/v1/stats", ALICE).await;
    assert_eq!(stats["by_decision"]["ALLOW"], 4, "{stats}");
}

#[tokio::test]
async fn an_approval_on_b_releases_the_call_held_on_a() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let call = post(
        &bot(&w.a, Duration::from_secs(60)),
        "/v1/charges",
        "amount=5000&currency=usd",
    );
    // B sees A's held request: the store is shared.
    let pending = w.b.wait_pending(ALICE, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert!(
        w.up.requests().is_empty(),
        "nothing goes upstream before approval"
    );
    let (s, rec) = approve(&w.b, &id).await;
    assert_eq!(s, 200, "{rec}");
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sudomode-request-id"], id.as_str());
    let got = w.up.requests();
    assert_eq!(got.len(), 1, "forwarded exactly once");
    assert_eq!(got[0].body, b"amount=5000&currency=usd");
    // A second approval, on either replica, is a conflict.
    assert_eq!(approve(&w.a, &id).await.0, 409);
    eventually("the request completes", || async {
        request(&w.a, &id).await["status"] == "completed"
    })
    .await;
    no_password(&w.a);
    no_password(&w.b);
}

/// A charge posted through A, once B lists it pending: the call and its id.
async fn charge_held_on_a(
    w: &World,
    body: &str,
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    String,
) {
    let call = post(&bot(&w.a, Duration::from_secs(60)), "/v1/charges", body);
    let pending = w.b.wait_pending(ALICE, 1).await;
    (call, pending[0]["id"].as_str().unwrap().to_string())
}

/// Approves request `id` on `sm` with `edits`.
async fn edit(sm: &SudoMode, id: &str, edits: Value) -> (u16, Value) {
    let body = json!({ "edits": edits, "reason": "half is enough" });
    sm.api_post(&format!("/api/v1/requests/{id}/approve"), ALICE, body)
        .await
}

#[tokio::test]
async fn an_edit_approved_on_b_is_prepared_by_a_where_the_call_waits() {
    let pg = Pg::database();
    let mut w = world(&pg).await;
    let (call, id) = charge_held_on_a(&w, "amount=5000&currency=usd").await;
    // A judges the edited call with its policy: denied, and still pending.
    let (s, e) = edit(&w.b, &id, json!({"amount": 250000})).await;
    assert_eq!(s, 409, "{e}");
    assert!(e.to_string().contains("no_huge_charges"), "{e}");
    assert_eq!(request(&w.b, &id).await["status"], "pending");
    // An edit the form cannot carry: A's answer, with its type and reason.
    let (s, e) = edit(&w.b, &id, json!({"amount": 2500, "tags": [1, null]})).await;
    assert_eq!(
        (s, &e["error"]["type"]),
        (409, &json!("not_editable")),
        "{e}"
    );
    assert!(e.to_string().contains("cannot carry null"), "{e}");
    assert!(
        w.up.requests().is_empty(),
        "nothing goes upstream before approval"
    );

    let (s, rec) = edit(&w.b, &id, json!({"amount": 2500})).await;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["edited"], true, "{rec}");
    assert_eq!(rec["args"]["amount"], 5000, "the proposed args are kept");
    assert_eq!(rec["approved_args"]["amount"], 2500);
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sudomode-edited"], "true");
    let got = w.up.requests();
    assert_eq!(got.len(), 1, "forwarded exactly once");
    assert_eq!(got[0].body, b"amount=2500&currency=usd");
    eventually("the edited request completes", || async {
        request(&w.a, &id).await["status"] == "completed"
    })
    .await;

    // The replica holding a call stops: no one has its bytes, so an edit is
    // refused with the reason, and approving it as it is still works.
    let (held, id) = charge_held_on_a(&w, "amount=7000&currency=usd").await;
    w.a.kill9();
    let _ = held.await;
    let (s, e) = edit(&w.b, &id, json!({"amount": 10})).await;
    assert_eq!(
        (s, &e["error"]["type"]),
        (409, &json!("not_editable")),
        "{e}"
    );
    assert!(e.to_string().contains("no longer has its bytes"), "{e}");
    assert_eq!(request(&w.b, &id).await["status"], "pending");
    assert_eq!(approve(&w.b, &id).await.0, 200);
    no_password(&w.b);
}

#[tokio::test]
async fn identical_calls_on_a_and_b_join_one_pending_request() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let body = "amount=777&currency=eur";
    let on_a = post(&bot(&w.a, Duration::from_secs(60)), "/v1/charges", body);
    let on_b = post(&bot(&w.b, Duration::from_secs(60)), "/v1/charges", body);
    let pending = w.a.wait_pending(ALICE, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    eventually("the second call joins", || async {
        event_types(&request(&w.b, &id).await).contains(&"request.joined".to_string())
    })
    .await;
    let (_, v) = w.b.api_get("/api/v1/requests?status=pending", ALICE).await;
    assert_eq!(
        v["requests"].as_array().unwrap().len(),
        1,
        "one pending request for both calls: {v}"
    );
    assert_eq!(approve(&w.b, &id).await.0, 200);
    let (ra, rb) = (on_a.await.unwrap().unwrap(), on_b.await.unwrap().unwrap());
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 403],
        "one forwards, the other is told it was forwarded once"
    );
    assert_eq!(w.up.requests().len(), 1, "forwarded exactly once");
}

#[tokio::test]
async fn a_retry_after_the_agent_gave_up_goes_through_once_on_either_replica() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let body = "amount=4242&currency=usd";
    // The agent's SDK gives up long before a human answers.
    let first = post(&bot(&w.a, Duration::from_secs(2)), "/v1/charges", body);
    let pending = w.a.wait_pending(ALICE, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert!(first.await.unwrap().is_err(), "the agent timed out");
    assert_eq!(approve(&w.b, &id).await.0, 200);
    // Its retries reach both replicas at once: exactly one uses the grant.
    let on_a = post(&bot(&w.a, Duration::from_secs(4)), "/v1/charges", body);
    let on_b = post(&bot(&w.b, Duration::from_secs(4)), "/v1/charges", body);
    let results = [on_a.await.unwrap(), on_b.await.unwrap()];
    let ok: Vec<&reqwest::Response> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.status() == 200)
        .collect();
    assert_eq!(ok.len(), 1, "exactly one retry went through: {results:?}");
    assert_eq!(ok[0].headers()["x-sudomode-request-id"], id.as_str());
    assert_eq!(w.up.requests().len(), 1, "forwarded exactly once");
    let r = request(&w.a, &id).await;
    let granted = event_types(&r)
        .iter()
        .filter(|t| *t == "request.retry_granted")
        .count();
    assert_eq!(granted, 1, "{r}");
}

#[tokio::test]
async fn a_replica_killed_with_a_held_call_loses_nothing() {
    let pg = Pg::database();
    let mut w = world(&pg).await;
    let body = "amount=9000&currency=usd";
    let first = post(&bot(&w.a, Duration::from_secs(60)), "/v1/charges", body);
    let pending = w.b.wait_pending(ALICE, 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    w.a.kill9();
    assert!(first.await.unwrap().is_err(), "A died with the call");
    assert_eq!(approve(&w.b, &id).await.0, 200);
    let retry = post(&bot(&w.b, Duration::from_secs(20)), "/v1/charges", body)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["x-sudomode-request-id"], id.as_str());
    assert_eq!(w.up.requests().len(), 1);
    // The grant is used: one more identical call is held anew.
    let again = post(&bot(&w.b, Duration::from_secs(2)), "/v1/charges", body);
    assert!(again.await.unwrap().is_err(), "held again, not forwarded");
    assert_eq!(w.up.requests().len(), 1, "forwarded exactly once");
}

#[tokio::test]
async fn one_chain_verifies_from_both_replicas_and_the_cli() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let (ca, cb) = (
        bot(&w.a, Duration::from_secs(30)),
        bot(&w.b, Duration::from_secs(30)),
    );
    let mut calls = Vec::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { &ca } else { &cb };
        calls.push(tokio::spawn(
            c.get(format!("https://api.stripe.com/v1/charges/ch_{i}"))
                .send(),
        ));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().status(), 200);
    }
    // The ends of the requests are written just after the answers: wait
    // until both replicas see the same, whole chain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let va = loop {
        let (_, a) = w.a.api_get("/api/v1/audit/verify", ALICE).await;
        let (_, b) = w.b.api_get("/api/v1/audit/verify", ALICE).await;
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(b["ok"], true, "{b}");
        // 40 decided + 40 forwarded, and each replica's start events.
        if a == b && a["events"].as_u64().unwrap() >= 84 {
            break a;
        }
        assert!(Instant::now() < deadline, "{a} {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seqs = pg.sql("SELECT count(*) = max(seq) AND min(seq) = 1 FROM sudomode_audit");
    assert_eq!(seqs, "t", "seq has no gaps or duplicates");
    // The command line reads the database directly.
    let url = with_password(&pg.url);
    let out = cli_with_db(&w.a, &url, &["audit", "verify", "-c", "sudomode.yaml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.starts_with("ok: "), "{}", out.all());
    assert!(
        out.stdout.contains(va["head_hash"].as_str().unwrap()),
        "{}",
        out.all()
    );
    // The whole history is the live chain: PostgreSQL keeps no archives.
    let whole = cli_with_db(
        &w.b,
        &url,
        &["audit", "verify", "--archive", "-c", "sudomode.yaml"],
    );
    assert_eq!(whole.code, 0, "{}", whole.all());
    assert!(whole.stdout.starts_with("ok: "), "{}", whole.all());
    let export = cli_with_db(&w.b, &url, &["audit", "export", "-c", "sudomode.yaml"]);
    assert_eq!(export.code, 0, "{}", export.all());
    let report = sudomode_store::verify_lines(export.stdout.as_bytes()).unwrap();
    assert!(report.ok, "{report:?}");
    assert!(!out.all().contains(DB_PASSWORD) && !export.stderr.contains(DB_PASSWORD));
}

#[tokio::test]
async fn the_event_stream_of_b_shows_what_a_holds() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let mut sse =
        w.b.api()
            .get(w.b.dashboard_url("/api/v1/events"))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
    assert_eq!(sse.status(), 200);
    let _call = post(
        &bot(&w.a, Duration::from_secs(60)),
        "/v1/charges",
        "amount=31&currency=usd",
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("\"status\":\"pending\"") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sse.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("no event from A on B's stream: {other:?} {seen}"),
        }
    }
    assert!(seen.contains("stripe.charges"), "{seen}");
}

#[tokio::test]
async fn an_expiry_is_recorded_once_whichever_replica_sweeps() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let mut calls = Vec::new();
    for i in 0..6 {
        let sm = if i % 2 == 0 { &w.a } else { &w.b };
        calls.push(post(
            &bot(sm, Duration::from_secs(30)),
            "/v1/refunds",
            &format!("charge=ch_{i}"),
        ));
    }
    for c in calls {
        let resp = c.await.unwrap().unwrap();
        let (status, v) = error_body(resp).await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["type"], "expired", "{v}");
    }
    let expired = pg.sql(
        "SELECT count(*) FROM sudomode_audit WHERE line LIKE '%\"type\":\"request.expired\"%'",
    );
    assert_eq!(expired, "6", "one expiry event per request");
    assert_eq!(
        pg.sql("SELECT count(*) FROM sudomode_requests WHERE status = 'expired'"),
        "6"
    );
}

#[tokio::test]
async fn replicas_starting_together_on_a_fresh_database_share_one_schema() {
    let pg = Pg::database();
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.stripe.com"]).await;
    let url = pg.url.clone();
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let (url, o) = (url.clone(), opts(&up, &ca));
            std::thread::spawn(move || SudoMode::replica(&url, None, o, OPS))
        })
        .collect();
    let replicas: Vec<SudoMode> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(pg.sql("SELECT version FROM sudomode_schema"), "5");
    for r in &replicas {
        let (_, v) = r.api_get("/api/v1/audit/verify", ALICE).await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let started = pg
        .sql("SELECT count(*) FROM sudomode_audit WHERE line LIKE '%\"type\":\"server.started\"%'");
    assert_eq!(started, "2");
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_a_clear_startup_error() {
    let pg = Pg::database();
    pg.sql("CREATE TABLE sudomode_schema (version integer NOT NULL); INSERT INTO sudomode_schema VALUES (99)");
    let out = start_fails(&with_password(&pg.url));
    assert!(out.contains("version 99"), "{out}");
    assert!(out.contains("newer than this SudoMode"), "{out}");
}

#[tokio::test]
async fn a_strict_answer_survives_the_database_crashing_right_after_it() {
    let pg = Pg::own_cluster();
    // WAL nobody flushed then stays in the server's memory for seconds
    // (fsync is off here, but a flush still writes the WAL out to the OS,
    // which a crash of the server keeps).
    pg.cluster().halt();
    pg.cluster()
        .resume_with("-c wal_writer_delay=10s -c autovacuum=off");
    let w = world(&pg).await;
    let client = bot(&w.a, Duration::from_secs(30));
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(read_charge(&client, n).await);
    }
    pg.cluster().crash();
    pg.cluster().resume();
    for id in &ids {
        let decided = pg.sql(&format!(
            "SELECT count(*) FROM sudomode_audit WHERE request_id = '{id}' \
             AND line LIKE '%\"type\":\"request.decided\"%'"
        ));
        assert_eq!(
            decided, "1",
            "the decision of {id}, answered under strict, was lost"
        );
    }
    eventually("the chain verifies after the crash", || async {
        let (_, v) = w.b.api_get("/api/v1/audit/verify", ALICE).await;
        v["ok"] == true
    })
    .await;
}

#[tokio::test]
async fn the_database_going_away_fails_closed_and_service_resumes_by_itself() {
    let pg = Pg::own_cluster();
    let w = world(&pg).await;
    let client = bot(&w.a, Duration::from_secs(30));
    let get = || client.get("https://api.stripe.com/v1/charges/ch_1").send();
    assert_eq!(get().await.unwrap().status(), 200);
    let forwarded = w.up.requests().len();

    pg.cluster().halt();
    let mut refused = None;
    for _ in 0..50 {
        let resp = get().await.unwrap();
        if resp.status() != 200 {
            refused = Some(error_body(resp).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, err) = refused.expect("requests kept going through without a database");
    assert_eq!(
        (status, err["error"]["type"].as_str()),
        (503, Some("store_unavailable")),
        "{err}"
    );
    assert_eq!(
        w.up.requests().len(),
        forwarded,
        "nothing went upstream unrecorded"
    );
    // B notices too, without serving a request: /healthz sends load
    // balancers elsewhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hv: Value = loop {
        let health =
            w.b.api()
                .get(w.b.dashboard_url("/healthz"))
                .send()
                .await
                .unwrap();
        if health.status() == 503 {
            break health.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "B never reported the database gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(hv["reason"].as_str().unwrap().contains("store"), "{hv}");
    assert!(!hv.to_string().contains(DB_PASSWORD));
    // Operators are refused too, with the same type.
    let (s, v) = w.b.api_get("/api/v1/requests", ALICE).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (503, Some("store_unavailable")),
        "{v}"
    );

    pg.cluster().resume();
    for sm in [&w.a, &w.b] {
        eventually("the replica reports healthy again", || async {
            let r = sm
                .api()
                .get(sm.dashboard_url("/healthz"))
                .send()
                .await
                .unwrap();
            r.status() == 200
        })
        .await;
    }
    assert_eq!(get().await.unwrap().status(), 200);
    let (_, v) = w.b.api_get("/api/v1/audit/verify", ALICE).await;
    assert_eq!(v["ok"], true, "{v}");
    no_password(&w.a);
    no_password(&w.b);
}

#[tokio::test]
async fn sslmode_require_verifies_the_database_certificate() {
    install_crypto();
    let db_ca = TestCa::new("Database Test CA");
    let cluster = PgCluster::start_tls(&db_ca);
    psql(&cluster.url("postgres"), "CREATE DATABASE sudomode");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("db-ca.pem");
    std::fs::write(&ca_path, &db_ca.pem).unwrap();
    let base = format!(
        "{}?sslmode=require",
        with_password(&cluster.url("sudomode"))
    );

    // Trusting the database's CA: TLS, verified, and the replica works.
    let url = format!("{base}&sslrootcert={}", ca_path.display());
    let up = Upstream::https(&db_ca, &["api.stripe.com"]).await;
    let sm = SudoMode::replica(&url, None, opts(&up, &db_ca), OPS);
    let (_, v) = sm.api_get("/api/v1/audit/verify", ALICE).await;
    assert_eq!(v["ok"], true, "{v}");
    let ssl = psql(
        &cluster.url("sudomode"),
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.application_name = 'sudomode'",
    );
    assert_ne!(ssl, "0", "the replica's connections use TLS");
    no_password(&sm);

    // Without that CA the certificate does not verify: no start, no secret shown.
    let out = start_fails(&base);
    assert!(out.contains("PostgreSQL"), "{out}");
}

/// `sudomode run` with `store.postgres` from `$SUDOMODE_DATABASE_URL` = `url`
/// in a fresh directory; it must exit (not hang) and say why.
fn start_fails(url: &str) -> String {
    start_fails_with(url, "")
}

/// Like [`start_fails`], with `extra` appended to the config.
fn start_fails_with(url: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sudomode.yaml"),
        format!("store:\n  postgres: \"${{env:SUDOMODE_DATABASE_URL}}\"\n{extra}"),
    )
    .unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "run",
            "-c",
            "sudomode.yaml",
            "--proxy-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env("SUDOMODE_DATABASE_URL", url)
        .env("SUDOMODE_ADMIN_TOKEN", "admin-token-123")
        .env("SUDOMODE_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("sudomode kept running without its database");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains(DB_PASSWORD), "the password is shown: {all}");
    all
}

#[tokio::test]
async fn a_bad_or_unreachable_database_is_a_clear_startup_error_that_hides_the_url() {
    // Not a PostgreSQL URL: the config file and key, never the value.
    let out = start_fails(&format!("mysql://app:{DB_PASSWORD}@127.0.0.1/db"));
    assert!(out.contains("sudomode.yaml"), "{out}");
    assert!(out.contains("store.postgres"), "{out}");
    // A PostgreSQL URL the driver refuses.
    let out = start_fails(&format!(
        "postgres://app:{DB_PASSWORD}@127.0.0.1/db?sslmode=sometimes"
    ));
    assert!(out.contains("sslmode"), "{out}");
    // Nothing listening there: no start, rather than a replica that cannot
    // record anything.
    let closed = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:{}/db", free_port());
    let out = start_fails(&closed);
    assert!(out.contains("PostgreSQL"), "{out}");
}

#[tokio::test]
async fn a_grant_made_on_b_is_used_on_a_and_its_last_use_is_spent_once() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let (s, g) =
        w.b.api_post(
            "/api/v1/grants",
            ALICE,
            json!({"agent": "bot", "resource": "stripe.charges", "action": "create",
                   "for": "1h", "max_uses": 2}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    // A call on A passes at once on the grant made through B.
    let first = post(
        &bot(&w.a, Duration::from_secs(20)),
        "/v1/charges",
        "amount=100&currency=usd",
    );
    let first = first.await.unwrap().expect("a granted call is not held");
    assert_eq!(first.status(), 200, "{}", w.a.logs());
    // The last use, raced by a call on A and a call on B: one passes, the
    // other is held like any call without a grant.
    let on_a = post(
        &bot(&w.a, Duration::from_secs(30)),
        "/v1/charges",
        "amount=201&currency=usd",
    );
    let on_b = post(
        &bot(&w.b, Duration::from_secs(30)),
        "/v1/charges",
        "amount=202&currency=usd",
    );
    let pending = w.a.wait_pending(ALICE, 1).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap();
    assert_eq!(reject(&w.b, id).await.0, 200);
    let mut statuses = vec![
        on_a.await.unwrap().unwrap().status().as_u16(),
        on_b.await.unwrap().unwrap().status().as_u16(),
    ];
    statuses.sort();
    assert_eq!(statuses, [200, 403]);
    assert_eq!(w.up.requests().len(), 2, "two uses, two forwards");
    let (_, list) = w.a.api_get("/api/v1/grants", ALICE).await;
    assert_eq!(list["grants"][0]["uses"], 2, "{list}");
    // Revoked through A, seen by B.
    let gid = g["id"].as_str().unwrap();
    let r =
        w.a.api()
            .delete(w.a.dashboard_url(&format!("/api/v1/grants/{gid}")))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let (_, list) = w.b.api_get("/api/v1/grants", ALICE).await;
    assert!(list["grants"][0]["revoked_at"].is_string(), "{list}");
}

#[tokio::test]
async fn audit_retention_with_postgres_is_refused_at_start() {
    // PostgreSQL keeps the whole log (no archives yet): a retention that
    // would silently not happen is a startup error naming the key.
    let pg = Pg::database();
    let out = start_fails_with(&with_password(&pg.url), "audit:\n  retention: 30d\n");
    assert!(out.contains("sudomode.yaml"), "{out}");
    assert!(
        out.contains("audit.retention is not supported with store.postgres"),
        "{out}"
    );
    assert!(!out.contains(DB_PASSWORD), "{out}");
}

#[tokio::test]
async fn the_agent_started_by_exec_never_inherits_the_database_url() {
    let pg = Pg::database();
    let w = world(&pg).await;
    let url = with_password(&pg.url);
    let out = std::process::Command::new(bin())
        .args(["exec", "-c", "sudomode.yaml", "--", "env"])
        .current_dir(w.a.dir.path())
        .env("SUDOMODE_DATABASE_URL", &url)
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{env}");
    assert!(env.contains("HTTPS_PROXY="), "{env}");
    assert!(!env.contains("SUDOMODE_DATABASE_URL"), "{env}");
    assert!(!env.contains(DB_PASSWORD), "{env}");
}

/// Approvals on B, rejections on A and A's own traffic race over the same
/// held requests: every transaction takes the chain head before any request
/// row, so none of them waits for another in a circle, and each request is
/// decided once. A deadlock shows as an operator answer other than 200/409
/// (PostgreSQL aborts one of the two) or a call refused for a failed commit.
#[tokio::test]
async fn approvals_rejections_and_endings_racing_across_replicas_never_deadlock() {
    const N: usize = 24;
    let pg = Pg::database();
    let w = world(&pg).await;
    let agent = bot(&w.a, Duration::from_secs(60));
    let calls: Vec<_> = (0..N)
        .map(|i| {
            post(
                &agent,
                "/v1/charges",
                &format!("amount={}&currency=usd", 100 + i),
            )
        })
        .collect();
    let pending = w.b.wait_pending(ALICE, N).await;
    let ids: Vec<String> = pending
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    // A keeps writing rows of its own while the operators race.
    let reads: Vec<_> = (0..N)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move {
                agent
                    .get("https://api.stripe.com/v1/charges/ch_1")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Each request rejected on A and approved on B at once, all at once.
    let (a, b) = (&w.a, &w.b);
    let races = ids
        .iter()
        .map(|id| async move { tokio::join!(reject(a, id), approve(b, id)) });
    let races = futures_util::future::join_all(races).await;
    let mut approved = 0;
    for ((rs, rv), (as_, av)) in races {
        assert!(rs == 200 || rs == 409, "reject on A: {rs} {rv}");
        assert!(as_ == 200 || as_ == 409, "approve on B: {as_} {av}");
        assert!(rs == 200 || as_ == 200, "neither decided it: {rv} {av}");
        assert!(!(rs == 200 && as_ == 200), "both decided it: {rv} {av}");
        approved += usize::from(as_ == 200);
    }
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), 200, "an allowed read failed");
    }
    let mut forwarded = 0;
    for call in calls {
        let status = call.await.unwrap().unwrap().status().as_u16();
        assert!(status == 200 || status == 403, "a held call ended {status}");
        forwarded += usize::from(status == 200);
    }
    assert_eq!(forwarded, approved, "each approval forwarded its call once");
    let charges =
        w.up.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
    assert_eq!(
        charges, approved,
        "the upstream got each approved charge once"
    );
    for id in &ids {
        eventually("every raced request ends", || async {
            let s = request(&w.b, id).await["status"].clone();
            s == "completed" || s == "rejected"
        })
        .await;
    }
    for sm in [&w.a, &w.b] {
        let logs = sm.logs();
        assert!(!logs.contains("deadlock"), "a deadlock:\n{logs}");
    }
}

/// `non-C all`: how many text columns of SudoMode's indexes (one count per
/// index and column) compare in a collation other than "C", and how many
/// there are.
fn key_collations(pg: &Pg) -> String {
    pg.sql(
        "SELECT count(*) FILTER (WHERE co.collname <> 'C') || ' ' || count(*) \
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey::int2[]) \
         JOIN pg_collation co ON co.oid = a.attcollation \
         WHERE t.relname LIKE 'sudomode\\_%' AND a.atttypid = 'text'::regtype",
    )
}

#[tokio::test]
async fn keys_compare_as_bytes_and_a_schema_4_database_is_migrated_with_its_rows() {
    let pg = Pg::database();
    let World { _ca: ca, up, a, b } = world(&pg).await;
    let client = bot(&a, Duration::from_secs(30));
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(read_charge(&client, n).await);
    }
    assert_eq!(
        key_collations(&pg),
        "0 20",
        "every indexed text column in \"C\""
    );
    // The shape of a schema 4 database: its columns in the database's own
    // collation. The next start migrates it and keeps what it holds.
    drop((a, b));
    pg.sql(
        r#"DO $$ DECLARE c record; BEGIN
             FOR c IN SELECT t.relname, a.attname FROM pg_attribute a
                 JOIN pg_class t ON t.oid = a.attrelid
                 WHERE t.relname LIKE 'sudomode\_%' AND t.relkind = 'r' AND a.attnum > 0
                   AND a.attcollation = (SELECT oid FROM pg_collation WHERE collname = 'C')
             LOOP
                 EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "default"',
                     c.relname, c.attname);
             END LOOP;
           END $$;
           UPDATE sudomode_schema SET version = 4"#,
    );
    assert_eq!(key_collations(&pg), "20 20");
    let c = SudoMode::replica(&with_password(&pg.url), None, opts(&up, &ca), OPS);
    assert_eq!(pg.sql("SELECT version FROM sudomode_schema"), "5");
    assert_eq!(key_collations(&pg), "0 20");
    let (_, v) = c.api_get("/api/v1/audit/verify", ALICE).await;
    assert_eq!(v["ok"], true, "{v}");
    let more = read_charge(&bot(&c, Duration::from_secs(30)), 3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = c.api_get("/api/v1/requests?status=completed", ALICE).await;
        let listed: Vec<&str> = list["requests"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["id"].as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = std::iter::once(more.as_str())
            .chain(ids.iter().rev().map(String::as_str))
            .collect();
        if listed == want {
            break;
        }
        assert!(Instant::now() < deadline, "{listed:?} != {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
