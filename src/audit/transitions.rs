//! The state changes of a held request, as rules over the record the store
//! holds right now. The store applies each one atomically
//! ([`sudomode_store::Storage::update_request`]), so whichever replica an
//! operator, a retry or the clock reaches, a request is approved, rejected,
//! expired or has its retry used once.

use std::time::Duration;

use sudomode_store::{Approval, NewEvent, RequestRecord, Status, Update, approved_at, is_due};
use time::OffsetDateTime;

use super::events;

/// Why a decision did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No such request.
    Missing,
    /// The request is no longer pending (someone decided first).
    NotPending(Status),
}

fn pending(cur: Option<RequestRecord>) -> Result<RequestRecord, Refused> {
    match cur {
        None => Err(Refused::Missing),
        Some(r) if r.status == Status::Pending => Ok(r),
        Some(r) => Err(Refused::NotPending(r.status)),
    }
}

/// One operator's approval; released (approved) once enough distinct
/// operators approved. Answers the record and whether it was released.
pub(super) fn approve(
    cur: Option<RequestRecord>,
    operator: &str,
    approval: &crate::hold::Approval,
    now: OffsetDateTime,
) -> Update<Result<(RequestRecord, bool), Refused>> {
    let mut r = match pending(cur) {
        Ok(r) => r,
        Err(e) => return Update::Keep(Err(e)),
    };
    let reason = approval.reason.as_deref();
    if !r.approvals.iter().any(|a| a.operator == operator) {
        r.approvals.push(Approval {
            operator: operator.to_string(),
            at: now,
            reason: reason.map(str::to_string),
            grant: approval.grant.clone(),
        });
    }
    if let Some(edit) = &approval.edit {
        edit.stamp(&mut r);
    }
    let released = r.approvals.len() as u32 >= r.required_approvals.max(1);
    if released {
        r.status = Status::Approved;
        // An explicit intent has nothing to forward.
        r.retry_grant_used |= r.is_explicit();
    }
    let event = events::approved(&r, operator, reason, released);
    Update::Write(Box::new(r.clone()), vec![event], Ok((r, released)))
}

pub(super) fn reject(
    cur: Option<RequestRecord>,
    operator: &str,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Update<Result<RequestRecord, Refused>> {
    let mut r = match pending(cur) {
        Ok(r) => r,
        Err(e) => return Update::Keep(Err(e)),
    };
    r.status = Status::Rejected;
    r.rejected_by = Some(operator.to_string());
    r.rejected_reason = reason.map(str::to_string);
    r.completed_at = Some(now);
    let event = events::rejected(&r, operator, reason);
    Update::Write(Box::new(r.clone()), vec![event], Ok(r))
}

/// Expires the request if its window ended (still, as stored now).
pub(super) fn expire(
    cur: Option<RequestRecord>,
    now: OffsetDateTime,
    retry_window: Duration,
) -> Update<Option<RequestRecord>> {
    let Some(mut r) = cur.filter(|r| is_due(r, now, retry_window)) else {
        return Update::Keep(None);
    };
    r.status = Status::Expired;
    r.completed_at = Some(now);
    let event = events::expired(&r);
    Update::Write(Box::new(r.clone()), vec![event], Some(r))
}

/// An identical retry within the retry window, not the live call.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub now: OffsetDateTime,
    pub window: Duration,
}

/// Takes the approval's one forwarding: by the waiting call, or by an
/// identical retry within the window. `None` when it is not (or no longer)
/// there to take.
pub(super) fn claim(
    cur: Option<RequestRecord>,
    retry: Option<Retry>,
) -> Update<Option<RequestRecord>> {
    let Some(mut r) = cur else {
        return Update::Keep(None);
    };
    let open = r.status == Status::Approved && !r.retry_grant_used;
    let allowed = retry.is_none_or(|t| {
        !r.is_explicit() && approved_at(&r).is_none_or(|at| t.now - at <= t.window)
    });
    if !(open && allowed) {
        return Update::Keep(None);
    }
    r.retry_grant_used = true;
    let events: Vec<NewEvent> = retry
        .map(|_| events::retry_granted(&r))
        .into_iter()
        .collect();
    Update::Write(Box::new(r.clone()), events, Some(r))
}
