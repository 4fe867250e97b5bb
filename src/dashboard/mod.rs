//! The operator listener: health, metrics, the operator API and the web UI.

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    let extra = format!(
        "# TYPE sudomode_certs_issued_total counter\nsudomode_certs_issued_total {}\n",
        state.ca.issued()
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&extra),
    )
}
