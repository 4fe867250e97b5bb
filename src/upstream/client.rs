//! The upstream HTTP client: pooled HTTP/1.1 and HTTP/2 (ALPN), verified TLS,
//! hop-by-hop header handling and the errors an agent sees when it fails.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::dial::Dialer;

type Connector = hyper_rustls::HttpsConnector<Dialer>;

/// Why an upstream exchange failed; becomes 502/504 `upstream_error`.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Timeout(String),
}

impl ForwardError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            ForwardError::Unreachable(_) => http::StatusCode::BAD_GATEWAY,
            ForwardError::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

#[derive(Clone)]
pub struct Forwarder {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(
        dialer: Dialer,
        tls: rustls::ClientConfig,
        timeout: Duration,
        idle: Duration,
        max_idle_per_host: usize,
    ) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(dialer);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { client, timeout }
    }

    /// Sends the request; the response body streams back untouched.
    pub async fn send(
        &self,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, ForwardError> {
        // Cheap to clone (shared bytes); only formatted when the exchange fails.
        let authority = req.uri().authority().cloned();
        // The client derives Host / :authority from the URI; a copied Host
        // header would be duplicated on HTTP/2 (STACK pitfall 1).
        req.headers_mut().remove(header::HOST);
        // The client picks h2 or HTTP/1.1 by ALPN; an h2 version on the
        // request would fail against HTTP/1.1-only upstreams (pitfall 2).
        *req.version_mut() = http::Version::HTTP_11;
        let sent = tokio::time::timeout(self.timeout, self.client.request(req)).await;
        let authority = || authority.as_ref().map(|a| a.as_str()).unwrap_or_default();
        match sent {
            Err(_) => Err(ForwardError::Timeout(format!(
                "{} did not answer within {}s (upstream.timeout)",
                authority(),
                self.timeout.as_secs()
            ))),
            Ok(Err(e)) => Err(classify(authority(), &e)),
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
        }
    }
}

fn classify(authority: &str, e: &hyper_util::client::legacy::Error) -> ForwardError {
    let mut chain = String::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut timed_out = false;
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            timed_out = true;
        }
        chain = s.to_string();
        src = s.source();
    }
    if chain.is_empty() {
        chain = e.to_string();
    }
    let lower = chain.to_ascii_lowercase();
    if timed_out {
        return ForwardError::Timeout(format!("{authority}: {chain} (upstream.connect_timeout)"));
    }
    if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("invalid peer")
    {
        return ForwardError::Unreachable(format!(
            "TLS verification of {authority} failed: {chain}. If this upstream uses a private CA, add it to upstream.ca_files."
        ));
    }
    ForwardError::Unreachable(format!("could not reach {authority}: {chain}"))
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the [`HOP_BY_HOP`] headers, plus anything the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests and answers carry none: one pass over the names present costs less
    // than nine hashed removals of absent ones.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn each_hop_by_hop_header_is_removed_even_alone() {
        for hop in [
            "Connection",
            "Keep-Alive",
            "Proxy-Authorization",
            "Proxy-Authenticate",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
        ] {
            let mut h = map(&[("host", "a.example"), (hop, "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            assert_eq!(names(&h), ["accept", "host"], "{hop}");
        }
    }

    #[test]
    fn headers_the_connection_header_names_go_too_and_the_rest_stay() {
        let mut h = map(&[
            ("connection", "close, X-Trace"),
            ("connection", " x-other ,bad name"),
            ("x-trace", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-kept"]);
        let mut untouched = map(&[("host", "a.example"), ("x-kept", "3")]);
        let before = untouched.clone();
        strip_hop_by_hop(&mut untouched);
        assert_eq!(untouched, before);
    }
}
