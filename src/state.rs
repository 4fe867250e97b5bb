//! What every listener shares, built once at start-up: the configuration,
//! the governance core and agent identities. (What only the proxy needs is
//! `proxy::state::ProxyState`.)

use std::sync::Mutex;

use crate::config::Config;
use crate::core::Core;
use crate::proxy::auth::AgentAuth;

pub struct State {
    pub config: Config,
    pub core: Core,
    /// Agent tokens: the proxy and `/v1/govern` authenticate agents alike.
    pub auth: AgentAuth,
    /// Last policy reload error (shown in the API and dashboard).
    reload_error: Mutex<Option<String>>,
}

impl State {
    pub fn new(config: Config, core: Core) -> Self {
        Self {
            auth: AgentAuth::new(config.agents.clone()),
            core,
            reload_error: Mutex::new(None),
            config,
        }
    }

    pub fn set_reload_error(&self, e: Option<String>) {
        match self.reload_error.lock() {
            Ok(mut g) => *g = e,
            Err(p) => *p.into_inner() = e,
        }
    }

    pub fn last_reload_error(&self) -> Option<String> {
        match self.reload_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}
