//! One request's phases: guard → read body → intent → policy → (hold) →
//! forward → audit. Every request that reaches here gets a decision record.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use sudomode_intent::{IntentError, RawRequest};
use sudomode_policy::{Decision, Verdict};

use super::auth::AgentName;
use super::intercept::normalise_host;
use super::reply::{AgentError, ErrorType, REQUEST_ID};
use super::ProxyBody;
use crate::forward::strip_hop_by_hop;
use crate::ids::RequestId;
use crate::state::State;

/// Where the request goes: the CONNECT authority, or the absolute URI's.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host[:port]` as it appears in a URL (default ports omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match (self.scheme, self.port) {
            ("https", 443) | ("http", 80) => host,
            (_, p) => format!("{host}:{p}"),
        }
    }
}

/// The request context that flows through the phases.
pub struct Ctx {
    pub id: RequestId,
    pub agent: AgentName,
    pub target: Target,
    pub started: Instant,
}

pub async fn handle(state: Arc<State>, agent: AgentName, target: Target, req: Request<Incoming>) -> Response<ProxyBody> {
    let ctx = Ctx { id: RequestId::new(), agent, target, started: Instant::now() };
    let mut resp = match run(&state, &ctx, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(ctx.id.as_str()) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

async fn run(state: &Arc<State>, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<ProxyBody>, AgentError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    check_host_header(ctx, &parts)?;
    state.check_target(ctx).await?;
    let body = read_body(state, ctx, body).await?;
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let raw = RawRequest {
        method: parts.method.as_str(),
        scheme: ctx.target.scheme,
        host: &ctx.target.host,
        port: ctx.target.port,
        path_and_query: &path_and_query,
        headers: &parts.headers,
        body: &body,
    };
    let judged = state.engine.judge(&ctx.agent.0, &raw).map_err(|e| intent_error(ctx, e))?;
    let decision = judged.decision;
    let intent = &judged.mapped.intents[decision.intent_index.min(judged.mapped.intents.len() - 1)];
    tracing::info!(
        request_id = %ctx.id, agent = %ctx.agent, method = %judged.mapped.request.method,
        host = %ctx.target.host, resource = %intent.resource, action = %intent.action,
        decision = decision.verdict.as_str(), rule = decision.rule.as_ref().map(|r| r.0.as_str()).unwrap_or("-"),
        "decided"
    );
    state.metrics.decided(decision.verdict);
    match decision.verdict {
        Verdict::Allow => forward(state, ctx, parts, path_and_query, body).await,
        Verdict::Deny => Err(refusal(ErrorType::Denied, ctx, &decision, &intent.resource, &intent.action, state)),
        Verdict::RequireApproval => Err(refusal(ErrorType::Denied, ctx, &decision, &intent.resource, &intent.action, state)),
    }
}

/// Inside a tunnel the Host / :authority must name the CONNECT target: the
/// request is judged and sent to that target, never to another host.
fn check_host_header(ctx: &Ctx, parts: &http::request::Parts) -> Result<(), AgentError> {
    let named = parts
        .uri
        .authority()
        .map(|a| (a.host().to_string(), a.port_u16()))
        .or_else(|| {
            let h = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            let a: http::uri::Authority = h.parse().ok()?;
            Some((a.host().to_string(), a.port_u16()))
        });
    if let Some((host, port)) = named {
        let port = port.unwrap_or(if ctx.target.scheme == "https" { 443 } else { 80 });
        if normalise_host(&host) != ctx.target.host || port != ctx.target.port {
            return Err(AgentError::new(
                ErrorType::BadRequest,
                ctx.id.as_str(),
                format!(
                    "the Host header names {host}:{port} but the connection is to {}:{}",
                    ctx.target.host, ctx.target.port
                ),
            ));
        }
    }
    Ok(())
}

async fn read_body(state: &State, ctx: &Ctx, body: Incoming) -> Result<Bytes, AgentError> {
    let limit = state.config.max_body_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(AgentError::new(
            ErrorType::TooLarge,
            ctx.id.as_str(),
            format!("the request body is over proxy.max_body_bytes ({limit} bytes), so it cannot be judged and was not sent"),
        )),
        Err(e) => Err(AgentError::new(
            ErrorType::BadRequest,
            ctx.id.as_str(),
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn intent_error(ctx: &Ctx, e: IntentError) -> AgentError {
    let kind = match e {
        IntentError::TooLarge { .. } => ErrorType::TooLarge,
        _ => ErrorType::BadRequest,
    };
    AgentError::new(kind, ctx.id.as_str(), format!("{e}; the request was not sent"))
}

fn refusal(kind: ErrorType, ctx: &Ctx, d: &Decision, resource: &str, action: &str, state: &State) -> AgentError {
    let rule = d.rule.as_ref().map(|r| r.0.clone());
    let message = match d.verdict {
        Verdict::RequireApproval => format!(
            "{resource} {action} needs an operator's approval ({}); it was not sent",
            d.reason
        ),
        _ => format!(
            "{resource} {action} was denied by {}: {}",
            rule.as_deref().map(|r| format!("rule `{r}`")).unwrap_or_else(|| "the default".into()),
            d.reason
        ),
    };
    let mut err = AgentError::new(kind, ctx.id.as_str(), message);
    err.resource = Some(resource.to_string());
    err.action = Some(action.to_string());
    err.rule = rule;
    err.reason = Some(d.reason.clone());
    err.approval_url = Some(format!("{}/#/requests/{}", state.config.public_url(), ctx.id));
    err
}

async fn forward(
    state: &Arc<State>,
    ctx: &Ctx,
    mut parts: http::request::Parts,
    path_and_query: String,
    body: Bytes,
) -> Result<Response<ProxyBody>, AgentError> {
    let uri = format!("{}://{}{}", ctx.target.scheme, ctx.target.authority(), path_and_query);
    parts.uri = uri.parse().map_err(|_| {
        AgentError::new(ErrorType::BadRequest, ctx.id.as_str(), "the request target is not a valid URL")
    })?;
    let req = Request::from_parts(parts, Full::new(body));
    let started = Instant::now();
    match state.forwarder.send(req).await {
        Ok(resp) => {
            state.metrics.upstream(started.elapsed());
            Ok(resp.map(|b| b.map_err(|e| Box::new(e) as super::BoxError).boxed()))
        }
        Err(e) => Err(AgentError::new(ErrorType::UpstreamError, ctx.id.as_str(), e.to_string()).status(e.status())),
    }
}

/// The proxy's own refusal for forbidden targets (rule `sudomode.builtin`).
pub fn builtin_denial(ctx: &Ctx, reason: &str) -> AgentError {
    let mut err = AgentError::new(ErrorType::Denied, ctx.id.as_str(), format!("{}:{} refused: {reason}", ctx.target.host, ctx.target.port));
    err.rule = Some("sudomode.builtin".into());
    err.reason = Some(reason.to_string());
    err
}

