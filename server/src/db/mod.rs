//! The prediction log on Postgres: the schema (migrations, day partitions, the move of an older log),
//! the non-blocking writer, the query API's data access and its cache. Everything here is optional:
//! without DATABASE_URL the server runs without it.

pub mod backfill;
pub mod buffer;
pub mod cache;
pub mod connect;
pub mod copy_rows;
pub mod log_metrics;
pub mod migrate;
pub mod partitions;
pub mod queries;
pub mod rollups;
pub mod stats;
pub mod unique_key;
pub mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{DatabaseArgs, MigrateMode, PayloadMode};
use crate::error::Error;
use crate::metrics::{self, LATENCY_BUCKETS, Metrics};
use buffer::ByteBudget;
use cache::TtlCache;
use connect::{Pools, client_deadline};
use log_metrics::{Drop, PoolGauges, WriterMetrics};
pub use migrate::{migrate, migrate_url, migrator};
pub use writer::PredictionRow;
use writer::{StopClock, Writer};

/// How often a replica checks the partitions (creating days ahead, dropping expired ones).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(15 * 60);

/// Batches the writer keeps in flight: all but one of its connections, so that partition maintenance
/// never waits behind a busy writer.
pub fn concurrent_flushes(connections: u32) -> usize {
    connections.saturating_sub(1).max(1) as usize
}

/// Migrations and today's partitions, for tools and tests that write to the tables directly.
pub async fn setup(pool: &PgPool) -> Result<(), Error> {
    migrate(pool).await.map_err(Error::Migration)?;
    partitions::maintain(pool, Duration::ZERO, chrono::Utc::now()).await?;
    Ok(())
}

/// Times `fut` into kubeinfer_db_query_duration_seconds{query}.
pub async fn timed<T, E>(
    histogram: &HistogramVec,
    query: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = fut.await;
    histogram.with_label_values(&[query]).observe(started.elapsed().as_secs_f64());
    result
}

pub struct PredictionLog {
    pools: Pools,
    sender: RwLock<Option<mpsc::UnboundedSender<PredictionRow>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    budget: Arc<ByteBudget>,
    metrics: WriterMetrics,
    pub payloads: PayloadMode,
    pub payload_max_bytes: usize,
    pub stats_cache: TtlCache<stats::ModelWindow>,
    pub models_cache: TtlCache<Vec<stats::ModelAggregates>>,
    query_duration: HistogramVec,
    deadline: Duration,
    shutdown_grace: Duration,
    stop: Arc<StopClock>,
}

impl PredictionLog {
    /// Connects lazily (the server starts even while the database is down), then, in the background,
    /// makes sure of the schema and partitions and runs the writer, retrying until the database answers.
    pub fn start(url: &str, args: &DatabaseArgs, metrics: &Metrics) -> Result<Arc<PredictionLog>, Error> {
        let pools = connect::pools(url, args)?;
        let query_duration = metrics::histogram(
            "kubeinfer_db_query_duration_seconds",
            "Time of each query API database query, by query name.",
            &["query"],
            LATENCY_BUCKETS,
        );
        let writer_metrics = WriterMetrics::new();
        metrics.register(Box::new(query_duration.clone()));
        metrics.register(Box::new(PoolGauges::new(vec![
            ("writer", pools.writer.clone()),
            ("api", pools.api.clone()),
        ])));
        for c in writer_metrics.collectors() {
            metrics.register(c);
        }
        let progress = backfill::Progress::new();
        for c in progress.collectors() {
            metrics.register(c);
        }
        let budget =
            Arc::new(ByteBudget::new(args.prediction_log_buffer_bytes, writer_metrics.buffer_bytes.clone()));
        let (sender, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(StopClock::default());
        let writer = Writer {
            pool: pools.writer.clone(),
            batch: args.prediction_log_batch.max(1),
            interval: args.prediction_log_flush_interval,
            flushes: concurrent_flushes(args.db_writer_connections),
            stop: stop.clone(),
            deadline: client_deadline(args.db_statement_timeout),
            budget: budget.clone(),
            metrics: writer_metrics.clone(),
        };
        let (pool, mode, retention) = (pools.writer.clone(), args.migrate, args.prediction_log_retention);
        let handle = tokio::spawn(async move {
            prepare(&pool, mode, retention).await;
            if mode == MigrateMode::Auto {
                tokio::spawn(maintenance(pool, retention, progress));
            }
            writer.run(rx).await;
        });
        Ok(Arc::new(PredictionLog {
            pools,
            sender: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            budget,
            metrics: writer_metrics,
            payloads: args.log_payloads,
            payload_max_bytes: args.log_payload_max_bytes,
            stats_cache: TtlCache::new(args.stats_cache_ttl),
            models_cache: TtlCache::new(args.stats_cache_ttl),
            query_duration,
            deadline: client_deadline(args.db_statement_timeout),
            shutdown_grace: args.prediction_log_shutdown_grace,
            stop,
        }))
    }

    /// Queues a row for the writer; never waits. A row that does not fit in the byte budget is dropped
    /// and counted.
    pub fn record(&self, row: PredictionRow) {
        let bytes = row.bytes();
        if !self.budget.reserve(bytes) {
            self.metrics.dropped(Drop::BufferFull).inc();
            return;
        }
        let sender = self.sender.read().unwrap_or_else(|p| p.into_inner());
        if sender.as_ref().is_none_or(|s| s.send(row).is_err()) {
            self.budget.release(bytes, 1);
            self.metrics.dropped(Drop::Shutdown).inc();
        }
    }

    /// The query API's pool.
    pub fn pool(&self) -> &PgPool {
        &self.pools.api
    }

    /// The writer's pool (tests use it to see that the API pool cannot starve it).
    pub fn writer_pool(&self) -> &PgPool {
        &self.pools.writer
    }

    /// Runs a read query, timed under `name`, and answers "unavailable" when the database does not
    /// answer within the statement timeout (a hung server never answers, and Postgres's own timeout
    /// cannot fire in a server that is not running).
    pub async fn query<T>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.deadline, timed(&self.query_duration, name, fut)).await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::DatabaseUnavailable(format!("no answer within {:?}", self.deadline))),
        }
    }

    /// Stops taking rows and waits for the writer to flush what it holds (bounded by the grace time);
    /// logs what was dropped since start, by reason.
    pub async fn shutdown(&self) {
        self.stop.begin(self.shutdown_grace);
        drop(self.sender.write().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut handle) = handle {
            let limit = self.shutdown_grace + Duration::from_secs(2);
            if tokio::time::timeout(limit, &mut handle).await.is_err() {
                handle.abort();
                // The rows it still held, queued or in the batch it was writing, are lost: count them.
                let left = self.budget.rows();
                tracing::error!(rows = left, "the prediction log writer did not stop in time");
                self.metrics.dropped(Drop::Shutdown).inc_by(left as u64);
            }
        }
        let [(_, buffer_full), (_, refused), (_, shutdown)] = self.metrics.drops();
        tracing::info!(
            written = self.metrics.written.get(),
            dropped_buffer_full = buffer_full,
            dropped_refused = refused,
            dropped_shutdown = shutdown,
            "prediction log stopped"
        );
        self.pools.writer.close().await;
        self.pools.api.close().await;
    }
}

/// Until it succeeds: `auto` migrates and makes today's partitions; `off` waits for
/// `kubeinfer-server migrate` to have done so.
async fn prepare(pool: &PgPool, mode: MigrateMode, retention: Duration) {
    let mut delay = Duration::from_millis(200);
    loop {
        let ready = match mode {
            MigrateMode::Auto => match migrate(pool).await {
                Ok(()) => partitions::maintain(pool, retention, chrono::Utc::now()).await.map(|_| true),
                Err(e) => Err(sqlx::Error::Migrate(Box::new(e))),
            },
            MigrateMode::Off => migrate::schema_ready(pool).await,
        };
        match ready {
            Ok(true) => {
                tracing::info!(?mode, "prediction log schema ready");
                return;
            }
            Ok(false) => tracing::warn!(
                retry_in_ms = delay.as_millis() as u64,
                "the prediction log's migrations are not applied yet and --migrate=off: run kubeinfer-server migrate"
            ),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot prepare the prediction log yet")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Moves an older unpartitioned log across once, then keeps the partitions and the unique key up to
/// date.
async fn maintenance(pool: PgPool, retention: Duration, progress: backfill::Progress) {
    if let Err(e) = backfill::run(&pool, retention, chrono::Utc::now(), &progress).await {
        tracing::error!(error = %e, "moving the unpartitioned prediction log stopped; the next start resumes it");
    }
    loop {
        // Here rather than before the server logs: on a large log the builds take minutes.
        if let Err(e) = unique_key::converge(&pool).await {
            tracing::warn!(error = %e, "building the prediction log's unique key failed; retrying later");
        }
        tokio::time::sleep(MAINTENANCE_EVERY).await;
        if let Err(e) = partitions::maintain(&pool, retention, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "prediction log partition maintenance failed; retrying later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::concurrent_flushes;

    #[test]
    fn the_writer_keeps_one_connection_for_maintenance_and_always_flushes() {
        assert_eq!(concurrent_flushes(3), 2);
        assert_eq!(concurrent_flushes(2), 1);
        assert_eq!(concurrent_flushes(1), 1);
        assert_eq!(concurrent_flushes(0), 1);
    }
}
