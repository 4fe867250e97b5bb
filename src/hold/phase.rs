//! The hold phase (SPEC §6): an agent call parked on its [`Ticket`] until the
//! operators' outcome — or, after `hold.reply_after`, answered 503 `pending`
//! so the agent's SDK learns it waits for a person instead of timing out; an
//! approved call then claims the approval's one forwarding and goes through
//! the forward phase.

use std::time::{Duration, Instant};

use http::Response;

use super::{Outcome, Ticket};
use crate::core::{About, Refusal, RefusalKind};
use crate::ids::RequestId;
use crate::proxy::ProxyBody;
use crate::proxy::state::ProxyState;
use crate::upstream::{Target, Upstream, phase::forward};

/// Waits for the outcome; the answer carries the held request's id.
///
/// A plain function returning an `async move` block: an `async fn` keeps
/// each argument twice in its future (as received and as a local), and this
/// future is what a held call keeps while it waits.
#[allow(clippy::manual_async_fn)] // see above
pub fn wait<'a>(
    state: &'a ProxyState,
    target: &'a Target,
    ticket: Ticket,
    about: About,
    mut up: Upstream,
) -> impl Future<Output = (RequestId, Result<Response<ProxyBody>, Refusal>)> + Send + 'a {
    async move {
        let core = &state.shared.core;
        let id = ticket.id.clone();
        if ticket.joined {
            // The held request's bytes are this call's bytes (same join key):
            // keep one copy for all the calls that joined it.
            up.body = ticket.body.clone();
        }
        let started = Instant::now();
        let limit = about.reply_after.unwrap_or(state.shared.config.reply_after);
        let outcome = outcome_within(ticket, limit).await;
        core.metrics.hold_seconds.observe(started.elapsed());
        let result = match outcome {
            Outcome::Approved => match Box::pin(core.holds.claim(&id)).await {
                Ok(Some(flight)) => {
                    Box::pin(forward(&state.upstreams, &core.metrics, target, flight, up)).await
                }
                Ok(None) => Err(Refusal::new(
                    RefusalKind::Denied,
                    &id,
                    "this request was approved and has already been forwarded once (an approval forwards exactly one request)",
                )),
                Err(e) => {
                    tracing::error!(request_id = %id, error = %e, "claiming an approval failed");
                    Err(Refusal::store_unavailable(&id))
                }
            },
            Outcome::Rejected { by, reason } => {
                let message = format!(
                    "{} {} was rejected by {by}{}; it was not sent",
                    about.resource,
                    about.action,
                    reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
                let mut r = core.refusal(RefusalKind::Rejected, &id, &about, message);
                r.reason = reason.or(Some(about.reason.clone()));
                Err(r)
            }
            Outcome::Pending => Err(pending(state, &id, &about)),
            Outcome::Expired => {
                let message = format!(
                    "{} {} was not approved within the approval window; it was not sent. Ask an operator, then retry",
                    about.resource, about.action
                );
                Err(core.refusal(RefusalKind::Expired, &id, &about, message))
            }
        };
        (id, result)
    }
}

/// Still held after `reply_after`: the request stays pending; the agent's
/// identical retry joins it, or once approved goes through.
fn pending(state: &ProxyState, id: &RequestId, about: &About) -> Refusal {
    let core = &state.shared.core;
    let message = format!(
        "{} {} is waiting for an operator's approval ({}); it has not been sent. \
         Approve it at {}, then retry the identical request: the retry waits for \
         the decision and, once approved, goes through",
        about.resource,
        about.action,
        about.reason,
        core.approval_url(id)
    );
    core.refusal(RefusalKind::Pending, id, about, message)
}

/// The first outcome other than `Pending`, or `Pending` once `limit` has
/// passed (zero: no limit). The ticket is dropped either way; a held request
/// stays in the registry. (A plain function returning an `async move` block,
/// as `wait`, so the ticket is kept once.)
#[allow(clippy::manual_async_fn)]
fn outcome_within(mut ticket: Ticket, limit: Duration) -> impl Future<Output = Outcome> + Send {
    async move {
        let first = async {
            loop {
                let current = ticket.rx.borrow_and_update().clone();
                if current != Outcome::Pending {
                    return current;
                }
                if ticket.rx.changed().await.is_err() {
                    // The registry dropped the entry without an outcome.
                    return Outcome::Expired;
                }
            }
        };
        if limit.is_zero() {
            return first.await;
        }
        tokio::time::timeout(limit, first)
            .await
            .unwrap_or(Outcome::Pending)
    }
}
