//! Explicit intents (SPEC §8, compatible with the original SudoMode SDK):
//! `POST /v1/govern` judges `{resource, action, args}` for an agent, and
//! `GET /v1/requests/{id}` lets that agent poll its own request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Path, State as AxState};
use axum::http::request::Parts;
use serde_json::{Value, json};
use sudomode_intent::{Intent, Mapped, NormalizedRequest};
use sudomode_policy::Verdict;
use sudomode_store::{NewEvent, Status};

use super::Dash;
use super::api::{request_json, request_with_events};
use super::auth::{authenticate, bearer, check_origin};
use super::error::{ApiError, ApiResult};
use crate::hold::Entry;
use crate::records::{Draft, decided_event, new_record};

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
        match authenticate(dash, &parts.headers) {
            Ok(_) => Ok(Caller::Operator),
            // No agents configured: loopback clients are the `default` agent,
            // as at the proxy (SPEC §3).
            Err(ApiError::Unauthorized(_))
                if dash.state.auth.is_open() && peer_is_loopback(parts) =>
            {
                Ok(Caller::Agent("default".into()))
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
    let (resource, action) = (
        req.resource.trim().to_string(),
        req.action.trim().to_string(),
    );
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
    let mapped = Mapped {
        request: NormalizedRequest {
            method: "GOVERN".into(),
            scheme: "sudomode".into(),
            host: "govern".into(),
            port: 0,
            path: "/v1/govern".into(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
        },
        intents: vec![Intent::new(resource.clone(), action.clone(), args.clone())],
    };
    let policy = dash.state.engine.policy();
    let decision = policy.decide(&agent, &mapped, time::OffsetDateTime::now_utc());
    let id = sudomode_store::new_request_id();
    let url = format!("sudomode:govern/{resource}/{action}");
    // Canonical args are the "body": identical asks join one pending request.
    let body = sudomode_store::canonical_json(&args);
    let record = new_record(&Draft {
        id: &id,
        agent: &agent,
        method: "GOVERN",
        url: &url,
        url_as_sent: None,
        intents: &mapped.intents,
        decision: &decision,
        policy_version: policy.version(),
        body: body.as_bytes(),
        headers: None,
        hold_timeout: dash.state.config.hold_timeout,
    });
    let event = decided_event(&record, &decision, None);
    dash.state.metrics.decided(decision.verdict);
    tracing::info!(
        request_id = %id, agent = %agent, resource = %resource, action = %action,
        decision = decision.verdict.as_str(), rule = ?decision.rule.as_ref().map(|r| r.0.as_str()),
        "explicit intent decided"
    );
    let (status, reason, request_id) = match decision.verdict {
        Verdict::Allow | Verdict::Deny => {
            dash.state
                .recorder
                .decision(vec![event], Some(record))
                .await?;
            (decision.verdict.as_str(), decision.reason.clone(), id)
        }
        Verdict::RequireApproval => {
            match dash.state.holds.enter(record.clone(), event, true).await? {
                Entry::Wait { id: held, .. } => ("REQUIRE_APPROVAL", decision.reason.clone(), held),
                // Explicit intents never receive retry grants; answer sensibly anyway.
                Entry::Grant { record } => ("ALLOW", "approved earlier".to_string(), record.id),
                Entry::OverCap { pending } => {
                    let reason = format!(
                        "{resource} {action} needs approval, but agent `{agent}` already has {pending} requests waiting (hold.max_pending_per_agent)"
                    );
                    deny_over_cap(&dash, record, &reason).await?;
                    ("DENY", reason, id)
                }
            }
        }
    };
    Ok(Json(
        json!({"status": status, "reason": reason, "request_id": request_id}),
    ))
}

/// Records the built-in denial for an agent with too many pending requests.
async fn deny_over_cap(
    dash: &Dash,
    mut record: sudomode_store::RequestRecord,
    reason: &str,
) -> ApiResult<()> {
    let ev = NewEvent::new("request.decided")
        .request(record.id.clone())
        .agent(record.agent.clone())
        .field("decision", "DENY")
        .field("rule", "sudomode.builtin")
        .field("reason", reason.to_string());
    record.status = Status::Denied;
    record.decision = "DENY".into();
    record.rule = Some("sudomode.builtin".into());
    record.reason = reason.to_string();
    record.expires_at = None;
    dash.state.recorder.decision(vec![ev], Some(record)).await?;
    Ok(())
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
            let record = super::api::with_store(&dash, move |s| Ok(s.get_request(&id)?)).await?;
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
