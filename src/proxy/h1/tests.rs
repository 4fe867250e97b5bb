//! The connection loop over an in-memory stream: keep-alive, pipelining,
//! `Expect`, refusals, the agent leaving, and HTTP/2's preface.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::proxy::respond;

fn limits() -> Limits {
    Limits {
        head_timeout: Duration::from_secs(5),
        max_head: 64 * 1024,
        body_limit: 1024,
        body_timeout: Duration::from_secs(5),
    }
}

/// Answers `METHOD path body-or-refusal` for every request.
async fn echo(req: Request<Received>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let body = match body {
        Received::Complete(b) => String::from_utf8_lossy(&b).into_owned(),
        other => format!("{other:?}"),
    };
    Response::new(respond::full(format!(
        "{} {} {body}",
        parts.method, parts.uri
    )))
}

fn spawn_server(server: DuplexStream) -> tokio::task::JoinHandle<Ended> {
    tokio::spawn(async move {
        let mut server = server;
        serve(&mut server, limits(), echo).await.unwrap()
    })
}

async fn exchange(input: &[u8]) -> String {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = spawn_server(server);
    client.write_all(input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    task.await.unwrap();
    out
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let out = exchange(
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n",
    )
    .await;
    let bodies: Vec<&str> = out
        .split("HTTP/1.1 200 OK")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap())
        .collect();
    assert_eq!(bodies, ["POST /a abc", "GET /b ", "POST /c xy"], "{out}");
}

#[tokio::test]
async fn a_malformed_head_gets_a_bare_error_and_the_close() {
    let out = exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\nGET /never HTTP/1.1\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(!out.contains("/never"), "{out}");
    let out =
        exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{out}");
}

/// After a body over the limit (refused by the handler), or one sent with
/// both framings (judged as chunked), the connection closes: what follows is
/// never read as a request.
#[tokio::test]
async fn the_connection_closes_after_a_body_too_large_or_framed_twice() {
    let cases: [(&[u8], &str, &str); 2] = [
        (
            b"POST /big HTTP/1.1\r\nContent-Length: 5000\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
            "POST /big TooLarge",
            "/next",
        ),
        (
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 8\r\n\r\n8\r\namount=1\r\n0\r\n\r\nPOST /smuggled HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST /c amount=1",
            "smuggled",
        ),
    ];
    for (input, answered, never) in cases {
        let out = exchange(input).await;
        assert!(out.contains(answered), "{out}");
        assert!(out.contains("connection: close"), "{out}");
        assert!(!out.contains(never), "{out}");
    }
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body_is_read() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = spawn_server(server);
    client
        .write_all(b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let mut got = [0u8; 25];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"ok").await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert!(out.ends_with("PUT /u ok"), "{out}");
    task.await.unwrap();
}

#[tokio::test]
async fn the_agent_leaving_drops_the_waiting_handler() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    let flag = dropped.clone();
    let task = tokio::spawn(async move {
        serve(&mut server, limits(), move |_req| {
            let guard = Dropped(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Response<ProxyBody>>().await
            }
        })
        .await
        .unwrap()
    });
    client
        .write_all(b"GET /held HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    drop(client);
    assert!(matches!(task.await.unwrap(), Ended::Closed));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_http2_preface_is_handed_back_whole() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = spawn_server(server);
    client.write_all(&PREFACE[..10]).await.unwrap();
    tokio::task::yield_now().await;
    client.write_all(&PREFACE[10..]).await.unwrap();
    client.write_all(b"\x00\x00\x00\x04").await.unwrap();
    let Ended::Http2(read) = task.await.unwrap() else {
        panic!("not handed over")
    };
    assert!(read.starts_with(PREFACE));
}

#[tokio::test]
async fn an_idle_connection_closes_after_the_head_timeout() {
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    let short = Limits {
        head_timeout: Duration::from_millis(50),
        ..limits()
    };
    let task = tokio::spawn(async move { serve(&mut server, short, echo).await.unwrap() });
    assert!(matches!(task.await.unwrap(), Ended::Closed));
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty());
}

/// Mutated requests never panic or hang the connection loop: each one ends
/// (answered, refused or closed) once the client has sent it and closed.
#[tokio::test]
async fn mutated_requests_end_without_a_panic() {
    let seeds: [&[u8]; 4] = [
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n",
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nxy\r\n0\r\nT: 1\r\n\r\n",
        b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ];
    let dict: [&[u8]; 10] = [
        b"\r\n",
        b"\n",
        b":",
        b" ",
        b"\x00",
        b"0\r\n\r\n",
        b"Content-Length: 9\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"ffffffffffffffff",
        b"PRI * HTTP/2.0",
    ];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    for _ in 0..1500 {
        let mut input = seeds[next() % seeds.len()].to_vec();
        for _ in 0..1 + next() % 3 {
            let at = next() % (input.len() + 1);
            match next() % 3 {
                0 => {
                    let piece = dict[next() % dict.len()];
                    input.splice(at..at, piece.iter().copied());
                }
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ if at < input.len() => input[at] = next() as u8,
                _ => {}
            }
        }
        let done = tokio::time::timeout(Duration::from_secs(5), exchange(&input)).await;
        assert!(
            done.is_ok(),
            "hung on {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}
