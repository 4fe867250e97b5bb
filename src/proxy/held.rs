//! The hold phase (SPEC §6): park a REQUIRE_APPROVAL request, wait for the
//! operators' outcome, and forward the held bytes exactly once when approved.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Response};
use sudomode_store::{NewEvent, RequestRecord, Status};

use super::ProxyBody;
use super::pipeline::{Ctx, Upstream, audit_unavailable, forward, refusal};
use super::reply::{AgentError, ErrorType, REQUEST_ID};
use crate::hold::{Entry, HoldError, Outcome};
use crate::state::State;

pub(super) async fn hold(
    state: &Arc<State>,
    ctx: &Ctx,
    record: RequestRecord,
    event: NewEvent,
    up: Upstream,
) -> Response<ProxyBody> {
    let entry = match Box::pin(state.holds.enter(record.clone(), event, false)).await {
        Ok(e) => e,
        Err(HoldError::Store(e)) => return audit_unavailable(ctx, &e),
        Err(e) => {
            return AgentError::new(ErrorType::Denied, ctx.id.as_str(), e.to_string())
                .into_response();
        }
    };
    let (id, mut rx) = match entry {
        Entry::Grant { record } => {
            tracing::info!(request_id = %record.id, "identical retry forwarded under an earlier approval");
            let id = record.id.clone();
            return with_id(Box::pin(forward(state, ctx, *record, up)).await, &id);
        }
        Entry::OverCap { pending } => {
            let mut err = refusal(ErrorType::Denied, ctx.id.as_str(), &record, state);
            err.message = format!(
                "{} {} needs approval, but agent `{}` already has {pending} requests waiting (hold.max_pending_per_agent); wait for those to be decided",
                record.resource, record.action, record.agent
            );
            let ev = NewEvent::new("request.decided")
                .request(ctx.id.as_str())
                .agent(ctx.agent.0.clone())
                .field("decision", "DENY")
                .field("rule", "sudomode.builtin")
                .field("reason", err.message.clone());
            let mut denied = record;
            denied.status = Status::Denied;
            denied.decision = "DENY".into();
            denied.rule = Some("sudomode.builtin".into());
            denied.reason = err.message.clone();
            denied.expires_at = None;
            if let Err(e) = Box::pin(state.recorder.decision(vec![ev], Some(denied))).await {
                return audit_unavailable(ctx, &e);
            }
            return err.into_response();
        }
        Entry::Wait { id, rx, joined } => {
            if joined {
                tracing::info!(request_id = %id, joined = %ctx.id, "identical pending request joined");
            }
            (id, rx)
        }
    };
    let started = Instant::now();
    let outcome = loop {
        let current = rx.borrow_and_update().clone();
        if current != Outcome::Pending {
            break current;
        }
        if rx.changed().await.is_err() {
            // Registry dropped the entry without an outcome: read the record.
            break Outcome::Expired;
        }
    };
    state.metrics.hold_seconds.observe(started.elapsed());
    let resp = match outcome {
        Outcome::Approved => match Box::pin(state.holds.claim(&id)).await {
            Ok(Some(approved)) => Box::pin(forward(state, ctx, approved, up)).await,
            Ok(None) => AgentError::new(
                ErrorType::Denied,
                &id,
                "this request was approved and has already been forwarded once (an approval forwards exactly one request)",
            )
            .into_response(),
            Err(HoldError::Store(e)) => audit_unavailable(ctx, &e),
            Err(e) => AgentError::new(ErrorType::Denied, &id, e.to_string()).into_response(),
        },
        Outcome::Rejected { by, reason } => {
            let mut err = refusal(ErrorType::Rejected, &id, &record, state);
            err.message = format!(
                "{} {} was rejected by {by}{}; it was not sent",
                record.resource,
                record.action,
                reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            );
            err.reason = reason.or(Some(record.reason.clone()));
            err.into_response()
        }
        Outcome::Expired | Outcome::Pending => {
            let mut err = refusal(ErrorType::Expired, &id, &record, state);
            err.message = format!(
                "{} {} was not approved within the approval window; it was not sent. Ask an operator, then retry",
                record.resource, record.action
            );
            err.into_response()
        }
    };
    with_id(resp, &id)
}

fn with_id(mut resp: Response<ProxyBody>, id: &str) -> Response<ProxyBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}
