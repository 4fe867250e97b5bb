//! The agent never holds the keys (SPEC §7): official SDKs with placeholder
//! keys through SudoMode; the stand-in upstream receives the real ones, and
//! re-signed AWS requests verify with botocore's own SigV4 implementation.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use serde_json::json;

const STRIPE_KEY: &str = "sk_live_REAL_STRIPE_KEY_51Hx";
const AWS_AKID: &str = "AKIAREALKEY000000001";
const AWS_SECRET: &str = "REALsecretKEYvalue/abc+123";

const HOSTS: &[&str] = &[
    "api.stripe.com",
    "dynamodb.us-east-1.amazonaws.com",
    "agent-bucket.s3.amazonaws.com",
    "agent-bucket.s3.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "api.example.test",
];

const CREDS: &str = r#"
credentials:
  - name: stripe
    hosts: ["api.stripe.com"]
    header: Authorization
    value: "Bearer ${env:TEST_STRIPE_SECRET}"
  - name: aws
    hosts: ["*.amazonaws.com"]
    aws: {access_key_id: "${env:TEST_AWS_AKID}", secret_access_key: "${env:TEST_AWS_SECRET}"}
operators:
  - {name: alice, token: alice-token-1, role: admin}
"#;

async fn world() -> (TestCa, Upstream, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, HOSTS).await;
    let sm = SudoMode::start(Options {
        extra: CREDS,
        resolve: HOSTS
            .iter()
            .map(|h| (format!("{h}:443"), up.addr))
            .collect(),
        ca_files: vec![ca.pem.clone()],
        env: vec![
            ("TEST_STRIPE_SECRET".into(), STRIPE_KEY.into()),
            ("TEST_AWS_AKID".into(), AWS_AKID.into()),
            ("TEST_AWS_SECRET".into(), AWS_SECRET.into()),
            ("SUDOMODE_LOG".into(), "debug".into()),
        ],
        ..Default::default()
    });
    (ca, up, sm)
}

/// Recomputes the SigV4 signature of what the upstream received, with the
/// real keys, using botocore (crates/credentials/tests/sigv4_verify.py).
fn botocore_verifies(r: &Received) -> Result<(), String> {
    let host = r.header("host").map(str::to_string).unwrap_or_default();
    let url = if r.uri.starts_with("http") {
        r.uri.clone()
    } else {
        format!("https://{host}{}", r.uri)
    };
    let mut headers: Vec<(String, String)> = r.headers.clone();
    if r.header("host").is_none()
        && let Ok(u) = url.parse::<http::Uri>()
    {
        headers.push((
            "host".into(),
            u.authority().map(|a| a.to_string()).unwrap_or_default(),
        ));
    }
    let input = json!({
        "method": r.method, "url": url, "headers": headers, "body_hex": hex::encode(&r.body),
        "access_key_id": AWS_AKID, "secret_access_key": AWS_SECRET,
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/credentials/tests/sigv4_verify.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.trim() == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

#[tokio::test]
async fn stripe_sdk_with_a_placeholder_key_sends_the_real_one_upstream() {
    let (_ca, up, sm) = world().await;
    let r = sdk_agent(
        &sm,
        "stripe_small_charge",
        &[("STRIPE_API_KEY", "sk_test_placeholder")],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let got = up.requests();
    assert_eq!(got.len(), 1);
    let auths: Vec<&str> = got[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        auths,
        vec![format!("Bearer {STRIPE_KEY}").as_str()],
        "exactly the real key, nothing else"
    );
    assert!(!format!("{:?}", got[0].headers).contains("placeholder"));
}

#[tokio::test]
async fn boto3_dynamodb_and_s3_are_resigned_and_verify_with_botocore() {
    let (_ca, up, sm) = world().await;
    for call in ["ddb_list_tables", "s3_put", "s3_get"] {
        let r = sdk_agent(&sm, call, &[]).await;
        assert_eq!(r["ok"], true, "{call}: {r}\n{}", sm.logs());
    }
    let got = up.requests();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1].method, "PUT");
    assert_eq!(got[1].body, b"hello from the agent");
    for r in &got {
        let auth = r.header("authorization").unwrap();
        assert!(
            auth.contains(AWS_AKID),
            "re-signed with the real key id: {auth}"
        );
        assert!(!auth.contains("AKIDPLACEHOLDER"), "{auth}");
        botocore_verifies(r).unwrap_or_else(|e| panic!("{} {}: {e}", r.method, r.uri));
    }
}

#[tokio::test]
async fn hosts_outside_the_list_get_no_credential_and_secrets_appear_nowhere() {
    let (_ca, up, sm) = world().await;
    let client = sm.client();
    let resp = client
        .get("https://api.example.test/whoami")
        .header("authorization", "Bearer agent-own-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.requests();
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer agent-own-token")
    );
    // Exercise the real keys so that they flow through every layer.
    assert_eq!(sdk_agent(&sm, "stripe_small_charge", &[]).await["ok"], true);
    assert_eq!(sdk_agent(&sm, "ddb_list_tables", &[]).await["ok"], true);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let api = sm.api();
    let mut channels = vec![sm.logs()];
    for path in [
        "/api/v1/audit/export",
        "/api/v1/requests?limit=500",
        "/api/v1/audit?after_seq=0&limit=500",
        "/metrics",
    ] {
        let r = api
            .get(sm.dashboard_url(path))
            .bearer_auth("alice-token-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        channels.push(r.text().await.unwrap());
    }
    let secret_tail = &AWS_SECRET[..12];
    for (i, text) in channels.iter().enumerate() {
        for secret in [STRIPE_KEY, AWS_SECRET, secret_tail] {
            assert!(!text.contains(secret), "channel {i} leaks a secret");
        }
    }
    assert!(channels[0].contains("DEBUG"), "logs were at debug level");
}
