//! Limits and malformed input (SPEC §13.7): oversized, deep, slow or broken
//! requests get a clear answer (or a closed connection), never a crash, and
//! never a request through unjudged; other agents keep being served.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `bytes` to the proxy and reads until close (or 20 s). A write
/// error (the proxy closed early) still reads what was answered.
async fn raw(sm: &SudoMode, bytes: &[u8]) -> RawResp {
    raw_within(sm, bytes, Duration::from_secs(20)).await
}

async fn raw_within(sm: &SudoMode, bytes: &[u8], wait: Duration) -> RawResp {
    let mut s = tokio::net::TcpStream::connect(sm.proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    parse_raw_response(&buf)
}

async fn setup(extra: &str) -> (Upstream, SudoMode) {
    install_crypto();
    let up = Upstream::http().await;
    let sm = SudoMode::start(Options {
        extra,
        resolve: vec![
            ("api.test:80".into(), up.addr),
            ("ep-x.us-east-2.aws.neon.tech:80".into(), up.addr),
        ],
        ..Default::default()
    });
    (up, sm)
}

fn plain_client(sm: &SudoMode) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sm.proxy_url()).unwrap())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// The proxy process is alive and serves a normal request promptly.
async fn still_serving(sm: &mut SudoMode, up: &Upstream) {
    assert!(sm.is_running(), "SudoMode died: {}", sm.logs());
    let before = up.requests().len();
    let t = Instant::now();
    let resp = plain_client(sm)
        .get("http://api.test/still-serving")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "slow: {:?}",
        t.elapsed()
    );
    assert_eq!(up.requests().len(), before + 1);
}

fn post(target: &str, host: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding"))
    {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn oversized_headers_get_431_or_close_and_others_are_unaffected() {
    let (up, mut sm) = setup("").await;
    // One huge header value.
    let big = format!(
        "GET http://api.test/h HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let r = raw(&sm, big.as_bytes()).await;
    assert!(
        r.status == 431 || r.status == 0 || r.status == 400,
        "{}",
        r.head
    );
    // Very many headers.
    let mut many =
        String::from("GET http://api.test/h HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for i in 0..5000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(&sm, many.as_bytes()).await;
    assert!(
        r.status == 431 || r.status == 0 || r.status == 400,
        "{}",
        r.head
    );
    // Inside an intercepted tunnel (h2 through reqwest): a huge header.
    let resp = sm
        .client()
        .get("https://api.test/h")
        .header("x-big", "b".repeat(1 << 20))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert!(!resp.status().is_success(), "{}", resp.status());
    }
    assert!(
        up.requests().iter().all(|r| r.uri != "/h"),
        "an oversized request was forwarded"
    );
    still_serving(&mut sm, &up).await;
}

#[tokio::test]
async fn bodies_over_the_cap_and_decompression_bombs_are_413() {
    let (up, mut sm) = setup("proxy:\n  max_body_bytes: 64KiB\n").await;
    let form = "Content-Type: application/x-www-form-urlencoded";
    // Declared length over the cap.
    let r = raw(
        &sm,
        &post(
            "http://api.test/big",
            "api.test",
            &[form],
            &vec![b'a'; 100 << 10],
        ),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.json()["error"]["type"], "too_large");
    // Chunked, no length, over the cap.
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b'b'; 8 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw(
        &sm,
        &post(
            "http://api.test/big",
            "api.test",
            &[form, "Transfer-Encoding: chunked"],
            &chunked,
        ),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.json()["error"]["type"], "too_large");
    // Small on the wire, huge decoded: gzip, stacked gzip, brotli.
    let gz = |b: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(b).unwrap();
        enc.finish().unwrap()
    };
    let bomb = gz(&vec![b'0'; 32 << 20]);
    assert!(bomb.len() < 64 << 10);
    for (enc, body) in [("gzip", bomb.clone()), ("gzip, gzip", gz(&bomb))] {
        let r = raw(
            &sm,
            &post(
                "http://api.test/bomb",
                "api.test",
                &[form, &format!("Content-Encoding: {enc}")],
                &body,
            ),
        )
        .await;
        assert_eq!(r.status, 413, "{enc}: {}", r.head);
        assert_eq!(r.json()["error"]["type"], "too_large");
    }
    assert!(
        up.requests().is_empty(),
        "{:?}",
        up.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    still_serving(&mut sm, &up).await;
}

#[tokio::test]
async fn deep_nesting_and_huge_sql_get_clear_answers() {
    let (up, mut sm) = setup("").await;
    let json = "Content-Type: application/json";
    // Deep JSON (serde's recursion limit) → 400, not a stack overflow.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = raw(
        &sm,
        &post("http://api.test/deep", "api.test", &[json], deep.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(r.json()["error"]["type"], "bad_request");
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let r = raw(
        &sm,
        &post(
            "http://api.test/deep",
            "api.test",
            &[json],
            deep_obj.as_bytes(),
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    // Deep form brackets → 400.
    let deep_form = format!("a{}=1", "[a]".repeat(10_000));
    let r = raw(
        &sm,
        &post(
            "http://api.test/deep",
            "api.test",
            &["Content-Type: application/x-www-form-urlencoded"],
            deep_form.as_bytes(),
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    // Huge SQL over Neon: judged (an answer, quickly), not a hang.
    let neon = "ep-x.us-east-2.aws.neon.tech";
    for sql in [
        format!("SELECT {}1", "1+".repeat(1_000_000)),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        "SELECT 1;".repeat(200_000),
        format!("SELECT '{}'", "x".repeat(5_000_000)),
        format!("SELECT 1 /*{}", "*".repeat(1_000_000)),
    ] {
        let body = serde_json::json!({ "query": sql }).to_string();
        let t = Instant::now();
        let r = raw(
            &sm,
            &post(
                "http://ep-x.us-east-2.aws.neon.tech/sql",
                neon,
                &[json],
                body.as_bytes(),
            ),
        )
        .await;
        assert!(r.status != 0, "no answer for {} bytes of SQL", sql.len());
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        eprintln!(
            "huge SQL ({} bytes) -> {} in {:?}",
            sql.len(),
            r.status,
            t.elapsed()
        );
    }
    assert!(up.requests().iter().all(|r| r.uri != "/deep"));
    still_serving(&mut sm, &up).await;
}

#[tokio::test]
async fn many_connections_and_a_slowloris_do_not_starve_other_agents() {
    let (up, mut sm) = setup("").await;
    // 400 idle connections held open.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(tokio::net::TcpStream::connect(sm.proxy).await.unwrap());
    }
    still_serving(&mut sm, &up).await;
    // Slowloris: headers trickled one byte per 200 ms on 20 connections.
    let head = b"GET http://api.test/slow HTTP/1.1\r\nHost: api.test\r\nX-Slow: ".to_vec();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(sm.proxy).await.unwrap();
        let head = head.clone();
        slow.push(tokio::spawn(async move {
            for b in head
                .iter()
                .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
            {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Meanwhile other agents are served promptly, over and over.
    for _ in 0..10 {
        still_serving(&mut sm, &up).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for t in slow {
        t.abort();
    }
    drop(idle);
    assert!(up.requests().iter().all(|r| r.uri != "/slow"));
    still_serving(&mut sm, &up).await;
}

#[tokio::test]
async fn malformed_input_never_crashes_the_proxy() {
    let (up, mut sm) = setup("").await;
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec(),
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect(),
        b"GET\r\n\r\n".to_vec(),
        b"GET http://api.test/x HTTP/9.9\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET http://api.test/x\x00y HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\nBad Header\r\n\r\n".to_vec(),
        b"GET http:///x HTTP/1.1\r\nHost: \r\n\r\n".to_vec(),
        b"GET http://:0/x HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://api.test:99999/x HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET ftp://api.test/x HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET /relative HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
        // Invalid chunked encodings.
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nContent-Length: 99999999999999999999\r\n\r\nabc".to_vec(),
        b"POST http://api.test/c HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
        // CONNECT to garbage.
        b"CONNECT ::::: HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT a b c HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT api.test:99999 HTTP/1.1\r\nHost: api.test:99999\r\n\r\n".to_vec(),
        b"CONNECT :443 HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT api.test HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"CONNECT [::1 HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT \xff\xfe:443 HTTP/1.1\r\n\r\n".to_vec(),
        // CONNECT accepted, then garbage instead of a TLS ClientHello.
        b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n\x16\x03\x01\xff\xffgarbagegarbage".to_vec(),
        b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for (i, input) in inputs.iter().enumerate() {
        // Some inputs leave the proxy rightly waiting for more bytes.
        let r = raw_within(&sm, input, Duration::from_secs(3)).await;
        eprintln!("input {i} -> {:?}", r.head.lines().next());
        assert!(sm.is_running(), "crashed on input {i}: {}", sm.logs());
        // A 2xx here would mean a broken request was proxied; CONNECT's 200
        // only opens a tunnel (the garbage inside it is not HTTP).
        if r.status / 100 == 2 {
            // `api.test:99999` is taken as port 80 (judged and sent as
            // such, so consistent, though a 400 would be clearer).
            // `CONNECT api.test:99999` and `CONNECT api.test` open a tunnel
            // judged as api.test:443 (the requests inside are judged).
            // `CONNECT :443` (empty host) is also accepted: nothing can be
            // sent through it (no TLS name, no upstream), but a 400 would be
            // clearer (reported).
            assert!(
                input.starts_with(b"CONNECT api.test")
                    || input.starts_with(b"CONNECT :443")
                    || input.starts_with(b"GET http://api.test:99999/"),
                "input {i}: {}",
                r.head
            );
        }
    }
    assert!(
        up.requests()
            .iter()
            .all(|r| r.uri != "/c" || r.body.is_empty()),
        "a broken body was forwarded"
    );
    still_serving(&mut sm, &up).await;
}

/// A bounded mutation fuzz of the front door through the real binary: the
/// process survives, and nothing the policy denies (paths under `/deny`,
/// however spelled) ever reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_door_mutation_fuzz() {
    install_crypto();
    let up = Upstream::http().await;
    let policy = "rules:\n  - name: no_deny\n    resource: \"*\"\n    path: [\"/deny\", \"/deny/*\"]\n    decision: DENY\n  - name: ok\n    resource: http.api.test\n    decision: ALLOW\n";
    let mut sm = SudoMode::start(Options {
        policy,
        resolve: vec![("api.test:80".into(), up.addr)],
        ..Default::default()
    });
    let seeds: Vec<&[u8]> = vec![
        b"GET http://api.test/deny/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
        b"POST http://api.test/deny HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\na=1&b",
        b"POST http://api.test/ok HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET http://api.test/x/../deny HTTP/1.1\r\nHost: api.test\r\n\r\nGET http://api.test/deny HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
    ];
    let dict: &[&[u8]] = &[
        b"/",
        b"%2F",
        b"%2e",
        b"..",
        b"\\",
        b"\r\n",
        b":",
        b" ",
        b"\x00",
        b"%64",
        b"//",
        b"Host: 127.0.0.1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 0\r\n",
        b"0\r\n\r\n",
    ];
    let mut rng: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let iterations: usize = std::env::var("SUDOMODE_FRONT_DOOR_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut inputs = Vec::new();
    for _ in 0..iterations {
        let mut v = seeds[(next() as usize) % seeds.len()].to_vec();
        for _ in 0..=(next() % 3) {
            let i = (next() as usize) % (v.len() + 1);
            match next() % 3 {
                0 if !v.is_empty() => {
                    let j = i.min(v.len() - 1);
                    v[j] ^= 1 << (next() % 8);
                }
                1 => {
                    let t = dict[(next() as usize) % dict.len()];
                    v.splice(i..i, t.iter().copied());
                }
                _ if i < v.len() => {
                    v.remove(i);
                }
                _ => {}
            }
        }
        inputs.push(v);
    }
    for chunk in inputs.chunks(16) {
        let mut tasks = Vec::new();
        for input in chunk {
            let input = input.clone();
            let addr = sm.proxy;
            tasks.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let _ = s.write_all(&input).await;
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(Duration::from_millis(1500), s.read_to_end(&mut buf))
                    .await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        assert!(sm.is_running(), "SudoMode died: {}", sm.logs());
    }
    for r in up.requests() {
        let path = r.uri.split('?').next().unwrap_or("");
        let norm = sudomode_intent::normalize_path(path);
        assert!(
            norm != "/deny" && !norm.starts_with("/deny/"),
            "denied path reached the upstream: {:?}",
            r.uri
        );
    }
    eprintln!(
        "{iterations} mutated inputs; upstream received {}",
        up.requests().len()
    );
    still_serving(&mut sm, &up).await;
}
