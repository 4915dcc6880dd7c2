//! The prediction log's background writer: rows arrive on a channel whose contents are bounded in
//! bytes by the sender (the request path never waits), and leave in multi-row INSERTs of up to `batch`
//! rows or every `interval`, whichever comes first. While the database is down the current batch is
//! retried with backoff; new rows wait in the channel until the byte budget is spent, then they are
//! dropped and counted. The pool reconnects by itself. A batch the database refuses for its data (not
//! its availability) is retried row by row, so one bad row costs only itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::buffer::ByteBudget;
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
    /// How long the final flush may keep retrying at shutdown before it gives the rows up.
    pub shutdown_grace: Duration,
    /// The client's deadline on one insert (Postgres may hang without answering).
    pub deadline: Duration,
    pub budget: Arc<ByteBudget>,
    pub metrics: WriterMetrics,
}

// ON CONFLICT without a target: any unique key (the primary key is (id, created_at)) makes a retried
// batch that did reach the table a no-op, and RETURNING says which rows were new, for the rollups.
const INSERT: &str = "INSERT INTO predictions (id, request_id, model, model_version, client_id, created_at, \
     queue_us, compute_us, total_us, batch_size, outcome, error, payload, response, predicted_class, \
     predicted_score, protocol) \
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
        let mut batch = Vec::with_capacity(self.batch);
        let mut closing: Option<Instant> = None;
        loop {
            if rx.recv_many(&mut batch, self.batch).await == 0 {
                break;
            }
            let deadline = tokio::time::Instant::now() + self.interval;
            while batch.len() < self.batch {
                let room = self.batch - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            self.flush(&batch, &rx, &mut closing).await;
            self.budget.release(batch.iter().map(PredictionRow::bytes).sum(), batch.len());
            batch.clear();
        }
        tracing::info!("prediction log writer stopped");
    }

    /// Inserts `rows`, retrying while the database is unavailable. Once the channel is closed (shutdown),
    /// retries stop after the grace time and the rows still unwritten are counted as dropped.
    async fn flush(
        &self,
        rows: &[PredictionRow],
        rx: &mpsc::UnboundedReceiver<PredictionRow>,
        closing: &mut Option<Instant>,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let error = match self.insert(rows).await {
                Ok(()) => return self.written(rows.len(), started),
                Err(e) if refuses_the_data(&e) => return self.flush_one_by_one(rows, e, rx, closing).await,
                Err(e) => e,
            };
            if self.past_shutdown_grace(rx, closing) {
                tracing::error!(error = %error, rows = rows.len(), "prediction log rows dropped at shutdown");
                self.metrics.dropped(Drop::Shutdown).inc_by(rows.len() as u64);
                return;
            }
            tracing::warn!(error = %error, rows = rows.len(), retry_in_ms = delay.as_millis() as u64, "prediction log write failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// The batch held a row the database will never take: find it by writing each row alone, and drop
    /// only the rows that fail. A row that fails for availability here is dropped too (rare: the
    /// batch failed on its data a moment ago), rather than stalling the log behind a retry per row.
    async fn flush_one_by_one(
        &self,
        rows: &[PredictionRow],
        batch_error: sqlx::Error,
        rx: &mpsc::UnboundedReceiver<PredictionRow>,
        closing: &mut Option<Instant>,
    ) {
        tracing::warn!(error = %batch_error, rows = rows.len(), "prediction log batch refused; writing its rows one by one");
        for (i, row) in rows.iter().enumerate() {
            if self.past_shutdown_grace(rx, closing) {
                let left = rows.len() - i;
                tracing::error!(rows = left, "prediction log rows dropped at shutdown");
                self.metrics.dropped(Drop::Shutdown).inc_by(left as u64);
                return;
            }
            match self.insert(std::slice::from_ref(row)).await {
                Ok(()) => self.metrics.written.inc(),
                Err(e) => {
                    tracing::error!(error = %e, id = %row.prediction.id, model = %row.prediction.model, "prediction log row dropped");
                    self.metrics.dropped(Drop::Refused).inc();
                }
            }
        }
    }

    /// Whether the writer should give up on what it holds: the channel is closed (shutdown) and the
    /// grace time, counted from the first failure after it closed, has run out.
    fn past_shutdown_grace(
        &self,
        rx: &mpsc::UnboundedReceiver<PredictionRow>,
        closing: &mut Option<Instant>,
    ) -> bool {
        rx.is_closed()
            && Instant::now() >= *closing.get_or_insert_with(|| Instant::now() + self.shutdown_grace)
    }

    /// One insert, given up (as unavailable) when Postgres does not answer within the deadline.
    async fn insert(&self, rows: &[PredictionRow]) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(self.deadline, insert(&self.pool, rows)).await {
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
/// exactly when the log holds it.
async fn insert(pool: &PgPool, rows: &[PredictionRow]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let inserted: HashSet<Uuid> = sqlx::query_scalar(INSERT)
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
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let new = rows.iter().map(|r| &r.prediction).filter(|p| inserted.contains(&p.id));
    rollups::add(&mut tx, &rollups::fold(new)).await?;
    tx.commit().await
}
