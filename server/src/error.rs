//! The server's one error type, and the one place where errors become HTTP statuses.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::outcome::Outcome;

/// What lies under a runtime failure: the library's own error, kept as the source, or a sentence where
/// there is none. Configuration errors (layout, config files, API keys) keep a `reason` sentence about
/// the file instead, and pull errors keep text redacted of the credentials a URI may carry.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- start-up ---
    #[error(
        "ONNX Runtime library not found at {path}: run `make ort` to fetch it from the onnxruntime==1.31.1 \
         wheel on PyPI, or point --ort-library (or ORT_DYLIB_PATH) at libonnxruntime.so"
    )]
    OrtLibraryMissing { path: PathBuf },
    #[error("cannot load the ONNX Runtime library {path}: {source}")]
    OrtLibrary { path: PathBuf, source: Cause },
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    ModelConfig { path: PathBuf, reason: String },
    #[error("cannot load model {path}: {source}")]
    ModelLoad { path: PathBuf, source: Cause },
    #[error("API keys file {path}: {reason}")]
    ApiKeys { path: PathBuf, reason: String },
    #[error("pull {uri}: {reason}")]
    Pull { uri: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the {what} server failed: {source}")]
    Serve { what: &'static str, source: Cause },

    // --- the caller's mistakes (4xx) ---
    #[error("no such route: {0}")]
    RouteNotFound(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("unknown model '{0}'")]
    ModelNotFound(String),
    #[error("model '{model}' has no version '{version}'; it has {available}")]
    VersionNotFound { model: String, version: String, available: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("the request's {bytes} bytes exceed the server's {budget}-byte in-flight memory budget")]
    LargerThanBudget { bytes: usize, budget: usize },
    #[error("the request body stalled: no data for {idle:?}")]
    BodyTimeout { idle: Duration },
    #[error("more than {limit} requests are in flight; retry shortly")]
    TooManyRequests { limit: usize },
    #[error("this route needs an API key: send `Authorization: Bearer KEY`")]
    MissingApiKey,
    #[error("the API key is not valid")]
    UnknownApiKey,
    #[error("the API key lacks the '{}' scope this route needs", .0.as_str())]
    ScopeMissing(crate::auth::Scope),
    #[error(
        "the prediction log holds request data and is not public: give the server an --api-keys-file (callers \
         then need a key with the read or write scope), or start it with --public-prediction-log"
    )]
    PredictionLogNotPublic,

    // --- overload and shutdown (503) ---
    #[error("the queue of model '{model}' is full ({capacity} requests waiting); retry later")]
    QueueFull { model: String, capacity: usize },
    #[error("request to model '{model}' waited {waited:?} in the queue, past its timeout of {timeout:?}")]
    Timeout { model: String, waited: Duration, timeout: Duration },
    #[error(
        "model '{model}' would answer in about {predicted:?}, past its latency target of {target:?}: \
         shed rather than answered late; retry later or elsewhere"
    )]
    Shed { model: String, predicted: Duration, target: Duration },
    #[error("the server holds as many request bytes as its {budget}-byte budget allows; retry shortly")]
    MemoryBudget { budget: usize },
    #[error("the request took longer than the server's handler timeout of {limit:?}")]
    HandlerTimeout { limit: Duration },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the models are still loading; retry shortly")]
    Loading,

    #[error("the prediction log is not configured: start the server with DATABASE_URL to use /api")]
    PredictionLogDisabled,
    #[error("the prediction log database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("prediction {0} does not exist")]
    PredictionNotFound(String),
    #[error("prediction {id} already has {limit} feedback entries, the most one prediction takes")]
    FeedbackFull { id: String, limit: i64 },

    // --- the server's own failures (5xx) ---
    #[error("database: {what}: {source}")]
    Database { what: &'static str, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    #[error("inference failed for model '{model}': {source}")]
    Inference { model: String, source: Cause },
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } | Error::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::MissingApiKey | Error::UnknownApiKey => StatusCode::UNAUTHORIZED,
            Error::ScopeMissing(_) | Error::PredictionLogNotPublic => StatusCode::FORBIDDEN,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge { .. } | Error::LargerThanBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::PredictionNotFound(_) => StatusCode::NOT_FOUND,
            Error::FeedbackFull { .. } => StatusCode::CONFLICT,
            Error::QueueFull { .. }
            | Error::Timeout { .. }
            | Error::Shed { .. }
            | Error::MemoryBudget { .. }
            | Error::HandlerTimeout { .. }
            | Error::ShuttingDown
            | Error::Loading
            | Error::PredictionLogDisabled
            | Error::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::OrtLibraryMissing { .. }
            | Error::OrtLibrary { .. }
            | Error::Layout { .. }
            | Error::ModelConfig { .. }
            | Error::ModelLoad { .. }
            | Error::ApiKeys { .. }
            | Error::Pull { .. }
            | Error::Bind { .. }
            | Error::Serve { .. }
            | Error::Database { .. }
            | Error::Migration(_)
            | Error::Inference { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// How a request that failed with this error ended, for the metrics and the prediction log.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::BadRequest(_)
            | Error::PayloadTooLarge { .. }
            | Error::LargerThanBudget { .. }
            | Error::RouteNotFound(_)
            | Error::MethodNotAllowed(_)
            | Error::ModelNotFound(_)
            | Error::VersionNotFound { .. }
            | Error::MissingApiKey
            | Error::UnknownApiKey
            | Error::ScopeMissing(_)
            | Error::PredictionLogNotPublic
            | Error::PredictionNotFound(_)
            | Error::FeedbackFull { .. } => Outcome::Invalid,
            Error::QueueFull { .. }
            | Error::ShuttingDown
            | Error::Loading
            | Error::TooManyRequests { .. }
            | Error::MemoryBudget { .. }
            | Error::PredictionLogDisabled
            | Error::DatabaseUnavailable(_) => Outcome::Rejected,
            Error::Timeout { .. } | Error::BodyTimeout { .. } | Error::HandlerTimeout { .. } => {
                Outcome::Timeout
            }
            Error::Shed { .. } => Outcome::Shed,
            Error::OrtLibraryMissing { .. }
            | Error::OrtLibrary { .. }
            | Error::Layout { .. }
            | Error::ModelConfig { .. }
            | Error::ModelLoad { .. }
            | Error::ApiKeys { .. }
            | Error::Pull { .. }
            | Error::Bind { .. }
            | Error::Serve { .. }
            | Error::Database { .. }
            | Error::Migration(_)
            | Error::Inference { .. } => Outcome::Error,
        }
    }

    /// What a caller is told instead of the error's own text, for failures whose detail is the server's.
    fn fixed_message(&self) -> Option<&'static str> {
        match self {
            Error::DatabaseUnavailable(_) => {
                Some("the prediction log's database is unavailable; retry later")
            }
            _ if self.status() == StatusCode::INTERNAL_SERVER_ERROR => {
                Some("internal server error; the server's log has the details under this request_id")
            }
            _ => None,
        }
    }

    /// What any protocol tells the caller: the error's own words, or for the server's own failures a
    /// fixed message and a request id to quote (the detail goes to the log under that id); and the
    /// seconds to wait before retrying, for errors worth retrying.
    pub fn public(&self) -> Public {
        let retry_after = self.retry_after();
        match self.fixed_message() {
            Some(message) => {
                let request_id = uuid::Uuid::now_v7().to_string();
                tracing::error!(error = %self, %request_id, "request failed");
                Public { message: message.to_string(), request_id: Some(request_id), retry_after }
            }
            None => Public { message: self.to_string(), request_id: None, retry_after },
        }
    }

    /// Seconds a caller should wait before retrying, for the errors that are worth retrying.
    fn retry_after(&self) -> Option<u32> {
        match self {
            Error::QueueFull { .. }
            | Error::Timeout { .. }
            | Error::Shed { .. }
            | Error::TooManyRequests { .. }
            | Error::MemoryBudget { .. } => Some(1),
            Error::ShuttingDown | Error::Loading => Some(5),
            _ => None,
        }
    }
}

/// An error as the caller sees it (`Error::public`).
pub struct Public {
    pub message: String,
    pub request_id: Option<String>,
    pub retry_after: Option<u32>,
}

impl From<crate::auth::Denied> for Error {
    fn from(denied: crate::auth::Denied) -> Error {
        match denied {
            crate::auth::Denied::Missing => Error::MissingApiKey,
            crate::auth::Denied::Unknown => Error::UnknownApiKey,
            crate::auth::Denied::Forbidden(scope) => Error::ScopeMissing(scope),
        }
    }
}

impl From<sqlx::Error> for Error {
    /// A database that cannot be reached is a 503 (try again); anything else it says is the server's bug.
    fn from(e: sqlx::Error) -> Error {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Error::DatabaseUnavailable(e.to_string()),
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                Error::DatabaseUnavailable(e.to_string())
            }
            other => Error::Database { what: "the query failed", source: other },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let public = self.public();
        // ONNX Runtime's or the database's own words are for the operator's log, not the caller: the
        // caller gets an id to quote, the log gets the detail under it.
        let body = match &public.request_id {
            Some(request_id) => serde_json::json!({ "error": public.message, "request_id": request_id }),
            None => serde_json::json!({ "error": public.message }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = public.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_mistakes_are_4xx_and_overload_is_503_with_retry_after() {
        assert_eq!(Error::ModelNotFound("m".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(Error::BadRequest("x".into()).status(), StatusCode::BAD_REQUEST);
        assert_eq!(Error::PayloadTooLarge { limit: 1 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let full = Error::QueueFull { model: "m".into(), capacity: 4 }.into_response();
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn failures_are_labelled_by_kind() {
        assert_eq!(Error::BadRequest("x".into()).outcome(), Outcome::Invalid);
        assert_eq!(Error::QueueFull { model: "m".into(), capacity: 1 }.outcome(), Outcome::Rejected);
        assert_eq!(
            Error::Timeout { model: "m".into(), waited: Duration::ZERO, timeout: Duration::ZERO }.outcome(),
            Outcome::Timeout
        );
        let shed = Error::Shed { model: "m".into(), predicted: Duration::ZERO, target: Duration::ZERO };
        assert_eq!(shed.outcome(), Outcome::Shed);
        assert_eq!(Error::Inference { model: "m".into(), source: "r".into() }.outcome(), Outcome::Error);
    }

    #[test]
    fn server_failures_are_500() {
        let e = Error::Inference { model: "m".into(), source: "boom".into() };
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "inference failed for model 'm': boom");
    }

    #[tokio::test]
    async fn a_500_tells_the_caller_a_fixed_message_and_an_id_and_keeps_the_detail_for_the_log() {
        let response = Error::Inference { model: "m".into(), source: "onnxruntime: node 7 failed".into() }
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["error"],
            "internal server error; the server's log has the details under this request_id"
        );
        let id = body["request_id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert!(!body.to_string().contains("node 7"), "{body}");
    }
}
