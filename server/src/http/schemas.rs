//! The shapes of the JSON bodies that handlers build with `json!`, for the OpenAPI document
//! (`openapi.rs`). They are never constructed: `server/tests/openapi.rs` validates real responses
//! against the document, so a handler that changes its body without its schema fails that test.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, SchemaType, Type};

use crate::db::queries::{Feedback, Prediction};
use crate::protocol::DataType;

/// A tensor's elements: JSON values of any type (numbers, booleans, strings, nested arrays), or null.
fn elements() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(Object::with_type(SchemaType::AnyValue))
        .build()
}

/// `{"error": "..."}`: what was wrong, naming the model, input or parameter. A 500 or 503 caused by
/// ONNX Runtime or the database carries a fixed message and a `request_id` to quote instead.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    error: String,
    request_id: Option<String>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Live {
    live: bool,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    ready: bool,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerMetadata {
    name: String,
    version: String,
    /// Protocol extensions: binary_tensor_data, model_configuration, statistics, ...
    extensions: Vec<String>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorMetadata {
    name: String,
    datatype: DataType,
    /// -1 for a dimension of any size (the batch, say).
    shape: Vec<i64>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    name: String,
    /// Every served version, or only the one asked for.
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelReady {
    name: String,
    ready: bool,
}

/// Triton's model configuration as in force: what `config.pbtxt`, `config.toml` and the flags made of it.
#[derive(ToSchema)]
pub struct ModelConfig {
    name: String,
    platform: String,
    backend: String,
    /// 0: whole shapes, no batch dimension in `dims`.
    max_batch_size: u64,
    #[schema(value_type = Object)]
    version_policy: Value,
    input: Vec<ConfigTensor>,
    output: Vec<ConfigTensor>,
    #[schema(value_type = Vec<Object>)]
    instance_group: Value,
    default_model_filename: String,
    parameters: BTreeMap<String, StringValue>,
    #[schema(value_type = Option<Object>)]
    dynamic_batching: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    model_warmup: Option<Value>,
}

#[derive(ToSchema)]
pub struct ConfigTensor {
    name: String,
    /// TYPE_FP32, TYPE_INT64, ...
    data_type: String,
    dims: Vec<i64>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StringValue {
    string_value: String,
}

/// Triton's statistics extension.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStatistics {
    model_stats: Vec<crate::stats::TritonStatsJson>,
}

/// An inference request in JSON. With the binary extension, the body is this JSON followed by raw
/// tensors, and `Inference-Header-Content-Length` says where the JSON ends.
#[derive(ToSchema)]
pub struct InferRequest {
    id: Option<String>,
    /// `binary_data_output`, Triton's `timeout` in microseconds.
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
    inputs: Vec<InputTensor>,
    /// Outputs to return; all of them when left out.
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(ToSchema)]
pub struct InputTensor {
    name: String,
    shape: Vec<u64>,
    datatype: DataType,
    /// `binary_data_size` when the tensor's bytes follow the JSON.
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
    /// The elements in row-major order, flat or nested; absent when sent in binary.
    #[schema(schema_with = elements)]
    data: Option<Vec<Value>>,
}

#[derive(ToSchema)]
pub struct RequestedOutput {
    name: String,
    /// `binary_data`: return this output in binary.
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferResponse {
    model_name: String,
    model_version: String,
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputTensor {
    name: String,
    shape: Vec<u64>,
    datatype: DataType,
    /// `binary_data_size` when the output's bytes follow the JSON.
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
    /// Flat, row-major; absent for a binary output.
    #[schema(schema_with = elements)]
    data: Option<Vec<Value>>,
}

/// One listed prediction; `feedback` only with `include=feedback`.
#[derive(ToSchema)]
pub struct ListedPrediction {
    #[serde(flatten)]
    prediction: Prediction,
    feedback: Option<Vec<Feedback>>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionPage {
    predictions: Vec<ListedPrediction>,
    /// Pass it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// One prediction with what `--log-payloads` kept of its request and response, and its feedback.
#[derive(ToSchema)]
pub struct PredictionDetail {
    #[serde(flatten)]
    prediction: Prediction,
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
    #[schema(value_type = Option<Object>)]
    response: Option<Value>,
    feedback: Vec<Feedback>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyMs {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// Open to more properties: the stats route adds its own beside these (allOf).
#[derive(ToSchema)]
pub struct WindowStats {
    count: i64,
    errors: i64,
    error_rate: f64,
    latency_ms: LatencyMs,
    mean_batch_size: Option<f64>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSummary {
    name: String,
    versions: Vec<String>,
    stats_1h: WindowStats,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelList {
    models: Vec<ModelSummary>,
    /// Whether the stats came from the server's short-lived cache.
    cached: bool,
}

/// Of the window's predictions with a class and a feedback label (the latest), how many agree.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    labelled: i64,
    agreeing: i64,
    rate: Option<f64>,
}

#[derive(ToSchema)]
pub struct ModelWindowStats {
    #[serde(flatten)]
    stats: WindowStats,
    agreement: Agreement,
    model: String,
    /// 5m, 1h, 24h or 7d.
    window: String,
    cached: bool,
}
