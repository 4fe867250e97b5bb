//! Operator authentication (SPEC §8, §13.3–4): `Authorization: Bearer`
//! with an operator token or a dashboard session token. The dashboard page
//! keeps its session token in sessionStorage and sends it as that header;
//! no cookie authorises anything, because browsers send cookies for
//! 127.0.0.1 to every port of it, a page an agent serves included. Agent
//! tokens are refused; failed attempts go through [`Throttle`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::Dash;
use super::error::{ApiError, ApiResult};
use crate::config::{Config, Role};

/// A working day: long enough not to interrupt an on-call shift.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The session an operator is signed in with; it ends (and ends the
/// session's event streams) at sign-out or expiry.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub expires: Instant,
    pub ended: watch::Receiver<bool>,
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    /// None when authenticated with an operator token.
    pub session: Option<SessionEnd>,
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
    expires: Instant,
    ended: watch::Sender<bool>,
}

impl Session {
    fn operator(&self) -> Operator {
        Operator {
            name: self.name.clone(),
            role: self.role,
            session: Some(SessionEnd {
                expires: self.expires,
                ended: self.ended.subscribe(),
            }),
        }
    }
}

/// In-memory dashboard sessions, keyed by their token: a restart signs
/// everyone out, which is fine for a single-binary tool and keeps session
/// secrets off the disk.
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

    fn create(&self, name: &str, role: Role) -> ApiResult<(String, Operator)> {
        let token = random_hex()?;
        let now = Instant::now();
        let (ended, _) = watch::channel(false);
        let session = Session {
            name: name.to_string(),
            role,
            expires: now + SESSION_TTL,
            ended,
        };
        let op = session.operator();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(token.clone(), session);
        Ok((token, op))
    }

    fn get(&self, token: &str) -> Option<Operator> {
        let mut map = self.lock();
        let s = map.get(token)?;
        if s.expires <= Instant::now() {
            map.remove(token);
            return None;
        }
        Some(s.operator())
    }

    /// Ends a session and every stream opened with it.
    fn remove(&self, token: &str) -> Option<String> {
        let s = self.lock().remove(token)?;
        s.ended.send_replace(true);
        Some(s.name)
    }
}

/// 32 random bytes, hex: session tokens.
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

/// The client's address (the throttle's key); unknown only without
/// connection info, which the listener always provides.
pub fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(p)| {
            p.ip().to_canonical()
        })
}

fn agent_refused() -> ApiError {
    ApiError::forbidden(
        "agent tokens cannot use the operator API; use an operator token from sudomode.yaml",
    )
}

/// Authenticates an operator by bearer token: an operator token or a
/// session token. Unknown tokens are logged, slowed and limited.
pub async fn authenticate(dash: &Dash, parts: &Parts) -> ApiResult<Operator> {
    let Some(token) = bearer(&parts.headers) else {
        return Err(ApiError::Unauthorized(
            "authentication required: `Authorization: Bearer <operator or session token>`".into(),
        ));
    };
    let peer = peer_ip(parts);
    dash.throttle.check(peer)?;
    // Checked first so a token shared by mistake never grants operator power.
    if dash.state.auth.by_token(token).is_some() {
        return Err(agent_refused());
    }
    if let Some(op) = operator_by_token(&dash.state.config, token) {
        return Ok(Operator {
            name: op.name.clone(),
            role: op.role,
            session: None,
        });
    }
    if let Some(op) = dash.sessions.get(token) {
        return Ok(op);
    }
    let refused = ApiError::Unauthorized("unknown token, or the session has ended".into());
    Err(dash.throttle.failed(peer, parts.uri.path(), refused).await)
}

/// Login CSRF and explicit intents: the browser's own `Origin` /
/// `Sec-Fetch-Site` must not say another site. `Host` is one of the
/// dashboard's own names (checked for every route), so the page's origin is
/// `scheme://Host`.
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

impl FromRequestParts<Arc<Dash>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Arc<Dash>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(dash, parts).await
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `POST /api/v1/session` `{"token"}` → `{"session_token", "operator"}`:
/// exchanges an operator token for a session token the page keeps.
pub async fn login(
    AxState(dash): AxState<Arc<Dash>>,
    parts: Parts,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // Login CSRF: a foreign page must not sign the browser in as someone else.
    check_origin(&dash.state.config, &parts.headers)?;
    let peer = peer_ip(&parts);
    dash.throttle.check(peer)?;
    let login: Login = serde_json::from_slice(&body).map_err(|e| {
        // serde's message names a field, never the token's value.
        let why = if e.is_data() {
            format!(": {e}")
        } else {
            String::new()
        };
        ApiError::bad_request(format!("expected {{\"token\": \"…\"}}{why}"))
    })?;
    let token = login.token.trim();
    if dash.state.auth.by_token(token).is_some() {
        return Err(agent_refused());
    }
    let Some(op) = operator_by_token(&dash.state.config, token) else {
        let refused = ApiError::Unauthorized("unknown operator token".into());
        return Err(dash.throttle.failed(peer, "sign-in", refused).await);
    };
    let (session_token, op) = dash.sessions.create(&op.name, op.role)?;
    tracing::info!(operator = %op.name, "dashboard sign-in");
    Ok(Json(
        json!({"session_token": session_token, "operator": op.json()}),
    ))
}

/// `GET /api/v1/session`: who is signed in.
pub async fn whoami(op: Operator) -> Json<Value> {
    Json(json!({"operator": op.json()}))
}

/// `DELETE /api/v1/session`: ends the session whose token is sent, and its
/// event streams.
pub async fn logout(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
    headers: HeaderMap,
) -> Json<Value> {
    if op.session.is_some()
        && let Some(token) = bearer(&headers)
        && let Some(name) = dash.sessions.remove(token)
    {
        tracing::info!(operator = %name, "dashboard sign-out");
    }
    Json(json!({}))
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
    fn parses_bearer() {
        assert_eq!(
            bearer(&hdrs(&[("authorization", "Bearer abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&hdrs(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer(&hdrs(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&hdrs(&[("cookie", "sudomode_session=x")])), None);
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
    fn sessions_end_at_sign_out() {
        let s = Sessions::default();
        let (token, op) = s.create("alice", Role::Approver).unwrap();
        assert_eq!(token.len(), 64);
        let ended = op.session.unwrap().ended;
        assert_eq!(s.get(&token).map(|o| o.name), Some("alice".into()));
        assert_eq!(s.remove(&token), Some("alice".into()));
        assert!(*ended.borrow(), "streams see the end");
        assert!(s.get(&token).is_none());
    }
}
