//! One intercepted or proxied request through the phases: guard → read body
//! → judge → admit (record) → hold | forward | refuse → answer. The core
//! records every decision and the audit phase every ending; this module only
//! turns the HTTP request into the core's inputs and its outcome into the
//! agent's answer (`respond`).

// Refusals are built once per refused request and turned straight into a
// response; boxing them would only add an allocation.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sudomode_intent::{IntentError, RawRequest};

use super::ProxyBody;
use super::dialect::{Dialect, Sent};
use super::h1::Received;
use super::respond;
use super::state::ProxyState;
use crate::core::{Admission, Call, HttpSubject, Refusal, RefusalKind};
use crate::hold::phase as hold_phase;
use crate::ids::{AgentName, RequestId};
use crate::upstream::{Target, Upstream, phase::forward, strip_hop_by_hop};
use sudomode_intent::normalize_host;

/// One request's answer. A plain function returning an `async move` block,
/// as `hold::phase::wait`: an `async fn` would keep its arguments twice in the
/// future a held call keeps.
#[allow(clippy::manual_async_fn)] // see above
pub fn handle<'a, B: ReadBody + 'a>(
    state: &'a ProxyState,
    agent: AgentName,
    target: &'a Target,
    req: Request<B>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        let call = Call::new(agent);
        let mut dialect = Dialect::Json;
        let (id, result) = run(state, &call, target, req, &mut dialect).await;
        respond::finish(&id, &dialect, result)
    }
}

type Answer = (RequestId, Result<Response<ProxyBody>, Refusal>);

/// The phases; answers under the id the request ends up with (a joined or
/// retried call answers under the held request's id).
///
/// Each phase's future is boxed: the connection's task keeps room for this
/// future's largest state for as long as a held request waits, so the held
/// state (a box and the upstream request) must be no larger than the others.
/// (A plain function returning an `async move` block, as `handle`.)
#[allow(clippy::manual_async_fn)]
fn run<'a, B: ReadBody + 'a>(
    state: &'a ProxyState,
    call: &'a Call,
    target: &'a Target,
    req: Request<B>,
    dialect: &'a mut Dialect,
) -> impl Future<Output = Answer> + Send + 'a {
    async move {
        let core = &state.shared.core;
        let (admission, up) = match Box::pin(admit(state, call, target, req, dialect)).await {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        match admission {
            Admission::Forward(flight) => {
                let id = RequestId::from_stored(flight.id());
                let sent =
                    Box::pin(forward(&state.upstreams, &core.metrics, target, flight, up)).await;
                (id, sent)
            }
            Admission::Held(ticket, about) => {
                Box::pin(hold_phase::wait(state, target, ticket, about, up.compact())).await
            }
            Admission::Refused(refusal) => (refusal.request_id.clone(), Err(refusal)),
            // Explicit intents only; an HTTP request is never one.
            Admission::Allowed(id) => (
                id.clone(),
                Err(Refusal::new(
                    RefusalKind::BadRequest,
                    &id,
                    "nothing to forward",
                )),
            ),
        }
    }
}

/// Guard, read, judge and admit (record): the admission and the request to
/// send, or the answer already (refused before judgement).
async fn admit<B: ReadBody>(
    state: &ProxyState,
    call: &Call,
    target: &Target,
    req: Request<B>,
    dialect: &mut Dialect,
) -> Result<(Admission, Upstream), Answer> {
    let core = &state.shared.core;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let raw_url = target.url(&path_and_query);
    let raw_query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
    *dialect = Dialect::of_request(&Sent {
        host: &target.host,
        headers: &parts.headers,
        raw_query,
        body: &[],
    });
    let early = async {
        check_host_header(&call.id, target, &parts)?;
        check_plaintext_credential(state, &call.id, target)?;
        state.check_target(&call.id, target).await?;
        body.read_whole(state, &call.id).await
    };
    let body = match early.await {
        Ok(b) => b,
        Err(refusal) => {
            return Err(Box::pin(unjudged(state, call, &parts.method, target, refusal)).await);
        }
    };
    // The judgement (normalised request, intents, decision) is turned into the
    // record and event here and dropped before any await: whatever lives
    // across an await is kept, for a held request, as long as it waits. The
    // block ends the decision's storage before the admission is awaited, so
    // this (boxed) future keeps no room for it.
    let judged = {
        let decided = core.judge_http(
            call,
            &HttpSubject {
                raw: RawRequest {
                    method: parts.method.as_str(),
                    scheme: target.scheme,
                    host: &target.host,
                    port: target.port,
                    path_and_query: &path_and_query,
                    headers: &parts.headers,
                    body: &body,
                },
                raw_url: &raw_url,
                raw_query,
            },
        );
        let sent = Sent {
            host: &target.host,
            headers: &parts.headers,
            raw_query,
            body: &body,
        };
        *dialect = Dialect::judged(&sent, decided.as_ref().map_err(|_| ()));
        match decided {
            Ok(decided) => {
                let held_body = match decided.verdict {
                    sudomode_policy::Verdict::RequireApproval => body.clone(),
                    _ => Bytes::new(),
                };
                let up = Upstream {
                    parts,
                    path_and_query,
                    body,
                };
                // The core's admission is boxed inside this boxed phase, so the
                // box made for every request (and the future moved into it)
                // stays small.
                Ok((Box::pin(core.admit(decided, held_body)), up))
            }
            Err(e) => Err((intent_refusal(&call.id, e), parts.method)),
        }
    };
    match judged {
        Ok((admission, up)) => Ok((admission.await, up)),
        Err((refusal, method)) => {
            Err(Box::pin(unjudged(state, call, &method, target, refusal)).await)
        }
    }
}

/// Refused before judgement (unparsable, too large, forbidden address):
/// still a decision, so still in the audit.
async fn unjudged(
    state: &ProxyState,
    call: &Call,
    method: &http::Method,
    target: &Target,
    refusal: Refusal,
) -> Answer {
    let url = format!("{}://{}", target.scheme, target.authority());
    let refusal = state
        .shared
        .core
        .refuse_unjudged(call, method.as_str(), &url, &target.host, refusal)
        .await;
    (call.id.clone(), Err(refusal))
}

/// Inside a tunnel the Host / :authority must name the CONNECT target: the
/// request is judged and sent to that target, never to another host.
fn check_host_header(
    id: &RequestId,
    target: &Target,
    parts: &http::request::Parts,
) -> Result<(), Refusal> {
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
        let port = port.unwrap_or(if target.scheme == "https" { 443 } else { 80 });
        if normalize_host(&host) != target.host || port != target.port {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                id,
                format!(
                    "the Host header names {host}:{port} but the connection is to {}:{}",
                    target.host, target.port
                ),
            ));
        }
    }
    Ok(())
}

/// Real credentials go only over TLS (SPEC §7): a plain-HTTP request to a
/// credential's host is refused unless the credential says `plaintext: true`.
fn check_plaintext_credential(
    state: &ProxyState,
    id: &RequestId,
    target: &Target,
) -> Result<(), Refusal> {
    if target.scheme != "http" {
        return Ok(());
    }
    match state.upstreams.injector.refuses_plaintext(&target.host) {
        None => Ok(()),
        Some(name) => Err(Refusal::builtin(
            id,
            &target.host,
            target.port,
            &format!(
                "credential `{name}` is only sent over TLS; use https:// (or set `plaintext: true` on the credential)"
            ),
        )),
    }
}

/// A request body the phases read whole before judging: hyper's (HTTP/2 and
/// the plain proxy port) or one an intercepted HTTP/1 connection has read
/// already ([`Received`]). Both end in the same refusals.
pub trait ReadBody: Send {
    fn read_whole(
        self,
        state: &ProxyState,
        id: &RequestId,
    ) -> impl Future<Output = Result<Bytes, Refusal>> + Send;
}

impl ReadBody for Incoming {
    async fn read_whole(self, state: &ProxyState, id: &RequestId) -> Result<Bytes, Refusal> {
        let limit = state.shared.config.max_body_bytes;
        let within = state.shared.config.read_timeout;
        let Ok(read) = tokio::time::timeout(within, Limited::new(self, limit).collect()).await
        else {
            return Err(body_timed_out(state, id));
        };
        match read {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(body_too_large(state, id)),
            Err(e) => Err(body_unreadable(id, e)),
        }
    }
}

impl ReadBody for Received {
    async fn read_whole(self, state: &ProxyState, id: &RequestId) -> Result<Bytes, Refusal> {
        match self {
            Received::Complete(b) => Ok(b),
            Received::TooLarge => Err(body_too_large(state, id)),
            Received::TimedOut => Err(body_timed_out(state, id)),
            Received::Broken(why) => Err(body_unreadable(id, why)),
        }
    }
}

fn body_timed_out(state: &ProxyState, id: &RequestId) -> Refusal {
    Refusal::new(
        RefusalKind::BadRequest,
        id,
        format!(
            "the request body did not arrive within proxy.read_timeout ({}s), so it cannot be judged and was not sent",
            state.shared.config.read_timeout.as_secs_f64()
        ),
    )
    .status(http::StatusCode::REQUEST_TIMEOUT)
}

fn body_too_large(state: &ProxyState, id: &RequestId) -> Refusal {
    Refusal::new(
        RefusalKind::TooLarge,
        id,
        format!(
            "the request body is over proxy.max_body_bytes ({} bytes), so it cannot be judged and was not sent",
            state.shared.config.max_body_bytes
        ),
    )
}

fn body_unreadable(id: &RequestId, e: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        RefusalKind::BadRequest,
        id,
        format!("the request body could not be read: {e}"),
    )
}

fn intent_refusal(id: &RequestId, e: IntentError) -> Refusal {
    let kind = match e {
        IntentError::TooLarge { .. } => RefusalKind::TooLarge,
        _ => RefusalKind::BadRequest,
    };
    Refusal::new(kind, id, format!("{e}; the request was not sent"))
}
