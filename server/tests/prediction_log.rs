//! The prediction log's writer and migrations against a real PostgreSQL: every inference lands in the
//! table, an outage never fails an inference and heals by itself, migrations are safe to run from several
//! replicas at once, and index migrations do not block writes.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::db::{args, fresh_database, start_with_log, wait_for_count, wait_for_metric};
use kubeinfer_tests::postgres::{Postgres, TEST_SETTINGS, seed_predictions};
use serde_json::json;
use sqlx::{PgPool, Row};

fn affine(id: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": vec![0; 8]}]}),
    )
    .unwrap()
}

async fn infer(app: &common::TestApp, id: &str, client: Option<&str>) -> u16 {
    let mut request = Request::post("/v2/models/affine/infer");
    if let Some(c) = client {
        request = request.header("x-client-id", c);
    }
    app.send(request.body(Body::from(affine(id))).unwrap()).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inference_is_logged_with_its_timings_outcome_and_client() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    assert_eq!(infer(&app, "ok-1", Some("team-a")).await, 200);
    let bad = json!({"id": "bad-1", "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]});
    assert_eq!(app.post_json("/v2/models/affine/infer", &bad).await.status, 400);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 2).await, 2);

    let ok =
        sqlx::query("SELECT * FROM predictions WHERE request_id = 'ok-1'").fetch_one(&pool).await.unwrap();
    assert_eq!(ok.get::<String, _>("model"), "affine");
    assert_eq!(ok.get::<i64, _>("model_version"), 2);
    assert_eq!(ok.get::<Option<String>, _>("client_id").as_deref(), Some("team-a"));
    assert_eq!(ok.get::<String, _>("outcome"), "success");
    assert_eq!(ok.get::<i32, _>("batch_size"), 2);
    assert!(ok.get::<i64, _>("total_us") >= ok.get::<i64, _>("compute_us"));
    let payload: serde_json::Value = ok.get("payload");
    assert_eq!(payload["bytes"], affine("ok-1").len());

    let bad =
        sqlx::query("SELECT * FROM predictions WHERE request_id = 'bad-1'").fetch_one(&pool).await.unwrap();
    assert_eq!(bad.get::<String, _>("outcome"), "invalid");
    assert_eq!(
        bad.get::<Option<String>, _>("error").as_deref(),
        Some("input 'x' of model 'affine' needs shape [-1, 4] (-1: any size), but the request sent [1, 3]")
    );
    assert_eq!(wait_for_metric(&app, "kubeinfer_prediction_log_rows_written_total", 2.0).await, 2.0);
    assert_eq!(dropped(&app.metrics().await), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_with_a_nul_character_is_logged_without_it_in_full_payload_mode() {
    let mut a = args(&fresh_database());
    a.log_payloads = kubeinfer_server::config::PayloadMode::Full;
    let (app, _log, pool) = start_with_log(&["affine"], a).await;
    assert_eq!(infer(&app, "nul\u{0}id", None).await, 200);
    assert_eq!(infer(&app, "plain", None).await, 200);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 2).await, 2);
    let ids: Vec<(String, bool)> =
        sqlx::query_as("SELECT request_id, payload ? 'sha256' FROM predictions ORDER BY request_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ids, [("nulid".to_string(), true), ("plain".to_string(), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_postgres_refuses_is_dropped_alone_and_the_rest_of_its_batch_is_written() {
    let mut a = args(&fresh_database());
    a.prediction_log_flush_interval = Duration::from_millis(200);
    let (app, log, pool) = start_with_log(&["affine"], a).await;
    let row = |request_id: &str| kubeinfer_server::db::PredictionRow {
        prediction: kubeinfer_server::db::queries::Prediction {
            request_id: Some(request_id.to_string()),
            queue_us: 1,
            compute_us: 2,
            total_us: 3,
            ..kubeinfer_server::db::queries::Prediction::answered("affine", 2, chrono::Utc::now())
        },
        payload: None,
        response: None,
    };
    // Rows that bypassed the request path's cleaning: text with a NUL cannot be stored.
    for id in ["good-1", "bad\u{0}row", "good-2"] {
        log.record(row(id));
    }
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 2).await, 2);
    assert_eq!(wait_for_metric(&app, "kubeinfer_prediction_log_rows_written_total", 2.0).await, 2.0);
    let m = app.metrics().await;
    assert_eq!(common::sample(&m, r#"kubeinfer_prediction_log_dropped_total{reason="refused"}"#), 1.0);
    assert_eq!(dropped(&m), 1.0);
    let rolled: i64 =
        sqlx::query_scalar("SELECT sum(requests)::int8 FROM prediction_rollups WHERE period = 'hour'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rolled, 2, "the stats count the rows written one by one, and not the refused one");
}

type RollupRow = (String, String, chrono::DateTime<chrono::Utc>, i64, i64, i64, i64, i32, Vec<i64>);

async fn rollups(pool: &PgPool) -> Vec<RollupRow> {
    sqlx::query_as(
        "SELECT model, period, start, requests, errors, successes, batch_rows, latency_first, latency \
         FROM prediction_rollups \
         ORDER BY model, period, start",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_rollups_are_what_postgres_recounts_from_the_rows_and_a_retried_row_counts_once() {
    use kubeinfer_server::db::{PredictionRow, queries::Prediction, rollups::BOUNDS};
    let mut a = args(&fresh_database());
    a.prediction_log_flush_interval = Duration::from_millis(100);
    let (app, log, pool) = start_with_log(&["affine"], a).await;
    let now = chrono::Utc::now();
    // Two models over ten minutes; latencies on every bucket bound, a microsecond below it, and far
    // past the last (two hours); one row in ten a timeout.
    let rows: Vec<PredictionRow> = (0..600i64)
        .map(|i| {
            let bound = BOUNDS[(i as usize / 3) % BOUNDS.len()];
            let total_us = [bound, bound - 1, 7_200_000_000][i as usize % 3];
            let prediction = Prediction {
                total_us,
                batch_size: (i % 8) as i32,
                outcome: if i % 10 == 0 { "timeout" } else { "success" }.into(),
                ..Prediction::answered(
                    ["affine", "digits"][i as usize % 2],
                    1,
                    now - chrono::Duration::seconds(i),
                )
            };
            PredictionRow { prediction, payload: None, response: None }
        })
        .collect();
    // The first row already reached the table (a batch whose answer was lost, then retried).
    let p = rows[0].prediction.clone();
    sqlx::query(
        "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome) \
         VALUES ($1, $2, 1, $3, 0, 0, $4, $5, $6)",
    )
    .bind(p.id)
    .bind(&p.model)
    .bind(p.created_at)
    .bind(p.total_us)
    .bind(p.batch_size)
    .bind(&p.outcome)
    .execute(&pool)
    .await
    .unwrap();
    for row in rows {
        log.record(row);
    }
    assert_eq!(wait_for_metric(&app, "kubeinfer_prediction_log_rows_written_total", 600.0).await, 600.0);
    let written = rollups(&pool).await;
    let hours: i64 = written.iter().filter(|r| r.1 == "hour").map(|r| r.3).sum();
    assert_eq!(hours, 599, "the row that was already there is not counted again");

    sqlx::query("DELETE FROM predictions WHERE id = $1").bind(p.id).execute(&pool).await.unwrap();
    sqlx::query("SELECT prediction_rollups_rebuild('-infinity')").execute(&pool).await.unwrap();
    assert_eq!(written, rollups(&pool).await, "the writer and Postgres disagree on a rollup");
}

/// Rows dropped for any reason.
fn dropped(metrics: &str) -> f64 {
    ["buffer_full", "refused", "shutdown"]
        .iter()
        .map(|r| {
            common::sample(metrics, &format!("kubeinfer_prediction_log_dropped_total{{reason=\"{r}\"}}"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_inference_still_answers_drops_are_counted_and_logging_resumes_when_it_returns() {
    // A cluster of its own, so stopping it does not disturb the other tests.
    let mut pg = Postgres::start(TEST_SETTINGS);
    let url = pg.create_database("outage");
    let mut a = args(&url);
    // What can wait while the database is down: 2000 bytes, five rows of this test (368 bytes each:
    // 256 fixed, the model, the request id, the outcome and a 90-byte digest), queued or in a batch.
    a.prediction_log_buffer_bytes = 2000;
    a.prediction_log_batch = 2;
    let (app, _log, pool) = start_with_log(&["affine"], a).await;
    assert_eq!(infer(&app, "before", None).await, 200);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 1).await, 1);
    pool.close().await;

    pg.stop();
    for i in 0..40 {
        assert_eq!(
            infer(&app, &format!("during-{i}"), None).await,
            200,
            "inference failed while the database was down"
        );
    }
    let m = app.metrics().await;
    let full = common::sample(&m, r#"kubeinfer_prediction_log_dropped_total{reason="buffer_full"}"#);
    assert!(full >= 35.0, "only {full} of 40 rows counted as dropped with room for 5");
    assert!(common::sample(&m, "kubeinfer_prediction_log_buffer_bytes") <= 2000.0);

    pg.resume();
    let pool = PgPool::connect(&url).await.unwrap();
    // The rows held through the outage drain first; rows sent while the buffer is still full would be
    // dropped, so wait until every one of the 41 is either written or counted as dropped.
    let mut accounted = 0.0;
    for _ in 0..200 {
        let m = app.metrics().await;
        accounted = common::sample(&m, "kubeinfer_prediction_log_rows_written_total") + dropped(&m);
        if accounted == 41.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accounted, 41.0, "rows written or dropped once the database was back");
    for i in 0..3 {
        assert_eq!(infer(&app, &format!("after-{i}"), None).await, 200);
    }
    let after =
        wait_for_count(&pool, "SELECT count(*) FROM predictions WHERE request_id LIKE 'after-%'", 3).await;
    assert_eq!(after, 3, "rows logged after the database came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_at_once_take_turns_under_the_lock() {
    let url = fresh_database();
    let pools: Vec<PgPool> = futures::future::join_all((0..3).map(|_| PgPool::connect(&url)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let results = futures::future::join_all(pools.iter().map(kubeinfer_server::db::migrate)).await;
    for r in results {
        r.expect("every replica's migration succeeds");
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pools[0])
        .await
        .unwrap();
    assert_eq!(applied, kubeinfer_server::db::migrator().iter().count() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_subcommand_applies_migrations_and_exits_zero() {
    let url = fresh_database();
    let out = std::process::Command::new(common::server_binary())
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pool = PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('predictions', 'feedback')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 2);
    let today = format!("predictions_{}", chrono::Utc::now().format("%Y%m%d"));
    let partition: Option<String> =
        sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&today).fetch_one(&pool).await.unwrap();
    assert_eq!(partition.as_deref(), Some(today.as_str()), "migrate makes today's partition");
    // lz4 ('l'), set on the parent by 0008 and copied to each day's partition.
    let compression: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, attcompression::text FROM pg_attribute \
         WHERE attrelid = $1::regclass AND attname IN ('payload', 'response') ORDER BY 1",
    )
    .bind(&today)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(compression, [("payload".into(), "l".into()), ("response".into(), "l".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_build_interrupted_midway_is_rebuilt_at_the_next_start_without_blocking_inserts() {
    let url = fresh_database();
    let pool = PgPool::connect(&url).await.unwrap();
    kubeinfer_server::db::setup(&pool).await.unwrap();
    seed_predictions(&pool, 300_000, 0.01).await.unwrap();
    let partition = format!("predictions_{}", chrono::Utc::now().format("%Y%m%d"));
    // A build cancelled part way (here by its statement timeout) leaves the index behind, INVALID.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET statement_timeout = '20ms'").execute(&mut *conn).await.unwrap();
    let build = format!("CREATE INDEX CONCURRENTLY probe_idx ON {partition} (model, total_us, queue_us)");
    assert!(sqlx::query(sqlx::AssertSqlSafe(build)).execute(&mut *conn).await.is_err());
    drop(conn);
    let valid = "SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = 'probe_idx'";
    assert!(!sqlx::query_scalar::<_, bool>(valid).fetch_one(&pool).await.unwrap());

    let migrating = pool.clone();
    let started = Instant::now();
    let next_start = tokio::spawn(async move { kubeinfer_server::db::migrate(&migrating).await });
    let mut latencies = Vec::new();
    while !next_start.is_finished() && started.elapsed() < Duration::from_secs(60) {
        let t = Instant::now();
        sqlx::query(
            "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome) \
             VALUES (gen_random_uuid(), 'live', 1, now(), 1, 1, 1, 1, 'success')",
        )
        .execute(&pool)
        .await
        .unwrap();
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    next_start.await.unwrap().expect("the next start migrates");
    let took = started.elapsed();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(sqlx::query_scalar::<_, bool>(valid).fetch_one(&pool).await.unwrap(), "probe_idx is valid again");
    assert!(latencies.len() >= 3, "only {} inserts completed during a {took:?} rebuild", latencies.len());
    assert!(
        worst < took / 2 || worst < Duration::from_millis(100),
        "an insert waited {worst:?} during a {took:?} rebuild"
    );
}
