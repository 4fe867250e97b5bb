//! Addresses the proxy must never reach (SPEC §13.3, §13.8): its own
//! listeners, by any address that reaches them, and link-local / cloud
//! metadata endpoints.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    OwnListener,
    Metadata,
}

impl Forbidden {
    pub fn reason(self) -> &'static str {
        match self {
            Forbidden::OwnListener => {
                "SudoMode does not proxy requests to its own listeners (agents cannot approve their own requests)"
            }
            Forbidden::Metadata => {
                "requests to link-local and cloud metadata addresses are refused (they expose instance credentials)"
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Guard {
    listeners: Vec<SocketAddr>,
}

impl Guard {
    pub fn new(listeners: Vec<SocketAddr>) -> Self {
        Self { listeners }
    }

    pub fn forbidden(&self, addr: &SocketAddr) -> Option<Forbidden> {
        let ip = canonical(addr.ip());
        if is_metadata(ip) {
            return Some(Forbidden::Metadata);
        }
        for l in &self.listeners {
            if l.port() != addr.port() {
                continue;
            }
            let lip = canonical(l.ip());
            // A listener on 0.0.0.0 answers on every local address; loopback
            // and the unspecified address always reach a local listener.
            if ip == lip || ip.is_loopback() || ip.is_unspecified() || lip.is_unspecified() {
                return Some(Forbidden::OwnListener);
            }
        }
        None
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Guard {
        Guard::new(vec![
            "127.0.0.1:8081".parse().unwrap(),
            "0.0.0.0:8080".parse().unwrap(),
        ])
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
            "10.1.2.3:8080",
        ] {
            assert_eq!(
                g.forbidden(&a.parse().unwrap()),
                Some(Forbidden::OwnListener),
                "{a}"
            );
        }
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
        ] {
            assert_eq!(
                g.forbidden(&a.parse().unwrap()),
                Some(Forbidden::Metadata),
                "{a}"
            );
        }
        assert_eq!(g.forbidden(&"8.8.8.8:443".parse().unwrap()), None);
    }
}
