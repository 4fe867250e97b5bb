//! SigV4 re-signing, checked independently by botocore (tests/sigv4_verify.py).

mod common;

use common::*;
use sudomode_credentials::CredentialError;

const DUMMY_SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn dummy_auth(scope: &str, signed: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={DUMMY_AKID}/20240101/{scope}/aws4_request, \
         SignedHeaders={signed}, Signature={DUMMY_SIG}"
    )
}

/// Re-signs, runs the common assertions and the botocore verifier; returns the request.
fn resign(
    host: &str,
    mut parts: http::request::Parts,
    body: &[u8],
    token: bool,
) -> http::request::Parts {
    let injector = aws_injector(token);
    let applied = injector.apply(host, &mut parts, body).expect("re-sign");
    assert_eq!(applied.as_deref(), Some("aws"));
    let all = dump(&parts);
    assert!(!all.contains(DUMMY_AKID), "dummy key id survived:\n{all}");
    assert!(
        !all.contains(DUMMY_TOKEN),
        "agent's session token survived:\n{all}"
    );
    assert!(
        !all.contains(DUMMY_SIG),
        "agent's signature survived:\n{all}"
    );
    assert!(
        !all.contains(REAL_SECRET),
        "secret key leaked into the request:\n{all}"
    );
    assert!(
        all.contains(&format!("Credential={REAL_AKID}/"))
            || all.contains(&format!("X-Amz-Credential={REAL_AKID}%2F")),
        "real key id not in the credential scope:\n{all}"
    );
    assert_eq!(
        parts.headers.get_all("x-amz-security-token").iter().count(),
        usize::from(token && !parts.uri.query().unwrap_or("").contains("X-Amz-Signature")),
        "session token header:\n{all}"
    );
    assert!(parts.headers.get_all("authorization").iter().count() <= 1);
    verify(&parts, body, token);
    parts
}

fn dynamodb_list_tables(host_header: Option<&str>) -> http::request::Parts {
    let auth = dummy_auth(
        "us-east-1/dynamodb",
        "content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
    );
    let mut headers = vec![
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "DynamoDB_20120810.ListTables"),
        ("x-amz-date", "20240101T000000Z"),
        ("x-amz-security-token", DUMMY_TOKEN),
        ("user-agent", "Boto3/1.34.0 md/Botocore#1.34.0"),
        ("content-length", "2"),
        ("authorization", auth.as_str()),
    ];
    if let Some(h) = host_header {
        headers.push(("host", h));
    }
    agent_request(
        "POST",
        "https://dynamodb.us-east-1.amazonaws.com/",
        &headers,
    )
}

#[test]
fn dynamodb_list_tables_without_and_with_session_token() {
    for token in [false, true] {
        let parts = resign(
            "dynamodb.us-east-1.amazonaws.com",
            dynamodb_list_tables(None),
            b"{}",
            token,
        );
        let auth = parts.headers["authorization"].to_str().unwrap().to_owned();
        assert!(auth.contains("/us-east-1/dynamodb/aws4_request"), "{auth}");
        // content-length is left to the HTTP client, so it is not signed; x-amz-target is.
        assert!(!auth.contains("content-length"), "{auth}");
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert_eq!(auth.contains("x-amz-security-token"), token, "{auth}");
        assert_eq!(parts.headers["host"], "dynamodb.us-east-1.amazonaws.com");
        // Non-S3 requests get no x-amz-content-sha256 unless the agent sent one.
        assert!(parts.headers.get("x-amz-content-sha256").is_none());
        // The agent's date is replaced by the signing time.
        assert_ne!(parts.headers["x-amz-date"], "20240101T000000Z");
    }
}

#[test]
fn agent_host_header_with_default_port_is_normalised() {
    let parts = resign(
        "dynamodb.us-east-1.amazonaws.com",
        dynamodb_list_tables(Some("DynamoDB.us-east-1.amazonaws.com:443")),
        b"{}",
        false,
    );
    assert_eq!(parts.headers.get_all("host").iter().count(), 1);
    assert_eq!(parts.headers["host"], "dynamodb.us-east-1.amazonaws.com");
}

#[test]
fn default_port_in_uri_is_dropped_from_uri_and_host() {
    let mut parts = dynamodb_list_tables(None);
    parts.uri = "https://dynamodb.us-east-1.amazonaws.com:443/"
        .parse()
        .unwrap();
    let parts = resign("dynamodb.us-east-1.amazonaws.com", parts, b"{}", false);
    assert_eq!(parts.headers["host"], "dynamodb.us-east-1.amazonaws.com");
    assert_eq!(parts.uri, "https://dynamodb.us-east-1.amazonaws.com/");
}

#[test]
fn non_default_port_is_signed_in_host() {
    let mut parts = dynamodb_list_tables(None);
    parts.uri = "https://dynamodb.us-east-1.amazonaws.com:8443/"
        .parse()
        .unwrap();
    let parts = resign("dynamodb.us-east-1.amazonaws.com", parts, b"{}", false);
    assert_eq!(
        parts.headers["host"],
        "dynamodb.us-east-1.amazonaws.com:8443"
    );
}

fn s3_put(url: &str, body: &[u8], content_sha: &str) -> http::request::Parts {
    let auth = dummy_auth(
        "eu-west-1/s3",
        "content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-owner",
    );
    agent_request(
        "PUT",
        url,
        &[
            ("content-type", "text/plain"),
            ("content-md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
            ("x-amz-content-sha256", content_sha),
            ("x-amz-meta-owner", "alice  and   bob"),
            ("x-amz-date", "20240101T000000Z"),
            ("content-length", &body.len().to_string()),
            ("authorization", auth.as_str()),
        ],
    )
}

#[test]
fn s3_put_object_path_style_and_virtual_hosted() {
    let body = b"hello world";
    let sha = hex_sha256(body);
    for (host, url) in [
        (
            "s3.eu-west-1.amazonaws.com",
            "https://s3.eu-west-1.amazonaws.com/my-bucket/dir/key%20with%20space%2Bplus.txt",
        ),
        (
            "my-bucket.s3.eu-west-1.amazonaws.com",
            "https://my-bucket.s3.eu-west-1.amazonaws.com/dir/./key%20with%20space.txt",
        ),
    ] {
        for token in [false, true] {
            // The agent's x-amz-content-sha256 is a placeholder value: it is recomputed.
            let parts = resign(host, s3_put(url, body, "e3b0c442"), body, token);
            assert_eq!(parts.headers["x-amz-content-sha256"], sha.as_str());
            assert_eq!(parts.headers["host"], host);
            assert_eq!(
                parts.uri.to_string(),
                url,
                "S3 paths are left exactly as sent"
            );
        }
    }
}

#[test]
fn s3_unsigned_payload_is_kept() {
    let body = b"large object body";
    let parts = resign(
        "s3.eu-west-1.amazonaws.com",
        s3_put(
            "https://s3.eu-west-1.amazonaws.com/my-bucket/obj",
            body,
            "UNSIGNED-PAYLOAD",
        ),
        body,
        true,
    );
    assert_eq!(parts.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
}

#[test]
fn s3_get_list_objects_with_query() {
    for token in [false, true] {
        let auth = dummy_auth(
            "us-east-1/s3",
            "host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
        );
        let parts = agent_request(
            "GET",
            "https://my-bucket.s3.us-east-1.amazonaws.com/?list-type=2&prefix=logs%2F2024&max-keys=10",
            &[
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD-NOT"),
                ("x-amz-date", "20240101T000000Z"),
                ("x-amz-security-token", DUMMY_TOKEN),
                ("accept-encoding", "identity"),
                ("authorization", auth.as_str()),
            ],
        );
        let parts = resign("my-bucket.s3.us-east-1.amazonaws.com", parts, b"", token);
        assert_eq!(
            parts.headers["x-amz-content-sha256"],
            hex_sha256(b"").as_str()
        );
    }
}

#[test]
fn sts_query_protocol_form_post() {
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    for token in [false, true] {
        let auth = dummy_auth("us-east-1/sts", "content-type;host;x-amz-date");
        let parts = agent_request(
            "POST",
            "https://sts.amazonaws.com/",
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("x-amz-date", "20240101T000000Z"),
                ("authorization", auth.as_str()),
            ],
        );
        resign("sts.amazonaws.com", parts, body, token);
    }
}

#[test]
fn lambda_invoke_path_is_double_encoded_like_the_sdks() {
    let body = br#"{"order": 7}"#;
    let auth = dummy_auth("us-east-1/lambda", "host;x-amz-date");
    let parts = agent_request(
        "POST",
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afoo/invocations?Qualifier=%24LATEST",
        &[
            ("x-amz-date", "20240101T000000Z"),
            ("x-amz-invocation-type", "RequestResponse"),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ],
    );
    let parts = resign("lambda.us-east-1.amazonaws.com", parts, body, true);
    // x-amz-* and content-type headers are signed even though the agent left them out.
    let auth = parts.headers["authorization"].to_str().unwrap();
    assert!(
        auth.contains(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token,"
        ),
        "{auth}"
    );
}

#[test]
fn non_s3_unsigned_payload_header_is_kept() {
    let auth = dummy_auth("us-east-1/dynamodb", "host;x-amz-content-sha256;x-amz-date");
    let parts = agent_request(
        "POST",
        "https://dynamodb.us-east-1.amazonaws.com/",
        &[
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-date", "20240101T000000Z"),
            ("authorization", auth.as_str()),
        ],
    );
    let parts = resign("dynamodb.us-east-1.amazonaws.com", parts, b"{}", false);
    assert_eq!(parts.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
}

#[test]
fn s3_presigned_url_is_resigned_in_the_query() {
    for token in [false, true] {
        let url = format!(
            "https://my-bucket.s3.us-east-1.amazonaws.com/report%202024.pdf?versionId=3&\
             X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={DUMMY_AKID}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&\
             X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&\
             X-Amz-Security-Token={DUMMY_TOKEN}&X-Amz-Signature={DUMMY_SIG}"
        );
        let parts = agent_request("GET", &url, &[]);
        let parts = resign("my-bucket.s3.us-east-1.amazonaws.com", parts, b"", token);
        let q = parts.uri.query().unwrap().to_owned();
        assert!(q.starts_with("versionId=3&"), "{q}");
        assert!(q.contains("X-Amz-Expires=900"), "{q}");
        assert_eq!(q.matches("X-Amz-Signature=").count(), 1, "{q}");
        assert_eq!(q.contains("X-Amz-Security-Token="), token, "{q}");
        assert!(parts.headers.get("authorization").is_none());
    }
}

#[test]
fn verifier_can_fail() {
    // Guards against a verifier that always says ok: tamper after signing.
    let injector = aws_injector(false);
    let mut parts = dynamodb_list_tables(None);
    injector
        .apply("dynamodb.us-east-1.amazonaws.com", &mut parts, b"{}")
        .unwrap();
    let Some(result) = run_verifier(&parts, b"{}", false) else {
        return;
    };
    assert!(result.is_ok(), "{result:?}");
    // A different body than the one signed.
    assert!(
        run_verifier(&parts, br#"{"Limit":1}"#, false)
            .unwrap()
            .is_err()
    );
    // A signed header changed in transit.
    let mut tampered = parts.clone();
    tampered.headers.insert(
        "x-amz-target",
        "DynamoDB_20120810.DeleteTable".parse().unwrap(),
    );
    assert!(run_verifier(&tampered, b"{}", false).unwrap().is_err());
    // The verifier expects a session token that is not there.
    assert!(run_verifier(&parts, b"{}", true).unwrap().is_err());
}

#[test]
fn aws_chunked_uploads_are_refused() {
    let injector = aws_injector(false);
    let auth = dummy_auth(
        "us-east-1/s3",
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length",
    );
    for headers in [
        vec![("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
        vec![("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")],
        vec![("content-encoding", "aws-chunked")],
        vec![("content-encoding", "gzip, aws-chunked")],
    ] {
        let mut h = headers.clone();
        h.push(("authorization", auth.as_str()));
        let mut parts = agent_request("PUT", "https://s3.us-east-1.amazonaws.com/b/k", &h);
        let before = dump(&parts);
        let err = injector
            .apply(
                "s3.us-east-1.amazonaws.com",
                &mut parts,
                b"5;chunk-signature=...",
            )
            .unwrap_err();
        assert!(matches!(err, CredentialError::Unsupported(_)), "{err:?}");
        assert!(err.is_bad_request());
        assert!(err.to_string().contains("aws-chunked"), "{err}");
        assert_eq!(dump(&parts), before, "a refused request is left untouched");
    }
}

#[test]
fn unsigned_or_foreign_requests_to_aws_hosts_are_refused() {
    let injector = aws_injector(true);
    for auth in [
        None,
        Some("Bearer sk_test_placeholder".to_owned()),
        Some(format!("AWS {DUMMY_AKID}:c2lnbmF0dXJl")),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/aws4_request, SignedHeaders=host, Signature=00"
                .to_owned(),
        ),
    ] {
        let mut h = vec![("x-amz-date", "20240101T000000Z")];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let mut parts = agent_request("GET", "https://sqs.us-east-1.amazonaws.com/?Action=ListQueues", &h);
        let err = injector
            .apply("sqs.us-east-1.amazonaws.com", &mut parts, b"")
            .unwrap_err();
        assert!(matches!(err, CredentialError::InvalidRequest(_)), "{auth:?}: {err:?}");
        let msg = err.to_string();
        assert!(!msg.contains(REAL_AKID) && !msg.contains(REAL_SECRET) && !msg.contains(REAL_TOKEN));
    }
    // SigV4a is named as unsupported.
    let mut parts = agent_request(
        "GET",
        "https://sqs.us-east-1.amazonaws.com/",
        &[(
            "authorization",
            "AWS4-ECDSA-P256-SHA256 Credential=AKID/20240101/sqs/aws4_request, SignedHeaders=host, Signature=00",
        )],
    );
    let err = injector
        .apply("sqs.us-east-1.amazonaws.com", &mut parts, b"")
        .unwrap_err();
    assert!(matches!(err, CredentialError::Unsupported(_)), "{err:?}");
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Requests signed by botocore itself (dummy keys), re-signed, then verified with the real
/// keys: the agent side is a real SDK signer, not a hand-written imitation.
#[test]
fn requests_signed_by_botocore_are_resigned() {
    for token in [false, true] {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sigv4_agent.py"))
            .arg(DUMMY_AKID);
        if token {
            cmd.arg(DUMMY_TOKEN);
        }
        let Ok(out) = cmd.output() else {
            eprintln!("NOTICE: python3 missing; skipping the botocore agent test");
            return;
        };
        if !out.status.success() {
            eprintln!(
                "NOTICE: botocore unavailable; skipping the botocore agent test: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let lines = String::from_utf8(out.stdout).unwrap();
        assert_eq!(lines.lines().count(), 3);
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let headers: Vec<(String, String)> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = hex::decode(v["body_hex"].as_str().unwrap()).unwrap();
            let parts = agent_request(
                v["method"].as_str().unwrap(),
                v["url"].as_str().unwrap(),
                &headers,
            );
            assert!(dump(&parts).contains(DUMMY_AKID), "{line}");
            resign(v["host"].as_str().unwrap(), parts, &body, token);
        }
    }
}
