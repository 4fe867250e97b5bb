//! Addresses the proxy must never reach (SPEC §13.3, §13.8): its own
//! listeners, by any address that reaches them, and link-local / cloud
//! metadata endpoints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    OwnListener,
    /// The dashboard: an agent's call for `/v1/govern` that its client sent
    /// through the proxy (its `NO_PROXY` does not name the dashboard host).
    Dashboard,
    Metadata,
}

impl Forbidden {
    /// Why, for a target named `host`.
    pub fn reason(self, host: &str) -> String {
        match self {
            Forbidden::OwnListener => {
                "SudoMode does not proxy requests to its own listeners (agents cannot approve their own requests)".into()
            }
            Forbidden::Dashboard => format!(
                "your client sent a call for SudoMode's dashboard through the proxy; add {} to NO_PROXY (agents reach /v1/govern directly; the proxy never forwards to SudoMode's own listeners)",
                host.trim_start_matches('[').trim_end_matches(']')
            ),
            Forbidden::Metadata => {
                "requests to link-local and cloud metadata addresses are refused (they expose instance credentials)".into()
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Guard {
    listeners: Vec<SocketAddr>,
    dashboard: Option<SocketAddr>,
}

impl Guard {
    pub fn new(listeners: Vec<SocketAddr>) -> Self {
        Self {
            listeners,
            dashboard: None,
        }
    }

    /// Also guards the dashboard listener, refused with its own reason.
    pub fn with_dashboard(mut self, addr: SocketAddr) -> Self {
        self.dashboard = Some(addr);
        self
    }

    pub fn forbidden(&self, addr: &SocketAddr) -> Option<Forbidden> {
        let ip = canonical(addr.ip());
        if is_metadata(ip) {
            return Some(Forbidden::Metadata);
        }
        let reaches = |l: &SocketAddr| {
            let lip = canonical(l.ip());
            // A listener on 0.0.0.0 answers on every local address; loopback
            // and the unspecified address always reach a local listener.
            l.port() == addr.port()
                && (ip == lip || ip.is_loopback() || ip.is_unspecified() || lip.is_unspecified())
        };
        if self.dashboard.as_ref().is_some_and(reaches) {
            return Some(Forbidden::Dashboard);
        }
        self.listeners
            .iter()
            .any(reaches)
            .then_some(Forbidden::OwnListener)
    }
}

/// IPv6 forms that carry an IPv4 address are judged as that address:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96`, `64:ff9b:1::/48`) and 6to4 (`2002:AABB:CCDD::/48`).
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low32 = || Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
    let ipv4_compatible = s[..6].iter().all(|&x| x == 0) && (s[6] != 0 || s[7] > 1);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && (s[2] == 1 || s[2..6].iter().all(|&x| x == 0));
    if ipv4_compatible || nat64 {
        return IpAddr::V4(low32());
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::from(((s[1] as u32) << 16) | s[2] as u32));
    }
    ip
}

/// Cloud metadata endpoints: link-local (169.254.0.0/16, AWS/GCP/Azure/…),
/// Alibaba's 100.100.100.200, AWS's IPv6 `fd00:ec2::254`, IPv6 link-local.
fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == Ipv4Addr::new(100, 100, 100, 200),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Host names that always mean a metadata endpoint, whatever they resolve to.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

impl Guard {
    /// The address the agent named, before any `upstream.resolve` override or
    /// DNS: an IP literal is judged as it is, metadata names are refused.
    pub fn forbidden_name(&self, host: &str, port: u16) -> Option<Forbidden> {
        let name = sudomode_intent::normalize_host(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.forbidden(&SocketAddr::new(ip, port));
        }
        METADATA_NAMES
            .contains(&name.as_str())
            .then_some(Forbidden::Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Guard {
        Guard::new(vec!["0.0.0.0:8080".parse().unwrap()])
            .with_dashboard("127.0.0.1:8081".parse().unwrap())
    }

    #[test]
    fn own_listeners_by_any_local_address() {
        let g = g();
        for a in [
            "127.0.0.1:8081",
            "127.9.9.9:8081",
            "[::1]:8081",
            "0.0.0.0:8081",
            "[::ffff:127.0.0.1]:8081",
        ] {
            assert_eq!(
                g.forbidden(&a.parse().unwrap()),
                Some(Forbidden::Dashboard),
                "{a}"
            );
        }
        assert_eq!(
            g.forbidden(&"10.1.2.3:8080".parse().unwrap()),
            Some(Forbidden::OwnListener)
        );
        assert!(
            Forbidden::Dashboard
                .reason("[::1]")
                .contains("add ::1 to NO_PROXY")
        );
        assert_eq!(g.forbidden(&"127.0.0.1:9999".parse().unwrap()), None);
        assert_eq!(g.forbidden(&"10.1.2.3:8081".parse().unwrap()), None);
    }

    #[test]
    fn metadata_addresses() {
        let g = g();
        for a in [
            "169.254.169.254:80",
            "169.254.1.1:443",
            "[fd00:ec2::254]:80",
            "[::ffff:169.254.169.254]:80",
            "[fe80::1]:80",
            "100.100.100.200:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b:1::a9fe:a9fe]:80",
            "[::169.254.169.254]:80",
            "[2002:a9fe:a9fe::1]:80",
            "[::ffff:100.100.100.200]:80",
        ] {
            assert_eq!(
                g.forbidden(&a.parse().unwrap()),
                Some(Forbidden::Metadata),
                "{a}"
            );
        }
        assert_eq!(g.forbidden(&"8.8.8.8:443".parse().unwrap()), None);
        assert_eq!(
            g.forbidden(&"[64:ff9b::808:808]:443".parse().unwrap()),
            None
        );
    }

    #[test]
    fn named_targets() {
        let g = g();
        for (h, p) in [
            ("169.254.169.254", 80),
            ("[fd00:ec2::254]", 80),
            ("metadata.google.internal", 80),
            ("Metadata.Google.Internal.", 80),
            ("127.0.0.1", 8081),
        ] {
            assert!(g.forbidden_name(h, p).is_some(), "{h}");
        }
        assert_eq!(g.forbidden_name("api.stripe.com", 443), None);
    }
}
