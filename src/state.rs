//! What every listener shares, built once at start-up: the configuration,
//! the governance core, agent identities and the built credentials. (What
//! only the proxy needs is `proxy::state::ProxyState`.)

use std::sync::{Arc, Mutex};

use sudomode_credentials::Injector;

use crate::config::Config;
use crate::core::Core;
use crate::proxy::auth::AgentAuth;

pub struct State {
    pub config: Config,
    pub core: Core,
    /// Agent tokens: the proxy and `/v1/govern` authenticate agents alike.
    pub auth: AgentAuth,
    /// The credentials as built from the config (the proxy injects them; an
    /// operator's edit asks whether SudoMode re-signs a host).
    pub credentials: Arc<Injector>,
    /// Last policy reload error (shown in the API and dashboard).
    reload_error: Mutex<Option<String>>,
}

impl State {
    pub fn new(config: Config, core: Core, credentials: Arc<Injector>) -> Self {
        Self {
            auth: AgentAuth::new(config.agents.clone()),
            credentials,
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
