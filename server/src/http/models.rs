//! Per-model metadata, readiness, Triton's model configuration and statistics extensions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::openapi::{NOT_FOUND, UNKNOWN_MODEL};
use super::{SharedState, schemas};
use crate::error::Error;
use crate::model::signature::TensorSpec;
use crate::registry::{ModelRegistry, ServedModel};
use crate::triton_config;

#[derive(Debug, Deserialize)]
pub struct ModelPath {
    pub model: String,
    pub version: Option<String>,
}

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(metadata))
        .route("/v2/models/{model}/versions/{version}", get(metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready))
        .route("/v2/models/{model}/config", get(config))
        .route("/v2/models/{model}/versions/{version}/config", get(config))
        .route("/v2/models/{model}/stats", get(stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(stats))
}

fn lookup(state: &SharedState, path: &ModelPath) -> Result<Arc<ServedModel>, Error> {
    state.registry()?.get(&path.model, path.version.as_deref())
}

/// The model's inputs and outputs (-1 for a dimension of any size) and its versions.
#[utoipa::path(get, path = "/v2/models/{model}", tag = "inference", params(("model" = String, Path)),
    security(("api_key" = ["infer"])), responses(
    (status = 200, description = "Model metadata", body = schemas::ModelMetadata, example = json!({
        "name": "affine", "versions": ["1", "2"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}, {"name": "total", "datatype": "FP32", "shape": [-1]}]})),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL}))))]
async fn metadata(
    State(state): State<SharedState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, Error> {
    let model = lookup(&state, &path)?;
    let registry = state.registry()?;
    let versions: Vec<String> = match &path.version {
        Some(_) => vec![model.info.version.to_string()],
        None => registry.versions(&model.info.name),
    };
    Ok(Json(metadata_json(&model, versions)))
}

/// The Open Inference Protocol's model metadata.
pub fn metadata_json(model: &ServedModel, versions: Vec<String>) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.dims}))
            .collect()
    };
    json!({
        "name": model.info.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": tensors(&model.info.signature.inputs),
        "outputs": tensors(&model.info.signature.outputs),
    })
}

/// The metadata of every model (its default version's signature, every version listed).
pub fn all_metadata(registry: &ModelRegistry) -> Vec<Value> {
    registry
        .models()
        .filter_map(|(name, m)| {
            let default = m.versions.get(&m.default)?;
            Some(metadata_json(default, registry.versions(name)))
        })
        .collect()
}

/// The Open Inference Protocol's model readiness body, `{"name", "ready"}` (KServe's client parses it).
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "health", params(("model" = String, Path)),
    responses(
    (status = 200, description = "The model is ready", body = schemas::ModelReady,
     example = json!({"name": "affine", "ready": true})),
    (status = 503, description = "An instance thread died, or shutdown began", body = schemas::ModelReady,
     example = json!({"name": "affine", "ready": false})),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL}))))]
async fn model_ready(
    State(state): State<SharedState>,
    Path(path): Path<ModelPath>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let model = lookup(&state, &path)?;
    let ready = model.healthy() && !state.shutting_down();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((status, Json(json!({ "name": model.info.name, "ready": ready }))))
}

/// Triton's model configuration. With batching, `dims` leave out the batch dimension, as Triton's do.
#[utoipa::path(get, path = "/v2/models/{model}/config", tag = "triton", params(("model" = String, Path)),
    security(("api_key" = ["infer"])), responses(
    (status = 200, description = "The configuration in force", body = schemas::ModelConfig),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL}))))]
async fn config(State(state): State<SharedState>, Path(path): Path<ModelPath>) -> Result<Json<Value>, Error> {
    let model = lookup(&state, &path)?;
    Ok(Json(triton_config::of(&model)))
}

/// Triton's statistics of the model's versions (or of the one asked for).
#[utoipa::path(get, path = "/v2/models/{model}/stats", tag = "triton", params(("model" = String, Path)),
    security(("api_key" = ["infer"])), responses(
    (status = 200, description = "Statistics", body = schemas::ModelStatistics),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL}))))]
async fn stats(State(state): State<SharedState>, Path(path): Path<ModelPath>) -> Result<Json<Value>, Error> {
    let registry = state.registry()?;
    let stats: Vec<_> = match &path.version {
        Some(_) => {
            let m = lookup(&state, &path)?;
            vec![m.stats.snapshot(&m.info.name, m.info.version)]
        }
        None => {
            lookup(&state, &path)?;
            registry
                .all()
                .filter(|m| m.info.name == path.model)
                .map(|m| m.stats.snapshot(&m.info.name, m.info.version))
                .collect()
        }
    };
    Ok(Json(json!({ "model_stats": stats })))
}

/// Triton's statistics of every served model version.
#[utoipa::path(get, path = "/v2/models/stats", tag = "triton", security(("api_key" = ["infer"])),
    responses((status = 200, description = "Statistics", body = schemas::ModelStatistics)))]
async fn all_stats(State(state): State<SharedState>) -> Result<Json<Value>, Error> {
    let stats: Vec<_> =
        state.registry()?.all().map(|m| m.stats.snapshot(&m.info.name, m.info.version)).collect();
    Ok(Json(json!({ "model_stats": stats })))
}
