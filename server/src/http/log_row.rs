//! Turns one answered inference request into its prediction-log row: timings and outcome, what of the
//! request and the response `--log-payloads` keeps, and a classifier's predicted class.

use std::time::Instant;

use axum::body::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::config::PayloadMode;
use crate::db::PredictionRow;
use crate::db::queries::{Prediction, id_at};
use crate::error::Error;
use crate::metrics::Protocol;
use crate::protocol::response::OutputToSend;
use crate::protocol::tensor::TensorData;
use crate::registry::{Inferred, ServedModel};

/// The header a caller may set to be findable in the log (GET /api/predictions?client=...).
pub const CLIENT_ID: &str = "x-client-id";

/// Longest request id and client id kept; longer ones are cut (they are labels, not payload).
const MAX_ID_CHARS: usize = 256;
/// Longest error message kept: enough for any of ours, bounded when one echoes a huge input.
const MAX_ERROR_CHARS: usize = 2048;

pub struct LogEntry<'a> {
    pub model: &'a ServedModel,
    pub protocol: Protocol,
    /// The caller's `x-client-id` header (gRPC: metadata), as sent.
    pub client_id: Option<&'a str>,
    pub body: &'a Bytes,
    pub encoding: Encoding,
    pub request_id: Option<String>,
    pub started: Instant,
}

/// How a logged request or response body is encoded, which decides what `--log-payloads full` can keep
/// of it: only JSON goes into the JSON column whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// The binary tensor extension: a JSON header followed by raw tensor bytes.
    BinaryTensors,
    /// A gRPC message: protobuf bytes.
    Protobuf,
}

/// What of a successful answer the log keeps: the encoded body (a cheap clone of the one sent), its
/// encoding, and the classifier summary taken from the outputs before encoding.
pub struct Answer {
    pub body: Bytes,
    pub encoding: Encoding,
    pub predicted: Option<(i32, f32)>,
}

pub fn row<T>(
    e: LogEntry,
    result: &Result<(T, Inferred, Answer), Error>,
    mode: PayloadMode,
    max_bytes: usize,
) -> PredictionRow {
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let (outcome, error, queue, compute, batch) = match result {
        Ok((_, o, _)) => ("success", None, micros(o.queue_time), micros(o.compute_time), o.batch_rows),
        Err(err) => (err.outcome().as_str(), Some(text(&err.to_string(), MAX_ERROR_CHARS)), 0, 0, 0),
    };
    let answer = result.as_ref().ok().map(|(_, _, a)| a);
    let created_at = Utc::now();
    PredictionRow {
        prediction: Prediction {
            id: id_at(created_at),
            request_id: e.request_id.map(|id| text(&id, MAX_ID_CHARS)),
            model: e.model.info.name.clone(),
            model_version: i64::try_from(e.model.info.version).unwrap_or(i64::MAX),
            client_id: e.client_id.map(|v| text(v, MAX_ID_CHARS)),
            created_at,
            queue_us: queue,
            compute_us: compute,
            total_us: micros(e.started.elapsed()),
            batch_size: i32::try_from(batch).unwrap_or(i32::MAX),
            outcome: outcome.to_string(),
            protocol: e.protocol.as_str().to_string(),
            error,
            predicted_class: answer.and_then(|a| a.predicted).map(|(class, _)| class),
            predicted_score: answer.and_then(|a| a.predicted).map(|(_, score)| score),
        },
        payload: kept(mode, max_bytes, e.body, e.encoding).map(|k| k.wrapped("request")),
        response: answer.and_then(|a| kept(mode, max_bytes, &a.body, a.encoding)).map(|k| k.wrapped("")),
    }
}

/// The argmax class and its score when the outputs hold exactly one 2-D FP32 tensor of one row (a
/// classifier's scores, whatever else it returns, such as sklearn's label beside its probabilities).
pub fn classify(outputs: &[OutputToSend]) -> Option<(i32, f32)> {
    let mut scores = outputs.iter().filter_map(|o| match &o.tensor.data {
        TensorData::Fp32(v) if o.tensor.shape.len() == 2 => Some((&o.tensor.shape, v)),
        _ => None,
    });
    let (shape, values) = scores.next()?;
    if scores.next().is_some() || shape[0] != 1 {
        return None;
    }
    let (class, score) = values.iter().enumerate().filter(|(_, v)| !v.is_nan()).fold(
        None,
        |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        },
    )?;
    Some((i32::try_from(class).ok()?, score))
}

/// `s` as Postgres will store it: text cannot hold NUL (a JSON request id may carry one as
/// \u0000), so it is removed, and the length is capped in characters.
fn text(s: &str, max_chars: usize) -> String {
    s.chars().filter(|&c| c != '\0').take(max_chars).collect()
}

/// What `--log-payloads` keeps of a body: nothing, its JSON, or its digest (with why, when `full` could
/// not keep it whole).
#[derive(Debug, PartialEq)]
enum Kept<'a> {
    Json(&'a str),
    Digest { sha256: String, bytes: usize, cut: Option<&'static str> },
}

impl Kept<'_> {
    /// As JSON text: `{"<key>": <json>}`, or the JSON itself when `key` is empty, or the digest.
    fn wrapped(self, key: &str) -> String {
        match self {
            Kept::Json(json) if key.is_empty() => json.to_string(),
            Kept::Json(json) => format!(r#"{{"{key}":{json}}}"#),
            Kept::Digest { sha256, bytes, cut: None } => {
                format!(r#"{{"sha256":"{sha256}","bytes":{bytes}}}"#)
            }
            Kept::Digest { sha256, bytes, cut: Some(why) } => {
                format!(r#"{{"sha256":"{sha256}","bytes":{bytes},"cut":"{why}"}}"#)
            }
        }
    }
}

/// `digest`: SHA-256 and size. `full`: the body itself when it is JSON only and at most `max_bytes`,
/// else the digest and why (binary tensors and protobuf are not worth a JSON column, and jsonb refuses a
/// \u0000 escape). The body is checked to be JSON, never parsed into a tree and printed again.
fn kept(mode: PayloadMode, max_bytes: usize, body: &Bytes, encoding: Encoding) -> Option<Kept<'_>> {
    let digest = |cut| Kept::Digest { sha256: format!("{:x}", Sha256::digest(body)), bytes: body.len(), cut };
    let json = || {
        std::str::from_utf8(body)
            .ok()
            .filter(|_| serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok())
    };
    match mode {
        PayloadMode::Off => None,
        PayloadMode::Digest => Some(digest(None)),
        PayloadMode::Full if encoding == Encoding::BinaryTensors => Some(digest(Some("binary tensors"))),
        PayloadMode::Full if encoding == Encoding::Protobuf => Some(digest(Some("a gRPC message"))),
        PayloadMode::Full if body.len() > max_bytes => {
            Some(digest(Some("larger than --log-payload-max-bytes")))
        }
        PayloadMode::Full if body.windows(6).any(|w| w == br"\u0000") => {
            Some(digest(Some("holds a NUL escape")))
        }
        PayloadMode::Full => Some(json().map_or_else(|| digest(Some("not JSON")), Kept::Json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tensor::Tensor;
    use serde_json::{Value, json};

    fn parsed(kept: Option<Kept>, key: &str) -> Value {
        serde_json::from_str(&kept.unwrap().wrapped(key)).unwrap()
    }

    #[test]
    fn digest_records_the_hash_and_size_and_full_keeps_small_json() {
        let body = Bytes::from_static(br#"{"inputs":[]}"#);
        let sha = format!("{:x}", Sha256::digest(&body));
        assert_eq!(kept(PayloadMode::Off, 100, &body, Encoding::Json), None);
        assert_eq!(
            parsed(kept(PayloadMode::Digest, 100, &body, Encoding::Json), "request"),
            json!({"sha256": sha, "bytes": 13})
        );
        assert_eq!(
            parsed(kept(PayloadMode::Full, 100, &body, Encoding::Json), "request"),
            json!({"request": {"inputs": []}})
        );
        assert_eq!(parsed(kept(PayloadMode::Full, 100, &body, Encoding::Json), ""), json!({"inputs": []}));
    }

    #[test]
    fn what_full_cannot_keep_whole_is_its_digest_with_the_reason() {
        let body = Bytes::from_static(br#"{"inputs":[]}"#);
        let cut = |k: Option<Kept>| parsed(k, "request")["cut"].clone();
        assert_eq!(
            cut(kept(PayloadMode::Full, 5, &body, Encoding::Json)),
            "larger than --log-payload-max-bytes"
        );
        assert_eq!(cut(kept(PayloadMode::Full, 100, &body, Encoding::BinaryTensors)), "binary tensors");
        assert_eq!(cut(kept(PayloadMode::Full, 100, &body, Encoding::Protobuf)), "a gRPC message");
        let not_json = Bytes::from_static(b"{\"inputs\": ");
        assert_eq!(cut(kept(PayloadMode::Full, 100, &not_json, Encoding::Json)), "not JSON");
        let nul = Bytes::from_static(br#"{"id":"a\u0000b","inputs":[]}"#);
        assert_eq!(
            parsed(kept(PayloadMode::Full, 100, &nul, Encoding::Json), "request"),
            json!({
                "sha256": format!("{:x}", Sha256::digest(&nul)), "bytes": 29, "cut": "holds a NUL escape"
            })
        );
    }

    fn output(shape: Vec<usize>, data: TensorData) -> OutputToSend {
        OutputToSend { tensor: Tensor { name: "o".into(), shape, data }, binary: false }
    }

    #[test]
    fn a_classifier_is_summarised_by_its_argmax_and_score() {
        let probabilities = output(vec![1, 4], TensorData::Fp32(vec![0.1, 0.6, 0.2, 0.1]));
        let label = output(vec![1], TensorData::Int64(vec![1]));
        assert_eq!(classify(&[label, probabilities]), Some((1, 0.6)));
        let with_nan = output(vec![1, 3], TensorData::Fp32(vec![f32::NAN, 0.2, 0.7]));
        assert_eq!(classify(&[with_nan]), Some((2, 0.7)));
        let tie = output(vec![1, 3], TensorData::Fp32(vec![0.5, 0.5, 0.0]));
        assert_eq!(classify(&[tie]), Some((0, 0.5)), "the first of equal scores");
    }

    #[test]
    fn anything_but_one_row_of_one_2d_fp32_output_has_no_summary() {
        let rows = output(vec![2, 2], TensorData::Fp32(vec![0.1, 0.9, 0.8, 0.2]));
        assert_eq!(classify(&[rows]), None, "two rows");
        let flat = output(vec![3], TensorData::Fp32(vec![0.1, 0.9, 0.8]));
        assert_eq!(classify(&[flat]), None, "1-D");
        let a = output(vec![1, 2], TensorData::Fp32(vec![0.1, 0.9]));
        let b = output(vec![1, 2], TensorData::Fp32(vec![0.8, 0.2]));
        assert_eq!(classify(&[a, b]), None, "two candidates");
        let ints = output(vec![1, 2], TensorData::Int64(vec![1, 2]));
        assert_eq!(classify(&[ints]), None, "not FP32");
        let nans = output(vec![1, 2], TensorData::Fp32(vec![f32::NAN, f32::NAN]));
        assert_eq!(classify(&[nans]), None, "no score to pick");
    }

    #[test]
    fn text_columns_lose_nul_characters_and_are_capped() {
        assert_eq!(text("a\0b\0", 10), "ab");
        assert_eq!(text("ééééé", 3), "ééé");
    }
}
