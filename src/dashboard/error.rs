//! Operator-side errors (SPEC §8): every handler of the dashboard listener —
//! the operator API, `/v1/govern`, Slack interactions — returns [`ApiError`],
//! and this is the one place where an error becomes an HTTP response,
//! `{"error": {"type", "message"}}`. Failures are logged by [`log_errors`],
//! a middleware, from the detail the response carries.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::hold::HoldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An approval's edits cannot apply to this request (SPEC §6.2).
    #[error("{0}")]
    NotEditable(String),
    /// An approval's edits make a call the policy denies.
    #[error("{0}")]
    EditDenied(String),
    /// The store cannot record or read right now (SPEC §13.10).
    #[error("{0}")]
    Unavailable(String),
    /// A request for a host name the dashboard does not answer for.
    #[error("{0}")]
    Misdirected(String),
    /// Too many failed authentications from one address.
    #[error("{0}")]
    TooManyRequests(String),
    /// Details are logged, never sent: they may name files or internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::Forbidden(msg.into())
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("no such {what}"))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::NotEditable(_) => (StatusCode::CONFLICT, "not_editable"),
            ApiError::EditDenied(_) => (StatusCode::CONFLICT, "denied"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Misdirected(_) => (StatusCode::MISDIRECTED_REQUEST, "misdirected"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sudomode_store::StoreError> for ApiError {
    fn from(e: sudomode_store::StoreError) -> Self {
        use sudomode_store::StoreError as E;
        match e {
            E::Commit(_) | E::Closed | E::Io { .. } | E::Storage(_) | E::Unavailable(_) => {
                ApiError::Unavailable(
                    "the store cannot be reached right now, so nothing was changed; retry shortly"
                        .into(),
                )
            }
            other => ApiError::Internal(format!("store: {other}")),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::NotFound => ApiError::not_found("request"),
            HoldError::NotPending(status) => {
                ApiError::Conflict(format!("request is {status}, not pending"))
            }
            HoldError::Store(e) => e.into(),
        }
    }
}

impl From<crate::hold::edits::EditError> for ApiError {
    fn from(e: crate::hold::edits::EditError) -> Self {
        use crate::hold::edits::EditError as E;
        match e {
            E::NotEditable(m) => ApiError::NotEditable(m),
            e @ E::Denied { .. } => ApiError::EditDenied(e.to_string()),
            E::Invalid(m) => ApiError::BadRequest(m),
            E::Hold(h) => h.into(),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("background task: {e}"))
    }
}

/// What went wrong, for the log only (internal details are never sent).
#[derive(Clone)]
struct Detail(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let message = match &self {
            ApiError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        let detail = Detail(self.to_string());
        let mut resp = (
            status,
            Json(json!({"error": {"type": kind, "message": message}})),
        )
            .into_response();
        resp.extensions_mut().insert(detail);
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            // Tells API clients which scheme to use; browsers show no prompt for Bearer.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"sudomode\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Logs failed operator-side requests: server errors as errors, the rest at
/// debug (a wrong token or a 404 is the client's business).
pub async fn log_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if let Some(Detail(detail)) = resp.extensions().get::<Detail>() {
        let status = resp.status().as_u16();
        if resp.status().is_server_error() {
            tracing::error!(%method, %path, status, error = %detail, "operator-side request failed");
        } else {
            tracing::debug!(%method, %path, status, error = %detail, "operator-side request refused");
        }
    }
    resp
}
