//! The stats of `GET /api/models/{m}/stats` and `GET /api/models`: counts, error rate, latency
//! percentiles and mean batch from the rollups (db/rollups.rs), at most 61 minute rows or 169 hour
//! rows a model whatever the traffic, and label agreement from the feedback of the same window.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::rollups::{Histogram, Period};

/// Aggregates over a window: request count, error rate, latency percentiles of successes, mean batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub count: i64,
    pub errors: i64,
    pub p50_us: Option<f64>,
    pub p95_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_batch_size: Option<f64>,
}

/// One model's rollup rows of a window, summed.
#[derive(Debug, Default)]
struct Sums {
    requests: i64,
    errors: i64,
    successes: i64,
    batch_rows: i64,
    latency: Histogram,
}

impl Sums {
    fn stats(&self) -> Stats {
        Stats {
            count: self.requests,
            errors: self.errors,
            p50_us: self.latency.quantile(0.5),
            p95_us: self.latency.quantile(0.95),
            p99_us: self.latency.quantile(0.99),
            mean_batch_size: (self.successes > 0).then(|| self.batch_rows as f64 / self.successes as f64),
        }
    }
}

#[derive(FromRow)]
struct Row {
    model: String,
    requests: i64,
    errors: i64,
    successes: i64,
    batch_rows: i64,
    latency_first: i32,
    latency: Vec<i64>,
}

/// Sums rows ordered by model into one `Sums` per model, in that order.
fn sum_by_model(rows: Vec<Row>) -> Vec<(String, Sums)> {
    let mut out: Vec<(String, Sums)> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|(model, _)| *model != row.model) {
            out.push((row.model.clone(), Sums::default()));
        }
        if let Some((_, s)) = out.last_mut() {
            s.requests += row.requests;
            s.errors += row.errors;
            s.successes += row.successes;
            s.batch_rows += row.batch_rows;
            s.latency.add_at(usize::try_from(row.latency_first).unwrap_or(0), &row.latency);
        }
    }
    out
}

pub const MODEL_STATS: &str = "SELECT model, requests, errors, successes, batch_rows, latency_first, latency \
     FROM prediction_rollups WHERE model = $1 AND period = $2 AND start >= $3";

pub const ALL_MODELS_STATS: &str = "SELECT model, requests, errors, successes, batch_rows, latency_first, latency \
     FROM prediction_rollups WHERE period = $1 AND start >= $2 ORDER BY model";

/// One model's stats over the rows of `period` from `from` on (see `Period::window`).
pub async fn model_stats(
    pool: &PgPool,
    model: &str,
    (period, from): (Period, DateTime<Utc>),
) -> Result<Stats, sqlx::Error> {
    let rows: Vec<Row> =
        sqlx::query_as(MODEL_STATS).bind(model).bind(period.as_str()).bind(from).fetch_all(pool).await?;
    Ok(sum_by_model(rows).pop().map(|(_, s)| s).unwrap_or_default().stats())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAggregates {
    pub model: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// Every model's stats that has rows in the window, by model name.
pub async fn all_models_stats(
    pool: &PgPool,
    window_seconds: f64,
) -> Result<Vec<ModelAggregates>, sqlx::Error> {
    let (period, from) = Period::window(window_seconds, Utc::now());
    let rows: Vec<Row> =
        sqlx::query_as(ALL_MODELS_STATS).bind(period.as_str()).bind(from).fetch_all(pool).await?;
    Ok(sum_by_model(rows).into_iter().map(|(model, s)| ModelAggregates { model, stats: s.stats() }).collect())
}

/// Over a window: predictions with a classifier summary and a feedback label (the latest one, when a
/// prediction has several), and how many of those labels name the predicted class.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct Agreement {
    pub labelled: i64,
    pub agreeing: i64,
}

/// Driven from feedback, which is small, rather than from the window's predictions: the window bounds
/// feedback's partitions, and each label finds its prediction by its unique key (created_at, id).
pub const AGREEMENT: &str = "SELECT count(*)::int8 AS labelled, \
     count(*) FILTER (WHERE l.label = p.predicted_class::text)::int8 AS agreeing \
     FROM (SELECT DISTINCT ON (prediction_id) prediction_id, prediction_created_at, label FROM feedback \
           WHERE prediction_created_at >= $2 AND label IS NOT NULL \
           ORDER BY prediction_id, created_at DESC, id DESC) l \
     JOIN predictions p ON p.id = l.prediction_id AND p.created_at = l.prediction_created_at \
     WHERE p.model = $1 AND p.predicted_class IS NOT NULL";

/// Label agreement over the predictions since `from`, the start of the window `model_stats` reads,
/// bound as a value (the planner prunes day partitions on a value, and on `now() - interval` only at
/// execution, after opening every partition).
pub async fn agreement(pool: &PgPool, model: &str, from: DateTime<Utc>) -> Result<Agreement, sqlx::Error> {
    sqlx::query_as(AGREEMENT).bind(model).bind(from).fetch_one(pool).await
}

/// A model's stats and label agreement over one window, cached together.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWindow {
    pub stats: Stats,
    pub agreement: Agreement,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored row whose successes all fall in `bucket`.
    fn row(model: &str, requests: i64, successes: i64, batch_rows: i64, bucket: usize) -> Row {
        let latency = if successes > 0 { vec![successes] } else { vec![] };
        let latency_first = i32::try_from(bucket).unwrap();
        Row {
            model: model.into(),
            requests,
            errors: requests - successes,
            successes,
            batch_rows,
            latency_first,
            latency,
        }
    }

    #[test]
    fn rows_of_one_model_add_up_and_each_model_keeps_its_own() {
        let sums = sum_by_model(vec![row("a", 10, 8, 16, 56), row("a", 5, 2, 20, 56), row("b", 1, 0, 0, 0)]);
        assert_eq!(sums.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let a = sums[0].1.stats();
        assert_eq!((a.count, a.errors, a.mean_batch_size), (15, 5, Some(3.6)));
        assert_eq!(a.p50_us, Some(982.0));
        let b = sums[1].1.stats();
        assert_eq!((b.count, b.errors, b.p50_us, b.mean_batch_size), (1, 1, None, None));
    }

    #[test]
    fn a_window_without_rows_has_zero_counts_and_no_percentiles() {
        let s = sum_by_model(vec![]).pop().map(|(_, s)| s).unwrap_or_default().stats();
        assert_eq!(
            s,
            Stats { count: 0, errors: 0, p50_us: None, p95_us: None, p99_us: None, mean_batch_size: None }
        );
    }
}
