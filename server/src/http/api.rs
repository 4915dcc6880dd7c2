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
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::SharedState;
use crate::db::PredictionLog;
use crate::db::queries::{self, Cursor, ListFilter, OutcomeFilter};
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    model: Option<String>,
    client: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    include: Option<String>,
}

fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, Error> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                Error::BadRequest(format!(
                    "{name} must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// Checks the query string; returns the filter and whether feedback was asked for.
pub fn parse_list(p: &ListParams) -> Result<(ListFilter, bool), Error> {
    let limit = match &p.limit {
        None => 50,
        Some(l) => l.parse::<i64>().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| {
            Error::BadRequest(format!("limit must be a whole number from 1 to 500, got {l:?}"))
        })?,
    };
    let outcome = match p.outcome.as_deref() {
        None => None,
        Some("failure") => Some(OutcomeFilter::Failure),
        Some(o @ ("success" | "invalid" | "rejected" | "timeout" | "error")) => {
            Some(OutcomeFilter::Exactly(o.into()))
        }
        Some(o) => {
            return Err(Error::BadRequest(format!(
                "outcome must be success, failure, invalid, rejected, timeout or error, got {o:?}"
            )));
        }
    };
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            Error::BadRequest("cursor is not valid: pass the next_cursor of a previous page unchanged".into())
        })?),
    };
    let feedback = match p.include.as_deref() {
        None | Some("") => false,
        Some("feedback") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!("include may only be \"feedback\", got {other:?}")));
        }
    };
    let filter = ListFilter {
        model: p.model.clone(),
        client: p.client.clone(),
        outcome,
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        after,
        limit,
    };
    Ok((filter, feedback))
}

fn query_error(e: QueryRejection) -> Error {
    Error::BadRequest(format!("bad query string: {}", e.body_text()))
}

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

fn prediction_id(id: &str) -> Result<Uuid, Error> {
    id.parse().map_err(|_| Error::BadRequest(format!("prediction id {id:?} is not a UUID")))
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    label: Option<String>,
    score: Option<f64>,
    comment: Option<String>,
}

pub fn check_feedback(b: &FeedbackBody) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::BadRequest(m.to_string()));
    if b.label.is_none() && b.score.is_none() && b.comment.is_none() {
        return bad("feedback needs at least one of label, score or comment");
    }
    if b.label.as_ref().is_some_and(|l| l.is_empty() || l.len() > 256) {
        return bad("label must be 1 to 256 bytes");
    }
    if b.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return bad("comment must be at most 4096 bytes");
    }
    if b.score.is_some_and(|s| !s.is_finite()) {
        return bad("score must be a finite number");
    }
    Ok(())
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    window: Option<String>,
}

/// The stats windows: a fixed set, so that the cache holds at most four entries per model and no
/// query string can make every request a miss.
pub const WINDOWS: [(&str, u64); 4] = [("5m", 300), ("1h", 3600), ("24h", 86400), ("7d", 7 * 86400)];

/// The seconds of a stats window, which must be one of WINDOWS.
pub fn window_seconds(window: &str) -> Result<u64, Error> {
    WINDOWS
        .iter()
        .find(|(name, _)| *name == window)
        .map(|&(_, seconds)| seconds)
        .ok_or_else(|| Error::BadRequest(format!("window must be one of 5m, 1h, 24h or 7d, got {window:?}")))
}

fn stats_json(s: &queries::Stats) -> Value {
    let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
    json!({
        "count": s.count,
        "errors": s.errors,
        "error_rate": if s.count > 0 { s.errors as f64 / s.count as f64 } else { 0.0 },
        "latency_ms": {"p50": ms(s.p50_us), "p95": ms(s.p95_us), "p99": ms(s.p99_us)},
        "mean_batch_size": s.mean_batch_size,
    })
}

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
            let stats =
                log.query("model_stats", queries::model_stats(log.pool(), &model, seconds as f64)).await?;
            let agreement =
                log.query("label_agreement", queries::agreement(log.pool(), &model, seconds as f64)).await?;
            Ok::<_, Error>(queries::ModelWindow { stats, agreement })
        })
        .await?;
    let mut body = stats_json(&window_stats.stats);
    let queries::Agreement { labelled, agreeing } = window_stats.agreement;
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
async fn models(State(state): State<SharedState>) -> Result<Json<Value>, Error> {
    let log = log(&state)?;
    let registry = state.registry()?;
    let (all, cached) = log
        .models_cache
        .get_or_load("all:3600", || {
            log.query("all_models_stats", queries::all_models_stats(log.pool(), 3600.0))
        })
        .await?;
    let empty = queries::Stats {
        count: 0,
        errors: 0,
        p50_us: None,
        p95_us: None,
        p99_us: None,
        mean_batch_size: None,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_windows_come_from_a_fixed_set() {
        assert_eq!(window_seconds("5m").unwrap(), 300);
        assert_eq!(window_seconds("1h").unwrap(), 3600);
        assert_eq!(window_seconds("24h").unwrap(), 86400);
        assert_eq!(window_seconds("7d").unwrap(), 604800);
        assert_eq!(
            window_seconds("2h").unwrap_err().to_string(),
            "window must be one of 5m, 1h, 24h or 7d, got \"2h\""
        );
        assert!(window_seconds("").is_err());
    }

    #[test]
    fn list_parameters_are_checked_with_messages() {
        let p = ListParams { limit: Some("501".into()), ..Default::default() };
        assert_eq!(
            parse_list(&p).unwrap_err().to_string(),
            "limit must be a whole number from 1 to 500, got \"501\""
        );
        let p = ListParams { outcome: Some("ok".into()), ..Default::default() };
        assert!(parse_list(&p).unwrap_err().to_string().starts_with("outcome must be success, failure"));
        let p = ListParams { since: Some("yesterday".into()), ..Default::default() };
        assert!(parse_list(&p).unwrap_err().to_string().starts_with("since must be an RFC 3339 time"));
        let (f, feedback) =
            parse_list(&ListParams { include: Some("feedback".into()), ..Default::default() }).unwrap();
        assert_eq!((f.limit, feedback), (50, true));
    }

    #[test]
    fn empty_feedback_is_refused() {
        let b = FeedbackBody { label: None, score: None, comment: None };
        assert_eq!(
            check_feedback(&b).unwrap_err().to_string(),
            "feedback needs at least one of label, score or comment"
        );
        let b = FeedbackBody { label: None, score: Some(f64::NAN), comment: None };
        assert!(check_feedback(&b).is_err());
    }
}
