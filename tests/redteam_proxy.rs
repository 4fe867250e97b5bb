//! Red-team findings on the proxy side (issue 18: 4, 6, 10), through the real
//! binary with a recording upstream as ground truth: real credentials over
//! plain HTTP, slow or stalled agents starving everyone, and metadata
//! addresses hidden behind other spellings or names.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-token-123";

fn admin() -> Vec<(String, String)> {
    vec![("SUDOMODE_ADMIN_TOKEN".into(), ADMIN.into())]
}

/// Sends `head` (and nothing more) to the proxy; returns what came back
/// before the proxy closed the connection or `wait` passed.
async fn raw_exchange(sm: &SudoMode, head: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(sm.proxy).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut buf))
        .await
        .is_ok();
    (buf, closed)
}

/// A plain-HTTP proxied client.
fn http_client(sm: &SudoMode) -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sm.proxy_url()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn credential(plaintext: bool) -> String {
    format!(
        "credentials:\n  - name: stripe\n    hosts: [\"api.stripe.com\"]\n    header: Authorization\n    value: \"Bearer sk_live_REALSECRET\"\n    plaintext: {plaintext}\n"
    )
}

#[tokio::test]
async fn real_credentials_are_never_sent_over_plain_http() {
    let up = Upstream::http().await;
    let extra = credential(false);
    let sm = SudoMode::start(Options {
        extra: &extra,
        resolve: vec![("api.stripe.com:80".into(), up.addr)],
        env: admin(),
        ..Default::default()
    });
    let resp = http_client(&sm)
        .get("http://api.stripe.com/v1/customers")
        .header("authorization", "Bearer sk_test_placeholder")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "denied");
    assert_eq!(body["error"]["rule"], "sudomode.builtin");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("TLS"),
        "{body}"
    );
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // The refusal is a recorded decision.
    let (_, v) = sm.api_get("/api/v1/requests?limit=1", ADMIN).await;
    assert_eq!(v["requests"][0]["decision"], "DENY", "{v}");
}

#[tokio::test]
async fn plaintext_true_lets_a_credential_go_over_http() {
    let up = Upstream::http().await;
    let extra = credential(true);
    let sm = SudoMode::start(Options {
        extra: &extra,
        resolve: vec![("api.stripe.com:80".into(), up.addr)],
        ..Default::default()
    });
    let resp = http_client(&sm)
        .get("http://api.stripe.com/v1/customers")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.requests();
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer sk_live_REALSECRET")
    );
}

#[tokio::test]
async fn a_credential_for_every_tenant_of_a_platform_is_warned_about() {
    let extra = "credentials:\n  - name: supabase\n    hosts: [\"*.supabase.co\"]\n    header: apikey\n    value: \"service-role-key-123\"\n";
    let sm = SudoMode::start(Options {
        extra,
        ..Default::default()
    });
    let logs = sm.logs();
    assert!(
        logs.contains("*.supabase.co") && logs.contains("every tenant"),
        "{logs}"
    );
    assert!(!logs.contains("service-role-key-123"), "{logs}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_read_timeout_is_408() {
    let up = Upstream::http().await;
    let sm = SudoMode::start(Options {
        extra: "proxy:\n  read_timeout: 1s\n",
        resolve: vec![("slow.test:80".into(), up.addr)],
        ..Default::default()
    });
    let head = b"POST http://slow.test/upload HTTP/1.1\r\nHost: slow.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"amount\":";
    let (buf, _) = raw_exchange(&sm, head, Duration::from_secs(20)).await;
    let resp = parse_raw_response(&buf);
    assert_eq!(resp.status, 408, "{}", String::from_utf8_lossy(&buf));
    assert_eq!(resp.json()["error"]["type"], "bad_request");
    assert!(
        resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read_timeout")
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_tls_handshake_stalled_after_connect_is_closed() {
    let sm = SudoMode::start(Options::default());
    let mut s = TcpStream::connect(sm.proxy).await.unwrap();
    s.write_all(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 128];
    let n = s.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // The first bytes of a TLS record, then nothing: before the fix the proxy
    // waited for the rest as long as `proxy.idle_timeout` (60 s).
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(40), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled handshake was never closed");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "closed by the handshake limit, not the idle timeout"
    );
}

#[tokio::test]
async fn stalled_agents_cannot_starve_the_dashboard_or_exceed_max_connections() {
    let up = Upstream::http().await;
    let sm = SudoMode::start(Options {
        extra: "proxy:\n  max_connections: 4\n",
        resolve: vec![("ok.test:80".into(), up.addr)],
        ..Default::default()
    });
    // Four stalled uploads take every slot.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(sm.proxy).await.unwrap();
        s.write_all(
            b"POST http://ok.test/ HTTP/1.1\r\nHost: ok.test\r\nContent-Length: 1000\r\n\r\nx",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fifth = tokio::spawn({
        let client = http_client(&sm);
        async move { client.get("http://ok.test/fifth").send().await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!fifth.is_finished(), "a fifth connection waits for a slot");
    assert!(up.requests().is_empty());
    // The dashboard keeps serving operators meanwhile.
    let health = sm
        .api()
        .get(sm.dashboard_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A slot frees up: the waiting agent is served.
    drop(stalled.pop());
    let resp = fifth.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn the_dashboard_serves_under_a_low_open_files_limit_with_many_stalled_agents() {
    let sm = SudoMode::start(Options {
        nofile: Some(300),
        ..Default::default()
    });
    let mut stalled = Vec::new();
    for _ in 0..400 {
        // Past the cap, connections wait in the listen queue; once that is
        // full a connect hangs: stop there.
        let connect =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(sm.proxy));
        match connect.await {
            Ok(Ok(mut s)) => {
                let _ = s
                    .write_all(b"POST http://x.test/ HTTP/1.1\r\nHost: x.test\r\nContent-Length: 9\r\n\r\n")
                    .await;
                stalled.push(s);
            }
            _ => break,
        }
    }
    assert!(
        // Far more than the 28 agent connections a limit of 300 leaves room
        // for; how many more depends on the kernel's listen queue.
        stalled.len() >= 100,
        "only {} connections opened\n{}",
        stalled.len(),
        sm.logs()
    );
    let health = sm
        .api()
        .get(sm.dashboard_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "{}", sm.logs());
    let (s, _) = sm.api_get("/api/v1/requests", "nope").await;
    assert_eq!(s, 401, "the operator API answers too");
    assert!(sm.logs().contains("open-files limit"), "{}", sm.logs());
}

#[tokio::test]
async fn metadata_addresses_are_refused_in_every_spelling_and_behind_names() {
    let up = Upstream::http().await;
    let sm = SudoMode::start(Options {
        resolve: vec![
            // A resolve override must not launder a metadata target.
            ("169.254.169.254:80".into(), up.addr),
            ("metadata.google.internal:80".into(), up.addr),
            ("100.100.100.200:80".into(), up.addr),
        ],
        ..Default::default()
    });
    let client = http_client(&sm);
    // Twice: the second round is judged on the cached guard verdicts.
    for round in 0..2 {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://100.100.100.200/latest/meta-data/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[::ffff:100.100.100.200]/latest/meta-data/",
            "http://[2002:a9fe:a9fe::]/latest/meta-data/",
        ] {
            let resp = client.get(url).send().await.unwrap();
            let (status, body) = error_body(resp).await;
            assert_eq!(status, 403, "round {round}, {url}: {body}");
            assert_eq!(body["error"]["rule"], "sudomode.builtin", "{url}");
        }
    }
    assert!(up.requests().is_empty(), "no metadata request got through");
}

/// Held calls hold no upstream socket, so agents are not matched one for one
/// with upstream sockets: at 300 descriptors SudoMode holds 28 calls at once
/// (it held 22 when it kept half its descriptors for upstreams), and
/// approving them all forwards every one over its 16 upstream sockets, the
/// dials past the budget waiting for a socket to close instead of failing.
#[tokio::test]
async fn more_calls_are_held_than_upstream_sockets_and_all_are_forwarded() {
    const AGENTS: usize = 28;
    let up = Upstream::http().await;
    let sm = SudoMode::start(Options {
        policy: "rules:\n  - name: hold_all\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n",
        extra: "operators:\n  - {name: alice, token: alice-token-1, role: approver}\nagents:\n  - {name: bot, token: bot-token-1}\n",
        resolve: vec![("slow.test:80".into(), up.addr)],
        nofile: Some(300),
        ..Default::default()
    });
    let mut calls = Vec::new();
    for i in 0..AGENTS {
        // One client each: one agent connection each.
        let client = agent_client(&sm, "bot", "bot-token-1");
        calls.push(tokio::spawn(async move {
            client
                .get(format!("http://slow.test/call/{i}"))
                .header("x-stand-in-delay-ms", "300")
                .send()
                .await
        }));
    }
    let held = sm.wait_pending("alice-token-1", AGENTS).await;
    for r in &held {
        let id = r["id"].as_str().unwrap();
        let (s, v) = sm
            .api_post(
                &format!("/api/v1/requests/{id}/approve"),
                "alice-token-1",
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    for c in calls {
        let resp = c.await.unwrap().expect("the agent got an answer");
        assert_eq!(resp.status(), 200, "{}", sm.logs());
    }
    assert_eq!(up.requests().len(), AGENTS);
}
