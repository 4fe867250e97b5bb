//! `CredentialError`: what can go wrong configuring or injecting credentials.
//!
//! Messages name credentials and headers, never a secret value: they end up in logs, the
//! audit and in responses to the agent.

/// Errors from [`crate::Injector`]. The proxy maps `Unsupported` and `InvalidRequest` to
/// `400 bad_request`, `Config` to a startup error (exit 2) and `Signing` to a 500/502.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The `credentials:` configuration is invalid (checked by [`crate::Injector::new`]).
    #[error("invalid credentials configuration: {0}")]
    Config(String),
    /// The request uses a feature injection cannot handle yet (aws-chunked, SigV4a…).
    #[error("{0}")]
    Unsupported(String),
    /// The request cannot be rewritten safely as sent (missing or malformed SigV4 signature,
    /// destination mismatch, non-UTF-8 signed header…).
    #[error("{0}")]
    InvalidRequest(String),
    /// The signer itself failed; the message comes from aws-sigv4, which never includes keys.
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

impl CredentialError {
    /// True when the agent's request is at fault (answer `400 bad_request`).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            CredentialError::Unsupported(_) | CredentialError::InvalidRequest(_)
        )
    }
}
