//! Policy hot reload (SPEC §5.5): poll the policy files' fingerprint; load a
//! changed policy, keep the last good one when the change is invalid.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sudomode_store::NewEvent;
use tokio::sync::watch;

use crate::state::State;

const POLL: Duration = Duration::from_millis(500);

pub async fn watch(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let paths = state.config.policies.clone();
    // Start from what was loaded, not from the files as they are when this task
    // first runs: a change made in between must still be picked up.
    let mut last = {
        let loaded = state.core.engine.policy();
        if loaded.files() == [sudomode_policy::DEFAULT_POLICY_NAME] {
            sudomode_policy::fingerprint(&paths).ok()
        } else {
            Some(loaded.version().to_string())
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
        let now = sudomode_policy::fingerprint(&paths).ok();
        if now == last {
            continue;
        }
        last = now;
        match crate::app::load_policy(&state.config) {
            Ok(policy) => {
                tracing::info!(version = %policy.version(), "policy reloaded");
                state
                    .core
                    .metrics
                    .reloads_ok
                    .fetch_add(1, Ordering::Relaxed);
                if let Err(e) = state
                    .core
                    .recorder
                    .event(crate::app::policy_loaded(&policy))
                    .await
                {
                    tracing::error!(error = %e, "recording policy.loaded failed");
                }
                state.core.engine.replace(policy);
                state.set_reload_error(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy change refused; the last good policy stays in force");
                state
                    .core
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                let event = NewEvent::new("policy.reload_failed")
                    .field("error", e.clone())
                    .field(
                        "kept_version",
                        state.core.engine.policy().version().to_string(),
                    );
                if let Err(err) = state.core.recorder.event(event).await {
                    tracing::error!(error = %err, "recording policy.reload_failed failed");
                }
                state.set_reload_error(Some(e));
            }
        }
    }
}
