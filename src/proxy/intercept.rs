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

use super::ProxyBody;
use super::auth::AgentName;
use super::pipeline::{self, Target};
use super::reply::{self, AgentError, ErrorType};
use crate::ids::RequestId;
use crate::state::State;

pub async fn connect(
    state: Arc<State>,
    agent: AgentName,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let id = RequestId::new();
    let Some((host, port)) = req
        .uri()
        .authority()
        .map(|a| (a.host().to_string(), a.port_u16().unwrap_or(443)))
    else {
        return AgentError::new(
            ErrorType::BadRequest,
            id.as_str(),
            "CONNECT needs host:port",
        )
        .into_response();
    };
    let host = normalise_host(&host);
    if state.is_tunnel_host(&host) {
        // Blind tunnels skip interception but never the address guard.
        if let Err(e) = state.dialer.addresses(&host, port).await {
            let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorType::Denied
            } else {
                ErrorType::UpstreamError
            };
            let mut err = AgentError::new(kind, id.as_str(), e.to_string());
            if kind == ErrorType::Denied {
                err.rule = Some("sudomode.builtin".into());
            }
            return err.into_response();
        }
        tokio::spawn(tunnel(state, req, host, port));
    } else {
        tokio::spawn(intercept(state, agent, req, host, port));
    }
    let mut resp = Response::new(reply::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Lower-case, no trailing dot, no IPv6 brackets.
pub fn normalise_host(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

async fn tunnel(state: Arc<State>, req: Request<Incoming>, host: String, port: u16) {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
    };
    let mut upstream = match state.dialer.dial(&host, port).await {
        Ok(s) => s,
        Err(e) => return tracing::info!(error = %e, %host, "tunnel connect failed"),
    };
    let mut agent = TokioIo::new(upgraded);
    if let Err(e) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
        tracing::debug!(error = %e, %host, "tunnel closed");
    }
}

async fn intercept(
    state: Arc<State>,
    agent: AgentName,
    req: Request<Incoming>,
    host: String,
    port: u16,
) {
    let upgraded: Upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
    };
    let acceptor =
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
    let start = match tokio::time::timeout(state.config.idle_timeout, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(error = %e, %host, "TLS ClientHello failed"),
        Err(_) => return tracing::debug!(%host, "TLS ClientHello timed out"),
    };
    // The certificate names what the client asked for (SNI), falling back to
    // the CONNECT host (curl sends no SNI for IP literals).
    let cert_host = start
        .client_hello()
        .server_name()
        .map(normalise_host)
        .unwrap_or_else(|| host.clone());
    let config = match state.ca.server_config(&cert_host).await {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, host = %cert_host, "leaf certificate failed"),
    };
    let tls = match start.into_stream(config).await {
        Ok(t) => t,
        Err(e) => return tracing::debug!(error = %e, %host, "TLS handshake with agent failed"),
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
        async move { Ok::<_, Infallible>(pipeline::handle(state, agent, target, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(state.config.idle_timeout))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}
