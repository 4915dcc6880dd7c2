//! Turns one answered inference request into its prediction-log row.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::Utc;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::PayloadMode;
use crate::db::PredictionRow;
use crate::db::queries::Prediction;
use crate::error::Error;
use crate::protocol::binary::HEADER_LENGTH;
use crate::registry::{InferOutcome, ServedModel};

/// The header a caller may set to be findable in the log (GET /api/predictions?client=...).
pub const CLIENT_ID: &str = "x-client-id";

/// Longest request id and client id kept; longer ones are cut (they are labels, not payload).
const MAX_ID_CHARS: usize = 256;
/// Longest error message kept: enough for any of ours, bounded when one echoes a huge input.
const MAX_ERROR_CHARS: usize = 2048;

pub struct LogEntry<'a> {
    pub model: &'a ServedModel,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub request_id: Option<String>,
    pub started: Instant,
}

pub fn row<T>(
    e: LogEntry,
    result: &Result<(T, InferOutcome), Error>,
    mode: PayloadMode,
    max_bytes: usize,
) -> PredictionRow {
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let (outcome, error, queue, compute, batch) = match result {
        Ok((_, o)) => ("success", None, micros(o.queue_time), micros(o.compute_time), o.batch_rows),
        Err(err) => (err.outcome(), Some(text(&err.to_string(), MAX_ERROR_CHARS)), 0, 0, 0),
    };
    PredictionRow {
        prediction: Prediction {
            id: Uuid::now_v7(),
            request_id: e.request_id.map(|id| text(&id, MAX_ID_CHARS)),
            model: e.model.info.name.clone(),
            model_version: i64::try_from(e.model.info.version).unwrap_or(i64::MAX),
            client_id: e.headers.get(CLIENT_ID).and_then(|v| v.to_str().ok()).map(|v| text(v, MAX_ID_CHARS)),
            created_at: Utc::now(),
            queue_us: queue,
            compute_us: compute,
            total_us: micros(e.started.elapsed()),
            batch_size: i32::try_from(batch).unwrap_or(i32::MAX),
            outcome: outcome.to_string(),
            error,
        },
        payload: payload(mode, max_bytes, e.headers, e.body),
    }
}

/// `s` as Postgres will store it: text cannot hold NUL (a JSON request id may carry one as
/// \u0000), so it is removed, and the length is capped in characters.
fn text(s: &str, max_chars: usize) -> String {
    s.chars().filter(|&c| c != '\0').take(max_chars).collect()
}

/// `digest`: SHA-256 and size. `full`: the request itself when it is JSON only and small enough, else
/// the digest (binary tensors are not worth a JSON column, and jsonb refuses a \u0000 escape).
fn payload(
    mode: PayloadMode,
    max_bytes: usize,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<serde_json::Value> {
    let digest = || serde_json::json!({"sha256": format!("{:x}", Sha256::digest(body)), "bytes": body.len()});
    match mode {
        PayloadMode::Off => None,
        PayloadMode::Digest => Some(digest()),
        PayloadMode::Full
            if body.len() <= max_bytes
                && !headers.contains_key(HEADER_LENGTH)
                && !body.windows(6).any(|w| w == br"\u0000") =>
        {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .map(|request| serde_json::json!({"request": request}))
                .or_else(|| Some(digest()))
        }
        PayloadMode::Full => Some(digest()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_records_the_hash_and_size_and_full_keeps_small_json() {
        let body = Bytes::from_static(br#"{"inputs":[]}"#);
        let headers = HeaderMap::new();
        assert_eq!(payload(PayloadMode::Off, 100, &headers, &body), None);
        assert_eq!(
            payload(PayloadMode::Digest, 100, &headers, &body),
            Some(serde_json::json!({"sha256": format!("{:x}", Sha256::digest(&body)), "bytes": 13}))
        );
        assert_eq!(
            payload(PayloadMode::Full, 100, &headers, &body),
            Some(serde_json::json!({"request": {"inputs": []}}))
        );
        assert_eq!(payload(PayloadMode::Full, 5, &headers, &body).unwrap()["bytes"], 13);
    }

    #[test]
    fn a_full_payload_with_a_nul_escape_is_kept_as_its_digest() {
        let body = Bytes::from_static(br#"{"id":"a\u0000b","inputs":[]}"#);
        let logged = payload(PayloadMode::Full, 100, &HeaderMap::new(), &body).unwrap();
        assert_eq!(logged["bytes"], 29);
    }

    #[test]
    fn text_columns_lose_nul_characters_and_are_capped() {
        assert_eq!(text("a\0b\0", 10), "ab");
        assert_eq!(text("ééééé", 3), "ééé");
    }
}
