//! Where requests go: the target and the request kept byte for byte
//! ([`Target`], [`Upstream`]), the forward phase (`phase`: credentials in,
//! send, record how it ended), and the client behind it — the HTTP client
//! (`client`), the dialer with `upstream.resolve` (`dial`), the address guard
//! next to it (`guard`) and upstream TLS trust (`tls`).

pub mod client;
pub mod dial;
pub mod guard;
pub mod phase;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use sudomode_credentials::Injector;

pub use client::{ForwardError, Forwarder, strip_hop_by_hop};
pub use dial::Dialer;

/// Where the request goes: the CONNECT authority, or the absolute URI's.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host[:port]` as it appears in a URL (default ports omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.scheme, self.port) {
            ("https", 443) | ("http", 80) => host,
            (_, p) => format!("{host}:{p}"),
        }
    }

    /// `scheme://authority` + `path_and_query`: the URL exactly as sent.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), path_and_query)
    }
}

/// The request as it will be sent, kept byte for byte.
pub struct Upstream {
    pub parts: http::request::Parts,
    pub path_and_query: String,
    pub body: Bytes,
}

impl Upstream {
    /// The same request in its own small allocations. Parsed header values and
    /// body chunks share the connection's read buffer (8 KiB or more); a request
    /// held for approval would keep that whole buffer alive while it waits.
    pub fn compact(self) -> Upstream {
        let Upstream {
            mut parts,
            path_and_query,
            body,
        } = self;
        let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
        let mut last: Option<http::HeaderName> = None;
        for (name, value) in std::mem::take(&mut parts.headers) {
            // `into_iter` yields a name only for the first value of each header.
            let name = match name {
                Some(n) => {
                    last = Some(n.clone());
                    n
                }
                None => match &last {
                    Some(n) => n.clone(),
                    None => continue,
                },
            };
            let value = match HeaderValue::from_bytes(value.as_bytes()) {
                Ok(mut v) => {
                    v.set_sensitive(value.is_sensitive());
                    v
                }
                Err(_) => value,
            };
            headers.append(name, value);
        }
        parts.headers = headers;
        // `forward` builds the upstream URI from the target and `path_and_query`.
        parts.uri = http::Uri::default();
        Upstream {
            parts,
            path_and_query,
            body: Bytes::copy_from_slice(&body),
        }
    }
}

/// Everything that sends requests upstream: dialer, client, credentials and
/// the cached address guard.
pub struct Upstreams {
    pub dialer: Dialer,
    pub client: Forwarder,
    /// Shared with the operators' side (`State::credentials`).
    pub injector: Arc<Injector>,
    /// Guard verdicts per `host:port`, so steady traffic does not pay a DNS
    /// lookup per request; the dialer re-checks every address it connects to.
    /// A synchronous cache: a hit (every request but a host's first in 30 s)
    /// then adds nothing to the request's future, which every request boxes.
    guard_cache: moka::sync::Cache<(String, u16), Option<String>>,
}

/// A borrowed `(host, port)` key: looks the cache up without allocating.
/// Hashes as the owned tuple does (field by field).
#[derive(Hash)]
struct HostPort<'a>(&'a str, u16);

impl moka::Equivalent<(String, u16)> for HostPort<'_> {
    fn equivalent(&self, key: &(String, u16)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl Upstreams {
    pub fn new(dialer: Dialer, client: Forwarder, injector: Arc<Injector>) -> Self {
        Upstreams {
            dialer,
            client,
            injector,
            guard_cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        }
    }

    /// The address guard for `host:port` (SPEC §13.3, §13.8): `Ok(Some(reason))`
    /// when it resolves to a forbidden address, `Err` when it does not resolve
    /// (not cached, so a passing DNS failure is retried).
    pub async fn guard_target(&self, host: &str, port: u16) -> Result<Option<String>, String> {
        if let Some(verdict) = self.guard_cache.get(&HostPort(host, port)) {
            return Ok(verdict);
        }
        // Boxed: only a host's first request in a while resolves. Calls that
        // miss together each resolve; the last answer is the one kept.
        let resolved = Box::pin(self.dialer.addresses(host, port)).await;
        let verdict = match resolved {
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        self.guard_cache
            .insert((host.to_string(), port), verdict.clone());
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    /// The borrowed key finds what the owned key stored (same hash, same
    /// equality), and only that.
    #[test]
    fn borrowed_guard_key_finds_the_owned_one() {
        let cache: moka::sync::Cache<(String, u16), Option<String>> = moka::sync::Cache::new(16);
        cache.insert(("api.example.com".to_string(), 443), Some("no".into()));
        assert_eq!(
            cache.get(&HostPort("api.example.com", 443)),
            Some(Some("no".to_string()))
        );
        assert_eq!(cache.get(&HostPort("api.example.com", 80)), None);
        assert_eq!(cache.get(&HostPort("api.example.org", 443)), None);
    }
}
