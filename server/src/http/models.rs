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
use crate::model::device::Device;
use crate::model::signature::TensorSpec;
use crate::model::triton::report;
use crate::registry::{ModelRegistry, ServedModel};

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
    Ok(Json(model_config(&model)))
}

pub fn model_config(model: &ServedModel) -> Value {
    let batching = model.max_rows > 0;
    let dims = |s: &TensorSpec| -> Vec<i64> { if batching { s.dims[1..].to_vec() } else { s.dims.clone() } };
    let inputs: Vec<Value> = model
        .info
        .signature
        .inputs
        .iter()
        .map(|s| json!({"name": s.name, "data_type": s.datatype.config_name(), "format": "FORMAT_NONE",
                        "dims": dims(s), "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false}))
        .collect();
    let outputs: Vec<Value> = model
        .info
        .signature
        .outputs
        .iter()
        .map(|s| {
            json!({"name": s.name, "data_type": s.datatype.config_name(), "dims": dims(s),
                        "label_filename": "", "is_shape_tensor": false})
        })
        .collect();
    let settings = &model.info.settings;
    let triton = model.info.triton.as_deref();
    let filename = model.info.path.file_name().map_or("model.onnx".into(), |f| f.to_string_lossy());
    let (kind, gpus) = match model.info.device {
        Device::Cpu => ("KIND_CPU", vec![]),
        Device::Cuda(id) => ("KIND_GPU", vec![id]),
    };
    let mut config = json!({
        "name": model.info.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": report::version_policy(triton.map(|t| &t.interpreted.versions)),
        "max_batch_size": model.max_rows,
        "input": inputs,
        "output": outputs,
        "instance_group": [{"name": model.info.name, "kind": kind, "count": settings.instances, "gpus": gpus}],
        "default_model_filename": filename,
        "parameters": {
            "intra_op_thread_count": {"string_value": settings.intra_op_threads.to_string()},
            "queue_capacity": {"string_value": settings.queue_capacity.to_string()},
        },
    });
    if let Some(t) = triton.filter(|t| !t.config.model_warmup.is_empty()) {
        config["model_warmup"] = report::warmup(&t.config.model_warmup);
    }
    if batching && settings.dynamic_batching {
        let preferred = match settings.preferred_batch_sizes.as_slice() {
            [] => vec![model.max_rows],
            sizes => sizes.to_vec(),
        };
        config["dynamic_batching"] = json!({
            "preferred_batch_size": preferred,
            "max_queue_delay_microseconds": settings.max_queue_delay.as_micros() as u64,
            "preserve_ordering": false,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": settings.request_timeout.as_micros() as u64,
                "allow_timeout_override": settings.allow_timeout_override,
                "max_queue_size": settings.queue_capacity,
            },
        });
    }
    config
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
