//! The shapes of request lifecycle events (SPEC §11), one function per type.

use serde_json::json;
use sudomode_store::{Grant, NewEvent, RequestRecord, Status};

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
    if let Some(edit) = &r.edit {
        e = e
            .field("edits", edit.patch.clone())
            .field("edited_body_sha256", edit.body_sha256.clone());
    }
    let grant = r
        .approvals
        .iter()
        .find(|a| a.operator == operator)
        .and_then(|a| a.grant.clone());
    if let Some(g) = grant {
        e = e.field("grant_id", g);
    }
    e
}

/// `grant.created` (SPEC §6.1), on the trail of the request it came from.
pub(super) fn grant_created(g: &Grant) -> NewEvent {
    let mut e = grant_event("grant.created", g).operator(g.created_by.clone());
    if let Some(r) = &g.from_request {
        e = e.request(r.clone());
    }
    e
}

/// `grant.revoked`.
pub(super) fn grant_revoked(g: &Grant) -> NewEvent {
    grant_event("grant.revoked", g).operator(g.revoked_by.clone().unwrap_or_default())
}

fn grant_event(kind: &str, g: &Grant) -> NewEvent {
    let mut e = NewEvent::new(kind)
        .agent(g.agent.clone())
        .field("grant_id", g.id.clone())
        .field("resource", g.resource.clone())
        .field("action", g.action.clone())
        .field("uses", g.uses)
        .field(
            "expires_at",
            g.expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );
    for (name, value) in [("condition", &g.condition), ("reason", &g.reason)] {
        if let Some(v) = value {
            e = e.field(name, v.clone());
        }
    }
    if let Some(n) = g.max_uses {
        e = e.field("max_uses", n);
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
                .field("duration_ms", (duration_ms * 1000.0).round() / 1000.0)
                .field("request_bytes", *request_bytes)
                .field("upstream_status", *upstream_status)
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
