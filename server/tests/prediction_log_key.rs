//! The prediction log's unique key (created_at, id) in place of the primary key and the created_at
//! index (migration 0011): a new log has only the new key, and a log from before it gets it built on
//! every partition while inserts go on, then loses the old keys.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::db::{fresh_database, migrate_before};
use kubeinfer_server::db::queries::{self, Prediction};
use kubeinfer_server::db::unique_key::{self, Converged};
use kubeinfer_tests::postgres::seed_predictions;
use sqlx::PgPool;

/// A hundred rows written now, as the writer would.
const LIVE_ROWS: &str = "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, \
     total_us, batch_size, outcome) \
     SELECT gen_random_uuid(), 'live', 1, now(), 1, 1, 1, 1, 'success' FROM generate_series(1, 100)";

/// Whether each of the key, the old primary key and the old index exists, and whether the key is valid.
async fn keys(pool: &PgPool) -> (bool, bool, bool) {
    sqlx::query_as(
        "SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('predictions_created_id_key')), false), \
                to_regclass('predictions_pkey') IS NOT NULL, to_regclass('predictions_created_idx') IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_log_has_only_the_unique_key() {
    let pool = PgPool::connect(&fresh_database()).await.unwrap();
    kubeinfer_server::db::setup(&pool).await.unwrap();
    assert_eq!(keys(&pool).await, (true, false, false));
    assert_eq!(unique_key::converge(&pool).await.unwrap(), Converged::default(), "nothing is left to do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_log_gets_the_key_on_every_partition_while_inserts_go_on_then_loses_the_old_keys() {
    let pool = PgPool::connect(&fresh_database()).await.unwrap();
    migrate_before(&pool, "0011").await;
    common::db::partitions_back(&pool, 2).await;
    // One row a second for a little over a day: three day partitions hold them.
    seed_predictions(&pool, 100_000, 1.0).await.unwrap();
    kubeinfer_server::db::migrate(&pool).await.unwrap();
    assert_eq!(keys(&pool).await, (false, true, true), "the key waits for its partitions' copies");

    // A build cut short (here by its statement timeout, as a restart would) leaves its copy INVALID. It
    // is made to wait: a build waits for the transactions writing to its table to end.
    let mut writing = pool.begin().await.unwrap();
    sqlx::query(LIVE_ROWS).execute(&mut *writing).await.unwrap();
    let partition = format!("predictions_{}", Utc::now().format("%Y%m%d"));
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET statement_timeout = '300ms'").execute(&mut *conn).await.unwrap();
    let build = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {partition}_created_id_key ON {partition} (created_at DESC, id DESC)"
    );
    assert!(sqlx::query(sqlx::AssertSqlSafe(build)).execute(&mut *conn).await.is_err());
    drop(conn);
    writing.rollback().await.unwrap();

    let converging = pool.clone();
    let converge = tokio::spawn(async move { unique_key::converge(&converging).await });
    let (started, mut worst, mut inserts) = (Instant::now(), Duration::ZERO, 0);
    while !converge.is_finished() && started.elapsed() < Duration::from_secs(120) {
        let t = Instant::now();
        sqlx::query(LIVE_ROWS).execute(&pool).await.unwrap();
        worst = worst.max(t.elapsed());
        inserts += 1;
    }
    let done = converge.await.unwrap().unwrap();
    assert_eq!(done.attached, 3, "one copy per day partition, the interrupted one built again");
    // The old keys need the table to themselves for a moment, and give way to the inserts when they
    // cannot have it within 100 ms; the next pass drops them then.
    let dropped = done.old_dropped || unique_key::converge(&pool).await.unwrap().old_dropped;
    assert!(dropped, "the old keys are dropped once the key is valid");
    assert_eq!(keys(&pool).await, (true, false, false));
    assert_eq!(count(&pool).await, 100_000 + inserts * 100, "no row lost or doubled");
    assert!(worst < Duration::from_secs(1), "an insert stalled {worst:?} while the key was built");
    assert_eq!(unique_key::converge(&pool).await.unwrap(), Converged::default());

    // The key is what a retried write meets, and what finds a row by its id.
    let at = Utc::now();
    let row = Prediction { id: queries::id_at(at), ..Prediction::answered("digits", 1, at) };
    let insert = "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, \
                  batch_size, outcome) VALUES ($1, $2, 1, $3, 0, 0, 0, 1, 'success') ON CONFLICT DO NOTHING";
    for expected in [1, 0] {
        let written = sqlx::query(insert)
            .bind(row.id)
            .bind(&row.model)
            .bind(row.created_at)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(written, expected);
    }
    let found = queries::get(&pool, row.id).await.unwrap().map(|p| (p.prediction.id, p.prediction.model));
    assert_eq!(found, Some((row.id, "digits".to_string())));
}
