//! `sudomode audit verify | export` (SPEC §1, §8, §11): check the audit hash chain and write
//! the log as JSON Lines.
//!
//! Both open the store (`store.path` of the config) when no server holds it. When a running
//! server has it locked they ask that server's operator API instead
//! (`GET /api/v1/audit/verify`, `GET /api/v1/audit/export`) at `dashboard.listen` (or
//! `--server URL`), authenticated with `$SUDOMODE_ADMIN_TOKEN`, else the first admin (else
//! any) operator of the config, else the generated `<store dir>/admin-token`.
//! `audit verify --file EXPORT.jsonl` verifies an exported copy instead (`-` reads stdin).
//! With `store.postgres` both read the database directly (the whole chain, every replica's
//! events), whether or not servers are running.
//! `audit verify --archive` proves the whole history: the archive segments under
//! `<store dir>/archive/` (each checked against its checkpoint's SHA-256), then the
//! live log. `audit export` always starts with the archived events.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::BodyExt;
use sudomode_store::{Store, StoreError, StoreOptions, VerifyReport};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::ConfigArg;
use crate::config::{Config, Role};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(300);

/// `sudomode audit …`.
#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the audit hash chain; print the event count and head hash (exit 1 naming the first bad seq).
    Verify {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Verify an exported JSON Lines copy instead of the store (`-` reads stdin).
        #[arg(long, value_name = "EXPORT.jsonl")]
        file: Option<PathBuf>,
        /// With --file: the export is partial (`--since`); trust its first event as the anchor.
        #[arg(long, requires = "file")]
        partial: bool,
        /// Dashboard URL of the running server (default: http://<dashboard.listen>).
        #[arg(long, value_name = "URL", conflicts_with = "file")]
        server: Option<String>,
        /// Also the archived history (`audit.retention`): every segment, checked against
        /// its checkpoint, then the live log, from the first event.
        #[arg(long, conflicts_with = "file")]
        archive: bool,
    },
    /// Write the audit log as JSON Lines to stdout (archived segments first).
    Export {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only events at or after this time (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        until: Option<OffsetDateTime>,
        /// Dashboard URL of the running server (default: http://<dashboard.listen>).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
}

/// Bad values are usage errors: clap reports them and exits 2.
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z): {e}"))
}

/// Runs one `audit` subcommand.
pub(crate) fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            file: Some(file),
            partial,
            ..
        } => verify_file(&file, partial),
        AuditCommand::Verify {
            cfg,
            file: None,
            server,
            archive,
            ..
        } => {
            let config = crate::cli::load(&cfg)?;
            if archive {
                verify_archive(&config, server.as_deref())
            } else {
                verify(&config, server.as_deref())
            }
        }
        AuditCommand::Export {
            cfg,
            since,
            until,
            server,
        } => {
            if let (Some(s), Some(u)) = (since, until)
                && u <= s
            {
                return Err(anyhow::Error::new(crate::app::ConfigProblem(
                    "--until must be later than --since".to_string(),
                )));
            }
            let config = crate::cli::load(&cfg)?;
            export(&config, since, until, server.as_deref())
        }
    }
}

fn print_report(r: &VerifyReport) -> ExitCode {
    if r.ok {
        println!("ok: {} events, head {}", r.events, r.head_hash);
        return ExitCode::SUCCESS;
    }
    let problem = r
        .problem
        .as_deref()
        .unwrap_or("the hash chain does not verify");
    match r.first_bad_seq {
        Some(seq) => println!("FAILED at seq {seq}: {problem}"),
        None => println!("FAILED: {problem}"),
    }
    println!("({} events examined, head {})", r.events, r.head_hash);
    ExitCode::FAILURE
}

fn verify_file(path: &Path, partial: bool) -> Result<ExitCode> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Box::new(BufReader::new(f))
    };
    let report = if partial {
        sudomode_store::verify_lines_partial(reader)
    } else {
        sudomode_store::verify_lines(reader)
    }
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(print_report(&report))
}

/// Opens the store for reading; `Ok(None)` when a running server holds it.
fn open_store(config: &Config) -> Result<Option<Store>> {
    let path = &config.store_path;
    if !path.exists() {
        bail!(
            "no audit store at {} (has `sudomode run` been started with {}?)",
            path.display(),
            config.name()
        );
    }
    match Store::open(path, StoreOptions::default()) {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::Locked { .. }) => Ok(None),
        Err(e) => {
            Err(anyhow!(e)).with_context(|| format!("opening the audit store {}", path.display()))
        }
    }
}

/// Runs `f` against the PostgreSQL store of the configuration (every
/// replica's events in the one chain), on a runtime of its own.
fn with_postgres<T: Send + 'static>(
    config: &Config,
    f: impl FnOnce(sudomode_store::Storage) -> Result<T> + Send + 'static,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let config = config.clone();
    runtime.block_on(async move {
        crate::app::install_crypto();
        let storage = crate::app::open_storage(&config, Vec::new()).await?;
        // Exports stream page by page from the blocking pool.
        tokio::task::spawn_blocking(move || f(storage))
            .await
            .context("audit task")?
    })
}

fn verify(config: &Config, server: Option<&str>) -> Result<ExitCode> {
    if server.is_none() && config.store_postgres.is_some() {
        let report = with_postgres(config, |storage| {
            tokio::runtime::Handle::current()
                .block_on(storage.verify())
                .context("reading the audit log")
        })?;
        return Ok(print_report(&report));
    }
    if server.is_none()
        && let Some(store) = open_store(config)?
    {
        let report = store.verify().context("reading the audit log")?;
        return Ok(print_report(&report));
    }
    let api = Api::new(config, server)?;
    let body = api.block_on(async {
        let resp = api.get("/api/v1/audit/verify").await?;
        within_verify_timeout(&api, read_body(resp, &api, "/api/v1/audit/verify")).await?
    })?;
    let report: VerifyReport = serde_json::from_slice(&body).with_context(|| {
        format!(
            "unexpected answer from {}/api/v1/audit/verify: {}",
            api.base,
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok(print_report(&report))
}

/// `audit verify --archive`: from the store when no server holds it, else
/// over the server's full export (which starts with the archives); the
/// checkpoints' segment files are read from the store's archive directory.
fn verify_archive(config: &Config, server: Option<&str>) -> Result<ExitCode> {
    if config.store_postgres.is_some() {
        // PostgreSQL keeps no archives (retention is refused with it): its
        // whole history is the one live chain.
        return verify(config, server);
    }
    if server.is_none()
        && let Some(store) = open_store(config)?
    {
        let report = store
            .verify_with_archive()
            .context("reading the archived and live audit log")?;
        return Ok(print_report(&report));
    }
    let api = Api::new(config, server)?;
    let dir = sudomode_store::archive_dir(&config.store_path);
    let report = api.block_on(async {
        let resp = api.get("/api/v1/audit/export").await?;
        if !resp.status().is_success() {
            read_body(resp, &api, "/api/v1/audit/export").await?;
            bail!("{} refused the export", api.base);
        }
        let body = within_verify_timeout(&api, resp.into_body().collect())
            .await?
            .with_context(|| format!("reading the export from {}", api.base))?
            .to_bytes();
        let mut v = sudomode_store::ArchiveVerifier::new(&dir);
        for line in body.split(|b| *b == b'\n') {
            v.feed_line(&String::from_utf8_lossy(line));
        }
        Ok(v.finish())
    })?;
    Ok(print_report(&report))
}

/// A verification's read from the server, bounded by [`VERIFY_TIMEOUT`].
async fn within_verify_timeout<T>(
    api: &Api,
    read: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(VERIFY_TIMEOUT, read)
        .await
        .map_err(|_| {
            anyhow!(
                "{} did not answer within {}s",
                api.base,
                VERIFY_TIMEOUT.as_secs()
            )
        })
}

fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

fn export(
    config: &Config,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    server: Option<&str>,
) -> Result<ExitCode> {
    if server.is_none() && config.store_postgres.is_some() {
        return with_postgres(config, move |storage| {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match storage.export_blocking(since, until, &mut out) {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(StoreError::Stream(e)) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
                Err(e) => Err(anyhow!(e)).context("exporting the audit log"),
            }
        });
    }
    let stdout = std::io::stdout();
    if server.is_none()
        && let Some(store) = open_store(config)?
    {
        let mut out = std::io::BufWriter::new(stdout.lock());
        return match store.export(since, until, &mut out) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            // `| head` closed the pipe: not an error.
            Err(StoreError::Stream(e)) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow!(e)).context("exporting the audit log"),
        };
    }
    let mut query = Vec::new();
    for (k, t) in [("since", since), ("until", until)] {
        if let Some(t) = t {
            let text = t
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .context("formatting a time")?;
            query.push(format!("{k}={}", query_escape(&text)));
        }
    }
    let path = if query.is_empty() {
        "/api/v1/audit/export".to_string()
    } else {
        format!("/api/v1/audit/export?{}", query.join("&"))
    };
    let api = Api::new(config, server)?;
    api.block_on(async {
        let resp = api.get(&path).await?;
        if !resp.status().is_success() {
            read_body(resp, &api, "/api/v1/audit/export").await?;
            return Ok(());
        }
        let mut body = resp.into_body();
        let mut out = stdout.lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| format!("reading the export from {}", api.base))?;
            if let Ok(data) = frame.into_data() {
                match out.write_all(&data) {
                    Ok(()) => {}
                    Err(e) if is_broken_pipe(&e) => return Ok(()),
                    Err(e) => return Err(anyhow!(e).context("writing to stdout")),
                }
            }
        }
        match out.flush() {
            Err(e) if !is_broken_pipe(&e) => Err(anyhow!(e).context("writing to stdout")),
            _ => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The running server's operator API, over plain HTTP/1.1 on the dashboard listener.
struct Api {
    /// `http://host:port`, for messages.
    base: String,
    /// `host:port` to connect to and send as `Host`.
    authority: String,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn new(config: &Config, server: Option<&str>) -> Result<Api> {
        let authority = match server {
            Some(url) => {
                let uri: http::Uri = url
                    .parse()
                    .with_context(|| format!("--server {url:?} is not a URL"))?;
                if uri.scheme_str() != Some("http") {
                    bail!(
                        "--server {url:?}: only http:// URLs of the dashboard listener are supported"
                    );
                }
                let host = uri
                    .host()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| anyhow!("--server {url:?} has no host"))?;
                format!("{host}:{}", uri.port_u16().unwrap_or(80))
            }
            None => connectable(config.dashboard_listen).to_string(),
        };
        let token = token(config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client runtime")?;
        if server.is_none() {
            eprintln!(
                "sudomode: the audit store is in use by a running server; asking it at http://{authority}"
            );
        }
        Ok(Api {
            base: format!("http://{authority}"),
            authority,
            token,
            runtime,
        })
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(f)
    }

    async fn get(&self, path_and_query: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        let unreachable = || {
            format!(
                "no SudoMode server answers at {} (the store is locked by another process)",
                self.base
            )
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| anyhow!("connection timed out"))
        .with_context(unreachable)?
        .with_context(unreachable)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .with_context(|| format!("HTTP handshake with {}", self.base))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "API connection ended");
            }
        });
        let req = http::Request::get(path_and_query)
            .header(http::header::HOST, &self.authority)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(
                http::header::ACCEPT,
                "application/json, application/x-ndjson",
            )
            .body(http_body_util::Empty::<Bytes>::new())
            .context("building the API request")?;
        sender
            .send_request(req)
            .await
            .with_context(|| format!("GET {}{path_and_query}", self.base))
    }
}

/// The whole body of a successful answer; a clear error otherwise.
async fn read_body(
    resp: hyper::Response<hyper::body::Incoming>,
    api: &Api,
    path: &str,
) -> Result<Bytes> {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {}{path}", api.base))?
        .to_bytes();
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
    match status.as_u16() {
        401 | 403 => bail!(
            "{}{path} refused the operator token ({status}: {message}); set SUDOMODE_ADMIN_TOKEN to an operator token of that server",
            api.base
        ),
        404 => bail!(
            "the server at {} has no {path} route ({status}); stop it to read the store directly",
            api.base
        ),
        _ => bail!("{}{path} answered {status}: {message}", api.base),
    }
}

/// Where to connect for a listen address: an unspecified IP means this host.
fn connectable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `$SUDOMODE_ADMIN_TOKEN`, else the first admin (else any) operator of the config, else the
/// token `run` generated next to the store.
fn token(config: &Config) -> Result<String> {
    if let Ok(t) = std::env::var("SUDOMODE_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let op = config
        .operators
        .iter()
        .find(|o| o.role == Role::Admin)
        .or_else(|| config.operators.first());
    if let Some(op) = op {
        return Ok(op.token.clone());
    }
    let dir = config
        .store_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => bail!("{} is empty; set SUDOMODE_ADMIN_TOKEN to an operator token", path.display()),
        Err(e) => Err(anyhow!(e)).with_context(|| {
            format!(
                "no operator token: set SUDOMODE_ADMIN_TOKEN, configure `operators:` in {}, or make {} readable",
                config.name(),
                path.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_addresses() {
        assert_eq!(
            query_escape("2026-01-01T00:00:00+01:00"),
            "2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(
            connectable("0.0.0.0:8081".parse().unwrap()),
            "127.0.0.1:8081".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            connectable("10.0.0.2:9".parse().unwrap()),
            "10.0.0.2:9".parse().unwrap()
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-01-01T00:00:00Z").is_ok());
    }
}
