//! Wiring: build every part from the configuration, bind the listeners, run
//! until a signal, shut down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use sudomode_store::NewEvent;

use crate::audit::Recorder;
use crate::config::{Config, Operator, Role};
use crate::core::Core;
use crate::core::engine::Engine;
use crate::hold::Holds;
use crate::metrics::Metrics;
use crate::proxy::ca::Ca;
use crate::proxy::state::ProxyState;
use crate::state::State;
use crate::upstream::guard::Guard;
use crate::upstream::{Dialer, Forwarder, Upstreams};

/// Process-wide rustls provider: ring (STACK.md).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads the policy the configuration names: the listed files, or
/// `./policies/` when present, else the built-in starter policy.
pub fn load_policy(config: &Config) -> Result<sudomode_policy::Policy, String> {
    let any_exists = config.policies.iter().any(|p| p.exists());
    if config.policies_explicit || any_exists {
        crate::commands::policy_cmd::load_configured(config).map_err(|e| e.to_string())
    } else {
        Ok(sudomode_policy::Policy::builtin())
    }
}

/// A started SudoMode.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub state: Arc<State>,
    pub proxy: Arc<ProxyState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a graceful stop lets requests in flight finish before they are
/// recorded as cancelled.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(DRAIN, t).await;
        }
        let core = &self.state.core;
        let deadline = tokio::time::Instant::now() + DRAIN;
        while core.recorder.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let cancelled = core
            .recorder
            .cancel_in_flight("SudoMode shut down before the upstream's answer was relayed");
        let pending = core.holds.pending_count() as u64;
        if let Err(e) = core
            .recorder
            .event(
                NewEvent::new("server.stopped")
                    .field("pending_requests", pending)
                    .field("cancelled_in_flight", cancelled as u64),
            )
            .await
        {
            tracing::error!(error = %e, "recording server.stopped failed");
        }
        if let Err(e) = core.recorder.storage().close().await {
            tracing::error!(error = %e, "closing the store failed");
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
    let metrics = Arc::new(Metrics::default());
    let ca = Ca::load_or_create(&config.ca_dir)
        .context("certificate authority")?
        .counting_into(metrics.certs_issued.clone());
    let injector = credentials(&config)?;
    for w in injector.warnings() {
        tracing::warn!("{}: {w}", config.name());
    }
    // Bound before an admin token is generated and printed: a busy address
    // must not show a token for a server that never ran.
    let proxy_listener = TcpListener::bind(config.proxy_listen)
        .await
        .with_context(|| format!("binding proxy.listen {}", config.proxy_listen))?;
    let dash_listener = TcpListener::bind(config.dashboard_listen)
        .await
        .with_context(|| format!("binding dashboard.listen {}", config.dashboard_listen))?;
    let mut config = config;
    ensure_admin(&mut config)?;
    let mut secrets = injector.secrets();
    secrets.extend(config.operators.iter().map(|o| o.token.clone()));
    secrets.extend(config.agents.iter().map(|a| a.token.clone()));
    let storage = open_storage(&config, secrets).await?;
    let recorder = Arc::new(Recorder::new(storage, config.durability));
    let proxy_addr = proxy_listener.local_addr()?;
    let dashboard_addr = dash_listener.local_addr()?;
    // Links and the guard use the real addresses (port 0 in tests).
    config.proxy_listen = proxy_addr;
    config.dashboard_listen = dashboard_addr;
    let guard = Arc::new(Guard::new(vec![proxy_addr]).with_dashboard(dashboard_addr));
    let fds = crate::proxy::connection_budget(config.max_connections);
    let dialer = Dialer {
        resolve: Arc::new(config.resolve.clone()),
        guard,
        connect_timeout: config.connect_timeout,
        slots: Arc::new(tokio::sync::Semaphore::new(fds.upstream)),
    };
    let tls =
        crate::upstream::tls::client_config(&config.upstream_ca_files).map_err(ConfigProblem)?;
    let forwarder = Forwarder::new(
        dialer.clone(),
        tls,
        config.upstream_timeout,
        config.idle_timeout,
        fds.idle_per_host(),
    );
    let holds = Arc::new(Holds::new(
        recorder.clone(),
        config.retry_window,
        config.max_pending_per_agent,
    ));
    let core = Core::new(
        Engine::new(mapper, policy),
        recorder,
        holds,
        metrics,
        config.hold_timeout,
        config.public_url(),
    );
    let injector = Arc::new(injector);
    let state = Arc::new(State::new(config, core, injector.clone()));
    let proxy_state = Arc::new(
        ProxyState::new(
            state.clone(),
            ca,
            Upstreams::new(dialer, forwarder, injector),
        )
        .map_err(ConfigProblem)?,
    );
    let notifications = Arc::new(
        crate::notify::Notifications::from_config(&state.config)
            .map_err(|e| ConfigProblem(format!("{}: {e}", state.config.name())))?,
    );
    let core = &state.core;
    let restored = core
        .holds
        .restore()
        .await
        .context("restoring pending requests")?;
    let policy = core.engine.policy();
    core.recorder
        .event(policy_loaded(&policy))
        .await
        .context("recording policy.loaded")?;
    core.recorder
        .event(
            NewEvent::new("server.started")
                .field("version", env!("CARGO_PKG_VERSION"))
                .field("proxy", proxy_addr.to_string())
                .field("dashboard", dashboard_addr.to_string())
                .field("policy_version", policy.version().to_string())
                .field("restored_open_requests", restored as u64),
        )
        .await
        .context("recording server.started")?;

    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    // Notifications subscribe before the proxy serves, so no change is missed.
    tasks.push(crate::notify::spawn(
        state.clone(),
        notifications.clone(),
        rx.clone(),
    ));
    tasks.push(tokio::spawn(crate::proxy::serve(
        proxy_listener,
        proxy_state.clone(),
        fds.agents,
        rx.clone(),
    )));
    let router = crate::dashboard::router(state.clone(), rx.clone())
        // Slack button presses, and sudomode_notifications_total on /metrics.
        .merge(crate::notify::interactions::routes(
            state.clone(),
            notifications.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            notifications.clone(),
            crate::notify::append_metrics,
        ));
    let router = crate::dashboard::guard_hosts(router, &state.config);
    let mut dash_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = dash_rx.changed().await;
        };
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(dash_listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "dashboard listener failed");
        }
    }));
    tasks.push(tokio::spawn(crate::hold::sweeper(
        state.core.holds.clone(),
        rx.clone(),
    )));
    if state.core.recorder.storage().is_shared() {
        tasks.push(tokio::spawn(crate::hold::edit_peers::answer_edits(
            state.clone(),
            rx.clone(),
        )));
    }
    if let Some(retention) = state.config.retention {
        tasks.push(tokio::spawn(crate::audit::retention::run(
            state.core.recorder.storage().clone(),
            retention,
            rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::reload::watch(state.clone(), rx)));
    Ok(Running {
        proxy_addr,
        state,
        proxy: proxy_state,
        shutdown: tx,
        tasks,
    })
}

/// `sudomode run`: start, print how to use it, wait for a signal.
pub async fn run(config: Config) -> Result<()> {
    // Handlers first: the banner tells scripts we are ready for signals.
    let signals = Signals::install()?;
    let running = start(config).await?;
    let st = &running.state;
    println!("SudoMode is running.");
    println!("  proxy:      http://{}", running.proxy_addr);
    println!("  dashboard:  {}", st.config.public_url());
    println!("  CA:         {}", running.proxy.ca.paths.cert.display());
    println!("  policy:     {}", st.core.engine.policy().version());
    println!();
    println!("Point an agent at it:");
    print!("{}", crate::commands::env_lines(&st.config, None));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    signals.wait().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// SIGINT / SIGTERM, installed before the process announces itself.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `policy.loaded`: the exact policy text that makes decisions is traceable
/// by its SHA-256.
pub fn policy_loaded(policy: &sudomode_policy::Policy) -> NewEvent {
    NewEvent::new("policy.loaded")
        .field("version", policy.version().to_string())
        .field("files", serde_json::json!(policy.files()))
        .field("rules", policy.rules().len() as u64)
}

/// The store the configuration names: PostgreSQL (`store.postgres`, shared
/// by several replicas) or the redb file (`store.path`). Errors never show
/// the connection string.
pub async fn open_storage(
    config: &Config,
    mut secrets: Vec<String>,
) -> Result<sudomode_store::Storage> {
    let opts = sudomode_store::StoreOptions {
        durability: match config.durability {
            crate::config::Durability::Strict => sudomode_store::Durability::Strict,
            crate::config::Durability::Batched => sudomode_store::Durability::Batched,
        },
        ..Default::default()
    };
    match &config.store_postgres {
        Some(url) => {
            secrets.push(url.expose().to_string());
            let opts = sudomode_store::StoreOptions { secrets, ..opts };
            sudomode_store::Storage::postgres(url.expose(), opts)
                .await
                .map_err(|e| match e {
                    sudomode_store::StoreError::Invalid(m) => {
                        anyhow::Error::new(ConfigProblem(format!("{}: {m}", config.name())))
                    }
                    other => anyhow::Error::new(other)
                        .context("opening the PostgreSQL store (store.postgres)"),
                })
        }
        None => {
            let opts = sudomode_store::StoreOptions { secrets, ..opts };
            let store = sudomode_store::Store::open(&config.store_path, opts)
                .with_context(|| format!("opening the store {}", config.store_path.display()))?;
            Ok(sudomode_store::Storage::redb(store))
        }
    }
}

/// Credentials from the config; errors name the entry, never a value.
fn credentials(config: &Config) -> Result<sudomode_credentials::Injector> {
    let mut specs = Vec::new();
    for (i, v) in config.credentials.iter().enumerate() {
        let spec: sudomode_credentials::CredentialSpec = serde_json::from_value(v.clone())
            .map_err(|e| ConfigProblem(format!("{}: credentials[{i}]: {e}", config.name())))?;
        specs.push(spec);
    }
    sudomode_credentials::Injector::new(specs)
        .map_err(|e| ConfigProblem(format!("{}: credentials: {e}", config.name())).into())
}

/// `SUDOMODE_ADMIN_TOKEN` adds operator `admin`; with no operator at all a
/// random admin token is generated once, kept next to the store (0600) and
/// printed the first time.
fn ensure_admin(config: &mut Config) -> Result<()> {
    if let Ok(token) = std::env::var("SUDOMODE_ADMIN_TOKEN")
        && !token.is_empty()
    {
        config.operators.retain(|o| o.name != "admin");
        config.operators.push(Operator {
            name: "admin".into(),
            token,
            role: Role::Admin,
            slack_user_id: None,
        });
        return Ok(());
    }
    if !config.operators.is_empty() {
        return Ok(());
    }
    let dir = config
        .store_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("admin-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 24];
            getrandom(&mut bytes)?;
            let token = hex::encode(bytes);
            crate::proxy::ca::write_private(&path, format!("{token}\n").as_bytes())?;
            println!(
                "Generated an admin token for the dashboard (shown once; stored in {}):",
                path.display()
            );
            println!("  {token}");
            token
        }
    };
    config.operators.push(Operator {
        name: "admin".into(),
        token,
        role: Role::Admin,
        slack_user_id: None,
    });
    Ok(())
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| anyhow::anyhow!("no system randomness"))
}
