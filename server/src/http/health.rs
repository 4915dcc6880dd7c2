//! Liveness, readiness and server metadata (`/v2/health/*`, `/v2`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{SharedState, schemas};

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
/// The bodies are the Open Inference Protocol's (`{"live": true}`): KServe's client parses them, while
/// Triton's and the kubelet read only the status.
#[utoipa::path(get, path = "/v2/health/live", tag = "health",
    responses((status = 200, description = "The process answers", body = schemas::Live,
               example = json!({"live": true}))))]
async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Ready once every model is loaded and warmed up; 503 again as soon as shutdown begins.
#[utoipa::path(get, path = "/v2/health/ready", tag = "health", responses(
    (status = 200, description = "Every model is loaded and warm", body = schemas::Ready,
     example = json!({"ready": true})),
    (status = 503, description = "Loading, shutting down, or a model instance died", body = schemas::Ready,
     example = json!({"ready": false}))))]
async fn ready(State(state): State<SharedState>) -> (StatusCode, Json<Value>) {
    let ready = state.ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready })))
}

/// The server's name, version and protocol extensions.
#[utoipa::path(get, path = "/v2", tag = "inference", security(("api_key" = ["infer"])), responses(
    (status = 200, description = "Server metadata", body = schemas::ServerMetadata,
     example = json!({"name": "kubeinfer", "version": "0.1.0", "extensions": EXTENSIONS})),
    (status = 401, description = "An API key is required", body = schemas::ErrorBody,
     example = json!({"error": "this route needs an API key: send `Authorization: Bearer KEY`"}))))]
async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kubeinfer",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}
