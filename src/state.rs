//! Everything a request needs, built once at start-up and shared.

use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use sudomode_credentials::Injector;

use crate::audit::Recorder;
use crate::config::Config;
use crate::engine::Engine;
use crate::forward::{Dialer, Forwarder};
use crate::hold::Holds;
use crate::metrics::Metrics;
use crate::proxy::auth::AgentAuth;
use crate::proxy::ca::Ca;
use crate::proxy::pipeline::{Ctx, builtin_denial};
use crate::proxy::reply::AgentError;

pub struct State {
    pub config: Config,
    pub ca: Ca,
    pub auth: AgentAuth,
    pub dialer: Dialer,
    pub forwarder: Forwarder,
    pub engine: Engine,
    pub metrics: Metrics,
    pub recorder: Arc<Recorder>,
    pub holds: Arc<Holds>,
    pub injector: Injector,
    /// Last policy reload error (shown in the API and dashboard).
    pub reload_error: std::sync::Mutex<Option<String>>,
    tunnel_hosts: GlobSet,
    /// Guard verdicts per `host:port`, so steady traffic does not pay a DNS
    /// lookup per request; the dialer re-checks every address it connects to.
    guard_cache: moka::future::Cache<(String, u16), Option<String>>,
}

impl State {
    pub fn new(
        config: Config,
        ca: Ca,
        dialer: Dialer,
        forwarder: Forwarder,
        engine: Engine,
        recorder: Arc<Recorder>,
        injector: Injector,
    ) -> Result<Self, String> {
        let mut b = GlobSetBuilder::new();
        for g in &config.tunnel_hosts {
            let glob = GlobBuilder::new(&g.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map_err(|e| format!("proxy.tunnel_hosts: `{g}`: {e}"))?;
            b.add(glob);
        }
        let tunnel_hosts = b.build().map_err(|e| format!("proxy.tunnel_hosts: {e}"))?;
        Ok(Self {
            auth: AgentAuth::new(config.agents.clone()),
            ca,
            dialer,
            forwarder,
            engine,
            metrics: Metrics::default(),
            holds: Arc::new(Holds::new(
                recorder.clone(),
                config.retry_window,
                config.max_pending_per_agent,
            )),
            recorder,
            injector,
            reload_error: std::sync::Mutex::new(None),
            config,
            tunnel_hosts,
            guard_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        })
    }

    pub fn is_tunnel_host(&self, host: &str) -> bool {
        self.tunnel_hosts.is_match(host)
    }

    /// Refuses own listeners and metadata addresses by the IPs the target
    /// resolves to (SPEC §13.3, §13.8).
    pub async fn check_target(&self, ctx: &Ctx) -> Result<(), AgentError> {
        match self.guard_target(&ctx.target.host, ctx.target.port).await {
            Ok(Some(reason)) => Err(builtin_denial(
                ctx.id.as_str(),
                &ctx.target.host,
                ctx.target.port,
                &reason,
            )),
            // Resolution failures surface later as upstream errors.
            Ok(None) | Err(_) => Ok(()),
        }
    }

    /// The address guard for `host:port`: `Ok(Some(reason))` when it resolves
    /// to a forbidden address, `Err` when it does not resolve (not cached, so
    /// a passing DNS failure is retried).
    pub async fn guard_target(&self, host: &str, port: u16) -> Result<Option<String>, String> {
        let dialer = self.dialer.clone();
        self.guard_cache
            .try_get_with((host.to_string(), port), async move {
                match dialer.addresses(host, port).await {
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        Ok(Some(e.to_string()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .map_err(|e| e.to_string())
    }
}

impl State {
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
