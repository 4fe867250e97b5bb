//! Operator authentication (SPEC §8, §13.3–4): bearer operator tokens or the
//! dashboard's session cookie; agent tokens are refused; cookie-authenticated
//! state changes need the session's CSRF token and a same-origin `Origin`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::Dash;
use super::error::{ApiError, ApiResult};
use crate::config::{Config, Role};

pub const COOKIE_NAME: &str = "sudomode_session";
const CSRF_HEADER: &str = "x-csrf-token";
/// A working day: long enough not to interrupt an on-call shift.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(250);

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Cookie { csrf: String },
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

impl Operator {
    /// Approve / reject need the approver or admin role.
    pub fn require_decide(&self) -> ApiResult<()> {
        if self.role.can_decide() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "operator {:?} has the {} role, which cannot approve or reject",
                self.name,
                self.role.as_str()
            )))
        }
    }

    pub fn json(&self) -> Value {
        json!({"name": self.name, "role": self.role.as_str()})
    }
}

struct Session {
    name: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

/// In-memory dashboard sessions: a restart signs everyone out, which is fine
/// for a single-binary tool and keeps session secrets off the disk.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // Critical sections never panic; a poisoned map is still consistent.
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn create(&self, name: &str, role: Role) -> ApiResult<(String, String)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                name: name.to_string(),
                role,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    fn get(&self, id: &str) -> Option<Operator> {
        let mut map = self.lock();
        let s = map.get(id)?;
        if s.expires <= Instant::now() {
            map.remove(id);
            return None;
        }
        Some(Operator {
            name: s.name.clone(),
            role: s.role,
            via: Via::Cookie {
                csrf: s.csrf.clone(),
            },
        })
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// 32 random bytes, hex: session ids and CSRF tokens.
fn random_hex() -> ApiResult<String> {
    let mut buf = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| ApiError::internal("no system randomness"))?;
    Ok(hex::encode(buf))
}

/// The operator whose token this is; every entry is compared so timing does
/// not reveal which one matched.
pub fn operator_by_token<'c>(
    config: &'c Config,
    token: &str,
) -> Option<&'c crate::config::Operator> {
    let mut found = None;
    for op in &config.operators {
        let ok: bool = op.token.as_bytes().ct_eq(token.as_bytes()).into();
        if ok && !token.is_empty() {
            found = Some(op);
        }
    }
    found
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

fn agent_refused() -> ApiError {
    ApiError::forbidden(
        "agent tokens cannot use the operator API; use an operator token from sudomode.yaml",
    )
}

/// Authenticates an operator by bearer token, else by session cookie.
pub fn authenticate(dash: &Dash, headers: &HeaderMap) -> ApiResult<Operator> {
    if let Some(token) = bearer(headers) {
        // Checked first so a token shared by mistake never grants operator power.
        if dash.state.auth.by_token(token).is_some() {
            return Err(agent_refused());
        }
        return match operator_by_token(&dash.state.config, token) {
            Some(op) => Ok(Operator {
                name: op.name.clone(),
                role: op.role,
                via: Via::Bearer,
            }),
            None => Err(ApiError::Unauthorized("unknown operator token".into())),
        };
    }
    if let Some(id) = session_cookie(headers) {
        return dash.sessions.get(id).ok_or_else(|| {
            ApiError::Unauthorized("session expired or unknown; sign in again".into())
        });
    }
    Err(ApiError::Unauthorized(
        "authentication required: `Authorization: Bearer <operator token>` or a dashboard session"
            .into(),
    ))
}

/// Cross-site protection for cookie-authenticated state changes: the
/// browser's own `Origin` / `Sec-Fetch-Site` must not say another site.
pub fn check_origin(config: &Config, headers: &HeaderMap) -> ApiResult<()> {
    let refused = || ApiError::forbidden("cross-origin request refused");
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(refused());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| refused())?
        .trim_end_matches('/');
    let public = config.public_url();
    let mut own = vec![origin_of(&public).to_string()];
    // The dashboard is often reached by another name than public_url
    // (localhost vs 127.0.0.1); the browser's Host is then the origin.
    if let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
    {
        own.push(format!("http://{host}"));
        own.push(format!("https://{host}"));
    }
    if own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// `scheme://host[:port]` of a URL (drops any path).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn check_csrf(dash: &Dash, op: &Operator, headers: &HeaderMap) -> ApiResult<()> {
    let Via::Cookie { csrf } = &op.via else {
        return Ok(());
    };
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let ok: bool = csrf.as_bytes().ct_eq(sent).into();
    if !ok {
        return Err(ApiError::forbidden("missing or wrong X-CSRF-Token header"));
    }
    check_origin(&dash.state.config, headers)
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<Arc<Dash>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Arc<Dash>,
    ) -> Result<Self, Self::Rejection> {
        let op = authenticate(dash, &parts.headers)?;
        if !is_safe(&parts.method) {
            check_csrf(dash, &op, &parts.headers)?;
        }
        Ok(op)
    }
}

fn cookie_header(dash: &Dash, value: &str, max_age: u64) -> ApiResult<HeaderValue> {
    let secure = if dash.state.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(ApiError::internal)
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// `POST /api/v1/session` `{"token"}`: signs in with an operator token.
pub async fn login(
    AxState(dash): AxState<Arc<Dash>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // Login CSRF: a foreign page must not sign the browser in as someone else.
    check_origin(&dash.state.config, &headers)?;
    let login: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"token\": \"…\"}}: {e}")))?;
    let token = login.token.trim();
    if dash.state.auth.by_token(token).is_some() {
        return Err(agent_refused());
    }
    let Some(op) = operator_by_token(&dash.state.config, token) else {
        tracing::warn!("dashboard sign-in with an unknown token");
        // Slows down guessing from a browser; API clients use bearer tokens.
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return Err(ApiError::Unauthorized("unknown operator token".into()));
    };
    let (id, csrf) = dash.sessions.create(&op.name, op.role)?;
    tracing::info!(operator = %op.name, "dashboard sign-in");
    let body = json!({"operator": {"name": op.name, "role": op.role.as_str()}, "csrf_token": csrf});
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie_header(&dash, &id, SESSION_TTL.as_secs())?,
    );
    Ok(resp)
}

/// `GET /api/v1/session`: who is signed in (and the CSRF token to use).
pub async fn whoami(op: Operator) -> Json<Value> {
    let csrf = match &op.via {
        Via::Cookie { csrf } => Value::String(csrf.clone()),
        Via::Bearer => Value::Null,
    };
    Json(json!({"operator": op.json(), "csrf_token": csrf}))
}

/// `DELETE /api/v1/session`: signs out; always clears the cookie.
pub async fn logout(AxState(dash): AxState<Arc<Dash>>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(id) = session_cookie(&headers)
        && let Some(op) = dash.sessions.get(id)
    {
        check_csrf(&dash, &op, &headers)?;
        dash.sessions.remove(id);
        tracing::info!(operator = %op.name, "dashboard sign-out");
    }
    let mut resp = Json(json!({})).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie_header(&dash, "", 0)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn parses_bearer_and_cookie() {
        assert_eq!(
            bearer(&hdrs(&[("authorization", "Bearer abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&hdrs(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer(&hdrs(&[("authorization", "Basic abc")])), None);
        let h = hdrs(&[("cookie", "a=b; sudomode_session=xyz; c=d")]);
        assert_eq!(session_cookie(&h), Some("xyz"));
        assert_eq!(
            session_cookie(&hdrs(&[("cookie", "sudomode_sessionx=1")])),
            None
        );
    }

    #[test]
    fn origin_of_strips_path() {
        assert_eq!(
            origin_of("https://sm.example.com/dash/"),
            "https://sm.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
    }

    #[test]
    fn origin_check() {
        let config = |yaml: &str| {
            Config::parse(yaml, None, std::path::Path::new("/base"), "t.yaml").unwrap()
        };
        let public = config("dashboard:\n  public_url: https://sm.example.test/ui\n");
        let host = ("host", "127.0.0.1:8081");
        assert!(
            check_origin(&public, &hdrs(&[host])).is_ok(),
            "no Origin: not a browser"
        );
        assert!(
            check_origin(
                &public,
                &hdrs(&[host, ("origin", "https://sm.example.test")])
            )
            .is_ok()
        );
        assert!(check_origin(&public, &hdrs(&[host, ("origin", "http://127.0.0.1:8081")])).is_ok());
        assert!(
            check_origin(&public, &hdrs(&[host, ("origin", "http://127.0.0.1:9999")])).is_err()
        );
        assert!(check_origin(&public, &hdrs(&[host, ("origin", "null")])).is_err());
        assert!(check_origin(&public, &hdrs(&[host, ("sec-fetch-site", "cross-site")])).is_err());
        let plain = config("");
        assert!(check_origin(&plain, &hdrs(&[("origin", "http://127.0.0.1:8081")])).is_ok());
        assert!(check_origin(&plain, &hdrs(&[("origin", "http://localhost:8081")])).is_err());
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_hex().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_hex().unwrap());
    }
}
