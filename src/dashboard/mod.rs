//! The operator listener: health, metrics, the operator API (SPEC §8),
//! explicit intents for agents (`/v1/govern`) and the web UI (SPEC §9).
//!
//! Modules: `auth` (operators, sessions), `throttle` (failed
//! authentication), `host` (answered host names), `api` (requests, audit,
//! policy, stats), `sse` (live events), `govern` (explicit intents),
//! `assets` (embedded UI), `error` (the one error → response mapping).

mod api;
mod assets;
mod auth;
pub mod error;
mod govern;
mod grants;
mod host;
mod sse;
mod throttle;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::state::State;

/// The listener's own state: the shared application state plus what only
/// the dashboard needs.
pub struct Dash {
    pub state: Arc<State>,
    sessions: auth::Sessions,
    throttle: throttle::Throttle,
    /// Turns true at shutdown; ends SSE streams so graceful shutdown finishes.
    shutdown: watch::Receiver<bool>,
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard router; open SSE streams end when `shutdown` turns true.
pub fn router(state: Arc<State>, shutdown: watch::Receiver<bool>) -> Router {
    build(Dash {
        state,
        sessions: auth::Sessions::default(),
        throttle: throttle::Throttle::default(),
        shutdown,
    })
}

/// Answers only for the dashboard's configured host names (DNS rebinding);
/// applied here and again by the caller to routes merged in later.
pub fn guard_hosts(router: Router, config: &crate::config::Config) -> Router {
    let allowed = Arc::new(host::AllowedHosts::new(config));
    router.layer(axum::middleware::from_fn_with_state(
        allowed,
        host::check_host,
    ))
}

fn build(dash: Dash) -> Router {
    let requests = Router::new()
        .route("/requests", get(api::list_requests))
        .route("/requests/{id}/approve", post(api::approve))
        .route("/requests/{id}/reject", post(api::reject));
    let api_v1 = requests
        .clone()
        .route("/requests/{id}", get(api::get_request))
        .route(
            "/session",
            post(auth::login).get(auth::whoami).delete(auth::logout),
        )
        .route("/events", get(sse::events))
        .route("/audit", get(api::audit))
        .route("/audit/export", get(api::export))
        .route("/audit/verify", get(api::verify))
        .route("/policy", get(api::policy))
        .route("/grants", get(grants::list).post(grants::create))
        .route("/grants/{id}", axum::routing::delete(grants::revoke))
        .route("/stats", get(api::stats));
    // `/v1`: the SDK-compatible routes; operators may use them as aliases.
    let v1 = requests
        .route("/requests/{id}", get(govern::get_request))
        .route("/govern", post(govern::govern));
    let state = dash.state.clone();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .nest("/api/v1", api_v1)
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(error::log_errors))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(Arc::new(dash));
    guard_hosts(router, &state.config)
}

/// Headers on every dashboard response (SPEC §9, §13.4).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // API answers carry request content: never cache them.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn not_found() -> Response {
    error::ApiError::not_found("route").into_response()
}

/// `GET /healthz`: 200 while the store can commit, 503 with the reason while
/// it cannot, so a load balancer sends agents elsewhere (SPEC §13.10).
async fn healthz(AxState(dash): AxState<Arc<Dash>>) -> Response {
    let (status, body) = match dash.state.core.recorder.storage().fault() {
        None => (StatusCode::OK, serde_json::json!({"status": "ok"})),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": format!("store: {why}")}),
        ),
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(AxState(dash): AxState<Arc<Dash>>) -> impl IntoResponse {
    let state = &dash.state;
    // The registry knows exactly how many are held; the gauge follows it.
    state
        .core
        .metrics
        .pending
        .store(state.core.holds.pending_count() as u64, Ordering::Relaxed);
    let store = state.core.recorder.storage().stats();
    // Commits against events tell how well the writer groups: the events per durable
    // commit is what one fsync (or one PostgreSQL commit) carries.
    let extra = format!(
        "# TYPE sudomode_store_errors_total counter\nsudomode_store_errors_total {}\n\
         # TYPE sudomode_store_recoveries_total counter\nsudomode_store_recoveries_total {}\n\
         # TYPE sudomode_store_commits_total counter\nsudomode_store_commits_total {}\n\
         # TYPE sudomode_store_durable_commits_total counter\nsudomode_store_durable_commits_total {}\n\
         # TYPE sudomode_store_events_total counter\nsudomode_store_events_total {}\n",
        store.failed_commits, store.recoveries, store.commits, store.fsyncs, store.events
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.core.metrics.render(&extra),
    )
}
