//! Helpers shared by the integration tests: building requests and running the botocore
//! verifier.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use sudomode_credentials::{AwsSpec, CredentialSpec, Injector, Secret};

pub const REAL_AKID: &str = "AKIAREALREALREAL1234";
pub const REAL_SECRET: &str = "realSecretKey/abcdefghijklmnopqrstuvwxyz0";
pub const REAL_TOKEN: &str = "FwoGZXIvYXdzEREALSESSIONTOKEN//+abc=";
pub const DUMMY_AKID: &str = "AKIDPLACEHOLDER00000";
pub const DUMMY_TOKEN: &str = "DUMMYSESSIONTOKENFROMAGENT";

pub fn aws_injector(token: bool) -> Injector {
    Injector::new(vec![CredentialSpec {
        name: "aws".into(),
        hosts: vec!["*.amazonaws.com".into()],
        header: None,
        value: None,
        aws: Some(AwsSpec {
            access_key_id: Secret::new(REAL_AKID),
            secret_access_key: Secret::new(REAL_SECRET),
            session_token: token.then(|| Secret::new(REAL_TOKEN)),
        }),
        plaintext: false,
    }])
    .expect("valid spec")
}

/// A request head as the agent's SDK would send it, signed with the dummy key.
pub fn agent_request(method: &str, url: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

/// Everything in the request head, flattened, to search for leaked placeholders.
pub fn dump(parts: &http::request::Parts) -> String {
    let mut s = format!("{} {}\n", parts.method, parts.uri);
    for (k, v) in &parts.headers {
        s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    s
}

/// Runs tests/sigv4_verify.py on the re-signed request: `None` (after printing a notice) when
/// python3 or botocore is missing, else `Ok` or the verifier's complaint.
pub fn run_verifier(
    parts: &http::request::Parts,
    body: &[u8],
    token: bool,
) -> Option<Result<(), String>> {
    let have_botocore = Command::new("python3")
        .args(["-c", "import botocore"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have_botocore {
        eprintln!("NOTICE: python3/botocore missing; skipping the independent SigV4 check");
        return None;
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
        .collect();
    let mut input = serde_json::json!({
        "method": parts.method.as_str(),
        "url": parts.uri.to_string(),
        "headers": headers,
        "body_hex": hex::encode(body),
        "access_key_id": REAL_AKID,
        "secret_access_key": REAL_SECRET,
    });
    if token {
        input["session_token"] = REAL_TOKEN.into();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sigv4_verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python3 output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == "ok" {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "{stdout}\n{}\nrequest:\n{}",
            String::from_utf8_lossy(&out.stderr),
            dump(parts)
        )))
    }
}

/// Asserts the botocore verifier accepts the request (skips with a notice without botocore).
pub fn verify(parts: &http::request::Parts, body: &[u8], token: bool) {
    if let Some(Err(why)) = run_verifier(parts, body, token) {
        panic!("botocore verifier rejected the re-signed request: {why}");
    }
}
