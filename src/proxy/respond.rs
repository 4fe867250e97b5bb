//! The one place the proxy answers an agent: a [`Refusal`] becomes SudoMode's
//! error in the client's dialect (SPEC §3: JSON, JSON-RPC or the AWS
//! service's format), and every answer — refusal or the upstream's own —
//! carries `X-SudoMode-Request-Id`.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use super::dialect::Dialect;
use crate::core::{Refusal, RefusalKind};
use crate::ids::RequestId;

pub const REQUEST_ID: &str = "x-sudomode-request-id";

/// The agent's answer under request `id`, refusals in the client's `dialect`.
pub fn finish(
    id: &RequestId,
    dialect: &Dialect,
    result: Result<Response<ProxyBody>, Refusal>,
) -> Response<ProxyBody> {
    let mut resp = match result {
        Ok(r) => r,
        Err(refusal) => refusal_response(&refusal, dialect),
    };
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// A refusal on its own (before any request context exists).
pub fn refused(refusal: Refusal) -> Response<ProxyBody> {
    let id = refusal.request_id.clone();
    finish(&id, &Dialect::Json, Err(refusal))
}

fn refusal_response(r: &Refusal, dialect: &Dialect) -> Response<ProxyBody> {
    let written = dialect.write(r);
    let mut resp = Response::new(full(written.body));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.extend(written.headers);
    h.insert(header::CONTENT_TYPE, written.content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match r.kind {
        RefusalKind::ProxyAuthRequired => {
            h.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sudomode\""),
            );
        }
        // Still held (SPEC §6): the identical retry joins the held request
        // and waits there, so it may come at once.
        RefusalKind::Pending => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}

pub fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}
