//! `loadgen`: SudoMode's load generator. Every mode prints one JSON object on
//! stdout and is bounded in time and count.
//!
//! - `run`   — N connections (HTTP/1.1 keep-alive, or HTTP/2 with S streams
//!   each), direct or through an HTTP proxy via CONNECT; requests/s and
//!   latency percentiles.
//! - `first` — a new connection per request to never-seen host names, then to
//!   the same names again: the cost of leaf certificate issuance.
//! - `hold`  — N agent calls held for approval at once, then approved through
//!   the operator API; memory and time until every call completed.
//! - `fsync` — fsync latency on a directory's disk (the `strict` baseline).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sudomode_bench::{Route, client_config, new_histogram, open_tls, parse_proxy, record, summary};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "loadgen", about = "SudoMode load generator (JSON on stdout)")]
struct Cli {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Sustained load: requests/s and latency.
    Run(RunArgs),
    /// First request to never-seen hosts vs cached hosts (new connection each).
    First(FirstArgs),
    /// Hold N requests for approval, then approve them all through the API.
    Hold(HoldArgs),
    /// fsync latency of the disk holding DIR.
    Fsync(FsyncArgs),
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Origin URL requested (its host is the TLS name and the CONNECT target).
    #[arg(long, default_value = "https://bench.local/")]
    url: String,
    /// HTTP proxy (`http://IP:PORT`); requests go through it with CONNECT.
    #[arg(long)]
    proxy: Option<String>,
    /// Dial this address directly (no proxy); the URL's host need not resolve.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Authority sent in CONNECT instead of the URL's `host:port`
    /// (for proxies that must resolve it themselves, e.g. mitmdump).
    #[arg(long)]
    connect_authority: Option<String>,
    /// CA certificate(s) to trust (PEM), repeatable.
    #[arg(long = "ca", required = true)]
    ca: Vec<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// HTTP version inside the tunnel: 1 (HTTP/1.1 keep-alive) or 2 (h2 via ALPN).
    #[arg(long, default_value_t = 1)]
    http: u8,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent streams per connection (HTTP/2 only).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Measured duration in seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (requests sent but not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many measured requests (whichever comes first with --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args)]
struct FirstArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Number of distinct host names: `{prefix}{i}.{domain}` for i in start..start+hosts.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    #[arg(long, default_value_t = 0)]
    start: usize,
    #[arg(long, default_value = "h")]
    prefix: String,
    #[arg(long, default_value = "bench.local")]
    domain: String,
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Operator API base URL (the dashboard listener), e.g. http://127.0.0.1:8081.
    #[arg(long)]
    dashboard: String,
    /// Operator (admin) token for the API.
    #[arg(long, env = "SUDOMODE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Agent calls held at once.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    open_concurrency: usize,
    /// Approvals in flight at once.
    #[arg(long, default_value_t = 64)]
    approve_concurrency: usize,
    /// SudoMode's process id (its RSS is sampled from /proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// Give up after this many seconds in total.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Args)]
struct FsyncArgs {
    /// Directory on the disk to measure (a temporary file is created and removed).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Bytes written before each fsync.
    #[arg(long, default_value_t = 4096)]
    bytes: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = cli.threads {
        rt.worker_threads(t);
    }
    let rt = rt.build()?;
    let out = rt.block_on(async move {
        match cli.mode {
            Mode::Run(a) => run(a).await,
            Mode::First(a) => first(a).await,
            Mode::Hold(a) => hold(a).await,
            Mode::Fsync(a) => fsync(a),
        }
    })?;
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &out)?;
    writeln!(stdout)?;
    // Do not wait for lingering connection tasks.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// The parsed origin.
#[derive(Clone)]
struct Origin {
    host: String,
    port: u16,
    path: String,
}

impl Origin {
    fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad --url {url:?}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--url must be https://");
        }
        let host = uri.host().context("--url has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(443);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Self { host, port, path })
    }
    fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
    fn route(&self, t: &TargetArgs) -> Result<Route> {
        Ok(Route {
            proxy: t.proxy.as_deref().map(parse_proxy).transpose()?,
            direct: t.connect,
            connect_authority: t
                .connect_authority
                .clone()
                .unwrap_or_else(|| format!("{}:{}", self.host, self.port)),
            server_name: self.host.clone(),
        })
    }
}

fn h1_request(origin: &Origin, path: &str) -> Result<Request<Empty<Bytes>>> {
    Ok(Request::get(path)
        .header(header::HOST, origin.authority())
        .body(Empty::new())?)
}

fn h2_request(origin: &Origin, path: &str) -> Result<Request<Empty<Bytes>>> {
    let uri = format!("https://{}{}", origin.authority(), path);
    Ok(Request::get(uri).body(Empty::new())?)
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

async fn connect(route: &Route, tls: &Arc<rustls::ClientConfig>, h2: bool) -> Result<Sender> {
    let stream = open_tls(route, tls).await?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if h2 {
        if alpn.as_deref() != Some(b"h2") {
            bail!(
                "HTTP/2 asked for but ALPN negotiated {:?}",
                alpn.map(|a| String::from_utf8_lossy(&a).into_owned())
            );
        }
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Sender::H2(send))
    } else {
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Sender::H1(send))
    }
}

/// One request/response; returns (status, body bytes, had X-SudoMode-Request-Id).
async fn one(
    sender: &mut Sender,
    origin: &Origin,
    path: &str,
) -> Result<(StatusCode, usize, bool)> {
    let resp = match sender {
        Sender::H1(s) => {
            s.ready().await?;
            s.send_request(h1_request(origin, path)?).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(h2_request(origin, path)?).await?
        }
    };
    let status = resp.status();
    let tagged = resp.headers().contains_key("x-sudomode-request-id");
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body.len(), tagged))
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    bad_status: AtomicU64,
    errors: AtomicU64,
    tagged: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
}

async fn run(a: RunArgs) -> Result<Value> {
    let origin = Origin::parse(&a.target.url)?;
    let route = origin.route(&a.target)?;
    let h2 = match a.http {
        1 => false,
        2 => true,
        v => bail!("--http must be 1 or 2, not {v}"),
    };
    if !h2 && a.streams != 1 {
        bail!("--streams applies to --http 2 only");
    }
    if a.connections == 0 || a.streams == 0 || a.duration <= 0.0 {
        bail!("--connections, --streams and --duration must be positive");
    }
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = client_config(&a.target.ca, alpn, true)?;

    // Open every connection before the clock starts.
    let mut senders = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        senders.push(connect(&route, &tls, h2).await?);
    }

    let counters = Arc::new(Counters::default());
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(a.warmup.max(0.0));
    let end = warm_end + Duration::from_secs_f64(a.duration);
    let mut tasks = Vec::new();
    for sender in senders {
        let per_conn: Vec<Sender> = match sender {
            Sender::H1(s) => vec![Sender::H1(s)],
            Sender::H2(s) => (0..a.streams).map(|_| Sender::H2(s.clone())).collect(),
        };
        for mut sender in per_conn {
            let (origin, route, tls) = (origin.clone(), route.clone(), tls.clone());
            let (counters, issued) = (counters.clone(), issued.clone());
            let budget = a.requests;
            tasks.push(tokio::spawn(async move {
                let mut hist = new_histogram();
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let measured = t0 >= warm_end;
                    if measured
                        && let Some(max) = budget
                        && issued.fetch_add(1, Ordering::Relaxed) >= max
                    {
                        break;
                    }
                    match one(&mut sender, &origin, &origin.path).await {
                        Ok((status, n, tagged)) => {
                            if measured {
                                record(&mut hist, t0.elapsed());
                                if status == StatusCode::OK {
                                    counters.ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    counters.bad_status.fetch_add(1, Ordering::Relaxed);
                                }
                                if tagged {
                                    counters.tagged.fetch_add(1, Ordering::Relaxed);
                                }
                                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            // Reconnect this worker (bounded by the deadline).
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if let Ok(s) = connect(&route, &tls, h2).await {
                                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                                sender = s;
                            }
                        }
                    }
                }
                (hist, Instant::now())
            }));
        }
    }
    let mut hist = new_histogram();
    let mut last = warm_end;
    for t in tasks {
        let (h, done) = t.await?;
        hist.add(&h).context("merging histograms")?;
        last = last.max(done);
    }
    let elapsed = last
        .saturating_duration_since(warm_end)
        .as_secs_f64()
        .max(1e-9);
    let completed = hist.len();
    Ok(json!({
        "mode": "run",
        "label": a.label,
        "via": if a.target.proxy.is_some() { "proxy" } else { "direct" },
        "http": if h2 { "2" } else { "1.1" },
        "connections": a.connections,
        "streams_per_connection": a.streams,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "requests": completed,
        "ok": counters.ok.load(Ordering::Relaxed),
        "bad_status": counters.bad_status.load(Ordering::Relaxed),
        "errors": counters.errors.load(Ordering::Relaxed),
        "reconnects": counters.reconnects.load(Ordering::Relaxed),
        "with_request_id": counters.tagged.load(Ordering::Relaxed),
        "body_bytes": counters.bytes.load(Ordering::Relaxed),
        "rps": ((completed as f64 / elapsed) * 10.0).round() / 10.0,
        "latency": summary(&hist),
    }))
}

/// One request on a brand-new connection (TCP, CONNECT, full TLS handshake).
async fn fresh_request(
    route: &Route,
    tls: &Arc<rustls::ClientConfig>,
    origin: &Origin,
) -> Result<(Duration, StatusCode)> {
    let t0 = Instant::now();
    let mut sender = connect(route, tls, false).await?;
    let (status, _, _) = one(&mut sender, origin, &origin.path).await?;
    Ok((t0.elapsed(), status))
}

async fn first(a: FirstArgs) -> Result<Value> {
    let base = Origin::parse(&a.target.url)?;
    // No session resumption: every connection pays a full handshake.
    let tls = client_config(&a.target.ca, &[b"http/1.1"], false)?;
    let hosts: Vec<String> = (a.start..a.start + a.hosts)
        .map(|i| format!("{}{}.{}", a.prefix, i, a.domain))
        .collect();
    let mut new_h = new_histogram();
    let mut cached_h = new_histogram();
    let mut errors = Vec::new();
    let mut bad = 0u64;
    for (pass, hist) in [(0, &mut new_h), (1, &mut cached_h)] {
        for host in &hosts {
            let origin = Origin {
                host: host.clone(),
                port: base.port,
                path: base.path.clone(),
            };
            let route = origin.route(&a.target)?;
            match fresh_request(&route, &tls, &origin).await {
                Ok((d, status)) => {
                    record(hist, d);
                    if status != StatusCode::OK {
                        bad += 1;
                    }
                }
                Err(e) => {
                    if errors.len() < 5 {
                        errors.push(format!("pass {pass} {host}: {e:#}"));
                    }
                }
            }
        }
    }
    let diff = match (new_h.is_empty(), cached_h.is_empty()) {
        (false, false) => {
            json!(new_h.value_at_quantile(0.5) as i64 - cached_h.value_at_quantile(0.5) as i64)
        }
        _ => Value::Null,
    };
    Ok(json!({
        "mode": "first",
        "label": a.label,
        "via": if a.target.proxy.is_some() { "proxy" } else { "direct" },
        "hosts": a.hosts,
        "new_host": summary(&new_h),
        "cached_host": summary(&cached_h),
        "new_minus_cached_p50_us": diff,
        "bad_status": bad,
        "errors": errors,
    }))
}

/// On one temporary file, interleaved: append `bytes` then `fdatasync` (what
/// the store crate's `fsync_bench` example measures, and redb's commit pays
/// when the file grows), and overwrite the first block then `fdatasync` (no
/// metadata change).
fn fsync(a: FsyncArgs) -> Result<Value> {
    use std::io::{Seek, SeekFrom};
    let path = a.dir.join(format!(".loadgen-fsync-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0xA5u8; a.bytes];
    let mut append = new_histogram();
    let mut overwrite = new_histogram();
    let mut run = || -> Result<()> {
        // Interleaved, so both see the same background disk traffic.
        let mut end = 0u64;
        for _ in 0..a.count {
            f.seek(SeekFrom::Start(end))?;
            let t0 = Instant::now();
            f.write_all(&buf)?;
            f.sync_data()?;
            record(&mut append, t0.elapsed());
            end += buf.len() as u64;
            f.seek(SeekFrom::Start(0))?;
            let t0 = Instant::now();
            f.write_all(&buf)?;
            f.sync_data()?;
            record(&mut overwrite, t0.elapsed());
        }
        Ok(())
    };
    let r = run();
    let _ = std::fs::remove_file(&path);
    r?;
    Ok(json!({
        "mode": "fsync",
        "dir": a.dir,
        "bytes_per_write": a.bytes,
        "latency": summary(&append),
        "overwrite_latency": summary(&overwrite),
    }))
}

// ---------------------------------------------------------------- hold mode

/// A tiny plain-HTTP/1.1 client for the operator API (loopback).
struct Api {
    addr: SocketAddr,
    host: String,
    token: String,
}

impl Api {
    fn new(base: &str, token: String) -> Result<Self> {
        let rest = base
            .strip_prefix("http://")
            .context("--dashboard must be http://IP:PORT")?;
        let rest = rest.trim_end_matches('/');
        let addr: SocketAddr = rest
            .parse()
            .with_context(|| format!("--dashboard {base:?} must be http://IP:PORT"))?;
        Ok(Self {
            addr,
            host: rest.to_string(),
            token,
        })
    }

    async fn conn(&self) -> Result<http1::SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    async fn call(
        &self,
        conn: &mut http1::SendRequest<Full<Bytes>>,
        method: http::Method,
        path: &str,
        body: Option<&'static str>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {}", self.token))?,
            );
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from_static(body.unwrap_or("").as_bytes())))?;
        conn.ready().await?;
        let resp = conn.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Every pending request whose URL contains `marker` (paged, 500 at a time).
    async fn pending_ids(
        &self,
        conn: &mut http1::SendRequest<Full<Bytes>>,
        marker: &str,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut path = "/api/v1/requests?status=pending&limit=500".to_string();
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(&pct(c));
            }
            let (status, body) = self.call(conn, http::Method::GET, &path, None).await?;
            if status != StatusCode::OK {
                bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: Value = serde_json::from_slice(&body)?;
            let list = v
                .get("requests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for r in &list {
                let url = r.get("url").and_then(Value::as_str).unwrap_or("");
                if url.contains(marker)
                    && let Some(id) = r.get("id").and_then(Value::as_str)
                {
                    ids.push(id.to_string());
                }
            }
            cursor = match v.get("next_cursor") {
                Some(Value::String(s)) if !s.is_empty() && !list.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) if !list.is_empty() => Some(n.to_string()),
                _ => None,
            };
            if cursor.is_none() {
                break;
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    let Some(pid) = pid else { return (None, None) };
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(k: Option<u64>) -> Value {
    k.map(|k| json!((k as f64 / 1024.0 * 10.0).round() / 10.0))
        .unwrap_or(Value::Null)
}

async fn hold(a: HoldArgs) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let api = Arc::new(Api::new(&a.dashboard, a.token.clone())?);
    let mut ctl = api.conn().await?;
    let (status, body) = api
        .call(
            &mut ctl,
            http::Method::GET,
            "/api/v1/requests?status=pending&limit=1",
            None,
        )
        .await?;
    if status == StatusCode::NOT_FOUND {
        let text = String::from_utf8_lossy(&body);
        let short: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(120)
            .collect();
        return Ok(json!({"mode": "hold", "skipped": true,
            "reason": format!("GET /api/v1/requests answered 404 ({short}): the hold/approve API is not built yet")}));
    }
    if status != StatusCode::OK {
        bail!(
            "operator API: GET /api/v1/requests: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    let base = Origin::parse(&a.target.url)?;
    let route = base.route(&a.target)?;
    let tls = client_config(&a.target.ca, &[b"http/1.1"], true)?;
    let marker = format!(
        "hold-{}-{}",
        std::process::id(),
        Instant::now().elapsed().subsec_nanos()
    );
    let (rss_idle, _) = rss_kib(a.pid);

    // The agents: one connection and one request each, held until decided.
    let opened = Arc::new(AtomicUsize::new(0));
    let open_errors = Arc::new(AtomicUsize::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let sem = Arc::new(Semaphore::new(a.open_concurrency.max(1)));
    let t_open = Instant::now();
    let mut agents = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let (route, tls, sem) = (route.clone(), tls.clone(), sem.clone());
        let (opened, open_errors) = (opened.clone(), open_errors.clone());
        let path = format!("{}/{}/{}", base.path.trim_end_matches('/'), marker, i);
        let origin = base.clone();
        agents.push(tokio::spawn(async move {
            let conn = {
                let _permit = sem.acquire().await;
                match connect(&route, &tls, false).await {
                    Ok(s) => s,
                    Err(e) => {
                        open_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut conn = conn;
            let r = tokio::time::timeout_at(deadline.into(), one(&mut conn, &origin, &path)).await;
            let done = Instant::now();
            match r {
                Ok(Ok((status, _, _))) => Ok((status, done)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(anyhow::anyhow!("timed out")),
            }
        }));
    }

    // Wait until every call is pending in the API.
    let mut ids = Vec::new();
    let mut polls = 0u32;
    while Instant::now() < deadline && !abort.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        polls += 1;
        ids = match api.pending_ids(&mut ctl, &marker).await {
            Ok(ids) => ids,
            Err(_) => {
                ctl = api.conn().await?;
                api.pending_ids(&mut ctl, &marker).await?
            }
        };
        eprintln!(
            "hold: {}s opened {} (errors {}), pending {}",
            t_open.elapsed().as_secs(),
            opened.load(Ordering::Relaxed),
            open_errors.load(Ordering::Relaxed),
            ids.len()
        );
        if ids.len() >= a.count || open_errors.load(Ordering::Relaxed) + ids.len() >= a.count {
            break;
        }
        if agents.iter().all(|h| h.is_finished()) {
            abort.store(true, Ordering::Relaxed);
        }
    }
    let all_pending_s = t_open.elapsed().as_secs_f64();
    let (rss_held, hwm_held) = rss_kib(a.pid);

    // Approve them all, `approve_concurrency` at a time.
    let t_approve = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids.clone()));
    let approve_status = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let mut workers = Vec::new();
    for _ in 0..a.approve_concurrency.max(1) {
        let (api, queue, approve_status) = (api.clone(), queue.clone(), approve_status.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = api.conn().await?;
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(id) = next else { break };
                let path = format!("/api/v1/requests/{id}/approve");
                let key = match api
                    .call(&mut conn, http::Method::POST, &path, Some("{}"))
                    .await
                {
                    Ok((s, _)) => s.as_u16().to_string(),
                    Err(e) => {
                        conn = api.conn().await?;
                        format!("error: {e}")
                    }
                };
                *approve_status
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .entry(key)
                    .or_default() += 1;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let approve_calls_s = t_approve.elapsed().as_secs_f64();

    let mut agent_status = std::collections::BTreeMap::<String, u64>::new();
    let mut last_done: Option<Instant> = None;
    let mut first_err = None;
    for h in agents {
        match h.await? {
            Ok((status, done)) => {
                *agent_status.entry(status.as_u16().to_string()).or_default() += 1;
                if done >= t_approve {
                    last_done = Some(last_done.map_or(done, |l: Instant| l.max(done)));
                }
            }
            Err(e) => {
                *agent_status.entry("error".into()).or_default() += 1;
                first_err.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let (rss_after, hwm_after) = rss_kib(a.pid);
    let approved_ok = approve_status
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get("200")
        .copied()
        .unwrap_or(0);
    let statuses = approve_status
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(json!({
        "mode": "hold",
        "skipped": false,
        "count": a.count,
        "pending_seen": ids.len(),
        "polls": polls,
        "seconds_until_all_pending": (all_pending_s * 100.0).round() / 100.0,
        "rss_idle_mib": mib(rss_idle),
        "rss_held_mib": mib(rss_held),
        "rss_peak_mib": mib(hwm_after.or(hwm_held)),
        "rss_after_mib": mib(rss_after),
        "approve_calls_seconds": (approve_calls_s * 100.0).round() / 100.0,
        "approve_status": statuses,
        "approved_ok": approved_ok,
        "seconds_until_all_forwarded": last_done.map(|l| (l.duration_since(t_approve).as_secs_f64() * 100.0).round() / 100.0),
        "agent_status": agent_status,
        "first_agent_error": first_err,
    }))
}
