//! What only the proxy listener needs: the CA that mints leaves, the
//! upstreams (client, dialer, credentials, address guard) and tunnel hosts.

use std::sync::Arc;

use sudomode_intent::glob::Glob;

use super::ca::Ca;
use crate::core::Refusal;
use crate::ids::RequestId;
use crate::state::State;
use crate::upstream::{Target, Upstreams};

pub struct ProxyState {
    pub shared: Arc<State>,
    pub ca: Ca,
    pub upstreams: Upstreams,
    tunnel_hosts: Vec<Glob>,
}

impl ProxyState {
    pub fn new(shared: Arc<State>, ca: Ca, upstreams: Upstreams) -> Result<Self, String> {
        let tunnel_hosts = shared
            .config
            .tunnel_hosts
            .iter()
            .map(|g| {
                Glob::new(g.trim(), true).map_err(|e| format!("proxy.tunnel_hosts: `{g}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProxyState {
            shared,
            ca,
            upstreams,
            tunnel_hosts,
        })
    }

    pub fn is_tunnel_host(&self, host: &str) -> bool {
        self.tunnel_hosts.iter().any(|g| g.is_match(host))
    }

    /// Refuses own listeners and metadata addresses by the IPs the target
    /// resolves to (SPEC §13.3, §13.8).
    pub async fn check_target(&self, id: &RequestId, target: &Target) -> Result<(), Refusal> {
        match self.upstreams.guard_target(&target.host, target.port).await {
            Ok(Some(reason)) => Err(Refusal::builtin(id, &target.host, target.port, &reason)),
            // Resolution failures surface later as upstream errors.
            Ok(None) | Err(_) => Ok(()),
        }
    }
}
