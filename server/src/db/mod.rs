//! The prediction log on Postgres: migrations, the non-blocking writer, the query API's data access and
//! its cache. Everything here is optional: without DATABASE_URL the server runs without it.

pub mod cache;
pub mod queries;
pub mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{DatabaseArgs, PayloadMode};
use crate::error::Error;
use crate::metrics::{self, LATENCY_BUCKETS, Metrics};
use cache::TtlCache;
pub use writer::PredictionRow;
use writer::{Writer, WriterMetrics};

/// Migrations in server/migrations/, embedded in the binary, with sqlx's own lock off (`migrate` takes
/// its own). Index migrations are `-- no-transaction` so that they can build CONCURRENTLY.
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_locking(false);
    migrator
}

/// Key of the advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK: i64 = 0x6b75_6265_696e_6672; // "kubeinfr"

/// Applies pending migrations, one replica at a time. sqlx's own lock waits in `pg_advisory_lock`, a
/// transaction that CREATE INDEX CONCURRENTLY in the holder's migration must wait for: two replicas
/// starting together deadlock. So the lock is polled with `pg_try_advisory_lock`, which holds nothing
/// open while it waits, and the migrator runs with sqlx's locking off under it.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .fetch_one(&mut *conn)
        .await?
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let migrator = migrator();
    // run_direct, not run: sqlx's own way round "Acquire is not general enough" inside spawned tasks.
    let result = migrator.run_direct(None, &mut *conn, false).await;
    let unlocked =
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await;
    result?;
    unlocked?;
    Ok(())
}

/// `kubeinfer-server migrate`: connects (failing fast if the database is unreachable) and migrates.
pub async fn migrate_url(url: &str) -> Result<(), Error> {
    let pool =
        PgPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
    migrate(&pool).await.map_err(|e| Error::Database(format!("migration failed: {e}")))?;
    tracing::info!(applied = migrator().iter().count(), "migrations up to date");
    pool.close().await;
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
    pool: PgPool,
    sender: RwLock<Option<mpsc::Sender<PredictionRow>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub payloads: PayloadMode,
    pub payload_max_bytes: usize,
    pub stats_cache: TtlCache<queries::Stats>,
    pub models_cache: TtlCache<Vec<queries::ModelStats>>,
    query_duration: HistogramVec,
    dropped: IntCounter,
    shutdown_grace: Duration,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("{name}: {e}"))
}

fn writer_metrics() -> WriterMetrics {
    WriterMetrics {
        written: counter(
            "kubeinfer_prediction_log_rows_written_total",
            "Prediction log rows written to Postgres.",
        ),
        dropped: counter(
            "kubeinfer_prediction_log_dropped_total",
            "Prediction log rows dropped: the buffer was full (database down or slow), the database refused \
             the row, or it was still unwritten at shutdown.",
        ),
        flush_rows: histogram(
            "kubeinfer_prediction_log_flush_rows",
            "Rows per multi-row insert.",
            vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
        ),
        flush_duration: histogram(
            "kubeinfer_prediction_log_flush_duration_seconds",
            "Time of one multi-row insert.",
            LATENCY_BUCKETS.to_vec(),
        ),
    }
}

impl PredictionLog {
    /// Connects lazily (the server starts even while the database is down), then migrates and runs the
    /// writer in the background, retrying until the database answers.
    pub fn start(url: &str, args: &DatabaseArgs, metrics: &Metrics) -> Result<Arc<PredictionLog>, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(args.db_max_connections)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(url)
            .map_err(|e| Error::Database(format!("DATABASE_URL is not usable: {e}")))?;
        let query_duration = metrics::histogram(
            "kubeinfer_db_query_duration_seconds",
            "Time of each query API database query, by query name.",
            &["query"],
            LATENCY_BUCKETS,
        );
        let writer_metrics = writer_metrics();
        for c in [
            Box::new(query_duration.clone()) as Box<dyn Collector>,
            Box::new(writer_metrics.written.clone()),
            Box::new(writer_metrics.dropped.clone()),
            Box::new(writer_metrics.flush_rows.clone()),
            Box::new(writer_metrics.flush_duration.clone()),
            Box::new(PoolGauges::new(pool.clone())),
        ] {
            metrics.register(c);
        }
        let (sender, rx) = mpsc::channel(args.prediction_log_buffer.max(1));
        let writer = Writer {
            pool: pool.clone(),
            batch: args.prediction_log_batch.max(1),
            interval: args.prediction_log_flush_interval,
            shutdown_grace: args.prediction_log_shutdown_grace,
            metrics: writer_metrics.clone(),
        };
        let migrating = pool.clone();
        let handle = tokio::spawn(async move {
            wait_for_migrations(&migrating).await;
            writer.run(rx).await;
        });
        Ok(Arc::new(PredictionLog {
            pool,
            sender: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            payloads: args.log_payloads,
            payload_max_bytes: args.log_payload_max_bytes,
            stats_cache: TtlCache::new(args.stats_cache_ttl),
            models_cache: TtlCache::new(args.stats_cache_ttl),
            query_duration,
            dropped: writer_metrics.dropped,
            shutdown_grace: args.prediction_log_shutdown_grace,
        }))
    }

    /// Queues a row for the writer; never waits. A full buffer drops the row and counts it.
    pub fn record(&self, row: PredictionRow) {
        let sender = self.sender.read().unwrap_or_else(|p| p.into_inner());
        let sent = sender.as_ref().is_some_and(|s| s.try_send(row).is_ok());
        if !sent {
            self.dropped.inc();
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs a read query, timed under `name`.
    pub async fn query<T>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Error> {
        timed(&self.query_duration, name, fut).await.map_err(Error::from)
    }

    /// Stops taking rows and waits for the writer to flush what it holds (bounded by the grace time).
    pub async fn shutdown(&self) {
        drop(self.sender.write().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut handle) = handle {
            let limit = self.shutdown_grace + Duration::from_secs(2);
            if tokio::time::timeout(limit, &mut handle).await.is_err() {
                tracing::error!("the prediction log writer did not stop in time");
                handle.abort();
            }
        }
        self.pool.close().await;
    }
}

async fn wait_for_migrations(pool: &PgPool) {
    let mut delay = Duration::from_millis(200);
    loop {
        match migrate(pool).await {
            Ok(()) => {
                tracing::info!("prediction log migrations applied");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot migrate the prediction log yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// kubeinfer_db_pool_connections{state}, read from the pool at scrape time.
struct PoolGauges {
    pool: PgPool,
    gauges: IntGaugeVec,
}

impl PoolGauges {
    fn new(pool: PgPool) -> PoolGauges {
        let gauges = IntGaugeVec::new(
            Opts::new(
                "kubeinfer_db_pool_connections",
                "Connections in the database pool, by state (idle, active).",
            ),
            &["state"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        PoolGauges { pool, gauges }
    }
}

impl Collector for PoolGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(0);
        self.gauges.with_label_values(&["idle"]).set(idle);
        self.gauges.with_label_values(&["active"]).set(size - idle);
        self.gauges.collect()
    }
}
