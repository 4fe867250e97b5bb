//! AWS SDKs through SudoMode against moto standing in for AWS (issue 16.2,
//! 16.3): refusals arrive in each service's own error format, so botocore
//! raises with SudoMode's message and code; S3 uploads as boto3 and the AWS
//! CLI send them by default (`aws-chunked` with a trailing CRC32) are judged
//! and stored, forwarded as sent without an `aws` credential and re-signed
//! as an ordinary payload with one.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const AWS_AKID: &str = "AKIAREALKEY000000001";
const AWS_SECRET: &str = "REALsecretKEYvalue/abc+123";
const ADMIN: &str = "operators:\n  - {name: alice, token: alice-token-1, role: admin}\n";
const AWS_CRED: &str = "credentials:\n  - name: aws\n    hosts: [\"*.amazonaws.com\"]\n    aws: {access_key_id: \"${env:TEST_AWS_AKID}\", secret_access_key: \"${env:TEST_AWS_SECRET}\"}\n";

const HOSTS: &[&str] = &[
    "dynamodb.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "agent-bucket.s3.amazonaws.com",
    "agent-bucket.s3.us-east-1.amazonaws.com",
    "iam.amazonaws.com",
    "sts.amazonaws.com",
    "sts.us-east-1.amazonaws.com",
    "ec2.us-east-1.amazonaws.com",
];

/// moto_server over TLS, with a certificate from the upstream test CA.
struct Moto {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start(ca: &TestCa) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf_pem(HOSTS);
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(&cert_path)
            .arg("-k")
            .arg(&key_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .expect("moto_server (tests/requirements.txt)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            addr,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SudoMode in front of moto; `extra` adds config (credentials…).
fn world(policy: &str, extra: &str) -> (Moto, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let moto = Moto::start(&ca);
    let sm = SudoMode::start(Options {
        policy,
        extra,
        resolve: HOSTS
            .iter()
            .map(|h| (format!("{h}:443"), moto.addr))
            .collect(),
        ca_files: vec![ca.pem.clone()],
        env: vec![
            ("TEST_AWS_AKID".into(), AWS_AKID.into()),
            ("TEST_AWS_SECRET".into(), AWS_SECRET.into()),
        ],
        ..Default::default()
    });
    (moto, sm)
}

async fn aws(sm: &SudoMode, call: &str) -> Value {
    sdk_script(sm, "newcomer.py", &["aws", call], &[]).await
}

const DENY_THESE: &str = r#"rules:
  - name: no_scans
    resource: aws.dynamodb
    action: Scan
    decision: DENY
    reason: full-table scans are not allowed
  - name: no_reads
    resource: aws.s3
    action: [GetObject, DeleteObject]
    decision: DENY
    reason: this bucket is write-only for agents
  - name: no_identity
    resource: [aws.iam, aws.sts]
    decision: DENY
    reason: identity calls are off limits
  - name: no_ec2
    resource: aws.ec2
    decision: DENY
    reason: no instances
"#;

#[tokio::test]
async fn boto3_raises_with_sudomodes_message_and_code_in_every_protocol() {
    let (_moto, sm) = world(DENY_THESE, "");
    for (call, code, reason) in [
        ("ddb_scan", "AccessDeniedException", "full-table scans"),
        ("s3_get", "AccessDenied", "write-only"),
        ("s3_delete", "AccessDenied", "write-only"),
        ("iam_list_users", "AccessDenied", "identity calls"),
        ("sts_whoami", "AccessDenied", "identity calls"),
        ("ec2_describe", "AccessDenied", "no instances"),
    ] {
        let v = aws(&sm, call).await;
        assert_eq!(v["client_error"], true, "{call}: {v}");
        assert_eq!(v["status"], 403, "{call}: {v}");
        assert_eq!(v["code"], code, "{call}: {v}");
        let msg = v["aws_message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("was denied by rule") && msg.contains(reason),
            "{call}: {v}"
        );
        let header = v["headers"]["x-sudomode-error"]
            .as_str()
            .unwrap_or_default();
        let json: Value = serde_json::from_str(header).unwrap_or(Value::Null);
        assert_eq!(
            json["error"]["type"], "denied",
            "{call}: X-SudoMode-Error {header}"
        );
        assert_eq!(json["error"]["message"].as_str(), Some(msg), "{call}");
    }
}

const ALLOW_S3: &str = "rules:\n  - name: allow_all\n    resource: \"*\"\n    decision: ALLOW\n";

/// The recorded PutObject: its args show the decoded size and checksum.
async fn put_args(sm: &SudoMode) -> Value {
    let (_, v) = sm
        .api_get("/api/v1/requests?action=PutObject", "alice-token-1")
        .await;
    v["requests"][0]["args"].clone()
}

async fn upload_round_trip(extra: &str) {
    let (_moto, sm) = world(ALLOW_S3, extra);
    assert_eq!(
        aws(&sm, "s3_create_bucket").await["ok"],
        true,
        "{}",
        sm.logs()
    );
    let v = sdk_script(
        &sm,
        "newcomer.py",
        &["aws", "s3_put_get"],
        &[("UPLOAD_TEXT", "hello from the agent")],
    )
    .await;
    assert_eq!(v["ok"], true, "{v}\n{}", sm.logs());
    assert_eq!(v["result"]["body"], "hello from the agent");
    assert!(
        v["result"]["checksum_crc32"].is_string(),
        "S3 verified a CRC32: {v}"
    );
    let args = put_args(&sm).await;
    assert_eq!(args["size"], 20, "{args}");
    assert_eq!(
        args["checksum"]["crc32"], v["result"]["checksum_crc32"],
        "{args}"
    );
}

#[tokio::test]
async fn boto3_default_upload_is_forwarded_as_sent_without_an_aws_credential() {
    upload_round_trip(ADMIN).await;
}

#[tokio::test]
async fn boto3_default_upload_is_resigned_as_an_ordinary_payload() {
    upload_round_trip(&format!("{ADMIN}{AWS_CRED}")).await;
}

/// `aws s3 cp` up and down again, at the CLI's defaults.
async fn cli_round_trip(extra: &str) {
    let (_moto, sm) = world(ALLOW_S3, extra);
    assert_eq!(aws(&sm, "s3_create_bucket").await["ok"], true);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("up.txt");
    std::fs::File::create(&src)
        .unwrap()
        .write_all(b"uploaded by the AWS CLI\n")
        .unwrap();
    let dst = dir.path().join("down.txt");
    let bundle = sm.path("certs/ca-bundle.pem");
    for (from, to) in [
        (
            src.display().to_string(),
            "s3://agent-bucket/cli.txt".to_string(),
        ),
        (
            "s3://agent-bucket/cli.txt".to_string(),
            dst.display().to_string(),
        ),
    ] {
        let out = tokio::process::Command::new("aws")
            .args(["s3", "cp", &from, &to, "--region", "us-east-1"])
            .env("HTTPS_PROXY", sm.proxy_url())
            .env("AWS_CA_BUNDLE", &bundle)
            .env("AWS_ACCESS_KEY_ID", "AKIDPLACEHOLDER0000")
            .env("AWS_SECRET_ACCESS_KEY", "placeholder-secret")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_REQUEST_CHECKSUM_CALCULATION")
            .env_remove("AWS_PROFILE")
            .output()
            .await
            .expect("aws (tests/requirements.txt)");
        assert!(
            out.status.success(),
            "aws s3 cp {from} {to}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            sm.logs()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&dst).unwrap(),
        "uploaded by the AWS CLI\n"
    );
    assert_eq!(put_args(&sm).await["size"], 24);
}

#[tokio::test]
async fn aws_cli_copies_up_and_down_both_ways() {
    cli_round_trip(ADMIN).await;
    cli_round_trip(&format!("{ADMIN}{AWS_CRED}")).await;
}

/// What Java/Go SDKs send over plain connections: signed chunks.
fn signed_chunks(text: &str) -> String {
    let sig = "a".repeat(64);
    format!(
        "{:x};chunk-signature={sig}\r\n{text}\r\n0;chunk-signature={sig}\r\nx-amz-checksum-crc32:{}\r\nx-amz-trailer-signature:{sig}\r\n\r\n",
        text.len(),
        "DUoRhQ=="
    )
}

#[tokio::test]
async fn signed_chunks_are_judged_decoded_and_forwarded_both_ways() {
    for creds in [false, true] {
        install_crypto();
        let ca = TestCa::new("Upstream Test CA");
        let up = Upstream::https(&ca, &["agent-bucket.s3.amazonaws.com"]).await;
        let extra = if creds {
            format!("{ADMIN}{AWS_CRED}")
        } else {
            ADMIN.to_string()
        };
        let sm = SudoMode::start(Options {
            extra: &extra,
            resolve: vec![("agent-bucket.s3.amazonaws.com:443".into(), up.addr)],
            ca_files: vec![ca.pem.clone()],
            env: vec![
                ("TEST_AWS_AKID".into(), AWS_AKID.into()),
                ("TEST_AWS_SECRET".into(), AWS_SECRET.into()),
            ],
            ..Default::default()
        });
        let body = signed_chunks("hello world");
        let r = sm
            .client()
            .put("https://agent-bucket.s3.amazonaws.com/notes/b.txt")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDPLACEHOLDER0000/20250101/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-trailer, Signature=00")
            .header("x-amz-date", "20250101T000000Z")
            .header("content-encoding", "aws-chunked")
            .header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
            .header("x-amz-trailer", "x-amz-checksum-crc32")
            .header("x-amz-decoded-content-length", "11")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "creds={creds}: {}", sm.logs());
        let got = up.requests();
        assert_eq!(got.len(), 1);
        let sent = &got[0];
        if creds {
            assert_eq!(sent.body, b"hello world", "decoded, an ordinary payload");
            assert_eq!(sent.header("x-amz-checksum-crc32"), Some("DUoRhQ=="));
            assert_eq!(sent.header("content-encoding"), None);
            assert_eq!(sent.header("x-amz-decoded-content-length"), None);
            assert_eq!(sent.header("x-amz-trailer"), None);
            assert_eq!(
                sent.header("x-amz-content-sha256"),
                Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
            );
            assert!(sent.header("authorization").unwrap().contains(AWS_AKID));
        } else {
            assert_eq!(sent.body, body.as_bytes(), "byte for byte");
            assert_eq!(sent.header("content-encoding"), Some("aws-chunked"));
        }
        let args = put_args(&sm).await;
        assert_eq!(args["size"], 11, "{args}");
        assert_eq!(args["checksum"]["crc32"], "DUoRhQ==", "{args}");
    }
}
