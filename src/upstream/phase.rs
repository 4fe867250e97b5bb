//! The forward phase: inject credentials for the target's host only, send
//! the exact request, and end the request's [`Flight`] with how it went.

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use super::{Target, Upstream, Upstreams};
use crate::audit::{Ending, Flight};
use crate::core::{Refusal, RefusalKind};
use crate::hold::edits;
use crate::ids::RequestId;
use crate::metrics::Metrics;
use crate::proxy::{BoxError, ProxyBody};

/// Sends `up` to `target` and records the ending on `flight`. The response
/// body streams back as it arrives.
pub async fn forward(
    upstreams: &Upstreams,
    metrics: &Metrics,
    target: &Target,
    flight: Flight,
    mut up: Upstream,
) -> Result<Response<ProxyBody>, Refusal> {
    let id = RequestId::from_stored(flight.id());
    // An approval with edits forwards the edited call (SPEC §6.2).
    let edit = flight.with_record(edits::approved_edit).flatten();
    if let Some(edit) = &edit {
        match edits::apply_approved(edit, &up.parts.headers, &up.body) {
            Ok((headers, body)) => (up.parts.headers, up.body) = (headers, body),
            Err(why) => {
                let refusal = Refusal::new(
                    RefusalKind::BadRequest,
                    &id,
                    format!("{why}; it was not sent"),
                );
                flight.end(Ending::Failed {
                    error: refusal.message.clone(),
                    error_type: refusal.kind.as_str(),
                });
                return Err(refusal);
            }
        }
    }
    let request_bytes = up.body.len() as u64;
    // Boxed: the client's future is large, and hyper keeps room for the whole
    // request future per agent connection (held ones included).
    let sent = Box::pin(send(upstreams, metrics, target, &id, up)).await;
    match sent {
        Ok(resp) => {
            let duration_ms = flight.elapsed_ms();
            flight.end(Ending::Completed {
                upstream_status: resp.status().as_u16(),
                duration_ms,
                request_bytes,
            });
            let mut resp = resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed());
            if edit.is_some() {
                resp.headers_mut()
                    .insert(edits::EDITED_HEADER, http::HeaderValue::from_static("true"));
            }
            Ok(resp)
        }
        Err(refusal) => {
            // The decision was logged; how the forwarding failed must be too
            // (connect and TLS failures, a request that could not be re-signed).
            tracing::warn!(
                request_id = %id,
                host = %crate::logtext::escape_log(&target.host),
                port = target.port,
                error_type = refusal.kind.as_str(),
                error = %crate::logtext::escape_log(&refusal.message),
                "forwarding failed"
            );
            flight.end(Ending::Failed {
                error: refusal.message.clone(),
                error_type: refusal.kind.as_str(),
            });
            Err(refusal)
        }
    }
}

async fn send(
    upstreams: &Upstreams,
    metrics: &Metrics,
    target: &Target,
    id: &RequestId,
    up: Upstream,
) -> Result<Response<hyper::body::Incoming>, Refusal> {
    let Upstream {
        mut parts,
        path_and_query,
        body,
    } = up;
    parts.uri = target.url(&path_and_query).parse().map_err(|_| {
        Refusal::new(
            RefusalKind::BadRequest,
            id,
            "the request target is not a valid URL",
        )
    })?;
    // The body is already buffered, so the expectation was met here;
    // forwarding it would make the upstream send a 100 first.
    parts.headers.remove(http::header::EXPECT);
    let body = credentials(upstreams, target, id, &mut parts, body)?;
    let started = Instant::now();
    let sent = upstreams
        .client
        .send(Request::from_parts(parts, Full::new(body)))
        .await;
    metrics.upstream(started.elapsed());
    sent.map_err(|e| Refusal::new(RefusalKind::UpstreamError, id, e.to_string()).status(e.status()))
}

/// Injects the credential for the target's host. An `aws-chunked` upload to
/// a host SudoMode signs for goes out unframed as an ordinary signed payload
/// (SPEC §7); otherwise the body is sent byte for byte.
// The refusal goes straight into the agent's answer, as in `send`.
#[allow(clippy::result_large_err)]
fn credentials(
    upstreams: &Upstreams,
    target: &Target,
    id: &RequestId,
    parts: &mut http::request::Parts,
    body: Bytes,
) -> Result<Bytes, Refusal> {
    let injector = &upstreams.injector;
    let refusal = |e: sudomode_credentials::CredentialError| {
        let kind = if e.is_bad_request() {
            RefusalKind::BadRequest
        } else {
            RefusalKind::UpstreamError
        };
        Refusal::new(kind, id, e.to_string())
    };
    let unframed = if injector.resigns(&target.host) {
        // Judged from the same bytes, so this cannot fail here but for a bug.
        sudomode_intent::unframe(&parts.headers, &body, body.len()).map_err(|e| {
            Refusal::new(
                RefusalKind::BadRequest,
                id,
                format!("{e}; the request was not sent"),
            )
        })?
    } else {
        None
    };
    match unframed {
        Some(u) => {
            injector
                .apply_unframed(&target.host, parts, &u.body, &u.trailers)
                .map_err(refusal)?;
            Ok(Bytes::from(u.body))
        }
        None => {
            injector
                .apply(&target.host, parts, &body)
                .map_err(refusal)?;
            Ok(body)
        }
    }
}
