//! Standing-grant routes of the operator API (SPEC §6.1, §8):
//! `GET /api/v1/grants?active=`, `POST /api/v1/grants`,
//! `DELETE /api/v1/grants/{id}`; and the grant part of an approval.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Dash;
use super::api::{Params, storage};
use super::auth::Operator;
use super::error::{ApiError, ApiResult};
use crate::grants::{self, GrantError, NewGrant, grant_json};

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Invalid(m) => ApiError::BadRequest(m),
            GrantError::NotGrantable(m) => ApiError::Conflict(m),
            GrantError::NotFound => ApiError::not_found("grant"),
            GrantError::Store(e) => e.into(),
            GrantError::Hold(e) => e.into(),
        }
    }
}

/// `GET /api/v1/grants?active=true|false`, newest first.
pub async fn list(
    AxState(dash): AxState<Arc<Dash>>,
    _op: Operator,
    Params(q): Params,
) -> ApiResult<Json<Value>> {
    let active = match q.get("active").map(|s| s.trim()) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("active: expected true or false")),
    };
    let now = OffsetDateTime::now_utc();
    let grants: Vec<Value> = storage(&dash)
        .list_grants()
        .await?
        .iter()
        .filter(|g| active.is_none_or(|a| g.is_active(now) == a))
        .map(|g| grant_json(g, now))
        .collect();
    Ok(Json(json!({ "grants": grants })))
}

/// `POST /api/v1/grants` → 201 and the Grant.
pub async fn create(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    op.require_decide()?;
    let new: NewGrant = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"agent\", \"resource\", \"action\", \"for\", \"max_uses\"?, \"condition\"?, \"reason\"?}}: {e}"
        ))
    })?;
    let config = &dash.state.config;
    let agents: Vec<String> = if config.agents.is_empty() {
        vec!["default".to_string()]
    } else {
        config.agents.iter().map(|a| a.name.clone()).collect()
    };
    let policy = dash.state.core.engine.policy();
    let (scope, terms) = new.validate(&policy, &agents)?;
    let g = grants::create(&dash.state.core, scope, terms, &op.name, None, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(grant_json(&g, OffsetDateTime::now_utc())),
    ))
}

/// `DELETE /api/v1/grants/{id}` → the revoked Grant.
pub async fn revoke(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    op.require_decide()?;
    let g = grants::revoke(&dash.state.core, &id, &op.name).await?;
    Ok(Json(grant_json(&g, OffsetDateTime::now_utc())))
}
