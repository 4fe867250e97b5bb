//! SudoMode: the missing `sudo` for AI agents. An intercepting HTTPS proxy
//! that maps each outbound call to an intent, judges it with a policy, holds
//! risky calls for a human, forwards with real credentials and records every
//! decision in a hash-chained audit log. `docs/architecture.md` maps the tree.

pub mod app;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod dashboard;
pub mod grants;
pub mod hold;
pub mod ids;
pub mod logtext;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod reload;
pub mod state;
pub mod upstream;

/// The one rustls crypto provider (ring, see STACK.md), shared by every config.
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<std::sync::Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
