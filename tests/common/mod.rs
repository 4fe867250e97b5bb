//! Shared integration-test harness: a test CA, stand-in upstreams (HTTPS with
//! h2 + HTTP/1.1, or plain HTTP) that record what they receive, SudoMode
//! started as the real binary on port 0 in a temp dir, and proxied clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA for stand-in upstreams (what the "real" internet would present).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// (cert chain DER, key DER) for the given names.
    pub fn leaf(
        &self,
        names: &[&str],
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }
}

/// What a stand-in upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A stand-in upstream. `/sse` streams two events, the second only after
/// `release_sse` is called; everything else echoes the request as JSON.
pub struct Upstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub cert_der: Option<Vec<u8>>,
    sse_gate: Arc<tokio::sync::Notify>,
}

impl Upstream {
    pub async fn https(ca: &TestCa, names: &[&str]) -> Upstream {
        let (chain, key) = ca.leaf(names);
        let cert_der = chain[0].to_vec();
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start(Some(Arc::new(cfg)), Some(cert_der)).await
    }

    pub async fn http() -> Upstream {
        Self::start(None, None).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, cert_der: Option<Vec<u8>>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sse_gate = Arc::new(tokio::sync::Notify::new());
        let (rec, gate) = (received.clone(), sse_gate.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, gate, tls) = (rec.clone(), gate.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc =
                        service_fn(move |req| upstream_handler(req, rec.clone(), gate.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(cfg) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                            else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            received,
            cert_der,
            sse_gate,
        }
    }

    pub fn release_sse(&self) {
        self.sse_gate.notify_one();
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_handler(
    req: hyper::Request<hyper::body::Incoming>,
    rec: Arc<Mutex<Vec<Received>>>,
    gate: Arc<tokio::sync::Notify>,
) -> Result<hyper::Response<UpBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let r = Received {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: format!("{:?}", parts.version),
        headers: headers.clone(),
        body: body.clone(),
    };
    rec.lock().unwrap().push(r.clone());
    // `x-stand-in-delay-ms: N`: a slow upstream (answers after N ms).
    if let Some(ms) = parts
        .headers
        .get("x-stand-in-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if parts.uri.path() == "/sse" {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))))
                .await;
            gate.notified().await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))))
                .await;
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let resp = hyper::Response::builder()
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(stream).boxed())
            .unwrap();
        return Ok(resp);
    }
    if r.method == "PUT" {
        // S3's wire format: PutObject answers 200 with an ETag and no body
        // (botocore treats a non-XML body on PutObject as an error).
        return Ok(hyper::Response::builder()
            .header("etag", "\"9b2cf535f27731c974343645a3985328\"")
            .header("x-upstream", "stand-in")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap());
    }
    let echo = json!({
        "method": r.method, "uri": r.uri, "version": r.version,
        "headers": headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&body),
    });
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "stand-in")
        .body(Full::new(Bytes::from(echo.to_string())).boxed())
        .unwrap())
}

pub const ALLOW_ALL: &str = "rules:\n  - name: allow_all\n    resource: \"*\"\n    decision: ALLOW\n    reason: test policy\n";

/// A running SudoMode binary in its own temp dir.
pub struct SudoMode {
    pub dir: tempfile::TempDir,
    pub proxy: SocketAddr,
    pub dashboard: SocketAddr,
    pub child: Child,
    pub stderr_path: PathBuf,
}

pub struct Options<'a> {
    pub policy: &'a str,
    /// Extra top-level YAML appended to the config.
    pub extra: &'a str,
    /// `host:port` → upstream address.
    pub resolve: Vec<(String, SocketAddr)>,
    pub ca_files: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run the binary under this open-files limit (soft and hard, via `prlimit`).
    pub nofile: Option<u64>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            policy: ALLOW_ALL,
            extra: "",
            resolve: vec![],
            ca_files: vec![],
            env: vec![],
            nofile: None,
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sudomode")
}

impl SudoMode {
    pub fn start(opts: Options<'_>) -> SudoMode {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, opts)
    }

    pub fn start_in(dir: tempfile::TempDir, opts: Options<'_>) -> SudoMode {
        Self::start_in_listen(dir, opts, "127.0.0.1:0", "127.0.0.1:0")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("certs/ca.pem")).unwrap()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    pub fn dashboard_url(&self, path: &str) -> String {
        format!("http://{}{}", self.dashboard, path)
    }

    /// A client that goes through the proxy and trusts only SudoMode's CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        install_crypto();
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.proxy_url()).unwrap())
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(30))
    }

    /// A client for the dashboard listener (no proxy).
    pub fn api(&self) -> reqwest::Client {
        install_crypto();
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for SudoMode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON error body SudoMode answers with.
pub async fn error_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v)
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Runs `tests/sdk/agent.py CALL` (official SDKs) through SudoMode with the
/// agent environment of `sudomode env`. Returns the script's JSON line.
pub async fn sdk_agent(sm: &SudoMode, call: &str, extra_env: &[(&str, &str)]) -> Value {
    let mut cmd = python_agent(sm, "agent.py");
    cmd.arg(call)
        .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        .envs(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    last_json_line(cmd, &format!("agent.py {call}")).await
}

/// `python3 tests/sdk/SCRIPT` with the agent environment of `sudomode env`
/// and placeholder AWS keys.
fn python_agent(sm: &SudoMode, script: &str) -> tokio::process::Command {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let bundle = sm.path("certs/ca-bundle.pem").display().to_string();
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(path)
        .env("HTTPS_PROXY", sm.proxy_url())
        .env("HTTP_PROXY", sm.proxy_url())
        .env("NO_PROXY", "")
        .env("REQUESTS_CA_BUNDLE", &bundle)
        .env("SSL_CERT_FILE", &bundle)
        .env("AWS_CA_BUNDLE", &bundle)
        .env("AWS_ACCESS_KEY_ID", "AKIDPLACEHOLDER0000")
        .env("AWS_SECRET_ACCESS_KEY", "placeholder-secret")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Runs `cmd` and parses its last stdout line as JSON.
async fn last_json_line(mut cmd: tokio::process::Command, what: &str) -> Value {
    // Async so stand-in upstreams on this test's runtime keep serving.
    let out = cmd.output().await.expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("{what}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// Upstream for well-known API hosts, all resolved to one stand-in.
pub async fn api_world(policy: &str, extra: &str, hosts: &[&str]) -> (TestCa, Upstream, SudoMode) {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, hosts).await;
    let sm = SudoMode::start(Options {
        policy,
        extra,
        resolve: hosts
            .iter()
            .map(|h| (format!("{h}:443"), up.addr))
            .collect(),
        ca_files: vec![ca.pem.clone()],
        ..Default::default()
    });
    (ca, up, sm)
}

// --- Added for tests/evasion.rs, tests/limits.rs and tests/crash.rs. ---

impl SudoMode {
    /// Like [`SudoMode::start_in`], with fixed listen addresses (e.g. a
    /// port picked beforehand, so `upstream.resolve` can point at it).
    pub fn start_in_listen(
        dir: tempfile::TempDir,
        opts: Options<'_>,
        proxy_listen: &str,
        dashboard_listen: &str,
    ) -> SudoMode {
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/test.yaml"), opts.policy).unwrap();
        let mut ca_files = opts.ca_files.clone();
        for (i, pem) in ca_files.iter_mut().enumerate() {
            let p = dir.path().join(format!("upstream-ca-{i}.pem"));
            std::fs::write(&p, &pem).unwrap();
            *pem = p.display().to_string();
        }
        let mut yaml = String::new();
        yaml.push_str("upstream:\n  connect_timeout: 3s\n  timeout: 20s\n");
        yaml.push_str(&format!(
            "  ca_files: {}\n",
            serde_json::to_string(&ca_files).unwrap()
        ));
        let resolve: BTreeMap<String, String> = opts
            .resolve
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        yaml.push_str(&format!(
            "  resolve: {}\n",
            serde_json::to_string(&resolve).unwrap()
        ));
        yaml.push_str(opts.extra);
        std::fs::write(dir.path().join("sudomode.yaml"), yaml).unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = match opts.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .args([
                "run",
                "-c",
                "sudomode.yaml",
                "--proxy-listen",
                proxy_listen,
                "--dashboard-listen",
                dashboard_listen,
            ])
            .current_dir(dir.path())
            .env("SUDOMODE_LOG", "info,sudomode=debug")
            .envs(opts.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&stderr_path)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut proxy, mut dashboard) = (None, None);
        while proxy.is_none() || dashboard.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("sudomode exited early: {err}");
            };
            let addr = |l: &str| {
                l.rsplit("://")
                    .next()
                    .map(|a| a.trim().parse::<SocketAddr>().unwrap())
            };
            if line.trim_start().starts_with("proxy:") {
                proxy = addr(&line);
            } else if line.trim_start().starts_with("dashboard:") {
                dashboard = addr(&line);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        SudoMode {
            dir,
            proxy: proxy.unwrap(),
            dashboard: dashboard.unwrap(),
            child,
            stderr_path,
        }
    }

    /// Kills the process with SIGKILL (no clean shutdown) and starts it
    /// again in the same directory (same store, CA and config).
    pub fn restart(mut self, opts: Options<'_>) -> SudoMode {
        self.kill9();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        drop(self);
        SudoMode::start_in(dir, opts)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxied client authenticating as agent `name`.
pub fn agent_client(sm: &SudoMode, name: &str, token: &str) -> reqwest::Client {
    agent_client_timeout(sm, name, token, Duration::from_secs(60))
}

/// [`agent_client`] giving up on a call after `timeout`.
pub fn agent_client_timeout(
    sm: &SudoMode,
    name: &str,
    token: &str,
    timeout: Duration,
) -> reqwest::Client {
    install_crypto();
    let ca = reqwest::Certificate::from_pem(sm.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{name}:{token}@{}", sm.proxy)).unwrap())
        .tls_certs_only([ca])
        .timeout(timeout)
        .build()
        .unwrap()
}

impl SudoMode {
    /// GET an operator API path with a bearer token; returns (status, JSON).
    pub async fn api_get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .api()
            .get(self.dashboard_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// POST JSON to an operator API path with a bearer token.
    pub async fn api_post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .api()
            .post(self.dashboard_url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls until `n` requests are pending; returns them (newest first).
    pub async fn wait_pending(&self, token: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.api_get("/api/v1/requests?status=pending", token).await;
            let list = v["requests"].as_array().cloned().unwrap_or_default();
            if list.len() >= n {
                return list;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} pending: {v}\n{}",
                list.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the log until `ok` holds for it; returns it. A log line may
    /// follow the store event or response that a test waited for.
    pub async fn wait_logs(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.logs();
            if ok(&logs) {
                return logs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never logged: {what}\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A response read off a raw socket.
pub struct RawResp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResp {
    /// The JSON object in the body (Null if none).
    pub fn json(&self) -> Value {
        let s = String::from_utf8_lossy(&self.body);
        match (s.find('{'), s.rfind('}')) {
            (Some(a), Some(b)) if b >= a => serde_json::from_str(&s[a..=b]).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// Splits a raw HTTP/1.1 response into status, head and body.
pub fn parse_raw_response(buf: &[u8]) -> RawResp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResp {
        status,
        head,
        body: buf[split..].to_vec(),
    }
}

// --- Added for tests/policy_lang.rs. ---

/// What one `sudomode` command printed.
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `sudomode ARGS` in `dir` with no config path or admin token from the
/// environment, logging warnings only.
pub fn cli(dir: &Path, args: &[&str]) -> CliOut {
    cli_env(dir, args, &[])
}

/// [`cli`] with `env` set as well.
pub fn cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOut {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SUDOMODE_CONFIG")
        .env_remove("SUDOMODE_ADMIN_TOKEN")
        .env("SUDOMODE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// --- Added for tests/scaleout.rs: PostgreSQL for several replicas. ---

/// A PostgreSQL database for one test: a fresh database on the server
/// `SUDOMODE_TEST_POSTGRES` names (scripts/test starts one), else on a
/// throwaway cluster of this test's own (Debian's server binaries, as root).
pub struct Pg {
    /// `postgres://…/<database>` of this test.
    pub url: String,
    cluster: Option<PgCluster>,
}

/// A throwaway PostgreSQL cluster in a temp dir, on a free loopback port;
/// stopped and deleted when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    tls: bool,
}

fn pg_bin() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("SUDOMODE_TEST_PG_BIN") {
        return Some(PathBuf::from(b));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl PgCluster {
    /// initdb + start. Needs root (the server runs as user `postgres`).
    pub fn start() -> PgCluster {
        Self::start_with(None)
    }

    /// Like [`PgCluster::start`], serving TLS with a certificate for
    /// 127.0.0.1 from `ca` (and plaintext too, as PostgreSQL does).
    pub fn start_tls(ca: &TestCa) -> PgCluster {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> PgCluster {
        let bin = pg_bin().expect(
            "no PostgreSQL server binaries: apt-get install postgresql, or set SUDOMODE_TEST_POSTGRES (scripts/test does)",
        );
        let dir = tempfile::Builder::new()
            .prefix("sudomode-pg-")
            .tempdir()
            .unwrap();
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "chown postgres (run the tests as root)");
        let out = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = PgCluster {
            dir,
            bin,
            port: free_port(),
            tls: false,
        };
        if let Some(ca) = tls {
            let (chain, key) = ca.leaf(&["127.0.0.1"]);
            let pem = |label: &str, der: &[u8]| {
                let b = base64::engine::general_purpose::STANDARD.encode(der);
                let lines: Vec<&str> = b
                    .as_bytes()
                    .chunks(64)
                    .map(|l| std::str::from_utf8(l).unwrap())
                    .collect();
                format!(
                    "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                    lines.join("\n")
                )
            };
            let data = c.dir.path().join("data");
            std::fs::write(data.join("server.crt"), pem("CERTIFICATE", &chain[0])).unwrap();
            std::fs::write(
                data.join("server.key"),
                pem("PRIVATE KEY", key.secret_der()),
            )
            .unwrap();
            for f in ["server.crt", "server.key"] {
                let p = data.join(f);
                Command::new("chown")
                    .arg("postgres")
                    .arg(&p)
                    .status()
                    .unwrap();
                Command::new("chmod").arg("600").arg(&p).status().unwrap();
            }
            c.tls = true;
        }
        c.resume();
        c
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Starts the server again on the same port.
    pub fn resume(&self) {
        self.resume_with("");
    }

    /// Starts the server again on the same port, with `extra` server
    /// options (`-c name=value …`).
    pub fn resume_with(&self, extra: &str) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {extra}",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            opts.push_str(" -c ssl=on");
        }
        let log = self.dir.path().join("log").display().to_string();
        let out = self.ctl(&["-w", "-o", &opts, "-l", &log, "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: open connections are cut).
    pub fn halt(&self) {
        self.stop("fast");
    }

    /// Kills the server as a crash would (`-m immediate`): what its
    /// processes kept in memory is lost, what they wrote out is not.
    pub fn crash(&self) {
        self.stop("immediate");
    }

    fn stop(&self, mode: &str) {
        let out = self.ctl(&["-w", "-m", mode, "stop"]);
        assert!(out.status.success(), "pg_ctl stop -m {mode}: {out:?}");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.ctl(&["-m", "immediate", "stop"]);
    }
}

/// Runs SQL with psql; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Pg {
    /// A fresh database for this test (see [`Pg`]).
    pub fn database() -> Pg {
        let (server, cluster) = match std::env::var("SUDOMODE_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let c = PgCluster::start();
                (c.url("postgres"), Some(c))
            }
        };
        let name = format!("sudomode_test_{}", uuid::Uuid::new_v4().simple());
        psql(&server, &format!("CREATE DATABASE {name}"));
        let base = server
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(server.clone());
        Pg {
            url: format!("{base}/{name}"),
            cluster,
        }
    }

    /// A database on a cluster of this test's own, so it can stop and start it.
    pub fn own_cluster() -> Pg {
        let c = PgCluster::start();
        psql(&c.url("postgres"), "CREATE DATABASE sudomode");
        Pg {
            url: c.url("sudomode"),
            cluster: Some(c),
        }
    }

    pub fn cluster(&self) -> &PgCluster {
        self.cluster.as_ref().expect("a cluster of this test's own")
    }

    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl SudoMode {
    /// A replica on PostgreSQL: `store.postgres` read from
    /// `$SUDOMODE_DATABASE_URL`, with the CA of `share_ca_from` (replicas
    /// share one CA, so agents trust any of them).
    pub fn replica(
        db_url: &str,
        share_ca_from: Option<&SudoMode>,
        mut opts: Options<'_>,
        extra: &str,
    ) -> SudoMode {
        let dir = tempfile::tempdir().unwrap();
        if let Some(other) = share_ca_from {
            std::fs::create_dir_all(dir.path().join("certs")).unwrap();
            for f in ["ca.pem", "ca-key.pem", "ca-bundle.pem"] {
                let from = other.path(&format!("certs/{f}"));
                if from.exists() {
                    std::fs::copy(from, dir.path().join("certs").join(f)).unwrap();
                }
            }
        }
        let yaml = format!("store:\n  postgres: \"${{env:SUDOMODE_DATABASE_URL}}\"\n{extra}");
        let yaml: &'static str = Box::leak(yaml.into_boxed_str());
        opts.extra = yaml;
        opts.env
            .push(("SUDOMODE_DATABASE_URL".into(), db_url.to_string()));
        SudoMode::start_in(dir, opts)
    }
}

// --- Added for tests/newcomer.rs and tests/aws_sdk.rs. ---

impl TestCa {
    /// (certificate PEM, private key PEM) for the given names, for stand-ins
    /// that read PEM files (moto_server).
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Runs a Python script from `tests/sdk/` as [`sdk_agent`] does, but with
/// the AWS checksum settings at their defaults and no shared AWS config;
/// returns its last stdout line as JSON.
pub async fn sdk_script(
    sm: &SudoMode,
    script: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> Value {
    let mut cmd = python_agent(sm, script);
    cmd.args(args)
        .env_remove("AWS_REQUEST_CHECKSUM_CALCULATION")
        .env_remove("AWS_RESPONSE_CHECKSUM_VALIDATION")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .envs(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    last_json_line(cmd, &format!("{script} {args:?}")).await
}

impl RawResp {
    /// SudoMode's JSON error: the body, or for an answer in an AWS service's
    /// own format, the `X-SudoMode-Error` header it carries.
    pub fn sudomode_error(&self) -> Value {
        let header = self.head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-sudomode-error")
                .then(|| value.trim().to_string())
        });
        header
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_else(|| self.json())
    }
}

// --- Raw requests over an intercepted tunnel (tests/evasion.rs, tests/redteam_agent.rs). ---

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut buf)).await;
    buf
}

/// CONNECT `connect_to`, TLS with SNI `sni` trusting SudoMode's CA, then
/// writes `req` verbatim (it should carry `Connection: close`).
pub async fn raw_tls(sm: &SudoMode, connect_to: &str, sni: &str, req: &[u8]) -> RawResp {
    use rustls::pki_types::pem::PemObject;
    let mut s = tokio::net::TcpStream::connect(sm.proxy).await.unwrap();
    s.write_all(format!("CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).await.is_err() {
            return parse_raw_response(&head);
        }
        head.push(b[0]);
    }
    let r = parse_raw_response(&head);
    if r.status != 200 {
        let mut rest = read_all(&mut s).await;
        head.append(&mut rest);
        return parse_raw_response(&head);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(sm.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, s)
        .await
        .unwrap();
    tls.write_all(req).await.unwrap();
    tls.flush().await.unwrap();
    parse_raw_response(&read_all(&mut tls).await)
}

/// Plain-HTTP proxying: writes `req` verbatim to the proxy, reads to close.
pub async fn raw_plain(sm: &SudoMode, req: &[u8]) -> RawResp {
    let mut s = tokio::net::TcpStream::connect(sm.proxy).await.unwrap();
    s.write_all(req).await.unwrap();
    parse_raw_response(&read_all(&mut s).await)
}

/// One request to `host`, built from a method, target, extra header lines and body.
pub fn req(method: &str, host: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty()
        && !headers
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

/// The `type` of each event of a request as the operator API returns it
/// (`GET /api/v1/requests/{id}`), in order.
pub fn event_types(rec: &Value) -> Vec<String> {
    rec["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
