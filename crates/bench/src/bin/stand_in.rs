//! `stand-in`: a loopback HTTPS upstream for SudoMode's benchmark.
//!
//! Creates its own CA (ECDSA P-256, rcgen), writes the CA certificate to
//! `--ca-out`, serves HTTP/2 and HTTP/1.1 (ALPN) with a leaf valid for
//! `bench.local`, `*.bench.local`, `localhost` and 127.0.0.1, and answers
//! every request with a fixed body of `--body-bytes` bytes (1 KiB). Prints
//! `port: N` on stdout once listening; stops on SIGTERM/SIGINT or after
//! `--max-seconds`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{CertificateParams, DnType, SanType};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
#[command(
    name = "stand-in",
    about = "HTTPS upstream answering fixed-size bodies, for benchmarks"
)]
struct Cli {
    /// Listen address (port 0 picks one; printed as `port: N`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the stand-in's CA certificate (PEM).
    #[arg(long)]
    ca_out: PathBuf,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Exit after this many seconds whatever happens (a benchmark must stop by itself).
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cli))
}

fn make_tls(ca_out: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let (issuer, ca) = sudomode_bench::make_ca("SudoMode bench stand-in CA", ca_out)?;
    let mut leaf = CertificateParams::new(vec![
        "bench.local".to_string(),
        "*.bench.local".to_string(),
        "localhost".to_string(),
    ])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    leaf.distinguished_name
        .push(DnType::CommonName, "bench.local");
    sudomode_bench::leaf_server_config(&issuer, &ca, leaf)
}

async fn serve(cli: Cli) -> Result<()> {
    let tls = make_tls(&cli.ca_out)?;
    let listener = TcpListener::bind(cli.listen).await?;
    let port = listener.local_addr()?.port();
    println!("port: {port}");
    use std::io::Write;
    std::io::stdout().flush()?;

    let body = Bytes::from(vec![b'x'; cli.body_bytes]);
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(1024);
    let builder = Arc::new(builder);

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
    let limit = tokio::time::sleep(Duration::from_secs(cli.max_seconds));
    tokio::pin!(stop, limit);

    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("stand-in: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
            _ = &mut limit => { eprintln!("stand-in: --max-seconds reached"); break }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move {
                    // Drain whatever the client sent, then answer.
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/octet-stream")
                            .body(Full::new(body))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
        });
    }
    Ok(())
}
