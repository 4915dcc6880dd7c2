//! Liveness, readiness and server metadata (`/v2/health/*`, `/v2`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::SharedState;

/// Protocol extensions this server implements; `perf_analyzer` reads statistics only when listed.
pub const EXTENSIONS: &[&str] =
    &["binary_tensor_data", "model_configuration", "statistics", "schedule_policy", "parameters"];

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
}

/// Live as long as the process answers: a model still loading is not a reason to restart it.
async fn live() -> StatusCode {
    StatusCode::OK
}

/// Ready once every model is loaded and warmed up; 503 again as soon as shutdown begins.
async fn ready(State(state): State<SharedState>) -> StatusCode {
    if state.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kubeinfer",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}
