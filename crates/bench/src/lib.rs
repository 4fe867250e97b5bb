//! Shared pieces of SudoMode's benchmark tools (`loadgen`, `stand-in`,
//! `null-proxy`): rustls (ring) client and server configuration, a throwaway CA,
//! the servers' common options and accept loop, CONNECT tunnelling, and histogram
//! summaries. Everything here is loopback
//! tooling, not product code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The ring crypto provider (the project's choice; see STACK.md).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Options every bench server takes.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Listen address (port 0 picks one; the address is printed once listening).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write this tool's CA certificate (PEM), for clients to trust.
    #[arg(long)]
    pub ca_out: PathBuf,
    /// Exit after this many seconds whatever happens (a benchmark must stop by itself).
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
}

/// Hands each accepted connection (Nagle off) to `serve` until SIGTERM, Ctrl-C or
/// `max_seconds`. A failing accept (EMFILE and friends) backs off instead of spinning.
pub async fn accept_loop(
    tool: &str,
    listener: TcpListener,
    max_seconds: u64,
    mut serve: impl FnMut(TcpStream),
) {
    let stop = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    let limit = tokio::time::sleep(Duration::from_secs(max_seconds));
    tokio::pin!(stop, limit);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    eprintln!("{tool}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
            _ = &mut limit => { eprintln!("{tool}: --max-seconds reached"); break }
        };
        let _ = tcp.set_nodelay(true);
        serve(tcp);
    }
}

/// A bench tool's own CA: its certificate goes to `out` (PEM) for clients to trust.
pub fn make_ca(
    common_name: &str,
    out: &Path,
) -> Result<(Issuer<'static, KeyPair>, CertificateDer<'static>)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    std::fs::write(out, cert.pem()).with_context(|| format!("writing {}", out.display()))?;
    let der = cert.der().clone();
    Ok((Issuer::new(params, key), der))
}

/// A server configuration (ALPN `h2`, `http/1.1`) for a leaf made from `leaf`,
/// signed by `issuer`, presenting the chain leaf + `ca`.
pub fn leaf_server_config(
    issuer: &Issuer<'static, KeyPair>,
    ca: &CertificateDer<'static>,
    leaf: CertificateParams,
) -> Result<Arc<rustls::ServerConfig>> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = leaf.signed_by(&key, issuer)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca.clone()], der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Reads every certificate from the PEM files given.
pub fn load_certs(files: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    for f in files {
        for cert in
            CertificateDer::pem_file_iter(f).with_context(|| format!("reading {}", f.display()))?
        {
            out.push(cert.with_context(|| format!("parsing {}", f.display()))?);
        }
    }
    Ok(out)
}

/// A client configuration trusting only `ca_files`, offering `alpn`.
/// `resumption = false` forces a full handshake on every connection (used
/// when timing first requests, so a cached session does not hide the cost).
pub fn client_config(
    ca_files: &[PathBuf],
    alpn: &[&[u8]],
    resumption: bool,
) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_files)? {
        roots.add(cert).context("adding a CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no CA certificate given (--ca FILE)");
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !resumption {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

/// How to reach the origin: through an HTTP proxy (CONNECT) or straight to an address.
#[derive(Clone, Debug)]
pub struct Route {
    /// `host:port` of the HTTP proxy; `None` connects directly.
    pub proxy: Option<SocketAddr>,
    /// Address dialled when going direct (the origin's name need not resolve).
    pub direct: Option<SocketAddr>,
    /// Authority sent in `CONNECT` (default: `host:port` of the URL).
    pub connect_authority: String,
    /// TLS server name (SNI and certificate check).
    pub server_name: String,
}

/// Opens TCP (+ CONNECT when proxied) and returns the raw stream.
pub async fn open_tcp(route: &Route) -> Result<TcpStream> {
    let addr = match (route.proxy, route.direct) {
        (Some(p), _) => p,
        (None, Some(d)) => d,
        (None, None) => bail!("neither --proxy nor --connect given"),
    };
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    if route.proxy.is_some() {
        let req = format!(
            "CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n",
            a = route.connect_authority
        );
        tcp.write_all(req.as_bytes()).await?;
        // Read the proxy's answer up to the blank line, byte by byte is fine
        // for a ~40-byte reply and never over-reads into the TLS stream.
        let mut head = Vec::with_capacity(128);
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut b).await?;
            if n == 0 {
                bail!("proxy closed the connection during CONNECT");
            }
            head.push(b[0]);
            if head.len() > 16 * 1024 {
                bail!("CONNECT reply too long");
            }
        }
        let line = String::from_utf8_lossy(&head);
        let status = line.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            bail!("CONNECT refused: {}", line.lines().next().unwrap_or(""));
        }
    }
    Ok(tcp)
}

/// TCP (+ CONNECT) + TLS.
pub async fn open_tls(route: &Route, tls: &Arc<ClientConfig>) -> Result<TlsStream<TcpStream>> {
    let tcp = open_tcp(route).await?;
    let name = ServerName::try_from(route.server_name.clone()).context("TLS server name")?;
    let stream = TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {}", route.server_name))?;
    Ok(stream)
}

/// A fresh latency histogram in microseconds (1 µs .. 10 min, 3 significant figures).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records a duration in µs (at least 1).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 600_000_000);
    h.saturating_record(us);
}

/// `{"count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us"}`.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "min_us": h.min(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
        "mean_us": (h.mean() * 10.0).round() / 10.0,
    })
}

/// Parses `http://host:port` (or bare `host:port`) into a socket address.
pub fn parse_proxy(s: &str) -> Result<SocketAddr> {
    let rest = s.strip_prefix("http://").unwrap_or(s);
    let rest = rest.trim_end_matches('/');
    rest.parse()
        .with_context(|| format!("proxy address {s:?} must be http://IP:PORT"))
}
