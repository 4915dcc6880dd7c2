//! Moves a log from before partitioning into the partitioned tables, in the background and without
//! downtime. Migration 0007 renamed the old tables to `*_unpartitioned` and created the partitioned ones
//! in their place, so new rows land in partitions at once; this task then moves the retained window
//! across in small batches, newest first (what /api shows first is back first), each batch one short
//! transaction that deletes from the old table and inserts into the new, so a restart resumes where it
//! stopped. Rows already past the retention are not moved; the old tables are dropped at the end.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use prometheus::{IntCounter, IntGauge};
use sqlx::{Connection, PgPool};

use super::migrate::{schema_connection, try_lock};

/// Rows per moving transaction: short enough to hold no lock for long, large enough to be quick.
const BATCH: i64 = 10_000;

/// Separate from the schema lock: a long backfill must not hold up other replicas' start-up.
const BACKFILL_LOCK: i64 = 0x6b75_6265_696e_6673;

const MOVE_FEEDBACK: &str = "WITH batch AS (SELECT id FROM feedback_unpartitioned ORDER BY id LIMIT $1), \
     moved AS (DELETE FROM feedback_unpartitioned f USING batch WHERE f.id = batch.id RETURNING f.*), \
     copied AS (INSERT INTO feedback (id, prediction_id, prediction_created_at, label, score, comment, created_at) \
       SELECT m.id, m.prediction_id, p.created_at, m.label, m.score, m.comment, m.created_at \
       FROM moved m JOIN predictions_unpartitioned p ON p.id = m.prediction_id \
       WHERE $2::timestamptz IS NULL OR p.created_at >= $2 RETURNING 1) \
     SELECT (SELECT count(*) FROM moved)::int8";

const MOVE_PREDICTIONS: &str = "WITH batch AS (SELECT id FROM predictions_unpartitioned \
       WHERE $2::timestamptz IS NULL OR created_at >= $2 ORDER BY created_at DESC, id DESC LIMIT $1), \
     moved AS (DELETE FROM predictions_unpartitioned p USING batch WHERE p.id = batch.id RETURNING p.*), \
     copied AS (INSERT INTO predictions (id, request_id, model, model_version, client_id, created_at, \
       queue_us, compute_us, total_us, batch_size, outcome, error, payload) \
       SELECT id, request_id, model, model_version, client_id, created_at, queue_us, compute_us, total_us, \
       batch_size, outcome, error, payload FROM moved ON CONFLICT DO NOTHING RETURNING 1) \
     SELECT (SELECT count(*) FROM moved)::int8";

/// How far a backfill has come, as metrics: a move of a large log takes hours, and whoever waits for
/// it wants to know how long is left.
#[derive(Clone)]
pub struct Progress {
    /// Predictions in the retained window still in the old table (0 when none is, or no backfill runs).
    pub remaining: IntGauge,
    /// Predictions moved by this process.
    pub moved: IntCounter,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            remaining: IntGauge::new(
                "kubeinfer_prediction_log_backfill_rows_remaining",
                "Predictions of the retained window still waiting in the unpartitioned table from before \
                 partitioning (counted when the move starts, lowered as it goes); 0 when there is none.",
            )
            .unwrap_or_else(|e| unreachable!("backfill metric: {e}")),
            moved: IntCounter::new(
                "kubeinfer_prediction_log_backfill_rows_moved_total",
                "Predictions this process moved from the unpartitioned table into the partitions.",
            )
            .unwrap_or_else(|e| unreachable!("backfill metric: {e}")),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.remaining.clone()), Box::new(self.moved.clone())]
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

/// Batches between two progress lines in the log.
const LOG_EVERY: u32 = 20;

/// Moves what is left of the unpartitioned log; the number of predictions moved, or `None` when there
/// is no old log (or another replica is moving it).
pub async fn run(
    pool: &PgPool,
    retention: Duration,
    now: DateTime<Utc>,
    progress: &Progress,
) -> Result<Option<i64>, sqlx::Error> {
    let mut conn = schema_connection(pool).await?;
    let old: Option<String> = sqlx::query_scalar("SELECT to_regclass('predictions_unpartitioned')::text")
        .fetch_one(&mut conn)
        .await?;
    let locked = try_lock(&mut conn, BACKFILL_LOCK).await?;
    if old.is_none() || !locked {
        conn.close().await?;
        return Ok(None);
    }
    let cutoff =
        (!retention.is_zero()).then(|| chrono::Duration::from_std(retention).ok().map(|r| now - r)).flatten();
    // The first and last day through the created_at index, not a scan of every row for its day.
    let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT min(created_at), max(created_at) FROM predictions_unpartitioned \
         WHERE $1::timestamptz IS NULL OR created_at >= $1",
    )
    .bind(cutoff)
    .fetch_one(&mut conn)
    .await?;
    let days: Vec<NaiveDate> = match (first, last) {
        (Some(first), Some(last)) => {
            first.date_naive().iter_days().take_while(|d| *d <= last.date_naive()).collect()
        }
        _ => Vec::new(),
    };
    super::partitions::ensure_days(pool, &days).await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM predictions_unpartitioned WHERE $1::timestamptz IS NULL OR created_at >= $1",
    )
    .bind(cutoff)
    .fetch_one(&mut conn)
    .await?;
    progress.remaining.set(total);
    tracing::info!(
        days = days.len(),
        rows = total,
        "moving the unpartitioned prediction log into partitions"
    );
    while sqlx::query_scalar::<_, i64>(MOVE_FEEDBACK).bind(BATCH).bind(cutoff).fetch_one(&mut conn).await? > 0
    {
    }
    let mut moved = 0;
    for batch in 1u32.. {
        let n: i64 =
            sqlx::query_scalar(MOVE_PREDICTIONS).bind(BATCH).bind(cutoff).fetch_one(&mut conn).await?;
        if n == 0 {
            break;
        }
        moved += n;
        progress.moved.inc_by(n.unsigned_abs());
        progress.remaining.set((total - moved).max(0));
        if batch % LOG_EVERY == 0 {
            tracing::info!(
                moved,
                remaining = (total - moved).max(0),
                "moving the unpartitioned prediction log"
            );
        }
    }
    progress.remaining.set(0);
    // Moved rows bypassed the writer and its rollups: recount the stats from the oldest of them on. Moves
    // go newest first, so this also covers rows an interrupted earlier run moved.
    if let Some(first) = first.filter(|_| moved > 0) {
        sqlx::query("SELECT prediction_rollups_rebuild($1)").bind(first).execute(&mut conn).await?;
    }
    sqlx::query("DROP TABLE feedback_unpartitioned, predictions_unpartitioned").execute(&mut conn).await?;
    tracing::info!(moved, "the prediction log is partitioned; the old tables are dropped");
    conn.close().await?;
    Ok(Some(moved))
}
