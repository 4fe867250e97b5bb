//! One request's phases: guard → read body → intent → policy → (hold) →
//! forward → audit. Every request that reaches here gets a decision record.

// Refusals are built once per refused request and turned straight into a
// response; boxing them would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use sudomode_intent::{IntentError, RawRequest};
use sudomode_policy::Verdict;
use sudomode_store::{NewEvent, RequestRecord, Status};

use super::ProxyBody;
use super::auth::AgentName;
use super::intercept::normalise_host;
use super::reply::{AgentError, ErrorType, REQUEST_ID};
use crate::forward::strip_hop_by_hop;
use crate::ids::RequestId;
use crate::records::{Draft, decided_event, new_record};
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
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
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

pub async fn handle(
    state: Arc<State>,
    agent: AgentName,
    target: Target,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let ctx = Ctx {
        id: RequestId::new(),
        agent,
        target,
        started: Instant::now(),
    };
    let method = req.method().to_string();
    let mut resp = match run(&state, &ctx, req).await {
        Ok(r) => r,
        Err(e) => {
            // Refused before judgement (unparsable, too large, forbidden
            // address): still a decision, so still in the audit.
            record_early_refusal(&state, &ctx, &method, &e).await;
            e.into_response()
        }
    };
    if !resp.headers().contains_key(REQUEST_ID)
        && let Ok(v) = HeaderValue::from_str(ctx.id.as_str())
    {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Phases up to judgement; refusals here are returned unrecorded.
async fn run(
    state: &Arc<State>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, AgentError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    check_host_header(ctx, &parts)?;
    state.check_target(ctx).await?;
    let body = read_body(state, ctx, body).await?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let raw = RawRequest {
        method: parts.method.as_str(),
        scheme: ctx.target.scheme,
        host: &ctx.target.host,
        port: ctx.target.port,
        path_and_query: &path_and_query,
        headers: &parts.headers,
        body: &body,
    };
    // The judgement (normalised request, intents, decision) is turned into the
    // record and event here and dropped before any await: whatever lives across
    // an await is kept, for a held request, as long as it waits.
    let (record, event, verdict) = {
        let judged = state
            .engine
            .judge(&ctx.agent.0, &raw)
            .map_err(|e| intent_error(ctx, e))?;
        let raw_query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
        let url = judged.mapped.request.url(raw_query);
        let url_as_sent = judged.mapped.request.url_as_sent(&path_and_query);
        let record = new_record(&Draft {
            id: ctx.id.as_str(),
            agent: &ctx.agent.0,
            method: &judged.mapped.request.method,
            url: &url,
            url_as_sent: Some(&url_as_sent),
            intents: &judged.mapped.intents,
            decision: &judged.decision,
            policy_version: judged.policy.version(),
            body: &body,
            headers: Some(&parts.headers),
            hold_timeout: state.config.hold_timeout,
        });
        let event = decided_event(
            &record,
            &judged.decision,
            serde_json::to_value(&judged.mapped.request).ok(),
        );
        (record, event, judged.decision.verdict)
    };
    log_decision(ctx, &record);
    state.metrics.decided(verdict);
    let upstream = Upstream {
        parts,
        path_and_query,
        body,
    };
    Ok(match verdict {
        // Boxed: hyper keeps room for this whole future per agent connection,
        // so a held request would otherwise carry the allowed path's (larger)
        // state while it waits.
        Verdict::Allow => Box::pin(allow(state, ctx, record, event, upstream)).await,
        Verdict::Deny => Box::pin(deny(state, ctx, record, event)).await,
        Verdict::RequireApproval => {
            super::held::hold(state, ctx, record, event, upstream.compact()).await
        }
    })
}

/// The request as it will be sent, kept byte for byte.
pub(super) struct Upstream {
    parts: http::request::Parts,
    path_and_query: String,
    body: Bytes,
}

impl Upstream {
    /// The same request in its own small allocations. Parsed header values and
    /// body chunks share the connection's read buffer (8 KiB or more); a request
    /// held for approval would keep that whole buffer alive while it waits.
    fn compact(self) -> Upstream {
        let Upstream {
            mut parts,
            path_and_query,
            body,
        } = self;
        let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
        let mut last: Option<http::HeaderName> = None;
        for (name, value) in std::mem::take(&mut parts.headers) {
            // `into_iter` yields a name only for the first value of each header.
            let name = match name {
                Some(n) => {
                    last = Some(n.clone());
                    n
                }
                None => match &last {
                    Some(n) => n.clone(),
                    None => continue,
                },
            };
            let value = match HeaderValue::from_bytes(value.as_bytes()) {
                Ok(mut v) => {
                    v.set_sensitive(value.is_sensitive());
                    v
                }
                Err(_) => value,
            };
            headers.append(name, value);
        }
        parts.headers = headers;
        // `forward` builds the upstream URI from the target and `path_and_query`.
        parts.uri = http::Uri::default();
        Upstream {
            parts,
            path_and_query,
            body: Bytes::copy_from_slice(&body),
        }
    }
}

fn log_decision(ctx: &Ctx, r: &RequestRecord) {
    tracing::info!(
        request_id = %ctx.id, agent = %ctx.agent, method = %r.method, host = %ctx.target.host,
        resource = %r.resource, action = %r.action, decision = %r.decision,
        rule = r.rule.as_deref().unwrap_or("-"), "decided"
    );
}

/// A decision that could not be recorded is never acted on (fail closed).
pub(super) fn audit_unavailable(ctx: &Ctx, e: &sudomode_store::StoreError) -> Response<ProxyBody> {
    tracing::error!(request_id = %ctx.id, error = %e, "audit write failed; request refused");
    AgentError::new(
        ErrorType::Denied,
        ctx.id.as_str(),
        "the audit log could not record this decision, so the request was not sent",
    )
    .status(http::StatusCode::SERVICE_UNAVAILABLE)
    .into_response()
}

async fn allow(
    state: &Arc<State>,
    ctx: &Ctx,
    record: RequestRecord,
    event: NewEvent,
    up: Upstream,
) -> Response<ProxyBody> {
    if let Err(e) = state
        .recorder
        .decision(vec![event], Some(record.clone()))
        .await
    {
        return audit_unavailable(ctx, &e);
    }
    forward(state, ctx, record, up).await
}

async fn deny(
    state: &Arc<State>,
    ctx: &Ctx,
    record: RequestRecord,
    event: NewEvent,
) -> Response<ProxyBody> {
    if let Err(e) = state
        .recorder
        .decision(vec![event], Some(record.clone()))
        .await
    {
        return audit_unavailable(ctx, &e);
    }
    refusal(ErrorType::Denied, ctx.id.as_str(), &record, state).into_response()
}

async fn record_early_refusal(state: &State, ctx: &Ctx, method: &str, e: &AgentError) {
    let url = format!("{}://{}", ctx.target.scheme, ctx.target.authority());
    let rule = e.rule.clone().unwrap_or_else(|| "sudomode.builtin".into());
    let decision = sudomode_policy::Decision::builtin_deny(e.message.clone());
    let intents = [sudomode_intent::Intent::new(
        format!("http.{}", ctx.target.host),
        method.to_ascii_lowercase(),
        serde_json::json!({}),
    )];
    let mut record = new_record(&Draft {
        id: ctx.id.as_str(),
        agent: &ctx.agent.0,
        method,
        url: &url,
        url_as_sent: None,
        intents: &intents,
        decision: &decision,
        policy_version: state.engine.policy().version(),
        body: &[],
        headers: None,
        hold_timeout: state.config.hold_timeout,
    });
    record.rule = Some(rule);
    let event = decided_event(&record, &decision, None).field("error_type", e.kind.as_str());
    state.metrics.decided(Verdict::Deny);
    if let Err(err) = state.recorder.decision(vec![event], Some(record)).await {
        tracing::error!(request_id = %ctx.id, error = %err, "recording a refusal failed");
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
        let port = port.unwrap_or(if ctx.target.scheme == "https" {
            443
        } else {
            80
        });
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
            format!(
                "the request body is over proxy.max_body_bytes ({limit} bytes), so it cannot be judged and was not sent"
            ),
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
    AgentError::new(
        kind,
        ctx.id.as_str(),
        format!("{e}; the request was not sent"),
    )
}

pub(super) fn refusal(kind: ErrorType, id: &str, r: &RequestRecord, state: &State) -> AgentError {
    let message = match r.decision.as_str() {
        "REQUIRE_APPROVAL" => format!(
            "{} {} needs an operator's approval ({})",
            r.resource, r.action, r.reason
        ),
        _ => format!(
            "{} {} was denied by {}: {}",
            r.resource,
            r.action,
            r.rule
                .as_deref()
                .map(|x| format!("rule `{x}`"))
                .unwrap_or_else(|| "the default (no rule matched)".into()),
            r.reason
        ),
    };
    let mut err = AgentError::new(kind, id, message);
    err.resource = Some(r.resource.clone());
    err.action = Some(r.action.clone());
    err.rule = r.rule.clone();
    err.reason = Some(r.reason.clone());
    err.approval_url = Some(format!("{}/#/requests/{}", state.config.public_url(), r.id));
    err
}

/// Sends the exact request upstream (credentials injected for their hosts
/// only) and records how it ended.
pub(super) async fn forward(
    state: &Arc<State>,
    ctx: &Ctx,
    mut record: RequestRecord,
    up: Upstream,
) -> Response<ProxyBody> {
    let Upstream {
        mut parts,
        path_and_query,
        body,
    } = up;
    let request_bytes = body.len() as u64;
    let uri = format!(
        "{}://{}{}",
        ctx.target.scheme,
        ctx.target.authority(),
        path_and_query
    );
    let result = match uri.parse() {
        Ok(u) => {
            parts.uri = u;
            // The body is already buffered, so the expectation was met here;
            // forwarding it would make the upstream send a 100 first.
            parts.headers.remove(http::header::EXPECT);
            match state.injector.apply(&ctx.target.host, &mut parts, &body) {
                Ok(_) => {
                    let started = Instant::now();
                    // Boxed: the client's future is large, and hyper keeps room
                    // for this whole pipeline future per agent connection (held
                    // ones included).
                    let sent = Box::pin(
                        state
                            .forwarder
                            .send(Request::from_parts(parts, Full::new(body))),
                    )
                    .await;
                    state.metrics.upstream(started.elapsed());
                    sent.map_err(|e| {
                        AgentError::new(ErrorType::UpstreamError, &record.id, e.to_string())
                            .status(e.status())
                    })
                }
                Err(e) if e.is_bad_request() => Err(AgentError::new(
                    ErrorType::BadRequest,
                    &record.id,
                    e.to_string(),
                )),
                Err(e) => Err(AgentError::new(
                    ErrorType::UpstreamError,
                    &record.id,
                    e.to_string(),
                )),
            }
        }
        Err(_) => Err(AgentError::new(
            ErrorType::BadRequest,
            &record.id,
            "the request target is not a valid URL",
        )),
    };
    let now = time::OffsetDateTime::now_utc();
    record.completed_at = Some(now);
    let duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(resp) => {
            record.status = Status::Completed;
            record.upstream_status = Some(resp.status().as_u16());
            let event = NewEvent::new("request.forwarded")
                .request(record.id.clone())
                .agent(record.agent.clone())
                .field("upstream_status", resp.status().as_u16())
                .field("duration_ms", (duration_ms * 1000.0).round() / 1000.0)
                .field("request_bytes", request_bytes);
            if let Err(e) = state.recorder.queued(vec![event], Some(record)).await {
                tracing::error!(error = %e, "recording request.forwarded failed");
            }
            resp.map(|b| b.map_err(|e| Box::new(e) as super::BoxError).boxed())
        }
        Err(err) => {
            record.status = Status::Failed;
            let event = NewEvent::new("request.failed")
                .request(record.id.clone())
                .agent(record.agent.clone())
                .field("error", err.message.clone())
                .field("error_type", err.kind.as_str());
            if let Err(e) = state.recorder.queued(vec![event], Some(record)).await {
                tracing::error!(error = %e, "recording request.failed failed");
            }
            err.into_response()
        }
    }
}

/// The proxy's own refusal for forbidden targets (rule `sudomode.builtin`).
pub fn builtin_denial(id: &str, host: &str, port: u16, reason: &str) -> AgentError {
    let mut err = AgentError::new(
        ErrorType::Denied,
        id,
        format!("{host}:{port} refused: {reason}"),
    );
    err.rule = Some("sudomode.builtin".into());
    err.reason = Some(reason.to_string());
    err
}
