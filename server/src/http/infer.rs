//! `POST /v2/models/{m}[/versions/{v}]/infer`: decode, infer through the batcher, encode.

use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;

use super::log_row::{self, Answer, CLIENT_ID, Encoding, LogEntry};
use super::models::ModelPath;
use super::openapi::{NOT_FOUND, UNKNOWN_MODEL};
use super::{SharedState, schemas};
use crate::error::Error;
use crate::metrics::Protocol;
use crate::protocol::binary::HEADER_LENGTH;
use crate::protocol::{InferRequest, decode_request, encode_response};
use crate::registry::{Inferred, ServedModel};

/// The body limit is `body::read`'s (`--max-body-bytes`), which answers 413 without cutting the client off.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
}

/// Inference, batched with concurrent requests. JSON, or JSON followed by binary tensors (Triton's
/// binary extension, `Inference-Header-Content-Length` giving the JSON's length).
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "inference", params(("model" = String, Path)),
    security(("api_key" = ["infer"])),
    request_body(content(
        (schemas::InferRequest = "application/json", example = json!({"id": "42", "inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})),
        (String = "application/octet-stream"))),
    responses(
    (status = 200, description = "The outputs", content(
        (schemas::InferResponse = "application/json", example = json!({"model_name": "affine",
            "model_version": "2", "id": "42", "outputs": [
            {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [2.0, 5.0, 8.0, 11.0]},
            {"name": "total", "shape": [1], "datatype": "FP32", "data": [10.0]}]})),
        (String = "application/octet-stream"))),
    (status = 400, description = "The request does not fit the model", body = schemas::ErrorBody,
     example = json!({"error": "input 'x' of model 'affine' needs shape [-1, 4] (-1: any size), but the request sent [1, 3]"})),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL})),
    (status = 413, description = "The body is over --max-body-bytes", body = schemas::ErrorBody),
    (status = 429, description = "Over --max-concurrent-requests (Retry-After)", body = schemas::ErrorBody),
    (status = 503, description = "Queue full, timeout, memory budget or shutdown (Retry-After)",
     body = schemas::ErrorBody)))]
async fn infer(
    State(state): State<SharedState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let started = Instant::now();
    let model = state.registry()?.get(&path.model, path.version.as_deref())?;
    model.counted(Protocol::Rest, started, read_and_answer(&state, &model, &headers, body, started)).await
}

/// Reads the body (unless the latency target sheds the request first), answers, and logs the answer.
async fn read_and_answer(
    state: &SharedState,
    model: &ServedModel,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<(Response, Inferred), Error> {
    if let Err(shed) = model.admit_early() {
        super::body::discard_small(body).await;
        return Err(shed);
    }
    let charged = super::body::read(body, headers, state.max_body_bytes, &state.limits).await?;
    let body = &charged.bytes;
    let decoded = decode(model, headers, body).await;
    let request_id = decoded.as_ref().ok().and_then(|r| r.id.clone()).filter(|id| !id.is_empty());
    if let Some(id) = &request_id {
        tracing::Span::current().record("id", id.as_str());
    }
    let result = match decoded {
        Ok(request) => answer(model, request, request_id.as_deref()).await,
        Err(e) => Err(e),
    };
    if let Some(log) = &state.predictions {
        let entry = LogEntry {
            model,
            protocol: Protocol::Rest,
            client_id: headers.get(CLIENT_ID).and_then(|v| v.to_str().ok()),
            body,
            encoding: if headers.contains_key(HEADER_LENGTH) {
                Encoding::BinaryTensors
            } else {
                Encoding::Json
            },
            request_id,
            started,
        };
        log.record(log_row::row(entry, &result, log.payloads, log.payload_max_bytes));
    }
    result.map(|(response, outcome, _)| (response, outcome))
}

/// Bodies and outputs larger than this are decoded and encoded on the blocking pool: a few large
/// requests must not take the async workers that answer the liveness probe.
const OFFLOAD_BYTES: usize = 256 * 1024;

/// Runs `work` here when `bytes` is small, else on the blocking pool.
async fn offload<T: Send + 'static>(
    model: &ServedModel,
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if bytes < OFFLOAD_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Inference { model: model.info.name.clone(), source: e.into() })
}

/// The request in `body`: JSON, or JSON and binary tensors when `Inference-Header-Content-Length` says so.
async fn decode(model: &ServedModel, headers: &HeaderMap, body: &Bytes) -> Result<InferRequest, Error> {
    let header_length = match headers.get(HEADER_LENGTH).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Err(Error::BadRequest("Inference-Header-Content-Length is not ASCII".into())),
    };
    let (bytes, header_length) = (body.clone(), header_length.map(str::to_owned));
    let decoded =
        offload(model, body.len(), move || decode_request(&bytes, header_length.as_deref())).await?;
    decoded.map_err(Error::BadRequest)
}

/// Infers and encodes the answer to `request`, repeating `request_id` (its `id`, when not empty).
async fn answer(
    model: &ServedModel,
    request: InferRequest,
    request_id: Option<&str>,
) -> Result<(Response, Inferred, Answer), Error> {
    let mut outcome = model.infer(request).await?;
    let outputs = std::mem::take(&mut outcome.outputs);
    let predicted = log_row::classify(&outputs);
    let size = outputs.iter().map(|o| o.tensor.data.len() * 4).sum();
    let (name, version, id) =
        (model.info.name.clone(), model.info.version.to_string(), request_id.map(str::to_owned));
    let encoded =
        offload(model, size, move || encode_response(&name, &version, id.as_deref(), &outputs)).await?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("x-queue-time-us", outcome.queue_time.as_micros() as u64)
        .header("x-inference-time-us", outcome.compute_time.as_micros() as u64)
        .header("x-batch-size", outcome.batch_rows);
    response = match encoded.header_length {
        Some(n) => response.header(header::CONTENT_TYPE, "application/octet-stream").header(HEADER_LENGTH, n),
        None => response.header(header::CONTENT_TYPE, "application/json"),
    };
    let encoding = if encoded.header_length.is_some() { Encoding::BinaryTensors } else { Encoding::Json };
    let answer = Answer { body: Bytes::from(encoded.body), encoding, predicted };
    let response = response
        .body(Body::from(answer.body.clone()))
        .map_err(|e| Error::Inference { model: model.info.name.clone(), source: e.into() })?;
    Ok((response, outcome, answer))
}
