//! Approve with edits (SPEC §6.2): an operator's JSON merge patch (RFC 7386)
//! over a held request's `args`, written back into the body in its own
//! format, then mapped and judged again ([`prepare`]); and, when the approval
//! is forwarded — by the waiting call, a joined one or a retry — the same
//! rewrite of that call's bytes, checked against the hash the approval
//! recorded ([`apply_approved`]). The record carries the patch, so the
//! rewrite needs nothing else (also after a restart).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value};
use sudomode_intent::{BodyKind, RawRequest};
use sudomode_policy::Verdict;
use sudomode_store::{EditRecord, RequestRecord};

use super::HoldError;
use crate::core::decided::sha256_hex;
use crate::state::State;

/// The head of a held request, as the agent sent it (what a re-encoded
/// body is mapped and judged with).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

impl RequestHead {
    pub fn of(raw: &RawRequest<'_>) -> Self {
        RequestHead {
            method: raw.method.to_string(),
            scheme: raw.scheme.to_string(),
            host: raw.host.to_string(),
            port: raw.port,
            path_and_query: raw.path_and_query.to_string(),
            headers: raw.headers.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// 409 `not_editable`.
    #[error("{0}")]
    NotEditable(String),
    /// 409: the edited call is denied; the request stays pending.
    #[error(
        "the edited call is denied by {}: {reason}; the request is still pending",
        rule.as_deref().map(|r| format!("rule `{r}`")).unwrap_or_else(|| "the default (no rule matched)".into())
    )]
    Denied {
        rule: Option<String>,
        reason: String,
    },
    /// 400: the edits are not a merge patch over the arguments.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Hold(#[from] HoldError),
}

/// An edit the operator may approve: stamped on the record by the registry.
#[derive(Debug, Clone)]
pub struct ApprovedEdit {
    pub patch: Value,
    pub body_sha256: String,
    /// The edited call's arguments (masked like every stored view).
    pub approved_args: Value,
}

impl ApprovedEdit {
    /// The record keeps `args` and adds the edit.
    pub fn stamp(&self, r: &mut RequestRecord) {
        r.edited = true;
        r.approved_args = Some(self.approved_args.clone());
        r.edit = Some(EditRecord {
            patch: self.patch.clone(),
            body_sha256: self.body_sha256.clone(),
        });
    }
}

/// What a held request needs for an edit: its record, head and body.
pub struct HeldCall {
    pub record: RequestRecord,
    pub head: Option<Arc<RequestHead>>,
    pub body: Bytes,
}

fn not_editable(why: impl Into<String>) -> EditError {
    EditError::NotEditable(why.into())
}

/// Checks that request `id` may be edited with `patch`, and judges the
/// edited call. Nothing is changed: the caller approves with the result.
/// A call held on another replica is prepared there ([`super::edit_peers`]).
pub async fn prepare(state: &State, id: &str, patch: Value) -> Result<ApprovedEdit, EditError> {
    if !patch.is_object() {
        return Err(EditError::Invalid(
            "edits: expected a JSON object (a merge patch over the request's args)".into(),
        ));
    }
    let holds = &state.core.holds;
    let Some(call) = holds.held_call(id).await else {
        return Err(holds.explain_not_held(id).await.into());
    };
    editable_kind(&call.record)?;
    if call.head.is_none() && state.core.recorder.storage().is_shared() {
        return super::edit_peers::prepare_elsewhere(state, id, &patch)
            .await?
            .ok_or_else(|| not_editable(NO_BYTES));
    }
    prepare_call(state, &call, patch)
}

/// Another replica's ask ([`super::edit_peers`]): `None` when the call does
/// not wait here, so its bytes are not here either.
pub(super) async fn prepare_here(
    state: &State,
    id: &str,
    patch: Value,
) -> Option<Result<ApprovedEdit, EditError>> {
    let call = state.core.holds.held_call(id).await?;
    call.head.as_ref()?;
    Some(editable_kind(&call.record).and_then(|()| prepare_call(state, &call, patch)))
}

/// The edit of `call`, whose head and body are here.
fn prepare_call(state: &State, call: &HeldCall, patch: Value) -> Result<ApprovedEdit, EditError> {
    let head = editable_head(state, call)?;
    let rewritten = rewrite(&head.headers, &call.body, &patch, &call.record.resource)?;
    let judge = |headers: &HeaderMap, body: &[u8]| {
        state.core.engine.judge(
            call.record.agent.as_str(),
            &RawRequest {
                method: &head.method,
                scheme: &head.scheme,
                host: &head.host,
                port: head.port,
                path_and_query: &head.path_and_query,
                headers,
                body,
            },
        )
    };
    let before = judge(&head.headers, &call.body)
        .map_err(|e| not_editable(format!("the held request cannot be read again: {e}")))?;
    let after = judge(&rewritten.headers, &rewritten.body)
        .map_err(|e| not_editable(format!("the edited call cannot be read: {e}")))?;
    if after.decision.verdict == Verdict::Deny {
        return Err(EditError::Denied {
            rule: after.decision.rule.map(|r| r.0),
            reason: after.decision.reason,
        });
    }
    let (Some(old), [new]) = (
        before.mapped.intents.first(),
        after.mapped.intents.as_slice(),
    ) else {
        return Err(not_editable("the edited call is no longer one intent"));
    };
    if (&new.resource, &new.action) != (&old.resource, &old.action) {
        return Err(not_editable(format!(
            "the edit turns {} {} into {} {}",
            old.resource, old.action, new.resource, new.action
        )));
    }
    check_args(
        &old.args,
        &patch,
        &new.args,
        &rewritten.base,
        rewritten.kind,
    )?;
    let mut view = call.record.clone();
    view.approved_args = Some(new.args.clone());
    state.core.recorder.storage().redact_record(&mut view);
    Ok(ApprovedEdit {
        patch,
        body_sha256: sha256_hex(&rewritten.body),
        approved_args: view.approved_args.unwrap_or(Value::Null),
    })
}

/// Why no replica could prepare an edit: nowhere are the call's bytes.
const NO_BYTES: &str = "SudoMode restarted since this request was held (or the replica it is held on stopped) and no longer has its bytes: approve it as it is, or reject it and let the agent retry";

/// The kinds of request SPEC §6.2 lets an operator edit, by their record.
fn editable_kind(r: &RequestRecord) -> Result<(), EditError> {
    if r.is_explicit() {
        return Err(not_editable(
            "an explicit intent (/v1/govern) has no request to edit: the agent acts itself",
        ));
    }
    if r.required_approvals > 1 {
        return Err(not_editable(format!(
            "rule `{}` needs {} approvers: each must approve the same call, so it cannot be edited",
            r.rule.as_deref().unwrap_or("-"),
            r.required_approvals
        )));
    }
    if r.intents.len() > 1 || r.resource == "sql" || r.resource.starts_with("db.") {
        return Err(not_editable(
            "SQL and database calls cannot be edited: approve or reject the statement as written",
        ));
    }
    Ok(())
}

/// The held call's head, when an edit of it can be forwarded as approved.
fn editable_head<'c>(state: &State, call: &'c HeldCall) -> Result<&'c RequestHead, EditError> {
    let r = &call.record;
    let Some(head) = call.head.as_deref() else {
        return Err(not_editable(NO_BYTES));
    };
    if r.resource.starts_with("aws.") && !state.credentials.resigns(&head.host) {
        return Err(not_editable(
            "the agent signed this AWS request itself, so a changed body would break its signature (SudoMode re-signs only hosts with an `aws` credential)",
        ));
    }
    Ok(head)
}

/// The patched args must be exactly what the edited body maps to: keys the
/// body does not carry (path parameters such as `id`, `region`) cannot be
/// edited, nor fields the mapping leaves out of `args`.
fn check_args(
    old: &Value,
    patch: &Value,
    new: &Value,
    base: &Map<String, Value>,
    kind: BodyKind,
) -> Result<(), EditError> {
    let (Some(old), Some(patch)) = (old.as_object(), patch.as_object()) else {
        return Err(not_editable("the request's arguments are not an object"));
    };
    if let Some(k) = patch
        .keys()
        .find(|k| old.contains_key(*k) && !base.contains_key(*k))
    {
        return Err(not_editable(format!(
            "`{k}` is not a field of the request body (a path parameter or the like), so it cannot be edited"
        )));
    }
    let mut expected = Value::Object(old.clone());
    json_patch::merge(&mut expected, &Value::Object(patch.clone()));
    if kind == BodyKind::Form {
        expected = as_form_reads(expected);
    }
    if expected != *new {
        return Err(not_editable(
            "the edit does not map back onto the request's arguments (it changes something that is not a plain body field)",
        ));
    }
    Ok(())
}

/// A value as a form body carries it back: strings that §4.1 reads as
/// numbers or booleans become them.
fn as_form_reads(v: Value) -> Value {
    match v {
        Value::String(s) => sudomode_intent::scalar(&s),
        Value::Number(n) => sudomode_intent::scalar(&n.to_string()),
        Value::Array(a) => Value::Array(a.into_iter().map(as_form_reads).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, as_form_reads(v))).collect())
        }
        other => other,
    }
}

/// A request rewritten with a patch.
pub struct Rewritten {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body's fields before the edit.
    base: Map<String, Value>,
    kind: BodyKind,
}

/// Applies `patch` to the body fields: decodes any `Content-Encoding`,
/// patches the JSON object (for an MCP tool call, its `params.arguments`)
/// or the form's fields, and re-encodes in the same format with
/// `Content-Length` fixed and `Content-Encoding` dropped.
pub fn rewrite(
    headers: &HeaderMap,
    body: &[u8],
    patch: &Value,
    resource: &str,
) -> Result<Rewritten, EditError> {
    let decoded = sudomode_intent::decode_content(headers, body, usize::MAX)
        .map_err(|e| not_editable(format!("the body cannot be decoded: {e}")))?;
    let kind = sudomode_intent::content_kind(headers);
    let (body, base) = match kind {
        BodyKind::Json => super::edit_body::json(&decoded, patch, is_tool_call(resource))?,
        BodyKind::Form => super::edit_body::form(&decoded, patch)?,
        BodyKind::Multipart | BodyKind::Other => {
            return Err(not_editable(
                "only a JSON or form body (by its Content-Type) can be edited; multipart and other bodies are not",
            ));
        }
    };
    let mut headers = headers.clone();
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Rewritten {
        headers,
        body: Bytes::from(body),
        base,
        kind,
    })
}

/// `mcp.<server>.tools`: an MCP `tools/call`, whose args are its arguments.
fn is_tool_call(resource: &str) -> bool {
    resource.starts_with("mcp.") && resource.ends_with(".tools")
}

/// The approved edit of a record being forwarded, and its resource.
pub fn approved_edit(record: &RequestRecord) -> Option<(EditRecord, String)> {
    record.edit.clone().map(|e| (e, record.resource.clone()))
}

/// At forwarding: an approved edit applied to the call about to be sent
/// (`headers`, `body`), which must give exactly the bytes the approval
/// judged.
pub fn apply_approved(
    (edit, resource): &(EditRecord, String),
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(HeaderMap, Bytes), String> {
    let r = rewrite(headers, body, &edit.patch, resource).map_err(|e| e.to_string())?;
    if sha256_hex(&r.body) == edit.body_sha256 {
        Ok((r.headers, r.body))
    } else {
        Err("the edited request could not be rebuilt exactly as approved".into())
    }
}

/// The header that tells the agent its call was edited.
pub const EDITED_HEADER: &str = "x-sudomode-edited";
