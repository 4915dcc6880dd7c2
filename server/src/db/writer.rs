//! The prediction log's background writer: rows arrive on a channel whose contents are bounded in
//! bytes by the sender (the request path never waits), and leave in batches of up to `batch` rows or
//! every `interval`, whichever comes first, with up to `flushes` batches in flight (one PostgreSQL
//! backend parses and indexes one batch on one core). While the database is down the batches
//! are retried with backoff; new rows wait in the channel until the byte budget is spent, then they are
//! dropped and counted. The pool reconnects by itself. A batch the database refuses for its data (not
//! its availability) is retried row by row, so one bad row costs only itself.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::buffer::ByteBudget;
use super::copy_rows;
use super::log_metrics::{Drop, WriterMetrics};
use super::queries::Prediction;
use super::rollups;

/// One logged inference on its way to the table; the request payload and the response are JSON text,
/// written as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub prediction: Prediction,
    pub payload: Option<String>,
    pub response: Option<String>,
}

impl PredictionRow {
    /// What the row holds in memory, roughly: its text and a fixed part for the rest.
    pub fn bytes(&self) -> usize {
        let p = &self.prediction;
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        256 + p.model.len()
            + text(&p.request_id)
            + text(&p.client_id)
            + text(&p.error)
            + p.outcome.len()
            + p.protocol.len()
            + text(&self.payload)
            + text(&self.response)
    }
}

pub struct Writer {
    pub pool: PgPool,
    pub batch: usize,
    pub interval: Duration,
    /// Batches in flight at once (each on its own connection of `pool`).
    pub flushes: usize,
    /// When retries stop at shutdown and what is still unwritten is given up.
    pub stop: Arc<StopClock>,
    /// The client's deadline on one insert (Postgres may hang without answering).
    pub deadline: Duration,
    pub budget: Arc<ByteBudget>,
    pub metrics: WriterMetrics,
}

/// The moment, set once at shutdown, after which the writer stops retrying.
#[derive(Debug, Default)]
pub struct StopClock(OnceLock<Instant>);

impl StopClock {
    /// Shutdown began: retries may go on for `grace` more.
    pub fn begin(&self, grace: Duration) {
        let _ = self.0.set(Instant::now() + grace);
    }

    fn passed(&self) -> bool {
        self.0.get().is_some_and(|at| Instant::now() >= *at)
    }
}

/// Whether a write may meet its rows already in the table: a batch's first attempt cannot, a retry
/// can (the attempt before may have committed without the answer arriving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    First,
    Retry,
}

// ON CONFLICT without a target: any unique key (since migration 0011, (created_at, id)) makes a retried
// batch that did reach the table a no-op, and RETURNING says which rows were new, for the rollups.
const INSERT_RETRIED: &str = "INSERT INTO predictions (id, request_id, model, model_version, client_id, \
     created_at, queue_us, compute_us, total_us, batch_size, outcome, error, payload, response, \
     predicted_class, predicted_score, protocol) \
     SELECT id, request_id, model, model_version, client_id, created_at, queue_us, compute_us, total_us, \
     batch_size, outcome, error, payload::jsonb, response::jsonb, predicted_class, predicted_score, protocol \
     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::timestamptz[], \
     $7::int8[], $8::int8[], $9::int8[], $10::int4[], $11::text[], $12::text[], $13::text[], $14::text[], \
     $15::int4[], $16::float4[], $17::text[]) \
     AS r(id, request_id, model, model_version, client_id, created_at, queue_us, compute_us, total_us, \
     batch_size, outcome, error, payload, response, predicted_class, predicted_score, protocol) \
     ON CONFLICT DO NOTHING RETURNING id";

impl Writer {
    /// Runs until every sender is gone and the last rows are flushed (or given up after the grace time).
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<PredictionRow>) {
        let writer = Arc::new(self);
        let mut in_flight = JoinSet::new();
        loop {
            let mut batch = Vec::with_capacity(writer.batch);
            if rx.recv_many(&mut batch, writer.batch).await == 0 {
                break;
            }
            let deadline = tokio::time::Instant::now() + writer.interval;
            while batch.len() < writer.batch {
                let room = writer.batch - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            while in_flight.len() >= writer.flushes.max(1) {
                finished(in_flight.join_next().await);
            }
            let writer = writer.clone();
            let held = Held::new(writer.budget.clone(), &batch);
            in_flight.spawn(async move {
                writer.flush(&batch).await;
                drop(held);
            });
        }
        while let Some(done) = in_flight.join_next().await {
            finished(Some(done));
        }
        tracing::info!("prediction log writer stopped");
    }

    /// Inserts `rows`, retrying while the database is unavailable. Once shutdown has begun, retries
    /// stop after the grace time and the rows still unwritten are counted as dropped.
    async fn flush(&self, rows: &[PredictionRow]) {
        let mut delay = Duration::from_millis(100);
        let mut attempt = Attempt::First;
        loop {
            let started = Instant::now();
            let error = match self.insert(rows, attempt).await {
                Ok(()) => return self.written(rows.len(), started),
                Err(e) if refuses_the_data(&e) => return self.flush_one_by_one(rows, e).await,
                Err(e) => e,
            };
            if self.stop.passed() {
                tracing::error!(error = %error, rows = rows.len(), "prediction log rows dropped at shutdown");
                self.metrics.dropped(Drop::Shutdown).inc_by(rows.len() as u64);
                return;
            }
            tracing::warn!(error = %error, rows = rows.len(), retry_in_ms = delay.as_millis() as u64, "prediction log write failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            attempt = Attempt::Retry;
        }
    }

    /// The batch held a row the database will never take: find it by writing each row alone, and drop
    /// only the rows that fail. A row that fails for availability here is dropped too (rare: the
    /// batch failed on its data a moment ago), rather than stalling the log behind a retry per row.
    async fn flush_one_by_one(&self, rows: &[PredictionRow], batch_error: sqlx::Error) {
        tracing::warn!(error = %batch_error, rows = rows.len(), "prediction log batch refused; writing its rows one by one");
        for (i, row) in rows.iter().enumerate() {
            if self.stop.passed() {
                let left = rows.len() - i;
                tracing::error!(rows = left, "prediction log rows dropped at shutdown");
                self.metrics.dropped(Drop::Shutdown).inc_by(left as u64);
                return;
            }
            // A duplicate of a row already written is refused as data by a plain INSERT; here it is a
            // no-op.
            match self.insert(std::slice::from_ref(row), Attempt::Retry).await {
                Ok(()) => self.metrics.written.inc(),
                Err(e) => {
                    tracing::error!(error = %e, id = %row.prediction.id, model = %row.prediction.model, "prediction log row dropped");
                    self.metrics.dropped(Drop::Refused).inc();
                }
            }
        }
    }

    /// One insert, given up (as unavailable) when Postgres does not answer within the deadline.
    async fn insert(&self, rows: &[PredictionRow], attempt: Attempt) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(self.deadline, insert(&self.pool, rows, attempt)).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    fn written(&self, rows: usize, started: Instant) {
        self.metrics.flush_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.flush_rows.observe(rows as f64);
        self.metrics.written.inc_by(rows as u64);
    }
}

/// A batch's share of the byte budget, given back when its flush ends however it ends: a flush that
/// panicked must not shrink the buffer for the rest of the process's life.
struct Held {
    budget: Arc<ByteBudget>,
    bytes: usize,
    rows: usize,
}

impl Held {
    fn new(budget: Arc<ByteBudget>, batch: &[PredictionRow]) -> Held {
        Held { budget, bytes: batch.iter().map(PredictionRow::bytes).sum(), rows: batch.len() }
    }
}

impl std::ops::Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes, self.rows);
    }
}

/// A flush task that panicked lost its rows without counting them: say so.
fn finished(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = done {
        tracing::error!(error = %e, "a prediction log flush failed");
    }
}

/// Whether the database refused the rows themselves (bad value, broken constraint), which no retry
/// will fix, as opposed to being unreachable, overloaded or restarting.
fn refuses_the_data(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Encode(_) => true,
        // SQLSTATE class 22: data exception; 23: integrity constraint violation.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
        }
        _ => false,
    }
}

fn column<'a, T>(rows: &'a [PredictionRow], f: impl Fn(&'a PredictionRow) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

/// Inserts the rows and adds the new ones to the rollups, in one transaction: the stats count a row
/// exactly when the log holds it. A first attempt COPYs the rows (none of them can be in the table
/// yet); a retry INSERTs only those that are not.
async fn insert(pool: &PgPool, rows: &[PredictionRow], attempt: Attempt) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let predictions = rows.iter().map(|r| &r.prediction);
    let rollups = match attempt {
        Attempt::First => {
            // A COPY dropped unfinished (an error, the deadline) tells the server it failed.
            let mut copy = tx.copy_in_raw(copy_rows::COPY).await?;
            copy.send(copy_rows::encode(rows)).await?;
            copy.finish().await?;
            rollups::fold(predictions)
        }
        Attempt::Retry => {
            let inserted = insert_new(&mut tx, rows).await?;
            rollups::fold(predictions.filter(|p| inserted.contains(&p.id)))
        }
    };
    rollups::add(&mut tx, &rollups).await?;
    tx.commit().await
}

/// The rows not already in the table, inserted; returns their ids.
async fn insert_new(tx: &mut PgConnection, rows: &[PredictionRow]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let returned = sqlx::query(INSERT_RETRIED)
        .bind(column(rows, |r| r.prediction.id))
        .bind(column(rows, |r| r.prediction.request_id.as_deref()))
        .bind(column(rows, |r| r.prediction.model.as_str()))
        .bind(column(rows, |r| r.prediction.model_version))
        .bind(column(rows, |r| r.prediction.client_id.as_deref()))
        .bind(column(rows, |r| r.prediction.created_at))
        .bind(column(rows, |r| r.prediction.queue_us))
        .bind(column(rows, |r| r.prediction.compute_us))
        .bind(column(rows, |r| r.prediction.total_us))
        .bind(column(rows, |r| r.prediction.batch_size))
        .bind(column(rows, |r| r.prediction.outcome.as_str()))
        .bind(column(rows, |r| r.prediction.error.as_deref()))
        .bind(column(rows, |r| r.payload.as_deref()))
        .bind(column(rows, |r| r.response.as_deref()))
        .bind(column(rows, |r| r.prediction.predicted_class))
        .bind(column(rows, |r| r.prediction.predicted_score))
        .bind(column(rows, |r| r.prediction.protocol.as_str()))
        .fetch_all(tx)
        .await?;
    returned.iter().map(|r| r.try_get(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_only_once_shutdown_has_begun_and_its_grace_has_run_out() {
        let running = StopClock::default();
        assert!(!running.passed(), "no shutdown yet");
        let in_grace = StopClock::default();
        in_grace.begin(Duration::from_secs(3600));
        assert!(!in_grace.passed());
        let out_of_grace = StopClock::default();
        out_of_grace.begin(Duration::ZERO);
        assert!(out_of_grace.passed());
        out_of_grace.begin(Duration::from_secs(3600));
        assert!(out_of_grace.passed(), "a second shutdown does not extend the first one's grace");
    }

    #[tokio::test]
    async fn a_flush_that_panics_still_gives_its_bytes_back_to_the_budget() {
        let budget = Arc::new(ByteBudget::new(10_000, prometheus::IntGauge::new("b", "b").unwrap()));
        let row = PredictionRow {
            prediction: Prediction::answered("digits", 1, chrono::Utc::now()),
            payload: Some("{}".into()),
            response: None,
        };
        let batch = vec![row.clone(), row];
        for r in &batch {
            assert!(budget.reserve(r.bytes()));
        }
        assert_eq!((budget.used(), budget.rows()), (2 * (256 + 6 + 7 + 4 + 2), 2));
        let held = Held::new(budget.clone(), &batch);
        let flush = tokio::spawn(async move {
            let _held = held;
            panic!("a bug in a flush");
        });
        assert!(flush.await.unwrap_err().is_panic());
        assert_eq!((budget.used(), budget.rows()), (0, 0));
    }
}
