//! Public-API tests: normalisation, method overrides, redaction, size caps,
//! generic mapping, and inputs that must fail closed without panicking.

use std::io::Write;

use serde_json::json;
mod common;

use common::run;
use sudomode_intent::{IntentError, Mapped, Mapper};

fn map(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Mapped, IntentError> {
    run(
        &Mapper::new(Vec::new(), 1 << 20).unwrap(),
        method,
        host,
        target,
        headers,
        body,
    )
}

#[test]
fn normalised_request() {
    let m = map(
        "post",
        "API.Example.COM.",
        "//a/./b/%2e%2e/c?x=1&x=2&y=a%20b",
        &[
            ("Authorization", "Bearer secret"),
            ("Cookie", "s=1"),
            ("X-Api-Key", "k"),
            ("Proxy-Authorization", "Basic x"),
            ("X-Amz-Security-Token", "t"),
            ("X-Custom", "v"),
        ],
        b"",
    )
    .unwrap();
    let r = &m.request;
    assert_eq!(
        (r.method.as_str(), r.host.as_str(), r.path.as_str()),
        ("POST", "api.example.com", "/a/c")
    );
    assert_eq!(r.query.get("x").map(String::as_str), Some("1"));
    assert_eq!(r.query.get("y").map(String::as_str), Some("a b"));
    for k in [
        "authorization",
        "cookie",
        "x-api-key",
        "proxy-authorization",
        "x-amz-security-token",
    ] {
        assert_eq!(
            r.headers.get(k).map(String::as_str),
            Some("[redacted]"),
            "{k}"
        );
    }
    assert_eq!(r.headers.get("x-custom").map(String::as_str), Some("v"));
    assert!(!format!("{:?}", m.request).contains("secret"));
    assert_eq!(r.url("x=1"), "https://api.example.com/a/c?x=1");
}

#[test]
fn method_overrides() {
    // The methods the intents are judged as: the one sent first, then the override.
    let as_post = |target: &str, headers: &[(&str, &str)], body: &[u8]| {
        map("POST", "example.com", target, headers, body).map(|m| {
            assert_eq!(m.request.method, "POST", "the request keeps its own method");
            m.intents
                .iter()
                .map(|i| i.method.clone().unwrap_or_else(|| m.request.method.clone()))
                .collect::<Vec<_>>()
        })
    };
    let both = |o: &str| vec!["POST".to_string(), o.to_string()];
    assert_eq!(
        as_post("/", &[("X-HTTP-Method-Override", "delete")], b"").unwrap(),
        both("DELETE")
    );
    assert_eq!(
        as_post("/", &[("X-HTTP-Method", "PUT")], b"").unwrap(),
        both("PUT")
    );
    assert_eq!(
        as_post("/", &[("X-Method-Override", "PATCH")], b"").unwrap(),
        both("PATCH")
    );
    assert_eq!(
        as_post("/?_method=DELETE", &[], b"").unwrap(),
        both("DELETE")
    );
    assert_eq!(
        as_post(
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"a=1&_method=delete"
        )
        .unwrap(),
        both("DELETE")
    );
    assert_eq!(
        as_post("/", &[], b"_method=DELETE").unwrap(),
        both("DELETE")
    );
    assert_eq!(
        as_post(
            "/",
            &[("content-type", "application/json")],
            br#"{"_method":"DELETE"}"#
        )
        .unwrap(),
        both("DELETE")
    );
    // Agreeing overrides are fine; disagreeing or unknown ones are refused.
    assert_eq!(
        as_post(
            "/?_method=DELETE",
            &[("X-HTTP-Method-Override", "DELETE")],
            b""
        )
        .unwrap(),
        both("DELETE")
    );
    assert!(
        as_post(
            "/?_method=DELETE",
            &[("X-HTTP-Method-Override", "PUT")],
            b""
        )
        .is_err()
    );
    assert!(as_post("/?_method=DELETE&_method=GET", &[], b"").is_err());
    assert!(as_post("/", &[("X-HTTP-Method-Override", "FOO")], b"").is_err());
    assert!(
        as_post(
            "/",
            &[("X-HTTP-Method", "GET"), ("X-Method-Override", "DELETE")],
            b""
        )
        .is_err()
    );
    // A write overridden to a read is judged as both, like any override.
    assert_eq!(
        as_post("/", &[("X-HTTP-Method-Override", "GET")], b"").unwrap(),
        both("GET")
    );
    assert_eq!(as_post("/?_method=HEAD", &[], b"").unwrap(), both("HEAD"));
    // An override naming the method sent adds nothing.
    assert_eq!(
        as_post("/", &[("X-HTTP-Method-Override", "POST")], b"").unwrap(),
        ["POST"]
    );
    // Each reading gets its own generic action.
    let m = map(
        "DELETE",
        "example.com",
        "/x",
        &[("X-HTTP-Method-Override", "POST")],
        b"",
    )
    .unwrap();
    let actions: Vec<_> = m.intents.iter().map(|i| i.action.as_str()).collect();
    assert_eq!(actions, ["delete", "post"]);
    assert_eq!(m.request.method, "DELETE");
}

#[test]
fn forged_sigv4_does_not_move_known_hosts() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, Signature=x";
    let m = map(
        "POST",
        "ep-1.neon.tech",
        "/sql",
        &[("authorization", auth)],
        br#"{"query":"DROP TABLE t"}"#,
    )
    .unwrap();
    assert_eq!(
        (m.intents[0].resource.as_str(), m.intents[0].action.as_str()),
        ("sql", "drop")
    );
    let m = map(
        "POST",
        "api.openai.com",
        "/v1/chat/completions",
        &[("authorization", auth)],
        b"{}",
    )
    .unwrap();
    assert_eq!(m.intents[0].resource, "llm.openai");
    // Any other host carrying SigV4 is AWS (MinIO, R2, LocalStack).
    let m = map(
        "DELETE",
        "minio.internal",
        "/bucket/key",
        &[("authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(
        (m.intents[0].resource.as_str(), m.intents[0].action.as_str()),
        ("aws.s3", "DeleteObject")
    );
}

#[test]
fn generic_mapping() {
    let m = map(
        "POST",
        "api.github.com",
        "/repos/a/b?q=1",
        &[("content-type", "application/json")],
        br#"{"name":"x","n":5}"#,
    )
    .unwrap();
    assert_eq!(
        (m.intents[0].resource.as_str(), m.intents[0].action.as_str()),
        ("http.api.github.com", "post")
    );
    assert_eq!(m.intents[0].args, json!({"name":"x","n":5}));
    let m = map(
        "GET",
        "api.github.com",
        "/repos?per_page=10&sort=full_name",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(m.intents[0].args, json!({"per_page":10,"sort":"full_name"}));
    let m = map(
        "PUT",
        "example.com",
        "/",
        &[("content-type", "text/plain")],
        b"a[b]=1",
    )
    .unwrap();
    assert_eq!(m.intents[0].args, json!({"a":{"b":1}}));
    let m = map("POST", "example.com", "/", &[], b"[1,2]").unwrap();
    assert_eq!(m.intents[0].args, json!({"body":[1,2]}));
    let m = map("POST", "example.com", "/", &[], b"").unwrap();
    assert_eq!(m.intents[0].args, json!({}));
    assert!(matches!(
        map(
            "POST",
            "example.com",
            "/",
            &[("content-type", "application/json")],
            b"{x"
        ),
        Err(IntentError::BadRequest(_))
    ));
}

#[test]
fn size_caps() {
    let mapper = Mapper::new(Vec::new(), 1000).unwrap();
    assert_eq!(
        run(&mapper, "POST", "example.com", "/", &[], &[b'a'; 1001]),
        Err(IntentError::TooLarge { limit: 1000 })
    );
    assert!(run(&mapper, "POST", "example.com", "/", &[], &[b'a'; 1000]).is_ok());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![b'a'; 10 << 20]).unwrap();
    let bomb = e.finish().unwrap();
    assert_eq!(
        run(
            &mapper,
            "POST",
            "api.stripe.com",
            "/v1/charges",
            &[("content-encoding", "gzip")],
            &bomb
        ),
        Err(IntentError::TooLarge { limit: 1000 })
    );
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"amount=5000").unwrap();
    let m = run(
        &mapper,
        "POST",
        "api.stripe.com",
        "/v1/charges",
        &[("content-encoding", "gzip")],
        &e.finish().unwrap(),
    )
    .unwrap();
    assert_eq!(m.intents[0].args, json!({"amount":5000}));
    assert!(matches!(
        run(
            &mapper,
            "POST",
            "example.com",
            "/",
            &[("content-encoding", "compress")],
            b"x"
        ),
        Err(IntentError::BadRequest(_))
    ));
}

/// Odd inputs never panic, and every success has at least one intent with
/// object args.
#[test]
fn hostile_inputs_do_not_panic() {
    let deep_json = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep_form = format!("a{}=1", "[x]".repeat(5000));
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"\xff\xfe\x00",
        b"%%%&&&===",
        b"a[=1",
        b"a]]]=1",
        b"[",
        deep_json.as_bytes(),
        deep_form.as_bytes(),
        b"{\"sql\":1}",
        b"{\"query\":[]}",
    ];
    let hosts = [
        "api.stripe.com",
        "s3.amazonaws.com",
        "x.s3.amazonaws.com",
        "dynamodb.us-east-1.amazonaws.com",
        "amazonaws.com",
        ".amazonaws.com",
        "x.neon.tech",
        "x.turso.io",
        "api.cloudflare.com",
        "x.supabase.co",
        "api.openai.com",
        "api.anthropic.com",
        "example.com",
        "",
        ".",
    ];
    let targets = [
        "/",
        "",
        "?",
        "/%",
        "/%zz/..",
        "/sql",
        "/v2/pipeline",
        "/rest/v1/",
        "/rest/v1/rpc",
        "/v1/",
        "/v1/a/b/c/d/e",
        "/2015-03-31/functions",
        "/client/v4/accounts/a/d1/database/b/query",
        "/b/k?delete&acl",
        "/?Action=",
        "/?list-type=x",
    ];
    let methods = ["GET", "POST", "DELETE", "PATCH", "PUT", "HEAD", "PROPFIND"];
    let auths = [
        "",
        "AWS4-HMAC-SHA256 Credential=A/2024/us-east-1/s3/aws4_request",
        "AWS4-",
        "AWS4-HMAC-SHA256 Credential=//////",
    ];
    for host in hosts {
        for target in targets {
            for method in methods {
                for body in &bodies {
                    for auth in auths {
                        let headers: Vec<(&str, &str)> = if auth.is_empty() {
                            vec![]
                        } else {
                            vec![("authorization", auth)]
                        };
                        if let Ok(m) = map(method, host, target, &headers, body) {
                            assert!(!m.intents.is_empty());
                            assert!(
                                m.intents.iter().all(|i| i.args.is_object()),
                                "{host} {target} {method}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn conflicting_content_types_are_refused() {
    let h = [
        ("content-type", "application/json"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    assert!(matches!(
        map("POST", "example.com", "/", &h, b"a=1"),
        Err(IntentError::BadRequest(_))
    ));
}

#[test]
fn untyped_bodies_read_both_ways() {
    let roles = |headers: &[(&str, &str)], body: &[u8]| {
        let m = map("POST", "example.com", "/u", headers, body).unwrap();
        m.intents
            .iter()
            .map(|i| i.args["role"].clone())
            .collect::<Vec<_>>()
    };
    let sneaky = br#"{"role":"viewer","x":"&role=admin&y="}"#;
    assert_eq!(roles(&[], sneaky), [json!("viewer"), json!("admin")]);
    assert_eq!(
        roles(&[("content-type", "text/plain")], sneaky),
        [json!("viewer"), json!("admin")]
    );
    assert_eq!(
        roles(&[("content-type", "application/json")], sneaky),
        [json!("viewer")]
    );
    // Plain JSON has no form reading worth judging.
    assert_eq!(roles(&[], br#"{"role":"viewer"}"#), [json!("viewer")]);
    // `_method` read both ways must agree.
    assert!(
        map(
            "POST",
            "example.com",
            "/u",
            &[],
            br#"{"_method":"GET","a":"&_method=DELETE"}"#
        )
        .is_err()
    );
}
