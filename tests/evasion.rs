//! Evasion corpus (SPEC §4.8, §13.7): requests the upstream would execute as
//! something dangerous, dressed up to look milder. Every case goes through
//! the real binary and must either be refused without reaching the stand-in
//! upstream, or be judged as what the upstream would execute.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STRIPE: &str = "api.stripe.com";
const NEON: &str = "ep-cool-1.us-east-2.aws.neon.tech";
const DDB: &str = "dynamodb.us-east-1.amazonaws.com";

const POLICY: &str = r#"rules:
  - name: deny_customer_delete
    resource: stripe.customers
    action: delete
    decision: DENY
    reason: customers are never deleted by agents
  - name: stripe_reads
    resource: "stripe.*"
    action: [retrieve, list]
    decision: ALLOW
    reason: reads are fine
  - name: small_charges
    resource: stripe.charges
    action: create
    condition: args.amount < 100
    decision: ALLOW
    reason: small test charges
  - name: aws_deny_delete
    resource: "aws.*"
    action: "Delete*"
    decision: DENY
    reason: no deletes
  - name: aws_reads
    resource: "aws.*"
    action: ["List*", "Get*", "Describe*"]
    decision: ALLOW
    reason: reads are fine
  - name: sql_deny_destructive
    resource: sql
    action: [drop, delete, truncate]
    decision: DENY
    reason: no destruction
  - name: sql_select
    resource: sql
    action: select
    decision: ALLOW
    reason: reads are fine
  - name: deny_rest
    resource: "*"
    decision: DENY
    reason: everything else
"#;

struct Env {
    _ca: TestCa,
    up: Upstream,
    sm: SudoMode,
}

async fn env(extra: &str) -> Env {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[STRIPE, NEON, DDB]).await;
    let sm = SudoMode::start(Options {
        policy: POLICY,
        extra,
        resolve: vec![
            (format!("{STRIPE}:443"), up.addr),
            (format!("{NEON}:443"), up.addr),
            (format!("{DDB}:443"), up.addr),
        ],
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    Env { _ca: ca, up, sm }
}

/// What a case must come to.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Refused (400/403/413) and never forwarded; if 403, by one of these
    /// rules (empty: any rule).
    Refused(&'static [&'static str]),
    /// Forwarded (a positive control that the harness works).
    Forwarded,
}

const CUSTOMER_DELETE: Want = Want::Refused(&["deny_customer_delete"]);
const DENIED_ANY: Want = Want::Refused(&[]);

struct Case {
    label: String,
    connect: String,
    sni: String,
    bytes: Vec<u8>,
    want: Want,
}

fn case(label: impl Into<String>, host: &str, bytes: Vec<u8>, want: Want) -> Case {
    Case {
        label: label.into(),
        connect: format!("{host}:443"),
        sni: host.to_string(),
        bytes,
        want,
    }
}

/// Runs the cases one by one and collects every failure, so one run shows all.
async fn run(e: &Env, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let before = e.up.requests().len();
        let r = raw_tls(&e.sm, &c.connect, &c.sni, &c.bytes).await;
        let after = e.up.requests();
        let forwarded = after.len() > before;
        let body = r.sudomode_error();
        let rule = body["error"]["rule"].as_str().unwrap_or("").to_string();
        match c.want {
            Want::Forwarded => {
                if forwarded
                    && let Some(h) = after[before..].iter().find_map(|g| g.header("host"))
                    && !h.starts_with(c.sni.to_ascii_lowercase().trim_end_matches('.'))
                {
                    failures.push(format!("{}: upstream saw a foreign Host {h:?}", c.label));
                }
                if !forwarded || r.status != 200 {
                    failures.push(format!(
                        "{}: expected forwarded, got {} {}",
                        c.label, r.status, body
                    ));
                }
            }
            Want::Refused(rules) => {
                if forwarded {
                    let got = &after[before..];
                    failures.push(format!(
                        "{}: FORWARDED to upstream ({} {} body {:?}); proxy said {} {}",
                        c.label,
                        got[0].method,
                        got[0].uri,
                        String::from_utf8_lossy(&got[0].body),
                        r.status,
                        body
                    ));
                } else if ![400, 403, 413].contains(&r.status) {
                    failures.push(format!(
                        "{}: expected refusal, got status {} {}",
                        c.label, r.status, r.head
                    ));
                } else if r.status == 403 && !rules.is_empty() && !rules.contains(&rule.as_str()) {
                    failures.push(format!(
                        "{}: refused by {rule:?}, expected one of {rules:?}: {body}",
                        c.label
                    ));
                }
            }
        }
        eprintln!(
            "{:<60} -> {} {}",
            c.label,
            r.status,
            if rule.is_empty() {
                body["error"]["type"].to_string()
            } else {
                rule
            }
        );
    }
    assert!(
        failures.is_empty(),
        "{} evasion failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn del(host: &str, target: &str) -> Vec<u8> {
    req("DELETE", host, target, &[], b"")
}

#[tokio::test]
async fn stripe_path_and_host_tricks() {
    let e = env("").await;
    let s = STRIPE;
    let mut cases = vec![
        case(
            "control: GET retrieve is forwarded",
            s,
            req("GET", s, "/v1/customers/cus_1", &[], b""),
            Want::Forwarded,
        ),
        case(
            "control: plain DELETE",
            s,
            del(s, "/v1/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "double slashes",
            s,
            del(s, "//v1//customers//cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "dot segment",
            s,
            del(s, "/v1/./customers/./cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "dot-dot from charges",
            s,
            del(s, "/v1/charges/../customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded dot-dot",
            s,
            del(s, "/v1/charges/%2e%2e/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded dot-dot upper",
            s,
            del(s, "/v1/charges/%2E%2E/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "mixed dot-dot",
            s,
            del(s, "/v1/charges/.%2e/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded slash",
            s,
            del(s, "/v1%2Fcustomers%2Fcus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded slash lower",
            s,
            del(s, "/v1/customers%2fcus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded slash dot-dot",
            s,
            del(s, "/v1/charges%2F..%2Fcustomers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "double-encoded slash",
            s,
            del(s, "/v1/charges%252F..%252Fcustomers/cus_1"),
            DENIED_ANY,
        ),
        case(
            "double-encoded dot-dot",
            s,
            del(s, "/v1/charges/%252e%252e/customers/cus_1"),
            DENIED_ANY,
        ),
        case(
            "backslashes",
            s,
            del(s, "/v1\\customers\\cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded backslash",
            s,
            del(s, "/v1%5ccustomers%5ccus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "encoded letters",
            s,
            del(s, "/v1/%63ustomers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "trailing slash",
            s,
            del(s, "/v1/customers/cus_1/"),
            CUSTOMER_DELETE,
        ),
        case(
            "semicolon param",
            s,
            del(s, "/v1/customers;x=1/cus_1"),
            DENIED_ANY,
        ),
        case(
            "query junk",
            s,
            del(s, "/v1/customers/cus_1?expand[]=x&_=.."),
            CUSTOMER_DELETE,
        ),
        case(
            "fragment-ish",
            s,
            del(s, "/v1/customers/cus_1#/v1/charges"),
            CUSTOMER_DELETE,
        ),
        case(
            "absolute-form in tunnel",
            s,
            del(s, "https://api.stripe.com/v1/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "absolute-form other host in tunnel",
            s,
            del(s, "https://evil.example/v1/customers/cus_1"),
            DENIED_ANY,
        ),
        case(
            "lower-case method",
            s,
            req("delete", s, "/v1/customers/cus_1", &[], b""),
            CUSTOMER_DELETE,
        ),
        case(
            "mixed-case method",
            s,
            req("DeLeTe", s, "/v1/customers/cus_1", &[], b""),
            CUSTOMER_DELETE,
        ),
        case(
            "Host upper case",
            s,
            del("API.STRIPE.COM", "/v1/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "Host trailing dot",
            s,
            del("api.stripe.com.", "/v1/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "Host explicit :443",
            s,
            del("api.stripe.com:443", "/v1/customers/cus_1"),
            CUSTOMER_DELETE,
        ),
        case(
            "Host other name",
            s,
            del("api.example.test", "/v1/customers/cus_1"),
            DENIED_ANY,
        ),
        case(
            "Host other port",
            s,
            del("api.stripe.com:8443", "/v1/customers/cus_1"),
            DENIED_ANY,
        ),
        case(
            "two Host headers",
            s,
            req(
                "DELETE",
                s,
                "/v1/customers/cus_1",
                &["Host: api.example.test"],
                b"",
            ),
            DENIED_ANY,
        ),
        // The forwarder drops the agent's Host and derives it from the
        // judged target, so the foreign Host never reaches the upstream.
        case(
            "absolute-form target + different Host header (read)",
            s,
            req(
                "GET",
                "evil.example",
                "https://api.stripe.com/v1/customers/cus_1",
                &[],
                b"",
            ),
            Want::Forwarded,
        ),
        case(
            "absolute-form target + different Host header (delete)",
            s,
            req(
                "DELETE",
                "evil.example",
                "https://api.stripe.com/v1/customers/cus_1",
                &[],
                b"",
            ),
            CUSTOMER_DELETE,
        ),
    ];
    for (label, connect, sni) in [
        ("CONNECT upper case", "API.STRIPE.COM:443", "API.STRIPE.COM"),
        (
            "CONNECT trailing dot",
            "api.stripe.com.:443",
            "api.stripe.com",
        ),
    ] {
        cases.push(Case {
            label: label.into(),
            connect: connect.into(),
            sni: sni.into(),
            bytes: del("api.stripe.com", "/v1/customers/cus_1"),
            want: CUSTOMER_DELETE,
        });
    }
    run(&e, cases).await;
}

#[tokio::test]
async fn method_overrides() {
    let e = env("").await;
    let s = STRIPE;
    let p = "/v1/customers/cus_1";
    // A POST overridden to DELETE is read both ways: the update is refused by
    // `deny_rest` here as surely as the delete by `deny_customer_delete`, so
    // either may be named (tests/redteam_agent.rs checks the delete reading
    // decides where updates are allowed).
    const POST_READ_AS_DELETE: Want = Want::Refused(&["deny_customer_delete", "deny_rest"]);
    let form = "Content-Type: application/x-www-form-urlencoded";
    let cases = vec![
        case(
            "X-HTTP-Method-Override on POST",
            s,
            req("POST", s, p, &["X-HTTP-Method-Override: DELETE"], b""),
            POST_READ_AS_DELETE,
        ),
        case(
            "X-HTTP-Method on POST",
            s,
            req("POST", s, p, &["X-HTTP-Method: DELETE"], b""),
            POST_READ_AS_DELETE,
        ),
        case(
            "X-Method-Override on POST",
            s,
            req("POST", s, p, &["X-Method-Override: DELETE"], b""),
            POST_READ_AS_DELETE,
        ),
        case(
            "override lower-case value",
            s,
            req("POST", s, p, &["x-http-method-override: delete"], b""),
            POST_READ_AS_DELETE,
        ),
        case(
            "override on GET",
            s,
            req("GET", s, p, &["X-HTTP-Method-Override: DELETE"], b""),
            CUSTOMER_DELETE,
        ),
        case(
            "_method in query",
            s,
            req("POST", s, &format!("{p}?_method=DELETE"), &[], b""),
            POST_READ_AS_DELETE,
        ),
        case(
            "_method in query on GET",
            s,
            req("GET", s, &format!("{p}?_method=delete"), &[], b""),
            CUSTOMER_DELETE,
        ),
        case(
            "_method in form body",
            s,
            req("POST", s, p, &[form], b"_method=DELETE"),
            POST_READ_AS_DELETE,
        ),
        case(
            "_method in untyped body",
            s,
            req("POST", s, p, &[], b"_method=DELETE"),
            POST_READ_AS_DELETE,
        ),
        case(
            "_method in JSON body",
            s,
            req(
                "POST",
                s,
                p,
                &["Content-Type: application/json"],
                br#"{"_method":"DELETE"}"#,
            ),
            DENIED_ANY,
        ),
        case(
            "override to GET on DELETE",
            s,
            req("DELETE", s, p, &["X-HTTP-Method-Override: GET"], b""),
            DENIED_ANY,
        ),
        case(
            "_method=GET on DELETE",
            s,
            req("DELETE", s, &format!("{p}?_method=GET"), &[], b""),
            DENIED_ANY,
        ),
        case(
            "conflicting override headers",
            s,
            req(
                "POST",
                s,
                p,
                &["X-HTTP-Method-Override: GET", "X-HTTP-Method: DELETE"],
                b"",
            ),
            DENIED_ANY,
        ),
        case(
            "repeated override header",
            s,
            req(
                "POST",
                s,
                p,
                &[
                    "X-HTTP-Method-Override: GET",
                    "X-HTTP-Method-Override: DELETE",
                ],
                b"",
            ),
            DENIED_ANY,
        ),
        case(
            "comma list override",
            s,
            req("POST", s, p, &["X-HTTP-Method-Override: GET, DELETE"], b""),
            DENIED_ANY,
        ),
        case(
            "unknown override",
            s,
            req("GET", s, p, &["X-HTTP-Method-Override: PURGE"], b""),
            DENIED_ANY,
        ),
        case(
            "override hidden behind Connection",
            s,
            req(
                "GET",
                s,
                p,
                &[
                    "Connection: X-HTTP-Method-Override",
                    "X-HTTP-Method-Override: DELETE",
                ],
                b"",
            ),
            DENIED_ANY,
        ),
        case(
            "_method twice in query",
            s,
            req(
                "GET",
                s,
                &format!("{p}?_method=GET&_method=DELETE"),
                &[],
                b"",
            ),
            DENIED_ANY,
        ),
        case(
            "encoded _method key",
            s,
            req("GET", s, &format!("{p}?%5Fmethod=DELETE"), &[], b""),
            CUSTOMER_DELETE,
        ),
    ];
    // The one with `Connection: X-HTTP-Method-Override` is refused or the
    // header is dropped both for judging and forwarding; a GET that arrives
    // upstream without the override is a read, which is what was judged.
    let (hidden, rest): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|c| c.label.contains("Connection"));
    run(&e, rest).await;
    for c in hidden {
        let before = e.up.requests().len();
        let r = raw_tls(&e.sm, &c.connect, &c.sni, &c.bytes).await;
        let got = e.up.requests();
        if got.len() > before {
            let g = &got[before];
            assert_eq!(g.method, "GET");
            assert!(
                g.header("x-http-method-override").is_none(),
                "override forwarded but not judged: {:?}",
                g.headers
            );
        } else {
            assert!([400, 403].contains(&r.status), "{}", r.head);
        }
    }
}

#[tokio::test]
async fn parameters_content_types_and_encodings() {
    let e = env("proxy:\n  max_body_bytes: 64KiB\n").await;
    let s = STRIPE;
    let p = "/v1/charges";
    let form = "Content-Type: application/x-www-form-urlencoded";
    let json = "Content-Type: application/json";
    let gz = |b: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b).unwrap();
        enc.finish().unwrap()
    };
    let zlib = |b: &[u8]| {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b).unwrap();
        enc.finish().unwrap()
    };
    let raw_deflate = |b: &[u8]| {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b).unwrap();
        enc.finish().unwrap()
    };
    // `amount=99999`, brotli-compressed (python3 -c 'import brotli; …').
    let br: &[u8] = &[
        27, 11, 0, 248, 165, 114, 122, 138, 16, 73, 10, 1, 94, 236, 1,
    ];
    let bomb = gz(&vec![b'a'; 8 << 20]);
    let big = b"amount=99999";
    let cases = vec![
        case("control: small charge forwarded", s, req("POST", s, p, &[form], b"amount=1&currency=usd"), Want::Forwarded),
        case("control: big charge denied", s, req("POST", s, p, &[form], big), Want::Refused(&["deny_rest"])),
        case("duplicate amount", s, req("POST", s, p, &[form], b"amount=1&amount=99999"), DENIED_ANY),
        case("duplicate amount reversed", s, req("POST", s, p, &[form], b"amount=99999&amount=1"), DENIED_ANY),
        case("semicolon separator", s, req("POST", s, p, &[form], b"amount=1;amount=99999"), DENIED_ANY),
        case("BOM JSON, no Content-Type", s, req("POST", s, p, &[], b"\xEF\xBB\xBF{\"amount\":99999}"), DENIED_ANY),
        case("BOM JSON declared", s, req("POST", s, p, &[json], b"\xEF\xBB\xBF{\"amount\":99999}"), DENIED_ANY),
        case("BOM JSON small declared", s, req("POST", s, p, &[json], b"\xEF\xBB\xBF{\"amount\":1}"), Want::Forwarded),
        case("amount and amount[]", s, req("POST", s, p, &[form], b"amount=1&amount[]=99999"), DENIED_ANY),
        case("amount and amount[x]", s, req("POST", s, p, &[form], b"amount=1&amount[x]=99999"), DENIED_ANY),
        case("query vs body", s, req("POST", s, &format!("{p}?amount=99999"), &[form], b"amount=1"), DENIED_ANY),
        case("query only", s, req("POST", s, &format!("{p}?amount=99999"), &[form], b""), DENIED_ANY),
        case("encoded key", s, req("POST", s, p, &[form], b"amount=1&%61mount=99999"), DENIED_ANY),
        case("plus/space in number", s, req("POST", s, p, &[form], b"amount=+99999"), DENIED_ANY),
        case("leading zeros", s, req("POST", s, p, &[form], b"amount=0099999"), DENIED_ANY),
        case("JSON declared as form", s, req("POST", s, p, &[form], br#"{"amount":99999}"#), DENIED_ANY),
        case("form declared as JSON", s, req("POST", s, p, &[json], big), DENIED_ANY),
        case("no Content-Type, form", s, req("POST", s, p, &[], big), DENIED_ANY),
        case("no Content-Type, JSON", s, req("POST", s, p, &[], br#"{"amount":99999}"#), DENIED_ANY),
        case("JSON duplicate key, big last", s, req("POST", s, p, &[json], br#"{"amount":1,"amount":99999}"#), DENIED_ANY),
        case("JSON duplicate key, big first", s, req("POST", s, p, &[json], br#"{"amount":99999,"amount":1}"#), DENIED_ANY),
        case("JSON number as string", s, req("POST", s, p, &[json], br#"{"amount":"99999"}"#), DENIED_ANY),
        case("JSON float exponent", s, req("POST", s, p, &[json], br#"{"amount":9.9999e4}"#), DENIED_ANY),
        case("form charset utf-16", s, req("POST", s, p, &["Content-Type: application/x-www-form-urlencoded; charset=utf-16"], big), DENIED_ANY),
        case(
            "form body in UTF-16LE",
            s,
            req("POST", s, p, &["Content-Type: application/x-www-form-urlencoded; charset=utf-16le"], &"amount=99999".encode_utf16().flat_map(|u| u.to_le_bytes()).collect::<Vec<_>>()),
            DENIED_ANY,
        ),
        case("upper-case content type", s, req("POST", s, p, &["Content-Type: APPLICATION/X-WWW-FORM-URLENCODED"], big), DENIED_ANY),
        case("two content types", s, req("POST", s, p, &[form, json], big), DENIED_ANY),
        case("multipart", s, req("POST", s, p, &["Content-Type: multipart/form-data; boundary=x"], b"--x\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n99999\r\n--x--\r\n"), DENIED_ANY),
        case("gzip", s, req("POST", s, p, &[form, "Content-Encoding: gzip"], &gz(big)), DENIED_ANY),
        case("x-gzip", s, req("POST", s, p, &[form, "Content-Encoding: x-gzip"], &gz(big)), DENIED_ANY),
        case("deflate (zlib)", s, req("POST", s, p, &[form, "Content-Encoding: deflate"], &zlib(big)), DENIED_ANY),
        case("deflate (raw)", s, req("POST", s, p, &[form, "Content-Encoding: deflate"], &raw_deflate(big)), DENIED_ANY),
        case("br", s, req("POST", s, p, &[form, "Content-Encoding: br"], br), DENIED_ANY),
        case("stacked gzip,gzip", s, req("POST", s, p, &[form, "Content-Encoding: gzip, gzip"], &gz(&gz(big))), DENIED_ANY),
        case("stacked two headers", s, req("POST", s, p, &[form, "Content-Encoding: gzip", "Content-Encoding: deflate"], &zlib(&gz(big))), DENIED_ANY),
        case("upper-case GZIP", s, req("POST", s, p, &[form, "Content-Encoding: GZIP"], &gz(big)), DENIED_ANY),
        case("gzip-compressed small charge declared identity", s, req("POST", s, p, &[form, "Content-Encoding: identity"], &gz(big)), DENIED_ANY),
        case("unknown encoding", s, req("POST", s, p, &[form, "Content-Encoding: zstd"], &gz(big)), Want::Refused(&[])),
        case("corrupt gzip", s, req("POST", s, p, &[form, "Content-Encoding: gzip"], b"\x1f\x8b\x08\x00garbage"), Want::Refused(&[])),
        case("gzip bomb", s, req("POST", s, p, &[form, "Content-Encoding: gzip"], &bomb), Want::Refused(&[])),
        case(
            "chunked body",
            s,
            req("POST", s, p, &[form, "Transfer-Encoding: chunked"], b"7\r\namount=\r\n5\r\n99999\r\n0\r\n\r\n"),
            DENIED_ANY,
        ),
        case(
            "chunked + Content-Length (smuggling)",
            s,
            req("POST", s, p, &[form, "Transfer-Encoding: chunked", "Content-Length: 8"], b"8\r\namount=1\r\n0\r\n\r\nPOST /v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 12\r\n\r\namount=99999"),
            Want::Forwarded, // chunked wins (RFC 9112 §6.3): `amount=1` is judged and is exactly what is sent; the tail is a second request judged on its own
        ),
        case(
            "two Content-Length headers",
            s,
            req("POST", s, p, &[form, "Content-Length: 8", "Content-Length: 12"], b"amount=99999"),
            DENIED_ANY,
        ),
        case(
            "chunked with trailer",
            s,
            req("POST", s, p, &[form, "Transfer-Encoding: chunked"], b"c\r\namount=99999\r\n0\r\nX-HTTP-Method-Override: DELETE\r\n\r\n"),
            DENIED_ANY,
        ),
    ];
    // "gzip bomb" must be 413 specifically.
    run(&e, cases).await;
    let r = raw_tls(
        &e.sm,
        "api.stripe.com:443",
        STRIPE,
        &req("POST", s, p, &[form, "Content-Encoding: gzip"], &bomb),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.json()["error"]["type"], "too_large");
    // The smuggled second request never reaches the upstream as its own request.
    assert!(
        e.up.requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("99999")),
        "{:?}",
        e.up.requests()
    );
}

fn neon(sql_json: &str) -> Vec<u8> {
    req(
        "POST",
        NEON,
        "/sql",
        &[
            "Content-Type: application/json",
            "Neon-Connection-String: postgresql://u:p@ep-cool-1.us-east-2.aws.neon.tech/db",
        ],
        sql_json.as_bytes(),
    )
}

#[tokio::test]
async fn sql_over_http() {
    let e = env("").await;
    let n = NEON;
    let q = |sql: &str| neon(&serde_json::json!({"query": sql, "params": []}).to_string());
    let deny = Want::Refused(&["sql_deny_destructive", "deny_rest"]);
    let cases = vec![
        case(
            "control: select forwarded",
            n,
            q("SELECT * FROM users WHERE id = 1"),
            Want::Forwarded,
        ),
        case(
            "batch select; drop",
            n,
            q("SELECT 1; DROP TABLE users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "comment before drop",
            n,
            q("/* */DROP TABLE users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "nested comment",
            n,
            q("/* /* */ SELECT 1 */ DROP TABLE users"),
            deny,
        ),
        case(
            "line comment then drop",
            n,
            q("SeLeCt 1;--\nDROP TABLE users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "line comment hides nothing",
            n,
            q("SELECT 1 -- ; \nDROP TABLE users"),
            deny,
        ),
        case(
            "CTE with DELETE",
            n,
            q("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "nested CTE with DELETE",
            n,
            q(
                "WITH a AS (WITH d AS (DELETE FROM users RETURNING id) SELECT id FROM d) SELECT * FROM a",
            ),
            deny,
        ),
        case(
            "subquery CTE UPDATE",
            n,
            q("SELECT * FROM (WITH u AS (UPDATE users SET a = 1 RETURNING *) SELECT * FROM u) x"),
            deny,
        ),
        case(
            "string literal with ;",
            n,
            q("SELECT ';'; DROP TABLE users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "escaped quote",
            n,
            q("SELECT 'it''s; ok'; DROP TABLE users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "E-string backslash quote",
            n,
            q("SELECT E'\\''; DROP TABLE users; --'"),
            deny,
        ),
        case(
            "dollar quoting",
            n,
            q("SELECT $$;$$; DROP TABLE users"),
            deny,
        ),
        case(
            "tagged dollar quoting",
            n,
            q("SELECT $a$ ; $a$; DELETE FROM users"),
            deny,
        ),
        case(
            "quoted identifier",
            n,
            q("SELECT 1 AS \";\"; TRUNCATE users"),
            deny,
        ),
        case(
            "EXPLAIN ANALYZE DELETE",
            n,
            q("EXPLAIN ANALYZE DELETE FROM users"),
            deny,
        ),
        case(
            "DO block",
            n,
            q("DO $$ BEGIN DROP TABLE users; END $$"),
            DENIED_ANY,
        ),
        case(
            "PREPARE delete",
            n,
            q("PREPARE p AS DELETE FROM users; EXECUTE p"),
            DENIED_ANY,
        ),
        case(
            "COPY TO PROGRAM",
            n,
            q("COPY users TO PROGRAM 'rm -rf /'"),
            DENIED_ANY,
        ),
        case(
            "SELECT INTO",
            n,
            q("SELECT * INTO stolen FROM users"),
            DENIED_ANY,
        ),
        case(
            "case games",
            n,
            q("sElEcT 1;\tdRoP\ttAbLe users"),
            Want::Refused(&["sql_deny_destructive"]),
        ),
        case(
            "unicode whitespace",
            n,
            q("SELECT 1;\u{a0}DROP TABLE users"),
            DENIED_ANY,
        ),
        case(
            "backtick fallback",
            n,
            q("SELECT `;DROP TABLE users;`"),
            DENIED_ANY,
        ),
        case(
            "hash comment",
            n,
            q("SELECT 1 # 2; DROP TABLE users"),
            DENIED_ANY,
        ),
        case(
            "unparsable",
            n,
            q("DROP TABLE users CASCADE CONSTRAINTS PLEASE"),
            DENIED_ANY,
        ),
        case("empty", n, q(""), DENIED_ANY),
        case(
            "queries batch",
            n,
            neon(r#"{"queries":[{"query":"SELECT 1"},{"query":"DROP TABLE users"}]}"#),
            deny,
        ),
        case(
            "query + queries",
            n,
            neon(r#"{"query":"SELECT 1","queries":[{"query":"DROP TABLE users"}]}"#),
            DENIED_ANY,
        ),
        case(
            "duplicate query key (drop first)",
            n,
            neon(r#"{"query":"DROP TABLE users","query":"SELECT 1"}"#),
            DENIED_ANY,
        ),
        case(
            "duplicate query key (drop last)",
            n,
            neon(r#"{"query":"SELECT 1","query":"DROP TABLE users"}"#),
            DENIED_ANY,
        ),
        case(
            "query as array",
            n,
            neon(r#"{"query":["DROP TABLE users"]}"#),
            DENIED_ANY,
        ),
        case(
            "unicode escape in JSON",
            n,
            neon(r#"{"query":"SELECT 1\u003b DROP TABLE users"}"#),
            deny,
        ),
        case(
            "escaped key",
            n,
            neon(r#"{"quer\u0079":"DROP TABLE users"}"#),
            deny,
        ),
        case(
            "declared as form",
            n,
            req(
                "POST",
                n,
                "/sql",
                &["Content-Type: application/x-www-form-urlencoded"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            deny,
        ),
        case(
            "no content type",
            n,
            req("POST", n, "/sql", &[], br#"{"query":"DROP TABLE users"}"#),
            deny,
        ),
        case(
            "path //sql",
            n,
            req(
                "POST",
                n,
                "//sql",
                &["Content-Type: application/json"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            deny,
        ),
        case(
            "path /sql/",
            n,
            req(
                "POST",
                n,
                "/sql/",
                &["Content-Type: application/json"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            DENIED_ANY,
        ),
        case(
            "path /x/../sql",
            n,
            req(
                "POST",
                n,
                "/x/../sql",
                &["Content-Type: application/json"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            deny,
        ),
        case(
            "path /SQL",
            n,
            req(
                "POST",
                n,
                "/SQL",
                &["Content-Type: application/json"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            DENIED_ANY,
        ),
        case(
            "Host upper case",
            n,
            req(
                "POST",
                &n.to_ascii_uppercase(),
                "/sql",
                &["Content-Type: application/json"],
                br#"{"query":"DROP TABLE users"}"#,
            ),
            deny,
        ),
        case(
            "huge SQL",
            n,
            q(&format!(
                "SELECT {}1; DROP TABLE users",
                "1+".repeat(20_000)
            )),
            DENIED_ANY,
        ),
        case(
            "many statements",
            n,
            q(&"SELECT 1;".repeat(5000)),
            DENIED_ANY,
        ),
        case(
            "deep parens",
            n,
            q(&format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000))),
            DENIED_ANY,
        ),
    ];
    run(&e, cases).await;
}

fn sigv4(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
}

#[tokio::test]
async fn aws_target_and_action_conflicts() {
    let e = env("").await;
    let d = DDB;
    let auth = sigv4("dynamodb");
    let ct = "Content-Type: application/x-amz-json-1.0";
    let date = "X-Amz-Date: 20240101T000000Z";
    let t = |op: &str| format!("X-Amz-Target: DynamoDB_20120810.{op}");
    let body = br#"{"TableName":"users"}"#;
    let del_table = Want::Refused(&["aws_deny_delete"]);
    let cases = vec![
        case(
            "control: ListTables forwarded",
            d,
            req("POST", d, "/", &[&auth, ct, date, &t("ListTables")], b"{}"),
            Want::Forwarded,
        ),
        case(
            "control: DeleteTable",
            d,
            req("POST", d, "/", &[&auth, ct, date, &t("DeleteTable")], body),
            del_table,
        ),
        case(
            "target + Action query",
            d,
            req(
                "POST",
                d,
                "/?Action=DeleteTable",
                &[&auth, ct, date, &t("ListTables")],
                body,
            ),
            DENIED_ANY,
        ),
        case(
            "target + Action form body",
            d,
            req(
                "POST",
                d,
                "/",
                &[
                    &auth,
                    "Content-Type: application/x-www-form-urlencoded",
                    date,
                    &t("ListTables"),
                ],
                b"Action=DeleteTable&TableName=users",
            ),
            DENIED_ANY,
        ),
        case(
            "two targets",
            d,
            req(
                "POST",
                d,
                "/",
                &[&auth, ct, date, &t("ListTables"), &t("DeleteTable")],
                body,
            ),
            DENIED_ANY,
        ),
        case(
            "comma targets",
            d,
            req(
                "POST",
                d,
                "/",
                &[
                    &auth,
                    ct,
                    date,
                    "X-Amz-Target: DynamoDB_20120810.ListTables, DynamoDB_20120810.DeleteTable",
                ],
                body,
            ),
            DENIED_ANY,
        ),
        case(
            "target with spaces",
            d,
            req(
                "POST",
                d,
                "/",
                &[
                    &auth,
                    ct,
                    date,
                    "X-Amz-Target:   DynamoDB_20120810.DeleteTable  ",
                ],
                body,
            ),
            del_table,
        ),
        case(
            "lower-case target op",
            d,
            req(
                "POST",
                d,
                "/",
                &[
                    &auth,
                    ct,
                    date,
                    "X-Amz-Target: DynamoDB_20120810.deletetable",
                ],
                body,
            ),
            DENIED_ANY,
        ),
        case(
            "scope names another service",
            d,
            req(
                "POST",
                d,
                "/",
                &[&sigv4("s3"), ct, date, &t("ListTables")],
                body,
            ),
            Want::Refused(&[]),
        ),
        case(
            "scope names iam",
            d,
            req(
                "POST",
                d,
                "/",
                &[&sigv4("iam"), ct, date, &t("DeleteTable")],
                body,
            ),
            Want::Refused(&[]),
        ),
        case(
            "two Authorization headers",
            d,
            req(
                "POST",
                d,
                "/",
                &[&auth, &sigv4("s3"), ct, date, &t("ListTables")],
                body,
            ),
            Want::Refused(&[]),
        ),
        case(
            "presigned credential conflicts",
            d,
            req(
                "POST",
                d,
                "/?X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request",
                &[&auth, ct, date, &t("ListTables")],
                body,
            ),
            Want::Refused(&[]),
        ),
        case(
            "Action in JSON body",
            d,
            req(
                "POST",
                d,
                "/",
                &[&auth, ct, date, &t("ListTables")],
                br#"{"Action":"DeleteTable"}"#,
            ),
            Want::Forwarded,
        ),
        case(
            "no target, Action query",
            d,
            req("POST", d, "/?Action=DeleteTable", &[&auth, date], b""),
            del_table,
        ),
        case(
            "Action twice in query",
            d,
            req(
                "POST",
                d,
                "/?Action=ListTables&Action=DeleteTable",
                &[&auth, date],
                b"",
            ),
            DENIED_ANY,
        ),
        case(
            "encoded Action key",
            d,
            req(
                "POST",
                d,
                "/?%41ction=DeleteTable",
                &[&auth, ct, date, &t("ListTables")],
                body,
            ),
            DENIED_ANY,
        ),
        case(
            "lower-case action key",
            d,
            req("POST", d, "/?action=DeleteTable", &[&auth, date], b""),
            DENIED_ANY,
        ),
        case(
            "host upper case",
            d,
            req(
                "POST",
                &d.to_ascii_uppercase(),
                "/",
                &[&auth, ct, date, &t("DeleteTable")],
                body,
            ),
            del_table,
        ),
        case(
            "SigV4 without Credential",
            d,
            req(
                "POST",
                d,
                "/",
                &[
                    "Authorization: AWS4-HMAC-SHA256 Signature=00",
                    ct,
                    date,
                    &t("ListTables"),
                ],
                body,
            ),
            Want::Refused(&[]),
        ),
        case(
            "gzip JSON body",
            d,
            {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(br#"{"TableName":"users"}"#).unwrap();
                req(
                    "POST",
                    d,
                    "/",
                    &[&auth, ct, date, &t("DeleteTable"), "Content-Encoding: gzip"],
                    &enc.finish().unwrap(),
                )
            },
            del_table,
        ),
    ];
    run(&e, cases).await;
}

/// HTTP/2 inside the tunnel: `:authority` names the CONNECT target, a `Host`
/// header names another; the request must be refused or judged (and sent)
/// to the real target only.
#[tokio::test]
async fn http2_authority_vs_host() {
    let e = env("").await;
    let client =
        e.sm.client_builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
    // Control: h2 works through the tunnel.
    let resp = client
        .get("https://api.stripe.com/v1/customers/cus_1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let before = e.up.requests().len();
    let resp = client
        .delete("https://api.stripe.com/v1/customers/cus_1")
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert!([400, 403].contains(&status), "{status} {body}");
    assert_eq!(e.up.requests().len(), before);
    // A read with a foreign Host: refused, or forwarded with the real host only.
    let resp = client
        .get("https://api.stripe.com/v1/customers/cus_1")
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let got = e.up.requests();
    if got.len() > before {
        let g = got.last().unwrap();
        assert!(
            g.header("host")
                .is_none_or(|h| h.starts_with("api.stripe.com")),
            "foreign Host forwarded: {:?}",
            g.headers
        );
    } else {
        assert!([400, 403].contains(&status), "{status}");
    }
    // Method override over h2 too (a GET, so only the override's reading refuses).
    let resp = client
        .get("https://api.stripe.com/v1/customers/cus_1")
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (403, Some("deny_customer_delete")),
        "{body}"
    );
}

/// SPEC §13.3 / §13.8: names and address spellings that reach SudoMode's own
/// listeners or a metadata address are refused after resolution.
#[tokio::test]
async fn ssrf_names_and_address_spellings() {
    install_crypto();
    let (pport, dport) = (free_port(), free_port());
    let d = dport;
    let resolve = vec![
        (
            "evil.test:80".to_string(),
            format!("127.0.0.1:{d}").parse().unwrap(),
        ),
        (
            "evil.test:443".to_string(),
            format!("127.0.0.1:{d}").parse().unwrap(),
        ),
        (
            "meta.test:80".to_string(),
            "169.254.169.254:80".parse().unwrap(),
        ),
        (
            "loop.test:80".to_string(),
            format!("127.0.0.1:{pport}").parse().unwrap(),
        ),
    ];
    let sm = SudoMode::start_in_listen(
        tempfile::tempdir().unwrap(),
        Options {
            resolve,
            ..Default::default()
        },
        &format!("127.0.0.1:{pport}"),
        &format!("127.0.0.1:{dport}"),
    );
    assert_eq!(sm.dashboard.port(), d);
    let mut failures = Vec::new();
    let urls: Vec<(String, &[u16])> = vec![
        ("http://evil.test/healthz".into(), &[]),
        ("http://meta.test/latest/meta-data/iam/".into(), &[]),
        ("http://loop.test/healthz".into(), &[]),
        (format!("http://localhost:{d}/healthz"), &[]),
        (format!("http://LOCALHOST:{d}/healthz"), &[]),
        (format!("http://localhost.:{d}/healthz"), &[]),
        (format!("http://127.0.0.1:{d}/healthz"), &[]),
        (format!("http://127.0.0.1.:{d}/healthz"), &[]),
        (format!("http://127.1:{d}/healthz"), &[]),
        (format!("http://127.0.1:{d}/healthz"), &[]),
        (format!("http://2130706433:{d}/healthz"), &[]),
        (format!("http://0x7f.1:{d}/healthz"), &[]),
        (format!("http://0x7f000001:{d}/healthz"), &[]),
        (format!("http://0177.0.0.1:{d}/healthz"), &[]),
        (format!("http://017700000001:{d}/healthz"), &[]),
        (format!("http://0:{d}/healthz"), &[]),
        (format!("http://0.0.0.0:{d}/healthz"), &[]),
        (format!("http://127.8.9.10:{d}/healthz"), &[]),
        (format!("http://[::ffff:127.0.0.1]:{d}/healthz"), &[]),
        (format!("http://[::ffff:7f00:1]:{d}/healthz"), &[]),
        (
            format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{d}/healthz"),
            &[],
        ),
        // Nothing of SudoMode listens on ::1 / :: here; refused or unreachable.
        (format!("http://[::1]:{d}/healthz"), &[502]),
        (format!("http://[::]:{d}/healthz"), &[502]),
        (format!("http://127.0.0.1:{pport}/healthz"), &[]),
        ("http://169.254.169.254/latest/meta-data/".into(), &[]),
        ("http://169.254.169.254:80/latest/meta-data/".into(), &[]),
        ("http://2852039166/latest/meta-data/".into(), &[]),
        ("http://0xa9fea9fe/latest/meta-data/".into(), &[]),
        ("http://0251.0376.0251.0376/latest/meta-data/".into(), &[]),
        ("http://169.254.43518/latest/meta-data/".into(), &[]),
        (
            "http://[::ffff:169.254.169.254]/latest/meta-data/".into(),
            &[],
        ),
        ("http://[::ffff:a9fe:a9fe]/latest/meta-data/".into(), &[]),
        ("http://[fd00:ec2::254]/latest/meta-data/".into(), &[]),
        ("http://[fe80::1]/".into(), &[]),
    ];
    for (url, also_ok) in &urls {
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let r = raw_plain(
            &sm,
            format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let body = r.json();
        let rule = body["error"]["rule"].as_str().unwrap_or("");
        let ok = (r.status == 403 && rule == "sudomode.builtin")
            || r.status == 400
            || also_ok.contains(&r.status);
        eprintln!(
            "{url:<60} -> {} {rule} {}",
            r.status,
            if r.status == 400 {
                body["error"]["message"].to_string()
            } else {
                String::new()
            }
        );
        if !ok {
            failures.push(format!(
                "{url}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    // CONNECT forms (intercepted tunnels are judged per request; either the
    // CONNECT or the request inside must be refused).
    for target in [
        "evil.test:443".to_string(),
        format!("127.0.0.1:{d}"),
        format!("2130706433:{d}"),
        format!("localhost:{d}"),
        format!("[::ffff:127.0.0.1]:{d}"),
        "169.254.169.254:443".to_string(),
    ] {
        let mut s = tokio::net::TcpStream::connect(sm.proxy).await.unwrap();
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_err() {
                break;
            }
            head.push(b[0]);
        }
        let r = parse_raw_response(&head);
        if r.status == 200 {
            // Intercepted: the request inside must be refused.
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    rustls::pki_types::CertificateDer::from_pem_slice(sm.ca_pem().as_bytes())
                        .unwrap(),
                )
                .unwrap();
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let host = target
                .rsplit_once(':')
                .unwrap()
                .0
                .trim_matches(['[', ']'])
                .to_string();
            let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap_or_else(|_| {
                rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .unwrap()
                    .to_owned()
            });
            let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, s)
                .await
            else {
                eprintln!("CONNECT {target:<40} -> TLS refused");
                continue;
            };
            tls.write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let r = parse_raw_response(&read_all(&mut tls).await);
            let rule = r.json()["error"]["rule"].as_str().unwrap_or("").to_string();
            eprintln!("CONNECT {target:<40} -> inner {} {rule}", r.status);
            if !(r.status == 403 && rule == "sudomode.builtin") && r.status != 400 {
                failures.push(format!(
                    "CONNECT {target}: inner {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        } else {
            eprintln!("CONNECT {target:<40} -> {}", r.status);
            if ![400, 403].contains(&r.status) {
                failures.push(format!("CONNECT {target}: {}", r.head));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} SSRF failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// SPEC §6 / §13.2: an approval binds the exact request. A retry that
/// matches the approved one by (agent, method, normalised URL, body hash)
/// but carries different headers — here `Stripe-Account`, which moves the
/// charge to another account — must not ride on that approval.
#[tokio::test]
async fn approval_does_not_cover_a_retry_with_different_headers() {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &[STRIPE]).await;
    let policy = "rules:\n  - name: charges_need_approval\n    resource: stripe.charges\n    action: create\n    decision: REQUIRE_APPROVAL\n  - name: rest\n    resource: \"*\"\n    decision: DENY\n";
    let sm = SudoMode::start(Options {
        policy,
        resolve: vec![(format!("{STRIPE}:443"), up.addr)],
        ca_files: vec![ca.pem.clone()],
        env: vec![("SUDOMODE_ADMIN_TOKEN".into(), "adm".into())],
        ..Default::default()
    });
    let impatient = sm
        .client_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let send = |c: &reqwest::Client, account: &str| {
        c.post("https://api.stripe.com/v1/charges")
            .header("stripe-account", account)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("amount=5000&currency=usd")
            .send()
    };
    assert!(
        send(&impatient, "acct_reviewed").await.is_err(),
        "should still be held"
    );
    let list: Value = sm
        .api()
        .get(sm.dashboard_url("/api/v1/requests?status=pending"))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    let resp = sm
        .api()
        .post(sm.dashboard_url(&format!("/api/v1/requests/{id}/approve")))
        .bearer_auth("adm")
        .json(&serde_json::json!({"reason": "reviewed for acct_reviewed"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let _ = send(&sm.client(), "acct_other").await;
    for r in up.requests() {
        assert_ne!(
            r.header("stripe-account"),
            Some("acct_other"),
            "an approval for acct_reviewed moved money on acct_other"
        );
    }
}
