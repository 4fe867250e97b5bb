//! `null-proxy`: the ceiling of an intercepting proxy on this stack: no policy, no audit.
//!
//! Does only the unavoidable work of a MITM HTTPS proxy, on the same stack as
//! SudoMode (hyper 1, tokio, rustls/ring, rcgen, hyper-rustls pooled client,
//! mimalloc): answers CONNECT, terminates TLS with a cached per-host leaf from
//! its own CA (written to `--ca-out`), serves HTTP/1.1 or HTTP/2 (ALPN),
//! forwards each request over a pooled TLS client trusting `--upstream-ca`
//! and streams the response back. Prints `proxy: http://ADDR` once listening.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Uri};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "null-proxy",
    about = "Do-nothing intercepting HTTPS proxy, the ceiling for benchmarks"
)]
struct Cli {
    #[command(flatten)]
    serve: sudomode_bench::ServeArgs,
    /// PEM bundle trusted for upstream TLS.
    #[arg(long)]
    upstream_ca: PathBuf,
    /// `HOST:PORT=IP:PORT`: dial IP:PORT for HOST:PORT (SNI and Host stay HOST). Repeatable.
    #[arg(long)]
    resolve: Vec<String>,
}

type Body = Either<Incoming, Full<Bytes>>;
type Upstream = Client<HttpsConnector<Resolving>, Incoming>;

/// The proxy's CA and a cache of per-host TLS server configurations.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    ca_der: rustls_pki_types::CertificateDer<'static>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl Ca {
    fn new(ca_out: &Path) -> Result<Self> {
        let (issuer, ca_der) = sudomode_bench::make_ca("SudoMode bench null-proxy CA", ca_out)?;
        Ok(Self {
            issuer,
            ca_der,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>> {
        if let Some(c) = self.leaves().get(host) {
            return Ok(c.clone());
        }
        let mut leaf = CertificateParams::new(vec![host.to_string()])?;
        leaf.distinguished_name.push(DnType::CommonName, host);
        let cfg = sudomode_bench::leaf_server_config(&self.issuer, &self.ca_der, leaf)?;
        Ok(self.leaves().entry(host.to_string()).or_insert(cfg).clone())
    }

    fn leaves(&self) -> MutexGuard<'_, HashMap<String, Arc<rustls::ServerConfig>>> {
        self.leaves.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dials `--resolve` targets instead of the URI's host:port. hyper-rustls takes
/// SNI from the original URI, so only the TCP destination changes.
#[derive(Clone)]
struct Resolving {
    inner: HttpConnector,
    map: Arc<HashMap<(String, u16), Uri>>,
}

impl tower_service::Service<Uri> for Resolving {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let key = (
            dst.host().unwrap_or_default().to_string(),
            dst.port_u16().unwrap_or(443),
        );
        let dial = self.map.get(&key).cloned().unwrap_or(dst);
        let fut = self.inner.call(dial);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

fn parse_resolve(specs: &[String]) -> Result<HashMap<(String, u16), Uri>> {
    let mut map = HashMap::new();
    for s in specs {
        let Some((from, to)) = s.split_once('=') else {
            bail!("--resolve {s}: expected HOST:PORT=IP:PORT");
        };
        let (host, port) = from
            .rsplit_once(':')
            .with_context(|| format!("--resolve {s}: HOST:PORT"))?;
        let port: u16 = port.parse().with_context(|| format!("--resolve {s}"))?;
        let to: SocketAddr = to
            .parse()
            .with_context(|| format!("--resolve {s}: IP:PORT"))?;
        let uri: Uri = format!("https://{to}").parse()?;
        map.insert((host.to_ascii_lowercase(), port), uri);
    }
    Ok(map)
}

fn upstream(cli: &Cli) -> Result<Upstream> {
    // No ALPN here: hyper-rustls sets h2/http1.1 itself (and panics if preset).
    let tls = sudomode_bench::client_config(std::slice::from_ref(&cli.upstream_ca), &[], true)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let dialer = Resolving {
        inner: http,
        map: Arc::new(parse_resolve(&cli.resolve)?),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_all_versions()
        .wrap_connector(dialer);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cli))
}

async fn serve(cli: Cli) -> Result<()> {
    let ca = Arc::new(Ca::new(&cli.serve.ca_out)?);
    let client = upstream(&cli)?;
    let listener = TcpListener::bind(cli.serve.listen).await?;
    println!("proxy: http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;

    sudomode_bench::accept_loop("null-proxy", listener, cli.serve.max_seconds, |tcp| {
        let (ca, client) = (ca.clone(), client.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let res = outer(ca.clone(), client.clone(), req);
                async move { Ok::<_, Infallible>(res) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    })
    .await;
    Ok(())
}

/// The proxy port itself: CONNECT answers 200 and starts the interception.
fn outer(ca: Arc<Ca>, client: Upstream, req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let status = |s| {
        let mut r = Response::new(Empty::new());
        *r.status_mut() = s;
        r
    };
    if req.method() != Method::CONNECT {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(auth) = req.uri().authority() else {
        return status(StatusCode::BAD_REQUEST);
    };
    let host = auth.host().to_ascii_lowercase();
    let port = auth.port_u16().unwrap_or(443);
    let Ok(cfg) = ca.server_config(&host) else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let base = if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    };
    tokio::spawn(async move {
        let Ok(up) = hyper::upgrade::on(req).await else {
            return;
        };
        let Ok(tls) = TlsAcceptor::from(cfg).accept(TokioIo::new(up)).await else {
            return;
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let base: Arc<str> = base.into();
        let svc = service_fn(move |req| forward(client.clone(), base.clone(), req));
        let io = TokioIo::new(tls);
        if h2 {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new()).max_concurrent_streams(256);
            let _ = b.serve_connection(io, svc).await;
        } else {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, svc)
                .await;
        }
    });
    status(StatusCode::OK)
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

/// One decrypted request: rewrite to the origin, send pooled, stream back.
async fn forward(
    client: Upstream,
    base: Arc<str>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = Uri::try_from(format!("{base}{pq}")) else {
        return Ok(text(StatusCode::BAD_REQUEST, "bad request target\n"));
    };
    *req.uri_mut() = uri;
    // The client derives Host / :authority from the URI and picks h1/h2 by ALPN.
    *req.version_mut() = http::Version::HTTP_11;
    let h = req.headers_mut();
    h.remove(header::HOST);
    strip_hop_by_hop(h);
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(e) => Ok(text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}\n"))),
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(msg.to_string()))));
    *r.status_mut() = status;
    r
}
