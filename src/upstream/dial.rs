//! TCP connections to upstreams: `upstream.resolve` overrides, connect
//! timeout, and the address guard applied to the IPs actually dialled (so DNS
//! rebinding cannot reach our own listeners or metadata endpoints).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::guard::Guard;

/// Dials upstreams; shared by the HTTP client and blind tunnels.
#[derive(Clone)]
pub struct Dialer {
    pub resolve: Arc<BTreeMap<String, SocketAddr>>,
    pub guard: Arc<Guard>,
    pub connect_timeout: Duration,
}

impl Dialer {
    /// Addresses for `host:port`, after overrides, each checked by the guard.
    pub async fn addresses(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(why) = self.guard.forbidden_name(host, port) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why.reason(host),
            ));
        }
        let key = format!("{}:{port}", host.to_ascii_lowercase());
        let addrs: Vec<SocketAddr> = if let Some(a) = self.resolve.get(&key) {
            vec![*a]
        } else {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
                vec![SocketAddr::new(ip, port)]
            } else {
                tokio::net::lookup_host((bare, port)).await?.collect()
            }
        };
        if addrs.is_empty() {
            return Err(std::io::Error::other(format!("{host} did not resolve")));
        }
        if let Some((bad, why)) = addrs
            .iter()
            .find_map(|a| self.guard.forbidden(a).map(|f| (a, f)))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{host} resolves to {bad}: {}", why.reason(host)),
            ));
        }
        Ok(addrs)
    }

    pub async fn dial(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let addrs = self.addresses(host, port).await?;
        let attempt = async {
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {host}:{port} timed out"),
                )
            })?
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("no host"))?
                .to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            this.dial(&host, port).await.map(TokioIo::new)
        })
    }
}
