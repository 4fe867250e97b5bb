//! Responses SudoMode makes itself: the JSON error body of SPEC §3, in one place.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::ProxyBody;

pub const REQUEST_ID: &str = "x-sudomode-request-id";

/// Marks a response as SudoMode's own refusal and keeps its JSON, so a
/// protocol-specific shape can be given to it later (MCP, §4.9).
#[derive(Debug, Clone)]
pub struct RefusalBody(pub serde_json::Value);

/// Kinds of refusal an agent can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Denied,
    Rejected,
    Expired,
    ProxyAuthRequired,
    TooLarge,
    BadRequest,
    UpstreamError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Denied => "denied",
            ErrorType::Rejected => "rejected",
            ErrorType::Expired => "expired",
            ErrorType::ProxyAuthRequired => "proxy_auth_required",
            ErrorType::TooLarge => "too_large",
            ErrorType::BadRequest => "bad_request",
            ErrorType::UpstreamError => "upstream_error",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            ErrorType::Denied | ErrorType::Rejected | ErrorType::Expired => StatusCode::FORBIDDEN,
            ErrorType::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ErrorType::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::BadRequest => StatusCode::BAD_REQUEST,
            ErrorType::UpstreamError => StatusCode::BAD_GATEWAY,
        }
    }
}

/// An error response under construction.
#[derive(Debug, Clone)]
pub struct AgentError {
    pub kind: ErrorType,
    pub status: StatusCode,
    pub message: String,
    pub request_id: String,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub approval_url: Option<String>,
}

impl AgentError {
    pub fn new(kind: ErrorType, request_id: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: kind.default_status(),
            message: message.into(),
            request_id: request_id.to_string(),
            resource: None,
            action: None,
            rule: None,
            reason: None,
            approval_url: None,
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn body_json(&self) -> serde_json::Value {
        let mut e = serde_json::Map::new();
        e.insert("type".into(), json!(self.kind.as_str()));
        e.insert("message".into(), json!(self.message));
        e.insert("request_id".into(), json!(self.request_id));
        for (k, v) in [
            ("resource", &self.resource),
            ("action", &self.action),
            ("rule", &self.rule),
            ("reason", &self.reason),
            ("approval_url", &self.approval_url),
        ] {
            if let Some(v) = v {
                e.insert(k.into(), json!(v));
            }
        }
        json!({ "error": e })
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let json = self.body_json();
        let body = serde_json::to_vec(&json).unwrap_or_default();
        let mut resp = Response::new(full(body));
        resp.extensions_mut().insert(RefusalBody(json));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert(REQUEST_ID, v);
        }
        if self.kind == ErrorType::ProxyAuthRequired {
            h.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sudomode\""),
            );
        }
        resp
    }
}

pub fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}
