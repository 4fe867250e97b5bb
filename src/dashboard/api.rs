//! Operator API handlers (SPEC §8): requests (list, get, approve, reject),
//! audit (page, export, verify), policy and stats.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State as AxState};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sudomode_store::{Filter, RequestRecord, Status, Storage};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Dash;
use super::auth::Operator;
use super::error::{ApiError, ApiResult};
use crate::grants::GrantTerms;
use crate::hold::Approval;
use crate::hold::edits;

/// Query parameters; a malformed query string is a JSON 400 like any other.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        Ok(Params(map))
    }
}

/// The SPEC §8 Request object; drops the internal retry key.
pub fn request_json(r: &RequestRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("retry_key");
    }
    v
}

/// The storage boundary (async; reads never block the workers).
pub fn storage(dash: &Dash) -> &Storage {
    dash.state.core.recorder.storage()
}

fn param<'p>(q: &'p HashMap<String, String>, name: &str) -> Option<&'p str> {
    q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn time_param(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<OffsetDateTime>> {
    param(q, name)
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
                ApiError::bad_request(format!("{name}: expected an RFC 3339 time: {e}"))
            })
        })
        .transpose()
}

fn number_param(q: &HashMap<String, String>, name: &str, default: u64, max: u64) -> ApiResult<u64> {
    let Some(s) = param(q, name) else {
        return Ok(default);
    };
    let n: u64 = s
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name}: expected a whole number")))?;
    if n > max {
        return Err(ApiError::bad_request(format!("{name}: at most {max}")));
    }
    Ok(n)
}

fn limit_param(q: &HashMap<String, String>, default: u64, max: u64) -> ApiResult<usize> {
    let n = number_param(q, "limit", default, max)?;
    if n == 0 {
        return Err(ApiError::bad_request("limit: must be at least 1"));
    }
    Ok(n as usize)
}

fn filter(q: &HashMap<String, String>) -> ApiResult<Filter> {
    let status = param(q, "status")
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| ApiError::bad_request(format!("status: {e}")))
        })
        .transpose()?;
    let decision = param(q, "decision")
        .map(|d| {
            sudomode_policy::Verdict::parse(d)
                .map(|v| v.as_str().to_string())
                .ok_or_else(|| {
                    ApiError::bad_request("decision: expected ALLOW, DENY or REQUIRE_APPROVAL")
                })
        })
        .transpose()?;
    Ok(Filter {
        status,
        agent: param(q, "agent").map(str::to_string),
        resource: param(q, "resource").map(str::to_string),
        action: param(q, "action").map(str::to_string),
        decision,
        since: time_param(q, "since")?,
        until: time_param(q, "until")?,
    })
}

/// `GET /api/v1/requests`: newest first, cursor paging.
pub async fn list_requests(
    AxState(dash): AxState<Arc<Dash>>,
    _op: Operator,
    Params(q): Params,
) -> ApiResult<Json<Value>> {
    let f = filter(&q)?;
    let limit = limit_param(
        &q,
        sudomode_store::DEFAULT_LIMIT as u64,
        sudomode_store::MAX_LIMIT as u64,
    )?;
    let cursor = param(&q, "cursor").map(str::to_string);
    let (page, next) = storage(&dash).list_requests(f, limit, cursor).await?;
    let requests: Vec<Value> = page.iter().map(request_json).collect();
    Ok(Json(json!({"requests": requests, "next_cursor": next})))
}

/// The Request with its audit trail (operator view).
pub async fn request_with_events(dash: &Dash, id: String) -> ApiResult<Value> {
    let record = storage(dash)
        .get_request(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("request"))?;
    let events = storage(dash).events_for_request(&id).await?;
    let mut v = request_json(&record);
    if let Value::Object(m) = &mut v {
        m.insert(
            "events".into(),
            serde_json::to_value(events).map_err(ApiError::internal)?,
        );
    }
    Ok(v)
}

/// `GET /api/v1/requests/{id}`.
pub async fn get_request(
    AxState(dash): AxState<Arc<Dash>>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(request_with_events(&dash, id).await?))
}

/// Optional `{"reason"}`; an empty body is allowed.
fn reason(body: &Bytes) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // Unknown fields are refused: a misspelt field must not be dropped
    // silently (an approval the operator meant to qualify).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Decide {
        #[serde(default)]
        reason: Option<String>,
    }
    let d: Decide = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"reason\"?: \"…\"}}: {e}")))?;
    Ok(d.reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty()))
}

/// The approve body: `{"reason"?, "grant"?, "edits"?}` (SPEC §8); an
/// unknown field is refused, so a typo never approves silently.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    grant: Option<GrantTerms>,
    #[serde(default)]
    edits: Option<Value>,
}

fn approve_body(body: &Bytes) -> ApiResult<ApproveBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ApproveBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"reason\"?, \"grant\"?: {{\"for\", \"max_uses\"?, \"condition\"?}}, \"edits\"?: {{…}}}}: {e}"
        ))
    })
}

/// `POST /api/v1/requests/{id}/approve`: approves, with a standing grant
/// (SPEC §6.1) and/or edits (SPEC §6.2) when asked; every check runs before
/// anything is recorded.
pub async fn approve(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    op.require_decide()?;
    let body = approve_body(&body)?;
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let grant = match body.grant {
        Some(terms) => {
            Some(crate::grants::for_approval(&dash.state.core, &id, terms, reason.clone()).await?)
        }
        None => None,
    };
    let edit = match body.edits {
        Some(patch) => Some(edits::prepare(&dash.state, &id, patch).await?),
        None => None,
    };
    let grant_id = grant.as_ref().map(|_| crate::grants::new_id());
    let approval = Approval {
        reason,
        grant: grant_id.clone(),
        edit,
    };
    let core = &dash.state.core;
    let record = core.holds.approve_with(&id, &op.name, approval).await?;
    tracing::info!(request = %id, operator = %op.name, status = %record.status, edited = record.edited, "approved via the operator API");
    let mut out = request_json(&record);
    if let Some((scope, terms)) = grant {
        let g = crate::grants::create(core, scope, terms, &op.name, Some(&id), grant_id).await?;
        out["grant"] = crate::grants::grant_json(&g, OffsetDateTime::now_utc());
    }
    Ok(Json(out))
}

/// `POST /api/v1/requests/{id}/reject`.
pub async fn reject(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    op.require_decide()?;
    let reason = reason(&body)?;
    let record = dash.state.core.holds.reject(&id, &op.name, reason).await?;
    tracing::info!(request = %id, operator = %op.name, "rejected via the operator API");
    Ok(Json(request_json(&record)))
}

/// `GET /api/v1/audit?after_seq=&limit=`.
pub async fn audit(
    AxState(dash): AxState<Arc<Dash>>,
    _op: Operator,
    Params(q): Params,
) -> ApiResult<Json<Value>> {
    let after = number_param(&q, "after_seq", 0, u64::MAX)?;
    let limit = limit_param(&q, 100, 1000)?;
    let events = storage(&dash).audit_after(after, limit).await?;
    Ok(Json(json!({"events": events})))
}

/// Hands blocking writes to an async body as chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /api/v1/audit/export?since=&until=`: JSON Lines, streamed so a large
/// log never sits in memory whole.
pub async fn export(
    AxState(dash): AxState<Arc<Dash>>,
    _op: Operator,
    Params(q): Params,
) -> ApiResult<Response> {
    let since = time_param(&q, "since")?;
    let until = time_param(&q, "until")?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let storage = storage(&dash).clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        if let Err(e) = storage.export_blocking(since, until, &mut w) {
            // Headers are gone by now: cut the body short so the client sees
            // a broken transfer rather than a silently truncated log.
            tracing::error!(error = %e, "audit export failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `GET /api/v1/audit/verify`.
pub async fn verify(AxState(dash): AxState<Arc<Dash>>, _op: Operator) -> ApiResult<Json<Value>> {
    let report = storage(&dash).verify().await?;
    Ok(Json(
        serde_json::to_value(report).map_err(ApiError::internal)?,
    ))
}

/// `GET /api/v1/policy`: the policy in force and the last reload error.
pub async fn policy(AxState(dash): AxState<Arc<Dash>>, _op: Operator) -> ApiResult<Json<Value>> {
    let summary = dash.state.core.engine.policy().summary();
    let mut v = serde_json::to_value(summary).map_err(ApiError::internal)?;
    if let Value::Object(m) = &mut v {
        let err = dash.state.last_reload_error();
        m.insert(
            "last_error".into(),
            err.map(Value::String).unwrap_or(Value::Null),
        );
    }
    Ok(Json(v))
}

/// `GET /api/v1/stats`: counts by decision and the number pending now.
pub async fn stats(AxState(dash): AxState<Arc<Dash>>, _op: Operator) -> ApiResult<Json<Value>> {
    let counts = storage(&dash).counts_by_decision().await?;
    let mut by = serde_json::Map::new();
    for d in ["ALLOW", "DENY", "REQUIRE_APPROVAL"] {
        by.insert(d.into(), json!(counts.get(d).copied().unwrap_or(0)));
    }
    Ok(Json(
        json!({"by_decision": by, "pending": dash.state.core.holds.pending_count()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filter_validates() {
        let f = filter(&q(&[
            ("status", "PENDING"),
            ("decision", "require_approval"),
            ("agent", "bot"),
        ]))
        .unwrap();
        assert_eq!(f.status, Some(Status::Pending));
        assert_eq!(f.decision.as_deref(), Some("REQUIRE_APPROVAL"));
        assert!(filter(&q(&[("status", "nope")])).is_err());
        assert!(filter(&q(&[("since", "yesterday")])).is_err());
        assert!(
            filter(&q(&[("since", "2026-01-01T00:00:00Z"), ("status", "")]))
                .unwrap()
                .status
                .is_none()
        );
    }

    #[test]
    fn limits() {
        assert_eq!(limit_param(&q(&[]), 50, 500).unwrap(), 50);
        assert!(limit_param(&q(&[("limit", "0")]), 50, 500).is_err());
        assert!(limit_param(&q(&[("limit", "501")]), 50, 500).is_err());
        assert!(limit_param(&q(&[("limit", "-1")]), 50, 500).is_err());
        assert_eq!(limit_param(&q(&[("limit", "500")]), 50, 500).unwrap(), 500);
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(&Bytes::new()).unwrap(), None);
        assert_eq!(reason(&Bytes::from_static(b"{}")).unwrap(), None);
        assert_eq!(
            reason(&Bytes::from_static(br#"{"reason":" ok "}"#))
                .unwrap()
                .as_deref(),
            Some("ok")
        );
        assert!(reason(&Bytes::from_static(b"nope")).is_err());
    }
}
