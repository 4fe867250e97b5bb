//! Agent identity at the proxy (SPEC §3): Basic `Proxy-Authorization` when
//! agents are configured; otherwise the loopback-only `default` agent.

use std::net::SocketAddr;

use base64::Engine;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::AgentCred;

pub use crate::ids::AgentName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Credentials missing or wrong: 407.
    Required(&'static str),
    /// No agents configured and the client is not on loopback.
    NotLoopback,
}

impl AuthError {
    pub fn message(&self) -> String {
        match self {
            AuthError::Required(why) => format!(
                "{why}: set HTTPS_PROXY=http://NAME:TOKEN@host:port with an agent from sudomode.yaml"
            ),
            AuthError::NotLoopback => "no agents are configured, so only loopback clients are served; add `agents:` to sudomode.yaml to serve other hosts".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentAuth {
    agents: Vec<AgentCred>,
}

impl AgentAuth {
    pub fn new(agents: Vec<AgentCred>) -> Self {
        Self { agents }
    }

    pub fn authenticate(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<AgentName, AuthError> {
        if self.agents.is_empty() {
            return if peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback() {
                Ok(AgentName(AgentName::DEFAULT.into()))
            } else {
                Err(AuthError::NotLoopback)
            };
        }
        let value = headers
            .get(http::header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Required("proxy credentials required"))?;
        let (name, token) =
            parse_basic(value).ok_or(AuthError::Required("malformed Proxy-Authorization"))?;
        self.check(&name, &token)
            .ok_or(AuthError::Required("unknown agent or wrong token"))
    }

    /// Checks an agent name and token (also used for `/v1/govern` bearer tokens).
    pub fn check(&self, name: &str, token: &str) -> Option<AgentName> {
        let mut found = None;
        for a in &self.agents {
            let ok_token: bool = a.token.as_bytes().ct_eq(token.as_bytes()).into();
            if a.name == name && ok_token {
                found = Some(AgentName(a.name.clone()));
            }
        }
        found
    }

    /// Looks an agent up by token alone (bearer tokens on the dashboard listener).
    pub fn by_token(&self, token: &str) -> Option<AgentName> {
        let mut found = None;
        for a in &self.agents {
            let ok: bool = a.token.as_bytes().ct_eq(token.as_bytes()).into();
            if ok {
                found = Some(AgentName(a.name.clone()));
            }
        }
        found
    }

    pub fn is_open(&self) -> bool {
        self.agents.is_empty()
    }
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (n, t) = s.split_once(':')?;
    Some((n.to_string(), t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AgentAuth {
        AgentAuth::new(vec![AgentCred {
            name: "bot".into(),
            token: "t0ken".into(),
        }])
    }

    fn hdr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::PROXY_AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn basic_auth() {
        let peer = "10.0.0.1:5000".parse().unwrap();
        let ok = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:t0ken")
        );
        assert_eq!(auth().authenticate(peer, &hdr(&ok)).unwrap().0, "bot");
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:nope")
        );
        assert!(auth().authenticate(peer, &hdr(&bad)).is_err());
        assert!(auth().authenticate(peer, &HeaderMap::new()).is_err());
        assert!(auth().authenticate(peer, &hdr("Bearer x")).is_err());
    }

    #[test]
    fn open_mode_is_loopback_only() {
        let open = AgentAuth::new(vec![]);
        assert_eq!(
            open.authenticate("127.0.0.1:1".parse().unwrap(), &HeaderMap::new())
                .unwrap()
                .0,
            "default"
        );
        assert_eq!(
            open.authenticate("192.168.1.5:1".parse().unwrap(), &HeaderMap::new()),
            Err(AuthError::NotLoopback)
        );
    }
}
