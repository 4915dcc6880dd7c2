//! The prediction log's schema: migrations embedded in the binary, applied one replica at a time, a
//! schema newer than the binary tolerated, and index builds that were interrupted rebuilt.

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::error::Error;

/// Migrations in server/migrations/, embedded in the binary. sqlx's own lock is off (`migrate` takes
/// its own). Migrations the database has and this binary lacks (a newer binary ran first) are
/// accepted: every migration adds to the schema and keeps what older binaries use, so an older binary
/// can keep logging during a rollout or a rollback.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_locking(false);
    migrator.set_ignore_missing(true);
    migrator
}

/// Key of the advisory lock that serialises migrations and partition maintenance across replicas.
pub const SCHEMA_LOCK: i64 = 0x6b75_6265_696e_6672; // "kubeinfr"

/// A connection of its own for schema work, without the pool's statement timeout (an index build may
/// take minutes) and never returned to the pool with its changed settings.
pub async fn schema_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET statement_timeout = 0").execute(&mut conn).await?;
    Ok(conn)
}

/// Waits for the schema lock. sqlx's own lock waits in `pg_advisory_lock`, inside a transaction that
/// CREATE INDEX CONCURRENTLY in the holder's migration must wait for: two replicas starting together
/// deadlock. So the lock is polled with `pg_try_advisory_lock`, which holds nothing open while it waits.
async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    while !try_lock(conn, SCHEMA_LOCK).await? {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Runs `work` on a schema connection that holds the schema lock, unless another replica holds it
/// (`None`). Lock waits are bounded at 10 s: never queue for long behind another session's lock, the
/// next pass tries again.
pub async fn with_schema_lock<T>(
    pool: &PgPool,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    let mut conn = schema_connection(pool).await?;
    sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await?;
    if !try_lock(&mut conn, SCHEMA_LOCK).await? {
        return Ok(None);
    }
    let result = work(&mut conn).await;
    let unlocked = unlock(&mut conn).await;
    let done = result?;
    unlocked?;
    conn.close().await?;
    Ok(Some(done))
}

/// Takes the session advisory lock `key` if no other session holds it; never waits.
pub async fn try_lock(conn: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(conn).await
}

pub async fn unlock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(SCHEMA_LOCK).execute(conn).await.map(drop)
}

/// Applies pending migrations, one replica at a time, then rebuilds any index left INVALID by an
/// interrupted CREATE INDEX CONCURRENTLY (which `IF NOT EXISTS` would otherwise skip forever).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut conn = schema_connection(pool).await?;
    lock(&mut conn).await?;
    // run_direct, not run: sqlx's own way round "Acquire is not general enough" inside spawned tasks.
    let result = migrator().run_direct(None, &mut conn, false).await;
    let repaired = match result {
        Ok(()) => rebuild_invalid_indexes(&mut conn).await.map_err(MigrateError::from),
        Err(e) => Err(e),
    };
    let unlocked = unlock(&mut conn).await;
    repaired?;
    unlocked?;
    warn_if_newer(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Indexes of the prediction log that are not valid: an index build that was cancelled or killed.
/// Partitioned (parent) indexes are left out: they are valid once every partition's index is.
const INVALID_INDEXES: &str = "SELECT i.relname::text FROM pg_index x \
     JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
     WHERE NOT x.indisvalid AND i.relkind = 'i' AND t.relnamespace = current_schema()::regnamespace \
     AND (t.relname LIKE 'predictions%' OR t.relname LIKE 'feedback%') ORDER BY 1";

async fn rebuild_invalid_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let invalid: Vec<String> = sqlx::query_scalar(INVALID_INDEXES).fetch_all(&mut *conn).await?;
    for index in invalid {
        let quoted = format!("\"{}\"", index.replace('"', "\"\""));
        // An interrupted REINDEX CONCURRENTLY leaves its half-built copy (_ccnew) or the old index
        // (_ccold) behind; those are dropped, not rebuilt.
        let sql = if index.contains("_ccnew") || index.contains("_ccold") {
            tracing::warn!(%index, "dropping the leftover of an interrupted index rebuild");
            format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
        } else {
            tracing::warn!(%index, "rebuilding an index left invalid by an interrupted build");
            format!("REINDEX INDEX CONCURRENTLY {quoted}")
        };
        // The name is quoted as an identifier; it comes from the catalog.
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

fn latest_known() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

/// Says so when a newer binary has migrated the schema past this one, which keeps logging.
async fn warn_if_newer(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(conn).await?;
    if let Some(applied) = applied.filter(|&v| v > latest_known()) {
        tracing::warn!(
            schema = applied,
            binary = latest_known(),
            "the prediction log's schema is newer than this binary; logging on with the columns it knows"
        );
    }
    Ok(())
}

/// With `--migrate=off`: whether every migration this binary needs has been applied (by
/// `kubeinfer-server migrate`), checked without changing anything.
pub async fn schema_ready(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
    {
        Ok(applied) => applied,
        // 42P01: the table does not exist yet, nothing has been applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(migrator().iter().all(|m| applied.contains(&m.version)))
}

/// `kubeinfer-server migrate`: connects (failing fast if the database is unreachable), migrates, runs
/// the partition maintenance once (partitions ahead, expired ones dropped), moves an unpartitioned log
/// from before 0007 into the partitions and builds the unique key of 0011 on older partitions, all of
/// which `serve --migrate=off` leaves to it.
pub async fn migrate_url(url: &str, retention: Duration) -> Result<(), Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    migrate(&pool).await.map_err(Error::Migration)?;
    let done = super::partitions::maintain(&pool, retention, chrono::Utc::now()).await?;
    let progress = super::backfill::Progress::new();
    if let Some(moved) = super::backfill::run(&pool, retention, chrono::Utc::now(), &progress).await? {
        tracing::info!(moved, "the unpartitioned prediction log was moved into partitions");
    }
    super::unique_key::converge(&pool).await?;
    tracing::info!(
        applied = migrator().iter().count(),
        created = done.created,
        dropped = done.dropped,
        "migrations and partitions up to date"
    );
    pool.close().await;
    Ok(())
}
