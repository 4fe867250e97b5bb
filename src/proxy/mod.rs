//! The agent-facing listener: plain HTTP proxying, CONNECT with TLS
//! interception or blind tunnels, agent authentication, then the pipeline.

pub mod auth;
pub mod ca;
mod dialect;
mod h1;
mod handler;
pub mod intercept;
pub mod respond;
pub mod state;

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

use crate::core::{Refusal, RefusalKind};
use crate::ids::RequestId;
use crate::upstream::Target;
use state::ProxyState;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The largest request head either listener reads (8+ KiB heads are common).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A place among `proxy.max_connections`: held by the agent connection and,
/// after CONNECT, by the tunnel or intercepted session it became.
#[derive(Clone)]
pub struct ConnSlot(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

/// How the process's file descriptors are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Agent connections open at once.
    pub agents: usize,
    /// Upstream sockets open at once (dials past it wait for one to close).
    pub upstream: usize,
}

impl FdBudget {
    /// Idle pooled connections one upstream host may keep: they hold their
    /// sockets, so at most a quarter of the budget, leaving other hosts room
    /// to dial.
    pub fn idle_per_host(&self) -> usize {
        (self.upstream / 4).clamp(1, 256)
    }
}

/// Descriptors kept for the store, the dashboard, certificates and logs.
const RESERVED_FDS: u64 = 256;

/// Shares `files` descriptors between agent and upstream connections:
/// `proxy.max_connections` agents when they fit beside a quarter of the
/// rest kept for upstreams (a held call has no upstream connection, so
/// agents need not be matched one for one; the upstream budget makes a dial
/// wait instead of failing when it is spent), and every descriptor left to
/// upstream sockets.
pub fn fd_budget(configured: usize, files: u64) -> FdBudget {
    let usable = files.saturating_sub(RESERVED_FDS).max(32) as usize;
    let upstream_floor = (usable / 4).max(16);
    let agents = configured.min(usable - upstream_floor).max(1);
    FdBudget {
        agents,
        upstream: usable - agents,
    }
}

/// [`fd_budget`] under the process's open-files limit (raised to its hard
/// limit first), with a warning when it serves fewer agents than configured.
pub fn connection_budget(configured: usize) -> FdBudget {
    let files = raise_file_limit();
    let budget = fd_budget(configured, files);
    if budget.agents < configured {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = files,
            using = budget.agents,
            "proxy.max_connections is more than the open-files limit allows; serving fewer agent connections at once (raise `ulimit -n`)"
        );
    }
    budget
}

/// Raises the soft open-files limit to the hard one; returns the limit in force.
fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "could not read or raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// Accepts agent connections until `shutdown` flips, at most `cap` at once
/// (beyond that, new connections wait in the listen queue).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    cap: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
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
        let slot = ConnSlot(Arc::new(permit));
        tokio::spawn(async move { serve_connection(stream, peer, state, slot, shutdown).await });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<ProxyState>,
    slot: ConnSlot,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc_state = state.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let state = svc_state.clone();
        req.extensions_mut().insert(slot.clone());
        async move { Ok::<_, Infallible>(outer(state, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Some(head_timeout(&state)))
        .keep_alive(true)
        .max_buf_size(MAX_HEAD);
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

/// Hyper's header timer also runs while a keep-alive connection waits for
/// its next request, so it serves as both `proxy.read_timeout` (for the head)
/// and `proxy.idle_timeout`: the shorter one applies.
pub(crate) fn head_timeout(state: &ProxyState) -> std::time::Duration {
    let c = &state.shared.config;
    c.read_timeout.min(c.idle_timeout)
}

/// Requests on the proxy port itself: CONNECT or absolute-form HTTP.
async fn outer(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let agent = match state.shared.auth.authenticate(peer, req.headers()) {
        Ok(a) => a,
        Err(e) => {
            let id = RequestId::new();
            tracing::info!(%peer, request_id = %id, "proxy authentication failed");
            return respond::refused(Refusal::new(
                RefusalKind::ProxyAuthRequired,
                &id,
                e.message(),
            ));
        }
    };
    if req.method() == Method::CONNECT {
        return intercept::connect(state, agent, req).await;
    }
    let uri = req.uri();
    let http_target = uri.authority().and_then(|a| intercept::host_port(a, 80));
    let refuse_as = |status: http::StatusCode, message: &str| {
        respond::refused(
            Refusal::new(RefusalKind::BadRequest, &RequestId::new(), message).status(status),
        )
    };
    let refuse = |message: &str| refuse_as(http::StatusCode::BAD_REQUEST, message);
    // hyper reads `gzip, chunked` as chunked and ignores the `gzip`; the
    // tunnels' server refuses it, and so does this port.
    if let Err(e) = h1::chunked(req.headers()) {
        return refuse_as(e.status(), &e.to_string());
    }
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => match http_target {
            Some((host, port)) => {
                let target = Target {
                    scheme: "http",
                    host,
                    port,
                };
                handler::handle(&state, agent, &target, req).await
            }
            None => refuse("the request target has an empty host or an invalid port"),
        },
        (Some("https"), Some(_)) => refuse(
            "send https:// URLs through CONNECT (set HTTPS_PROXY), not as absolute-form requests",
        ),
        _ => refuse(
            "this is the SudoMode proxy port: configure it as HTTP_PROXY/HTTPS_PROXY rather than requesting it directly",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_get_what_they_ask_beside_a_quarter_for_upstreams() {
        // 10,000 agents fit in 20,000 descriptors; the rest goes to upstreams.
        assert_eq!(
            fd_budget(10_000, 20_000),
            FdBudget {
                agents: 10_000,
                upstream: 9_744
            }
        );
        // Too few descriptors: a quarter of the usable ones stay for upstreams.
        assert_eq!(
            fd_budget(10_000, 1_024),
            FdBudget {
                agents: 576,
                upstream: 192
            }
        );
        assert_eq!(
            fd_budget(10_000, 300),
            FdBudget {
                agents: 28,
                upstream: 16
            }
        );
        // A tiny limit still serves someone.
        let b = fd_budget(10_000, 10);
        assert!(b.agents >= 1 && b.upstream >= 16, "{b:?}");
        assert_eq!(fd_budget(10_000, 20_000).idle_per_host(), 256);
        assert_eq!(fd_budget(10_000, 300).idle_per_host(), 4);
    }
}
