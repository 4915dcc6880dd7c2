//! A PostgreSQL cluster shared by the tests of one test binary, a fresh database per test, and the app
//! wired to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kubeinfer_server::config::{DatabaseArgs, MigrateMode, PayloadMode};
use kubeinfer_server::db::PredictionLog;
use kubeinfer_tests::postgres::{Postgres, TEST_SETTINGS};
use sqlx::PgPool;

use super::TestApp;

static CLUSTER: OnceLock<Postgres> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn cluster() -> &'static Postgres {
    CLUSTER.get_or_init(|| Postgres::start(TEST_SETTINGS))
}

/// A new database on the shared cluster; its URL.
pub fn fresh_database() -> String {
    let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    cluster().create_database(&name)
}

pub fn args(url: &str) -> DatabaseArgs {
    DatabaseArgs {
        database_url: Some(url.to_string()),
        db_writer_connections: 3,
        db_api_connections: 4,
        db_statement_timeout: Duration::from_secs(5),
        db_acquire_timeout: Duration::from_secs(2),
        prediction_log_buffer_bytes: 16 << 20,
        prediction_log_batch: 500,
        prediction_log_flush_interval: Duration::from_millis(20),
        prediction_log_shutdown_grace: Duration::from_secs(2),
        prediction_log_retention: Duration::from_secs(30 * 86400),
        migrate: MigrateMode::Auto,
        log_payloads: PayloadMode::Digest,
        log_payload_max_bytes: 16 * 1024,
        stats_cache_ttl: Duration::from_secs(300),
    }
}

/// The app over `models` with the prediction log on `args`, migrations applied and today's partitions
/// made before it returns.
pub async fn start_with_log(models: &[&str], args: DatabaseArgs) -> (TestApp, Arc<PredictionLog>, PgPool) {
    let url = args.database_url.clone().expect("a database URL");
    let pool = PgPool::connect(&url).await.expect("connect");
    kubeinfer_server::db::setup(&pool).await.expect("migrate");
    let app = super::start_full(models, super::defaults(), 32 * 1024 * 1024, Some(&args));
    let log = app.state.predictions.clone().expect("the log is on");
    (app, log, pool)
}

/// Polls `sql` (a count) until it reaches `want`, for at most 10 seconds.
pub async fn wait_for_count(pool: &PgPool, sql: &'static str, want: i64) -> i64 {
    let mut n = 0;
    for _ in 0..200 {
        n = sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1);
        if n >= want {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

/// Polls the app's metric `name` until it reaches `want`, for at most 10 seconds: the writer counts a
/// row just after the database has it, so a reader can see the row first.
pub async fn wait_for_metric(app: &TestApp, name: &str, want: f64) -> f64 {
    let mut value = 0.0;
    for _ in 0..200 {
        value = super::sample(&app.metrics().await, name);
        if value >= want {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    value
}

/// Partitions for today and the `n` days before it, for seeds that reach back that far.
pub async fn partitions_back(pool: &PgPool, n: u64) {
    let today = chrono::Utc::now().date_naive();
    let days: Vec<_> = (0..=n).filter_map(|i| today.checked_sub_days(chrono::Days::new(i))).collect();
    kubeinfer_server::db::partitions::ensure_days(pool, &days).await.expect("partitions");
}

/// The schema as a release before migration `version` (e.g. "0011") left it: the migrations whose file
/// names sort before it.
pub async fn migrate_before(pool: &PgPool, version: &str) {
    let old = tempfile::tempdir().expect("a temporary directory");
    for entry in std::fs::read_dir(super::workspace().join("server/migrations")).expect("the migrations") {
        let path = entry.expect("a migration").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        if name.as_str() < version {
            std::fs::copy(&path, old.path().join(name)).expect("a copy of the migration");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.expect("the older migrations");
    migrator.run(pool).await.expect("the older schema");
}

/// The partitioned parent index each partition's index belongs to, by the partition index's name.
pub async fn parent_indexes(pool: &PgPool) -> std::collections::HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT c.relname::text, p.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'i'",
    )
    .fetch_all(pool)
    .await
    .expect("the catalog")
    .into_iter()
    .collect()
}
