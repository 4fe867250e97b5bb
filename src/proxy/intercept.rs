//! CONNECT: blind tunnels for `tunnel_hosts`, otherwise TLS termination with
//! a minted leaf and HTTP/1.1 or HTTP/2 (ALPN) inside the tunnel.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::LazyConfigAcceptor;

use super::state::ProxyState;
use super::{ProxyBody, handler, respond};
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

async fn intercept(
    state: Arc<ProxyState>,
    agent: AgentName,
    req: Request<Incoming>,
    host: String,
    port: u16,
) {
    let upgraded: Upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
    };
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
            .unwrap_or_else(|| host.clone());
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
    // A whole handshake, ClientHello to Finished, within 10 s (SPEC §13.7):
    // a client that stalls midway holds no connection slot for long.
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return tracing::debug!(error = %e, %host, "agent TLS failed"),
        Err(_) => return tracing::debug!(%host, "agent TLS handshake timed out"),
    };
    let target = Target {
        scheme: "https",
        host,
        port,
    };
    let svc_state = state.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = svc_state.clone();
        let agent = agent.clone();
        let target = target.clone();
        async move { Ok::<_, Infallible>(handler::handle(state, agent, target, req).await) }
    });
    // The protocol was negotiated in the handshake (ALPN): serve it directly.
    // Sniffing it instead makes hyper's first read return only the sniffed
    // preface, and its read buffer then doubles to 16 KiB for every connection.
    // Without ALPN the version is still detected from the first bytes.
    let mut builder = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => auto::Builder::new(TokioExecutor::new()).http2_only(),
        Some(b"http/1.1") => auto::Builder::new(TokioExecutor::new()).http1_only(),
        _ => auto::Builder::new(TokioExecutor::new()),
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(super::head_timeout(&state)))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}
