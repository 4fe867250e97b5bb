//! TCP connections to upstreams: `upstream.resolve` overrides, connect
//! timeout, the address guard applied to the IPs actually dialled (so DNS
//! rebinding cannot reach our own listeners or metadata endpoints), and the
//! budget of upstream sockets open at once (so dialling cannot exhaust the
//! process's file descriptors).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::Guard;

/// Dials upstreams; shared by the HTTP client and blind tunnels.
#[derive(Clone)]
pub struct Dialer {
    pub resolve: Arc<BTreeMap<String, SocketAddr>>,
    pub guard: Arc<Guard>,
    pub connect_timeout: Duration,
    /// Upstream sockets that may be open at once (see `proxy::fd_budget`).
    pub slots: Arc<Semaphore>,
}

/// An upstream socket and its place in the budget, given back when it closes.
pub struct UpstreamStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
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

    pub async fn dial(&self, host: &str, port: u16) -> std::io::Result<UpstreamStream> {
        // Waiting for a free socket counts against the connect timeout: a
        // full budget delays a dial, it does not fail it at once.
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let timed_out = |why: &str| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {host}:{port} timed out{why}"),
            )
        };
        let slot = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                timed_out(
                    " (every upstream connection the open-files limit allows is in use; raise `ulimit -n`)",
                )
            })?
            .map_err(|_| std::io::Error::other("upstream dialling stopped"))?;
        let stream = tokio::time::timeout_at(deadline, self.connect(host, port))
            .await
            .map_err(|_| timed_out(""))??;
        Ok(UpstreamStream {
            stream,
            _slot: slot,
        })
    }

    /// The first of `host:port`'s addresses that accepts a connection.
    async fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in self.addresses(host, port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<UpstreamStream>;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer(slots: usize, timeout: Duration) -> Dialer {
        Dialer {
            resolve: Arc::new(BTreeMap::new()),
            guard: Arc::new(Guard::new(vec!["127.0.0.1:1".parse().unwrap()])),
            connect_timeout: timeout,
            slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// A spent budget delays a dial until a socket closes, and names the
    /// open-files limit when the wait outlasts the connect timeout.
    #[tokio::test]
    async fn a_dial_waits_for_a_free_upstream_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let d = dialer(2, Duration::from_millis(300));
        let a = d.dial("127.0.0.1", port).await.unwrap();
        let _b = d.dial("127.0.0.1", port).await.unwrap();
        let err = d.dial("127.0.0.1", port).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("ulimit -n"), "{err}");
        let d2 = d.clone();
        let waiting = tokio::spawn(async move { d2.dial("127.0.0.1", port).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the third dial waits");
        drop(a);
        let _c = waiting
            .await
            .unwrap()
            .expect("dialled once a socket closed");
        assert_eq!(d.slots.available_permits(), 0);
    }
}
