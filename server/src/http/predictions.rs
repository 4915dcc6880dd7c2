//! The prediction log's query API under /api: pages of predictions (keyset, with their feedback in one
//! extra query), one prediction, feedback on it, and cached per-model aggregates.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use super::openapi::{NO_LOG, NOT_FOUND, UNKNOWN_MODEL};
use super::predictions_params::{
    FeedbackBody, ListParams, StatsParams, check_feedback, parse_list, prediction_id, query_error,
    window_seconds,
};
use super::{SharedState, schemas};
use crate::db::PredictionLog;
use crate::db::queries::{self, Cursor, Feedback};
use crate::db::rollups::Period;
use crate::db::stats::{self, Stats};
use crate::error::Error;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/predictions", get(list))
        .route("/api/predictions/{id}", get(detail))
        .route("/api/predictions/{id}/feedback", post(add_feedback))
        .route("/api/models", get(models))
        .route("/api/models/{model}/stats", get(model_stats))
}

fn log(state: &SharedState) -> Result<&Arc<PredictionLog>, Error> {
    state.predictions.as_ref().ok_or(Error::PredictionLogDisabled)
}

/// The prediction log, newest first, in keyset pages capped in rows and bytes.
#[utoipa::path(get, path = "/api/predictions", tag = "prediction log", params(ListParams),
    security(("api_key" = ["read"])), responses(
    (status = 200, description = "A page", body = schemas::PredictionPage),
    (status = 400, description = "A bad filter", body = schemas::ErrorBody,
     example = json!({"error": "limit must be a whole number from 1 to 500, got \"0\""})),
    (status = 503, description = NO_LOG, body = schemas::ErrorBody, example = json!({"error": NO_LOG}))))]
async fn list(
    State(state): State<SharedState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, Error> {
    let log = log(&state)?;
    let Query(params) = params.map_err(query_error)?;
    let (filter, with_feedback) = parse_list(&params)?;
    let (rows, mut next) = log.query("list_predictions", queries::list(log.pool(), &filter)).await?;
    let mut feedback: Option<HashMap<Uuid, Vec<Value>>> = None;
    if with_feedback {
        let all = log.query("feedback_for_predictions", queries::feedback_for(log.pool(), &rows)).await?;
        let mut by_prediction: HashMap<Uuid, Vec<Value>> = HashMap::new();
        for f in all {
            by_prediction.entry(f.prediction_id).or_default().push(json!(f));
        }
        feedback = Some(by_prediction);
    }
    let mut predictions: Vec<Value> = Vec::with_capacity(rows.len());
    // The envelope (`{"predictions":[...],"next_cursor":"..."}`) and a comma per row count too.
    let mut bytes = 128;
    for (i, row) in rows.iter().enumerate() {
        let mut value = json!(row);
        if let Some(by_prediction) = feedback.as_mut() {
            value["feedback"] = Value::Array(by_prediction.remove(&row.id).unwrap_or_default());
        }
        bytes += value.to_string().len() + 1;
        // The page ends early rather than grow past the byte cap; the cursor picks up after it.
        if i > 0 && bytes > LIST_MAX_BYTES {
            next = Some(Cursor { created_at: rows[i - 1].created_at, id: rows[i - 1].id });
            break;
        }
        predictions.push(value);
    }
    Ok(Json(json!({"predictions": predictions, "next_cursor": next.map(|c| c.encode())})))
}

/// Largest page of the listing, in bytes of JSON (one prediction is always listed, however large).
pub const LIST_MAX_BYTES: usize = 1 << 20;

/// One prediction with its payload, response and feedback.
#[utoipa::path(get, path = "/api/predictions/{id}", tag = "prediction log", params(("id" = String, Path)),
    security(("api_key" = ["read"])), responses(
    (status = 200, description = "The prediction", body = schemas::PredictionDetail),
    (status = 400, description = "Not a UUID", body = schemas::ErrorBody,
     example = json!({"error": "prediction id \"x\" is not a UUID"})),
    (status = 404, description = "No such prediction", body = schemas::ErrorBody),
    (status = 503, description = NO_LOG, body = schemas::ErrorBody)))]
async fn detail(State(state): State<SharedState>, Path(id): Path<String>) -> Result<Json<Value>, Error> {
    let log = log(&state)?;
    let uuid = prediction_id(&id)?;
    let prediction = log
        .query("get_prediction", queries::get(log.pool(), uuid))
        .await?
        .ok_or(Error::PredictionNotFound(id))?;
    let feedback = log
        .query(
            "feedback_for_predictions",
            queries::feedback_for(log.pool(), std::slice::from_ref(&prediction.prediction)),
        )
        .await?;
    let mut value = json!(prediction);
    value["feedback"] = json!(feedback);
    Ok(Json(value))
}

/// Adds feedback (at most 100 entries per prediction).
#[utoipa::path(post, path = "/api/predictions/{id}/feedback", tag = "prediction log",
    params(("id" = String, Path)), security(("api_key" = ["write"])),
    request_body(content = FeedbackBody, content_type = "application/json", example = json!({"label": "7"})),
    responses(
    (status = 201, description = "Added", body = Feedback),
    (status = 400, description = "A bad body", body = schemas::ErrorBody,
     example = json!({"error": "feedback needs at least one of label, score or comment"})),
    (status = 404, description = "No such prediction", body = schemas::ErrorBody),
    (status = 409, description = "The prediction has 100 entries", body = schemas::ErrorBody),
    (status = 503, description = NO_LOG, body = schemas::ErrorBody)))]
async fn add_feedback(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Error> {
    let log = log(&state)?;
    let uuid = prediction_id(&id)?;
    // Parsed here rather than by axum's Json, so that a missing Content-Type is no reason to refuse it.
    let body: FeedbackBody =
        serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("bad feedback body: {e}")))?;
    check_feedback(&body)?;
    let added = log
        .query(
            "insert_feedback",
            queries::add_feedback(
                log.pool(),
                uuid,
                body.label.as_deref(),
                body.score,
                body.comment.as_deref(),
            ),
        )
        .await?;
    match added {
        queries::Added::Feedback(f) => Ok((StatusCode::CREATED, Json(json!(f)))),
        queries::Added::NoSuchPrediction => Err(Error::PredictionNotFound(id)),
        queries::Added::Full => Err(Error::FeedbackFull { id, limit: queries::MAX_FEEDBACK_PER_PREDICTION }),
    }
}

fn stats_json(s: &Stats) -> Value {
    let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
    json!({
        "count": s.count,
        "errors": s.errors,
        "error_rate": if s.count > 0 { s.errors as f64 / s.count as f64 } else { 0.0 },
        "latency_ms": {"p50": ms(s.p50_us), "p95": ms(s.p95_us), "p99": ms(s.p99_us)},
        "mean_batch_size": s.mean_batch_size,
    })
}

/// The model's count, error rate, latency percentiles, mean batch and label agreement over a window.
#[utoipa::path(get, path = "/api/models/{model}/stats", tag = "prediction log",
    params(("model" = String, Path), StatsParams), security(("api_key" = ["read"])), responses(
    (status = 200, description = "The window's stats", body = schemas::ModelWindowStats),
    (status = 400, description = "A window not in the set", body = schemas::ErrorBody,
     example = json!({"error": "window must be one of 5m, 1h, 24h or 7d, got \"2h\""})),
    (status = 404, description = NOT_FOUND, body = schemas::ErrorBody, example = json!({"error": UNKNOWN_MODEL})),
    (status = 503, description = NO_LOG, body = schemas::ErrorBody)))]
async fn model_stats(
    State(state): State<SharedState>,
    Path(model): Path<String>,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<Value>, Error> {
    let log = log(&state)?;
    let Query(params) = params.map_err(query_error)?;
    state.registry()?.get(&model, None)?;
    let window = params.window.unwrap_or_else(|| "1h".into());
    let seconds = window_seconds(&window)?;
    let key = format!("{model}:{seconds}");
    let (window_stats, cached) = log
        .stats_cache
        .get_or_load(&key, || async {
            // One window for both, so that they count the same predictions.
            let window = Period::window(seconds as f64, Utc::now());
            let stats = log.query("model_stats", stats::model_stats(log.pool(), &model, window)).await?;
            let agreement =
                log.query("label_agreement", stats::agreement(log.pool(), &model, window.1)).await?;
            Ok::<_, Error>(stats::ModelWindow { stats, agreement })
        })
        .await?;
    let mut body = stats_json(&window_stats.stats);
    let stats::Agreement { labelled, agreeing } = window_stats.agreement;
    body["agreement"] = json!({
        "labelled": labelled,
        "agreeing": agreeing,
        "rate": (labelled > 0).then(|| agreeing as f64 / labelled as f64),
    });
    body["model"] = json!(model);
    body["window"] = json!(window);
    body["cached"] = json!(cached);
    Ok(Json(body))
}

/// Every served model with its stats over the last hour, from one query.
#[utoipa::path(get, path = "/api/models", tag = "prediction log", security(("api_key" = ["read"])),
    responses(
    (status = 200, description = "The models", body = schemas::ModelList),
    (status = 503, description = NO_LOG, body = schemas::ErrorBody, example = json!({"error": NO_LOG}))))]
async fn models(State(state): State<SharedState>) -> Result<Json<Value>, Error> {
    let log = log(&state)?;
    let registry = state.registry()?;
    let (all, cached) = log
        .models_cache
        .get_or_load("all:3600", || {
            log.query("all_models_stats", stats::all_models_stats(log.pool(), 3600.0))
        })
        .await?;
    let empty = Stats::default();
    let models: Vec<Value> = registry
        .models()
        .map(|(name, versions)| {
            let stats = all.iter().find(|s| &s.model == name).map(|s| &s.stats).unwrap_or(&empty);
            json!({
                "name": name,
                "versions": versions.versions.keys().map(u64::to_string).collect::<Vec<_>>(),
                "stats_1h": stats_json(stats),
            })
        })
        .collect();
    Ok(Json(json!({"models": models, "cached": cached})))
}
