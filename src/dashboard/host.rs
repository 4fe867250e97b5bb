//! DNS-rebinding defence (SPEC §8): the dashboard listener answers only
//! for the host names it is configured with — its listen address,
//! `localhost`/`127.0.0.1`/`::1` when it listens on loopback, and
//! `public_url`'s host. A page on a name that resolves to 127.0.0.1 gets
//! 421 on every route, so it cannot reach open-mode `/v1/govern`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::Config;
use sudomode_intent::normalize_host;

/// The host names this listener answers for.
#[derive(Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
    /// Listening on every address: any IP literal reaches it legitimately,
    /// and rebinding needs a name, never a literal.
    any_ip: bool,
}

impl AllowedHosts {
    pub fn new(config: &Config) -> Self {
        let ip = config.dashboard_listen.ip();
        let mut names = vec![normalize_host(&ip.to_string())];
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        }
        if let Some(host) = config
            .public_url
            .as_deref()
            .and_then(|u| u.parse::<axum::http::Uri>().ok())
            .and_then(|u| u.host().map(normalize_host))
        {
            names.push(host);
        }
        AllowedHosts {
            names,
            any_ip: ip.is_unspecified(),
        }
    }

    /// Whether a `Host` value (`name[:port]`) names this listener. Clients
    /// that send none cannot be a browser on a rebound name.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        let name = normalize_host(authority.host());
        self.names.contains(&name) || (self.any_ip && name.parse::<IpAddr>().is_ok())
    }
}

/// Middleware: 421 JSON for any other `Host` (or HTTP/2 `:authority`).
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    // A Host that is not text cannot be one of ours: it stays, and fails.
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"))
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if allowed.allows(host) {
        next.run(req).await
    } else {
        ApiError::Misdirected(
            "this SudoMode dashboard does not answer for that host name; use its configured address"
                .into(),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(yaml: &str) -> AllowedHosts {
        AllowedHosts::new(&Config::parse(yaml, None, std::path::Path::new("/b"), "t").unwrap())
    }

    #[test]
    fn loopback_names_and_public_url() {
        let a = allowed("dashboard:\n  public_url: https://SudoMode.example.com/ui\n");
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LOCALHOST",
            "[::1]:8081",
            "sudomode.example.com",
            "sudomode.example.com.:443",
        ] {
            assert!(a.allows(Some(ok)), "{ok}");
        }
        assert!(a.allows(None));
        for bad in [
            "rebind.example:8081",
            "10.0.0.5:8081",
            "",
            "a b",
            "127.0.0.1.evil",
        ] {
            assert!(!a.allows(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn every_address_takes_ip_literals_but_no_other_name() {
        let a = allowed("dashboard:\n  listen: 0.0.0.0:8081\n");
        assert!(a.allows(Some("10.0.0.5:8081")));
        assert!(a.allows(Some("[fd00::1]:8081")));
        assert!(a.allows(Some("localhost:8081")));
        assert!(!a.allows(Some("rebind.example:8081")));
        let a = allowed("dashboard:\n  listen: 10.0.0.5:8081\n");
        assert!(a.allows(Some("10.0.0.5")));
        assert!(!a.allows(Some("localhost:8081")));
    }
}
