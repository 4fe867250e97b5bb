//! `stand-in`: a loopback HTTPS upstream for SudoMode's benchmark.
//!
//! Creates its own CA (ECDSA P-256, rcgen), writes the CA certificate to
//! `--ca-out`, serves HTTP/2 and HTTP/1.1 (ALPN) with a leaf valid for
//! `bench.local`, `*.bench.local`, `localhost` and 127.0.0.1, and answers
//! every request with a fixed body of `--body-bytes` bytes (1 KiB). Prints
//! `port: N` on stdout once listening; stops on SIGTERM/SIGINT or after
//! `--max-seconds`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

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
    #[command(flatten)]
    serve: sudomode_bench::ServeArgs,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
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
    let tls = make_tls(&cli.serve.ca_out)?;
    let listener = TcpListener::bind(cli.serve.listen).await?;
    let port = listener.local_addr()?.port();
    println!("port: {port}");
    use std::io::Write;
    std::io::stdout().flush()?;

    let body = Bytes::from(vec![b'x'; cli.body_bytes]);
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(1024);
    let builder = Arc::new(builder);

    sudomode_bench::accept_loop("stand-in", listener, cli.serve.max_seconds, |tcp| {
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
    })
    .await;
    Ok(())
}
