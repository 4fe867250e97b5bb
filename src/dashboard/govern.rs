//! Explicit intents (SPEC §8, compatible with the original SudoMode SDK):
//! `POST /v1/govern` judges `{resource, action, args}` for an agent, and
//! `GET /v1/requests/{id}` lets that agent poll its own request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Path, State as AxState};
use axum::http::request::Parts;
use serde_json::{Value, json};
use sudomode_policy::Verdict;

use super::Dash;
use super::api::{request_json, request_with_events};
use super::auth::{authenticate, bearer, check_origin};
use super::error::{ApiError, ApiResult};
use crate::core::{Admission, Call, RefusalKind};
use crate::ids::{AgentName, RequestId};

/// Who is calling a `/v1` route.
pub enum Caller {
    Agent(String),
    Operator,
}

fn peer_is_loopback(parts: &Parts) -> bool {
    // Without connection info we cannot tell: fail closed.
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback()
        })
}

impl FromRequestParts<Arc<Dash>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Arc<Dash>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(&parts.headers)
            && let Some(agent) = dash.state.auth.by_token(token)
        {
            return Ok(Caller::Agent(agent.0));
        }
        match authenticate(dash, parts).await {
            Ok(_) => Ok(Caller::Operator),
            // No agents configured: loopback clients are the `default` agent,
            // as at the proxy (SPEC §3).
            Err(ApiError::Unauthorized(_))
                if dash.state.auth.is_open() && peer_is_loopback(parts) =>
            {
                Ok(Caller::Agent(AgentName::DEFAULT.into()))
            }
            Err(ApiError::Unauthorized(_)) => Err(ApiError::Unauthorized(
                "authentication required: `Authorization: Bearer <agent token>`".into(),
            )),
            Err(e) => Err(e),
        }
    }
}

#[derive(serde::Deserialize)]
struct GovernBody {
    resource: String,
    action: String,
    #[serde(default)]
    args: Option<Value>,
}

/// `POST /v1/govern`: always 200 with the decision; REQUIRE_APPROVAL parks
/// the request and returns at once (the SDK polls `/v1/requests/{id}`).
pub async fn govern(
    AxState(dash): AxState<Arc<Dash>>,
    headers: axum::http::HeaderMap,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // No credentials are needed from loopback in open mode, so a web page
    // must not be able to post here through the operator's browser.
    check_origin(&dash.state.config, &headers)?;
    let Caller::Agent(agent) = caller else {
        return Err(ApiError::forbidden(
            "/v1/govern takes an agent token, not an operator's",
        ));
    };
    let req: GovernBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"resource\", \"action\", \"args\"}}: {e}"
        ))
    })?;
    let (resource, action) = (req.resource.trim(), req.action.trim());
    if resource.is_empty() || action.is_empty() {
        return Err(ApiError::bad_request(
            "resource and action must not be empty",
        ));
    }
    let args = match req.args {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::bad_request("args must be a JSON object")),
    };
    let core = &dash.state.core;
    let call = Call::new(AgentName(agent));
    let decided = core.judge_explicit(&call, resource, action, args);
    let reason = decided.reason().to_string();
    let (status, reason, request_id) = match core.admit(decided, Bytes::new()).await {
        Admission::Allowed(id) => (Verdict::Allow, reason, id),
        // Explicit intents never receive retry grants; answer sensibly anyway.
        Admission::Forward(flight) => (Verdict::Allow, reason, RequestId::from_stored(flight.id())),
        Admission::Held(ticket, _) => (Verdict::RequireApproval, reason, ticket.id.clone()),
        Admission::Refused(r) if r.kind == RefusalKind::StoreUnavailable => {
            return Err(ApiError::Unavailable(r.message));
        }
        Admission::Refused(r) => (Verdict::Deny, r.reason.unwrap_or(r.message), r.request_id),
    };
    Ok(Json(
        json!({"status": status.as_str(), "reason": reason, "request_id": request_id.as_str()}),
    ))
}

/// `GET /v1/requests/{id}`: an agent sees its own request with the status in
/// upper case (what the SDK polls); an operator gets the `/api/v1` view.
pub async fn get_request(
    AxState(dash): AxState<Arc<Dash>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    match caller {
        Caller::Operator => Ok(Json(request_with_events(&dash, id).await?)),
        Caller::Agent(agent) => {
            let record = super::api::storage(&dash).get_request(&id).await?;
            // Someone else's request is "not found", not "forbidden": ids do not leak.
            let record = record
                .filter(|r| r.agent == agent)
                .ok_or_else(|| ApiError::not_found("request"))?;
            let mut v = request_json(&record);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "status".into(),
                    Value::String(record.status.as_str().to_ascii_uppercase()),
                );
            }
            Ok(Json(v))
        }
    }
}
