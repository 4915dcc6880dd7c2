//! ModelInfer: decode the message into the REST path's request, infer through the same registry and
//! batcher, encode the answer, and log it in the prediction log like a REST request (protocol `grpc`).

use std::time::Instant;

use axum::body::Bytes;
use prost::Message;
use tracing::Instrument;

use super::codec;
use crate::config::PayloadMode;
use crate::error::Error;
use crate::http::SharedState;
use crate::http::log_row::{self, Answer, CLIENT_ID, Encoding, LogEntry};
use crate::metrics::Protocol;
use crate::proto::{ModelInferRequest, ModelInferResponse};
use crate::registry::{Inferred, ServedModel};

/// Answers `request` for `model` (already authorized), counting it once whatever ends it.
pub async fn infer(
    state: &SharedState,
    model: &ServedModel,
    request: tonic::Request<ModelInferRequest>,
    started: Instant,
) -> Result<ModelInferResponse, Error> {
    let span =
        tracing::info_span!("request", method = "ModelInfer", route = "grpc", id = tracing::field::Empty);
    let work = admit_and_answer(state, model, request, started);
    model.counted(Protocol::Grpc, started, work).instrument(span).await
}

/// Held to the same limits as REST: the latency target's early check, a --max-concurrent-requests slot,
/// the message's bytes (twice: the message and the tensors decoded from it) against the memory budget,
/// and --handler-timeout. Logs the answer when the log is on.
async fn admit_and_answer(
    state: &SharedState,
    model: &ServedModel,
    request: tonic::Request<ModelInferRequest>,
    started: Instant,
) -> Result<(ModelInferResponse, Inferred), Error> {
    model.admit_early()?;
    let _slot = state.limits.slot()?;
    let _charged = state.limits.charge(2 * request.get_ref().encoded_len())?;
    let log = state.predictions.as_ref();
    // The message is encoded again only when its bytes are logged (as a digest): a cost that
    // --log-payloads off does not pay.
    let keep = log.is_some_and(|l| l.payloads != PayloadMode::Off);
    let client_id = request.metadata().get(CLIENT_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let message = request.into_inner();
    let body = if keep { Bytes::from(message.encode_to_vec()) } else { Bytes::new() };
    // Unlike a REST body, the message has its id even when its tensors cannot be decoded.
    let request_id = Some(message.id.clone()).filter(|id| !id.is_empty());
    if let Some(id) = request_id.as_deref() {
        tracing::Span::current().record("id", id);
    }
    let result = answer(state, model, message, keep).await;
    if let Some(log) = log {
        let entry = LogEntry {
            model,
            protocol: Protocol::Grpc,
            client_id: client_id.as_deref(),
            body: &body,
            encoding: Encoding::Protobuf,
            request_id,
            started,
        };
        log.record(log_row::row(entry, &result, log.payloads, log.payload_max_bytes));
    }
    result.map(|(response, outcome, _)| (response, outcome))
}

/// Decodes, infers within the handler timeout and encodes. `keep`: the answer's bytes are wanted for
/// the log.
async fn answer(
    state: &SharedState,
    model: &ServedModel,
    message: ModelInferRequest,
    keep: bool,
) -> Result<(ModelInferResponse, Inferred, Answer), Error> {
    let decoded = codec::request(message).map_err(Error::BadRequest)?;
    let id = decoded.id.clone();
    let mut outcome = state.limits.within_handler_timeout(model.infer(decoded)).await??;
    let outputs = std::mem::take(&mut outcome.outputs);
    let predicted = log_row::classify(&outputs);
    let response = codec::response(&model.info.name, model.info.version, id, outputs);
    let body = if keep { Bytes::from(response.encode_to_vec()) } else { Bytes::new() };
    Ok((response, outcome, Answer { body, encoding: Encoding::Protobuf, predicted }))
}
