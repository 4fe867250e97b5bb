//! The one refusal type: every answer SudoMode gives an agent instead of the
//! upstream's (SPEC §3), whichever phase refused. Listeners turn it into
//! their wire format in one place each (`proxy::respond` for the proxy).

use http::StatusCode;
use serde_json::{Value, json};

use crate::ids::RequestId;

/// Kinds of refusal an agent can receive (SPEC §3 `error.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Denied,
    Rejected,
    Expired,
    ProxyAuthRequired,
    TooLarge,
    BadRequest,
    UpstreamError,
    Pending,
    StoreUnavailable,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Denied => "denied",
            RefusalKind::Rejected => "rejected",
            RefusalKind::Expired => "expired",
            RefusalKind::ProxyAuthRequired => "proxy_auth_required",
            RefusalKind::TooLarge => "too_large",
            RefusalKind::BadRequest => "bad_request",
            RefusalKind::UpstreamError => "upstream_error",
            RefusalKind::Pending => "pending",
            RefusalKind::StoreUnavailable => "store_unavailable",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            RefusalKind::Denied | RefusalKind::Rejected | RefusalKind::Expired => {
                StatusCode::FORBIDDEN
            }
            RefusalKind::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            RefusalKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RefusalKind::BadRequest => StatusCode::BAD_REQUEST,
            RefusalKind::UpstreamError => StatusCode::BAD_GATEWAY,
            RefusalKind::Pending | RefusalKind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A refusal under construction: kind, status, message and the decision's
/// context the agent (or the model reading the error) needs.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub status: StatusCode,
    pub message: String,
    pub request_id: RequestId,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub approval_url: Option<String>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, request_id: &RequestId, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: kind.default_status(),
            message: message.into(),
            request_id: request_id.clone(),
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

    /// A decision that could not be recorded is never acted on (fail closed).
    pub fn store_unavailable(request_id: &RequestId) -> Self {
        Refusal::new(
            RefusalKind::StoreUnavailable,
            request_id,
            "the audit log could not record this decision, so the request was not sent; retry shortly",
        )
    }

    /// The proxy's own refusal for forbidden targets (rule `sudomode.builtin`).
    pub fn builtin(request_id: &RequestId, host: &str, port: u16, reason: &str) -> Self {
        let mut r = Refusal::new(
            RefusalKind::Denied,
            request_id,
            format!("{host}:{port} refused: {reason}"),
        );
        r.rule = Some(sudomode_policy::RuleName::BUILTIN.to_string());
        r.reason = Some(reason.to_string());
        r
    }

    /// `{"error": {…}}` (SPEC §3).
    pub fn body_json(&self) -> Value {
        let mut e = serde_json::Map::new();
        e.insert("type".into(), json!(self.kind.as_str()));
        e.insert("message".into(), json!(self.message));
        e.insert("request_id".into(), json!(self.request_id.as_str()));
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
}
