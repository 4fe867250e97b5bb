//! The shapes of request lifecycle events (SPEC §11), one function per type.

use serde_json::json;
use sudomode_store::{NewEvent, RequestRecord, Status};

use super::flight::Ending;
use crate::core::decided::Decided;

fn on(kind: &str, r: &RequestRecord) -> NewEvent {
    NewEvent::new(kind)
        .request(r.id.clone())
        .agent(r.agent.clone())
}

/// `request.joined`: an identical call attached to a pending request.
pub(super) fn joined(pending_id: &str, d: &Decided) -> NewEvent {
    NewEvent::new("request.joined")
        .request(pending_id)
        .agent(d.agent.as_str())
        .field("decision", d.verdict.as_str())
        .field(
            "rule",
            d.rule
                .as_ref()
                .map(|r| json!(r.as_str()))
                .unwrap_or(json!(null)),
        )
        .field("policy_version", d.record.policy_version.clone())
}

pub(super) fn approved(
    r: &RequestRecord,
    operator: &str,
    reason: Option<&str>,
    released: bool,
) -> NewEvent {
    let mut e = on("request.approved", r)
        .operator(operator)
        .field("approvals", r.approvals.len() as u64)
        .field("required_approvals", r.required_approvals)
        .field("released", released);
    if let Some(reason) = reason {
        e = e.field("reason", reason);
    }
    e
}

pub(super) fn rejected(r: &RequestRecord, operator: &str, reason: Option<&str>) -> NewEvent {
    let mut e = on("request.rejected", r).operator(operator);
    if let Some(reason) = reason {
        e = e.field("reason", reason);
    }
    e
}

pub(super) fn expired(r: &RequestRecord) -> NewEvent {
    on("request.expired", r)
}

pub(super) fn retry_granted(r: &RequestRecord) -> NewEvent {
    on("request.retry_granted", r).field("retry_key", r.retry_key.clone())
}

/// The final event of a forwarded (or abandoned) request; sets the record's
/// final status to match.
pub(super) fn ended(r: &mut RequestRecord, ending: &Ending) -> NewEvent {
    r.completed_at = Some(time::OffsetDateTime::now_utc());
    match ending {
        Ending::Completed {
            upstream_status,
            duration_ms,
            request_bytes,
        } => {
            r.status = Status::Completed;
            r.upstream_status = Some(*upstream_status);
            on("request.forwarded", r)
                .field("upstream_status", *upstream_status)
                .field("duration_ms", (duration_ms * 1000.0).round() / 1000.0)
                .field("request_bytes", *request_bytes)
        }
        Ending::Failed { error, error_type } => {
            r.status = Status::Failed;
            on("request.failed", r)
                .field("error", error.clone())
                .field("error_type", *error_type)
        }
        Ending::Cancelled { why } => {
            r.status = Status::Cancelled;
            on("request.cancelled", r).field("reason", why.clone())
        }
    }
}
