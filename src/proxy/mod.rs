//! The agent-facing listener: plain HTTP proxying, CONNECT with TLS
//! interception or blind tunnels, agent authentication, then the pipeline.

pub mod auth;
pub mod ca;
pub mod guard;
mod held;
mod intercept;
pub mod pipeline;
pub mod reply;

pub use intercept::normalise_host;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::State;
use pipeline::Target;
use reply::{AgentError, ErrorType};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Accepts agent connections until `shutdown` flips.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { serve_connection(stream, peer, state, shutdown).await });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc_state = state.clone();
    let svc = service_fn(move |req| {
        let state = svc_state.clone();
        async move { Ok::<_, Infallible>(outer(state, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Some(state.config.idle_timeout))
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "agent connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Requests on the proxy port itself: CONNECT or absolute-form HTTP.
async fn outer(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<ProxyBody> {
    let agent = match state.auth.authenticate(peer, req.headers()) {
        Ok(a) => a,
        Err(e) => {
            let id = crate::ids::RequestId::new();
            tracing::info!(%peer, request_id = %id, "proxy authentication failed");
            return AgentError::new(ErrorType::ProxyAuthRequired, id.as_str(), e.message())
                .into_response();
        }
    };
    if req.method() == Method::CONNECT {
        return intercept::connect(state, agent, req).await;
    }
    let uri = req.uri();
    let http_target = uri.authority().and_then(|a| intercept::host_port(a, 80));
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => match http_target {
            Some((host, port)) => {
                let target = Target { scheme: "http", host, port };
                pipeline::handle(state, agent, target, req).await
            }
            None => AgentError::new(
                ErrorType::BadRequest,
                crate::ids::RequestId::new().as_str(),
                "the request target has an empty host or an invalid port",
            )
            .into_response(),
        },
        (Some("https"), Some(_)) => AgentError::new(
            ErrorType::BadRequest,
            crate::ids::RequestId::new().as_str(),
            "send https:// URLs through CONNECT (set HTTPS_PROXY), not as absolute-form requests",
        )
        .into_response(),
        _ => AgentError::new(
            ErrorType::BadRequest,
            crate::ids::RequestId::new().as_str(),
            "this is the SudoMode proxy port: configure it as HTTP_PROXY/HTTPS_PROXY rather than requesting it directly",
        )
        .into_response(),
    }
}
