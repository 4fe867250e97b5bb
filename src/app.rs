//! Wiring: build every part from the configuration, bind the listeners, run
//! until a signal, shut down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Engine;
use crate::forward::{Dialer, Forwarder};
use crate::proxy::ca::Ca;
use crate::proxy::guard::Guard;
use crate::state::State;

/// Process-wide rustls provider: ring (STACK.md).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads the policy the configuration names: the listed files, or
/// `./policies/` when present, else the built-in starter policy.
pub fn load_policy(config: &Config) -> Result<sudomode_policy::Policy, String> {
    let any_exists = config.policies.iter().any(|p| p.exists());
    if config.policies_explicit || any_exists {
        sudomode_policy::Policy::load(&config.policies).map_err(|e| e.to_string())
    } else {
        Ok(sudomode_policy::Policy::builtin())
    }
}

/// A started SudoMode.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub dashboard_addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }
}

/// Error kinds that map to exit code 2 (bad configuration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

pub async fn start(config: Config) -> Result<Running> {
    install_crypto();
    let policy = load_policy(&config).map_err(ConfigProblem)?;
    let mapper = sudomode_intent::Mapper::new(config.intents.clone(), config.max_body_bytes)
        .map_err(|e| ConfigProblem(format!("{}: intents: {e}", config.name())))?;
    let ca = Ca::load_or_create(&config.ca_dir).context("certificate authority")?;
    let proxy_listener = TcpListener::bind(config.proxy_listen)
        .await
        .with_context(|| format!("binding proxy.listen {}", config.proxy_listen))?;
    let dash_listener = TcpListener::bind(config.dashboard_listen)
        .await
        .with_context(|| format!("binding dashboard.listen {}", config.dashboard_listen))?;
    let proxy_addr = proxy_listener.local_addr()?;
    let dashboard_addr = dash_listener.local_addr()?;
    let mut config = config;
    // Links and the guard use the real addresses (port 0 in tests).
    config.proxy_listen = proxy_addr;
    config.dashboard_listen = dashboard_addr;
    let guard = Arc::new(Guard::new(vec![proxy_addr, dashboard_addr]));
    let dialer = Dialer {
        resolve: Arc::new(config.resolve.clone()),
        guard,
        connect_timeout: config.connect_timeout,
    };
    let tls = crate::forward::tls::client_config(&config.upstream_ca_files).map_err(ConfigProblem)?;
    let forwarder = Forwarder::new(dialer.clone(), tls, config.upstream_timeout, config.idle_timeout);
    let engine = Engine::new(mapper, policy);
    let state = Arc::new(State::new(config, ca, dialer, forwarder, engine).map_err(ConfigProblem)?);

    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::proxy::serve(proxy_listener, state.clone(), rx.clone())));
    let router = crate::dashboard::router(state.clone());
    let mut dash_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = dash_rx.changed().await;
        };
        if let Err(e) = axum::serve(dash_listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "dashboard listener failed");
        }
    }));
    tasks.push(tokio::spawn(crate::reload::watch(state.clone(), rx)));
    Ok(Running { proxy_addr, dashboard_addr, state, shutdown: tx, tasks })
}

/// `sudomode run`: start, print how to use it, wait for a signal.
pub async fn run(config: Config) -> Result<()> {
    let running = start(config).await?;
    let st = &running.state;
    println!("SudoMode is running.");
    println!("  proxy:      http://{}", running.proxy_addr);
    println!("  dashboard:  {}", st.config.public_url());
    println!("  CA:         {}", st.ca.paths.cert.display());
    println!("  policy:     {}", st.engine.policy().version());
    println!();
    println!("Point an agent at it:");
    print!("{}", crate::commands::env_lines(&st.config, None));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
