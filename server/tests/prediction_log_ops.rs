//! The prediction log left running in production: a hung Postgres never reaches inference, the query
//! API cannot starve the writer, retention drops whole days while the writer runs, an older log is
//! moved into partitions, and binaries older or newer than the schema keep logging.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::{Days, Utc};
use common::db::{args, fresh_database, start_with_log, wait_for_count};
use kubeinfer_server::config::MigrateMode;
use kubeinfer_server::db::{backfill, partitions};
use kubeinfer_tests::postgres::{Postgres, TEST_SETTINGS, seed_predictions};
use serde_json::json;
use sqlx::PgPool;

async fn infer(app: &common::TestApp, id: &str) -> u16 {
    let body = json!({"id": id, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]});
    let request = Request::post("/v2/models/affine/infer").body(Body::from(body.to_string())).unwrap();
    app.send(request).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_postgres_leaves_inference_alone_the_api_answers_503_and_logging_resumes_after_it() {
    let pg = Postgres::start(TEST_SETTINGS);
    let url = pg.create_database("hung");
    let mut a = args(&url);
    a.db_statement_timeout = Duration::from_secs(1);
    a.db_acquire_timeout = Duration::from_secs(1);
    let (app, _log, pool) = start_with_log(&["affine"], a).await;
    assert_eq!(infer(&app, "before").await, 200);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 1).await, 1);
    assert_eq!(app.get("/api/predictions").await.status, 200);

    pg.freeze();
    let started = Instant::now();
    for i in 0..5 {
        assert_eq!(infer(&app, &format!("frozen-{i}")).await, 200, "inference while Postgres hangs");
    }
    let inference = started.elapsed();
    let started = Instant::now();
    let reply = app.get("/api/predictions").await;
    let api = started.elapsed();
    pg.thaw();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error(), "the prediction log's database is unavailable; retry later");
    assert!(api < Duration::from_secs(5), "/api took {api:?} to give up on a hung database");
    assert!(inference < Duration::from_secs(2), "5 inferences took {inference:?} while Postgres hung");

    let frozen = "SELECT count(*) FROM predictions WHERE request_id LIKE 'frozen-%'";
    assert_eq!(wait_for_count(&pool, frozen, 5).await, 5, "the rows held through the hang are written");
    let mut status = 0;
    for _ in 0..50 {
        status = app.get("/api/predictions").await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "/api answers again once Postgres does");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queries_holding_every_api_connection_do_not_hold_up_the_writer() {
    let mut a = args(&fresh_database());
    a.db_statement_timeout = Duration::from_secs(20);
    let (app, log, pool) = start_with_log(&["affine"], a).await;
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let api = log.pool().clone();
            tokio::spawn(async move { sqlx::query("SELECT pg_sleep(8)").execute(&api).await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get("/api/predictions").await.status, 503, "the API pool is exhausted");
    for i in 0..20 {
        assert_eq!(infer(&app, &format!("busy-{i}")).await, 200);
    }
    let logged =
        wait_for_count(&pool, "SELECT count(*) FROM predictions WHERE request_id LIKE 'busy-%'", 20).await;
    let still_sleeping = sleepers.iter().filter(|s| !s.is_finished()).count();
    assert_eq!(logged, 20);
    assert_eq!(still_sleeping, 4, "the rows were written while every API connection was busy");
    for s in sleepers {
        s.await.unwrap().unwrap();
    }
}

/// `rows` predictions on `day` (UTC), each with one feedback entry, straight into the partitions.
async fn seed_day(pool: &PgPool, day: chrono::NaiveDate, rows: i64) {
    sqlx::query(
        "WITH p AS (INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome) \
         SELECT gen_random_uuid(), 'old', 1, $1::timestamptz + make_interval(secs => g * 86399.0 / $2), 1, 1, 1, 1, 'success' \
         FROM generate_series(1, $2) AS g RETURNING id, created_at) \
         INSERT INTO feedback (prediction_id, prediction_created_at, label) SELECT id, created_at, 'x' FROM p",
    )
    .bind(day.and_hms_opt(0, 0, 0).unwrap().and_utc())
    .bind(rows)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_expired_days_with_their_feedback_while_inserts_go_on() {
    let url = fresh_database();
    let pool = PgPool::connect(&url).await.unwrap();
    kubeinfer_server::db::setup(&pool).await.unwrap();
    let today = Utc::now().date_naive();
    let old: Vec<_> = (31..34).map(|n| today.checked_sub_days(Days::new(n)).unwrap()).collect();
    partitions::ensure_days(&pool, &old).await.unwrap();
    for &day in &old {
        seed_day(&pool, day, 50_000).await;
    }
    // A reader in the middle of a long query over the log: a plain DROP of a partition would wait for
    // it while holding up every insert behind its lock.
    let reader = pool.clone();
    let reading = tokio::spawn(async move {
        sqlx::query("SELECT count(*), pg_sleep(2) FROM predictions").execute(&reader).await.map(drop)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let maintaining = pool.clone();
    let retention = Duration::from_secs(30 * 86400);
    let maintenance =
        tokio::spawn(async move { partitions::maintain(&maintaining, retention, Utc::now()).await });
    let mut worst = Duration::ZERO;
    let mut inserts = 0;
    while !maintenance.is_finished() {
        let t = Instant::now();
        sqlx::query(
            "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome) \
             SELECT gen_random_uuid(), 'live', 1, now(), 1, 1, 1, 1, 'success' FROM generate_series(1, 100)",
        )
        .execute(&pool)
        .await
        .unwrap();
        worst = worst.max(t.elapsed());
        inserts += 1;
    }
    let done = maintenance.await.unwrap().unwrap();
    reading.await.unwrap().unwrap();
    assert_eq!(done.dropped, 6, "three days of predictions and three of feedback");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions WHERE model = 'old'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let feedback: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback").fetch_one(&pool).await.unwrap();
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions WHERE model = 'live'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((left, feedback, live), (0, 0, inserts * 100));
    assert!(worst < Duration::from_secs(1), "an insert stalled {worst:?} while expired days were dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpartitioned_log_of_a_million_rows_is_moved_keeping_the_retained_window_and_its_feedback() {
    let url = fresh_database();
    let pool = PgPool::connect(&url).await.unwrap();
    // The schema as the release before partitions left it: migrations 0001 to 0006.
    common::db::migrate_before(&pool, "0007").await;
    // 1 M rows, one every 3.5 s: 40 days, of which 30 are kept.
    seed_predictions(&pool, 1_000_000, 3.5).await.unwrap();
    sqlx::query("INSERT INTO feedback (prediction_id, label) SELECT id, 'x' FROM predictions WHERE client_id IS NOT NULL")
        .execute(&pool)
        .await
        .unwrap();
    let now = Utc::now();
    let cutoff = now - chrono::Duration::days(30);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions WHERE created_at >= $1")
        .bind(cutoff)
        .fetch_one(&pool)
        .await
        .unwrap();
    let kept_feedback: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM feedback f JOIN predictions p ON p.id = f.prediction_id WHERE p.created_at >= $1",
    )
    .bind(cutoff)
    .fetch_one(&pool)
    .await
    .unwrap();
    let sample: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM predictions ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();

    kubeinfer_server::db::setup(&pool).await.unwrap();
    let progress = backfill::Progress::new();
    let moved = backfill::run(&pool, Duration::from_secs(30 * 86400), now, &progress).await.unwrap();
    assert_eq!(moved, Some(kept));
    assert_eq!((progress.moved.get(), progress.remaining.get()), (kept as u64, 0));
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM predictions").await, kept);
    assert_eq!(count("SELECT count(*) FROM feedback").await, kept_feedback);
    assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname LIKE '%_unpartitioned'").await, 0);
    assert_eq!(
        count("SELECT sum(requests)::int8 FROM prediction_rollups WHERE period = 'hour'").await,
        kept,
        "the stats count every moved row"
    );
    let found = kubeinfer_server::db::queries::get(&pool, sample).await.unwrap();
    assert_eq!(found.map(|p| p.prediction.id), Some(sample), "a moved row is found by its id");
    assert_eq!(
        backfill::run(&pool, Duration::ZERO, now, &progress).await.unwrap(),
        None,
        "nothing is left to move"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_older_than_the_schema_keeps_logging() {
    let url = fresh_database();
    let pool = PgPool::connect(&url).await.unwrap();
    kubeinfer_server::db::setup(&pool).await.unwrap();
    // What a newer release would have done: one more migration, one more column.
    sqlx::query("ALTER TABLE predictions ADD COLUMN from_the_future TEXT").execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (app, _log, pool) = start_with_log(&["affine"], args(&url)).await;
    assert_eq!(infer(&app, "older").await, 200);
    assert_eq!(
        wait_for_count(&pool, "SELECT count(*) FROM predictions WHERE request_id = 'older'", 1).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_migrations_off_a_server_with_a_dml_only_role_waits_for_the_schema_and_then_logs() {
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    common::db::cluster().psql(
        &database,
        "DO $$ BEGIN CREATE ROLE kubeinfer_dml LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let dml_url = url.replace("postgres://postgres@", "postgres://kubeinfer_dml@");
    let mut a = args(&dml_url);
    a.migrate = MigrateMode::Off;
    let app = common::start_full(&["affine"], common::defaults(), 32 << 20, Some(&a));
    assert_eq!(infer(&app, "early").await, 200, "inference does not wait for the schema");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pool = PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname = 'predictions'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 0, "the server changed nothing with --migrate=off");

    // The Job: migrations with the owner's role, then the grants the README gives the pods' role.
    let out = std::process::Command::new(common::server_binary())
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sqlx::raw_sql(
        "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO kubeinfer_dml; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kubeinfer_dml",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        wait_for_count(&pool, "SELECT count(*) FROM predictions WHERE request_id = 'early'", 1).await,
        1
    );
    let page = app.get("/api/predictions").await.json();
    let id = page["predictions"][0]["id"].as_str().unwrap().to_string();
    let feedback = app.post_json(&format!("/api/predictions/{id}/feedback"), &json!({"label": "3"})).await;
    assert_eq!(feedback.status, 201, "the DML role adds feedback");
    let stats = app.get("/api/models/affine/stats?window=5m").await.json();
    assert_eq!(stats["count"], 1, "the DML role adds to the rollups and reads them: {stats}");
}
