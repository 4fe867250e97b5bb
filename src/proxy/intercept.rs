//! CONNECT: blind tunnels for `tunnel_hosts`, otherwise TLS termination with
//! a minted leaf and HTTP/1.1 (`h1`) or HTTP/2 (hyper, by ALPN or preface)
//! inside the tunnel.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_rustls::LazyConfigAcceptor;

use super::state::ProxyState;
use super::{ProxyBody, h1, handler, respond};
use crate::core::{Refusal, RefusalKind};
use crate::ids::{AgentName, RequestId};
use crate::upstream::Target;
use sudomode_intent::normalize_host;

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn connect(
    state: Arc<ProxyState>,
    agent: AgentName,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let id = RequestId::new();
    let Some((host, port)) = req.uri().authority().and_then(|a| host_port(a, 443)) else {
        return respond::refused(Refusal::new(
            RefusalKind::BadRequest,
            &id,
            "CONNECT needs host:port",
        ));
    };
    let host = normalize_host(&host);
    // The agent connection's place among `proxy.max_connections` passes to
    // the tunnel or intercepted session it becomes.
    let slot = req.extensions().get::<super::ConnSlot>().cloned();
    if state.is_tunnel_host(&host) {
        // Blind tunnels skip interception but never the address guard.
        match state.upstreams.guard_target(&host, port).await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                return respond::refused(Refusal::builtin(&id, &host, port, &reason));
            }
            Err(e) => {
                return respond::refused(Refusal::new(RefusalKind::UpstreamError, &id, e));
            }
        }
        tokio::spawn(async move {
            let _slot = slot;
            tunnel(state, req, host, port).await
        });
    } else {
        tokio::spawn(async move {
            let _slot = slot;
            intercept(state, agent, req, host, port).await
        });
    }
    let mut resp = Response::new(respond::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Host and port of a request target; None for an empty host or a port
/// that is not a number from 0 to 65535 (never silently the default).
pub fn host_port(a: &http::uri::Authority, default: u16) -> Option<(String, u16)> {
    let host = normalize_host(a.host());
    let s = a.as_str();
    let after_host = s.rfind(']').map(|i| &s[i + 1..]).unwrap_or(s);
    let port = match (after_host.contains(':'), a.port_u16()) {
        (false, _) => default,
        (true, Some(p)) => p,
        (true, None) => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

async fn tunnel(state: Arc<ProxyState>, req: Request<Incoming>, host: String, port: u16) {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
    };
    let mut upstream = match state.upstreams.dialer.dial(&host, port).await {
        Ok(s) => s,
        Err(e) => return tracing::info!(error = %e, %host, "tunnel connect failed"),
    };
    let mut agent = TokioIo::new(upgraded);
    if let Err(e) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
        tracing::debug!(error = %e, %host, "tunnel closed");
    }
}

/// The intercepted session's task. It keeps, for as long as the connection
/// lives, room for its largest state, so every phase is boxed: the upgrade
/// and handshake (`start`, over once the session is up) and the serving.
#[allow(clippy::manual_async_fn)] // an async fn would keep its arguments twice
fn intercept(
    state: Arc<ProxyState>,
    agent: AgentName,
    req: Request<Incoming>,
    host: String,
    port: u16,
) -> impl Future<Output = ()> + Send {
    async move {
        if let Some(serving) = Box::pin(start(state, agent, req, host, port)).await {
            serving.await
        }
    }
}

type Serving = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Upgrade, TLS handshake, then the server for the negotiated protocol.
async fn start(
    state: Arc<ProxyState>,
    agent: AgentName,
    req: Request<Incoming>,
    host: String,
    port: u16,
) -> Option<Serving> {
    let upgraded: Upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "CONNECT upgrade failed");
            return None;
        }
    };
    let tls = match handshake(&state, upgraded, &host).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, %host, "agent TLS failed");
            return None;
        }
    };
    let target = Target {
        scheme: "https",
        host,
        port,
    };
    // The protocol was negotiated in the handshake (ALPN). HTTP/1 is served
    // by `h1`, which keeps nothing but the TLS session while a request is
    // held; HTTP/2 (by ALPN, or by its preface without ALPN) by hyper.
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        return Some(Box::pin(serve_h2(state, agent, target, tls)));
    }
    Some(Box::pin(serve_h1(state, agent, target, tls)))
}

/// HTTP/1 on the agent's session, then HTTP/2 if the client opened with its
/// preface instead. A plain function returning an `async move` block: an
/// `async fn` would keep the TLS session (1.2 KiB) twice in this future,
/// which lives as long as the connection.
#[allow(clippy::manual_async_fn)] // see above
fn serve_h1(
    state: Arc<ProxyState>,
    agent: AgentName,
    target: Target,
    mut tls: AgentTls,
) -> impl Future<Output = ()> + Send {
    async move {
        let limits = h1::Limits {
            head_timeout: super::head_timeout(&state),
            max_head: super::MAX_HEAD,
            body_limit: state.shared.config.max_body_bytes,
            body_timeout: state.shared.config.read_timeout,
        };
        let served = h1::serve(&mut tls, limits, |req| {
            // Borrowed: the answer is awaited inside this connection's loop.
            handler::handle(&state, agent.clone(), &target, req)
        })
        .await;
        match served {
            Ok(h1::Ended::Closed) => {}
            Ok(h1::Ended::Http2(preface)) => {
                Box::pin(serve_h2(
                    state,
                    agent,
                    target,
                    h1::Rewind::new(preface, tls),
                ))
                .await
            }
            Err(e) => tracing::debug!(error = %e, "intercepted connection ended with an error"),
        }
    }
}

type AgentTls = tokio_rustls::server::TlsStream<TokioIo<Upgraded>>;

/// The agent's TLS session under a minted leaf, ClientHello to Finished
/// within 10 s (SPEC §13.7): a client that stalls midway holds no connection
/// slot for long.
async fn handshake(state: &ProxyState, upgraded: Upgraded, host: &str) -> Result<AgentTls, String> {
    let handshake = async {
        let acceptor =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
        let start = acceptor
            .await
            .map_err(|e| format!("TLS ClientHello failed: {e}"))?;
        // The certificate names what the client asked for (SNI), falling back
        // to the CONNECT host (curl sends no SNI for IP literals).
        let cert_host = start
            .client_hello()
            .server_name()
            .map(normalize_host)
            .unwrap_or_else(|| host.to_string());
        let config = state
            .ca
            .server_config(&cert_host)
            .await
            .map_err(|e| format!("leaf certificate for {cert_host} failed: {e}"))?;
        start
            .into_stream(config)
            .await
            .map_err(|e| format!("TLS handshake with agent failed: {e}"))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

async fn serve_h2<S>(state: Arc<ProxyState>, agent: AgentName, target: Target, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        let agent = agent.clone();
        let target = target.clone();
        async move { Ok::<_, Infallible>(handler::handle(&state, agent, &target, req).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new()).max_concurrent_streams(256);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(error = %e, "intercepted HTTP/2 connection ended with an error");
    }
}
