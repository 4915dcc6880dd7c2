//! The /api routes over a real PostgreSQL: keyset pages that list every row exactly once across tied
//! timestamps, feedback for a page in one extra query (counted by pg_stat_statements), cached and
//! single-flight aggregates, and plans that use the intended indexes on a large table.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::db::{args, fresh_database, start_with_log};
use kubeinfer_server::db::queries::{self, Cursor, ListFilter, OutcomeFilter, list_query};
use kubeinfer_server::db::stats;
use kubeinfer_tests::postgres::seed_predictions;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// `n` predictions of model `m` from `days_ago` days back, ten per timestamp (ties on created_at), newest
/// first by (created_at, id).
async fn seed_ties_at(pool: &PgPool, model: &str, n: i64, days_ago: i32) -> Vec<Uuid> {
    common::db::partitions_back(pool, days_ago as u64 + 1).await;
    sqlx::query_scalar(
        "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome) \
         SELECT gen_random_uuid(), $1, 1, date_trunc('second', now() - make_interval(days => $3, hours => 1)) \
                + make_interval(secs => g / 10), 1, 2, 3, 1, 'success' \
         FROM generate_series(0, $2 - 1) AS g RETURNING id",
    )
    .bind(model)
    .bind(n)
    .bind(days_ago)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn seed_ties(pool: &PgPool, model: &str, n: i64) -> Vec<Uuid> {
    seed_ties_at(pool, model, n, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_rows_are_weeks_old_is_listed_past_the_recent_windows() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    seed_ties(&pool, "affine", 3).await;
    let old: HashSet<Uuid> = seed_ties_at(&pool, "quiet", 25, 20).await.into_iter().collect();
    let page = app.get("/api/predictions?model=quiet&limit=10").await.json();
    let ids: Vec<Uuid> = page["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    assert!(ids.iter().all(|id| old.contains(id)));
    assert!(page["next_cursor"].is_string());
    let everything = app.get("/api/predictions?limit=100").await.json();
    assert_eq!(everything["predictions"].as_array().unwrap().len(), 28, "3 recent rows and 25 old ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_across_tied_timestamps_list_every_row_exactly_once_newest_first() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    let seeded: HashSet<Uuid> = seed_ties(&pool, "affine", 137).await.into_iter().collect();
    seed_ties(&pool, "other", 20).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let uri = match &cursor {
            Some(c) => format!("/api/predictions?model=affine&limit=10&cursor={c}"),
            None => "/api/predictions?model=affine&limit=10".to_string(),
        };
        let page = app.get(&uri).await.json();
        for p in page["predictions"].as_array().unwrap() {
            seen.push((
                p["created_at"].as_str().unwrap().to_string(),
                p["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 137);
    assert_eq!(seen.iter().map(|(_, id)| *id).collect::<HashSet<_>>(), seeded);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "pages are not in (created_at, id) descending order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_fifty_with_feedback_runs_exactly_two_queries() {
    let url = fresh_database();
    let (app, _log, pool) = start_with_log(&["affine"], args(&url)).await;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.unwrap();
    let ids = seed_ties(&pool, "affine", 60).await;
    for id in &ids[..30] {
        sqlx::query(
            "INSERT INTO feedback (prediction_id, prediction_created_at, label) \
             SELECT id, created_at, l FROM predictions, unnest(ARRAY['cat', 'dog']) AS l WHERE id = $1",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let uri = "/api/predictions?model=affine&limit=50&include=feedback";
    // Once to warm the pool's connections and statement caches, then counted.
    assert_eq!(app.get(uri).await.status, 200);
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.unwrap();
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await.unwrap();
    let page = app.get(uri).await.json();
    let calls: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = $1 AND s.query NOT ILIKE '%pg_stat_statements%'",
    )
    .bind(&database)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(calls, 2, "the page of 50 with feedback should take 2 queries");
    let predictions = page["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 50);
    let with_feedback = predictions.iter().filter(|p| p["feedback"].as_array().unwrap().len() == 2).count();
    let without = predictions.iter().filter(|p| p["feedback"].as_array().unwrap().is_empty()).count();
    assert_eq!(with_feedback + without, 50);
    assert_eq!(
        with_feedback,
        predictions.iter().filter(|p| ids[..30].iter().any(|i| p["id"] == i.to_string())).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_added_to_a_prediction_and_shown_with_it() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    let id = seed_ties(&pool, "affine", 1).await[0];
    let uri = format!("/api/predictions/{id}/feedback");
    let created = app.post_json(&uri, &json!({"label": "cat", "score": 0.9, "comment": "right"})).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["label"], "cat");
    let detail = app.get(&format!("/api/predictions/{id}")).await.json();
    assert_eq!(detail["id"], id.to_string());
    assert_eq!(detail["feedback"][0]["score"], 0.9);
    assert_eq!(detail["feedback"][0]["comment"], "right");

    let unknown = Uuid::now_v7();
    let missing =
        app.post_json(&format!("/api/predictions/{unknown}/feedback"), &json!({"label": "x"})).await;
    assert_eq!(
        (missing.status.as_u16(), missing.error()),
        (404, format!("prediction {unknown} does not exist"))
    );
    assert_eq!(app.get(&format!("/api/predictions/{unknown}")).await.status, 404);
    let empty = app.post_json(&uri, &json!({})).await;
    assert_eq!(
        (empty.status.as_u16(), empty.error()),
        (400, "feedback needs at least one of label, score or comment".into())
    );
    let typo = app.post_json(&uri, &json!({"lable": "cat"})).await;
    assert_eq!(typo.status, 400);
    assert!(typo.error().contains("unknown field `lable`"), "{}", typo.error());
    let garbage = app.post_raw(&uri, b"{".to_vec(), None).await;
    assert_eq!(garbage.status, 400);
    let bad_id = app.get("/api/predictions/not-a-uuid").await;
    assert_eq!(
        (bad_id.status.as_u16(), bad_id.error()),
        (400, "prediction id \"not-a-uuid\" is not a UUID".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_parameters_are_400_with_a_reason() {
    let (app, _log, _pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    for (query, message) in [
        ("limit=0", "limit must be a whole number from 1 to 500, got \"0\""),
        ("limit=501", "limit must be a whole number from 1 to 500, got \"501\""),
        ("cursor=zzz", "cursor is not valid: pass the next_cursor of a previous page unchanged"),
        ("since=yesterday", "since must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got \"yesterday\""),
        ("include=payload", "include may only be \"feedback\", got \"payload\""),
    ] {
        let reply = app.get(&format!("/api/predictions?{query}")).await;
        assert_eq!((reply.status.as_u16(), reply.error()), (400, message.to_string()), "{query}");
    }
    assert!(app.get("/api/predictions?colour=red").await.error().starts_with("bad query string"));
}

/// 100 successes with total_us 1000, 2000, ..., 100000 and batch sizes 1..=4, and 25 failures.
async fn seed_stats(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome, error) \
         SELECT gen_random_uuid(), 'affine', 2, now() - make_interval(secs => g), 0, 0, g * 1000, 1 + g % 4, 'success', NULL \
         FROM generate_series(1, 100) AS g \
         UNION ALL \
         SELECT gen_random_uuid(), 'affine', 2, now() - make_interval(secs => g), 0, 0, 1, 0, 'timeout', 'too slow' \
         FROM generate_series(1, 25) AS g",
    )
    .execute(pool)
    .await
    .unwrap();
    // Rows inserted here bypass the writer, which keeps the rollups the stats read.
    sqlx::query("SELECT prediction_rollups_rebuild(now() - interval '1 day')").execute(pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_stats_come_from_the_rollups_cached_within_the_ttl_and_single_flight_on_concurrent_misses() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    seed_stats(&pool).await;
    let first = app.get("/api/models/affine/stats?window=1h").await.json();
    assert_eq!(first["count"], 125);
    assert_eq!(first["errors"], 25);
    assert_eq!(first["error_rate"], 0.2);
    // 1 to 100 ms: the exact median is 50.5 ms, the histogram's (within 9 %) 50.536 ms.
    assert_eq!(first["latency_ms"]["p50"], 50.536);
    assert_eq!(first["latency_ms"]["p99"], 100.022375);
    assert_eq!(first["mean_batch_size"], 2.5);
    assert_eq!(first["cached"], false);
    let second = app.get("/api/models/affine/stats?window=1h").await.json();
    assert_eq!(second["cached"], true);
    let queries =
        |m: &str| common::sample(m, r#"kubeinfer_db_query_duration_seconds_count{query="model_stats"}"#);
    assert_eq!(queries(&app.metrics().await), 1.0, "two calls within the TTL ran the query twice");

    let app = Arc::new(app);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.get("/api/models/affine/stats?window=24h").await.json() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap()["count"], 125);
    }
    assert_eq!(queries(&app.metrics().await), 2.0, "8 concurrent misses should run one query");
    assert_eq!(app.get("/api/models/affine/stats?window=1y").await.status, 400);
    assert_eq!(app.get("/api/models/nope/stats").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_every_served_model_with_its_stats_from_one_query() {
    let (app, _log, pool) = start_with_log(&["affine", "digits"], args(&fresh_database())).await;
    seed_stats(&pool).await;
    let body = app.get("/api/models").await.json();
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.iter().map(|m| m["name"].as_str().unwrap()).collect::<Vec<_>>(), ["affine", "digits"]);
    assert_eq!(models[0]["versions"], json!(["1", "2"]));
    assert_eq!(models[0]["stats_1h"]["count"], 125);
    assert_eq!(models[1]["stats_1h"]["count"], 0);
    let m = app.metrics().await;
    assert_eq!(
        common::sample(&m, r#"kubeinfer_db_query_duration_seconds_count{query="all_models_stats"}"#),
        1.0
    );
}

#[tokio::test]
async fn without_a_database_the_api_says_the_log_is_not_configured() {
    let app = common::start(&["affine"], common::defaults());
    let reply = app.get("/api/predictions").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.error(),
        "the prediction log is not configured: start the server with DATABASE_URL to use /api"
    );
    assert_eq!(app.get("/api/models").await.status, 503);
}

/// Every plan node of an EXPLAIN (FORMAT JSON) output.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

async fn explain(pool: &PgPool, sql: &str) -> Vec<Value> {
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {sql}")))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("cannot explain {sql}: {e}"));
    let mut out = Vec::new();
    nodes(&plan[0]["Plan"], &mut out);
    out
}

/// The server's own list query for `filter`, with its parameters written in as literals.
fn list_sql(filter: &ListFilter, literals: &[&str]) -> String {
    literal_sql(list_query(filter), literals)
}

/// The SQL of `query`, with its parameters written in as literals.
fn literal_sql(query: sqlx::QueryBuilder<sqlx::Postgres>, literals: &[&str]) -> String {
    let mut sql = query.sql().as_str().to_string();
    for (i, literal) in literals.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", i + 1), literal);
    }
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_large_table_every_api_query_uses_its_index_and_none_scans_predictions() {
    let url = fresh_database();
    let pool = PgPool::connect(&url).await.unwrap();
    kubeinfer_server::db::setup(&pool).await.unwrap();
    common::db::partitions_back(&pool, 3).await;
    seed_predictions(&pool, 200_000, 1.0).await.unwrap();
    sqlx::query("SELECT prediction_rollups_rebuild('-infinity')").execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO feedback (prediction_id, prediction_created_at, label) \
         SELECT id, created_at, 'x' FROM predictions TABLESAMPLE SYSTEM (10)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let (id, at): (Uuid, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT id, created_at FROM predictions LIMIT 1").fetch_one(&pool).await.unwrap();
    let (quoted_id, limit) = (format!("'{id}'::uuid"), "51");
    let quoted_at = |t: chrono::DateTime<chrono::Utc>| format!("'{}'::timestamptz", t.to_rfc3339());
    let millisecond = (at, at + chrono::Duration::milliseconds(1));
    let page = |f: ListFilter| ListFilter { limit: 50, ..f };
    let cursor = Some(Cursor { created_at: chrono::Utc::now() - chrono::Duration::hours(2), id });
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "list by model",
            list_sql(&page(ListFilter { model: Some("m3".into()), ..Default::default() }), &["'m3'", limit]),
            "predictions_model_created_idx",
        ),
        (
            "next page by model",
            list_sql(
                &page(ListFilter { model: Some("m3".into()), after: cursor, ..Default::default() }),
                &["'m3'", "now() - interval '2 hours'", "now() - interval '2 hours'", &quoted_id, limit],
            ),
            "predictions_model_created_idx",
        ),
        (
            "list by client",
            list_sql(&page(ListFilter { client: Some("c7".into()), ..Default::default() }), &["'c7'", limit]),
            "predictions_client_created_idx",
        ),
        (
            "list failures",
            list_sql(
                &page(ListFilter { outcome: Some(OutcomeFilter::Failure), ..Default::default() }),
                &[limit],
            ),
            "predictions_failures_idx",
        ),
        ("list everything", list_sql(&page(ListFilter::default()), &[limit]), "predictions_created_id_key"),
        (
            "where one prediction is",
            literal_sql(
                queries::locate_query(id, Some(millisecond)),
                &[&quoted_id, &quoted_at(millisecond.0), &quoted_at(millisecond.1)],
            ),
            "predictions_created_id_key",
        ),
        (
            "one prediction",
            queries::GET.replace("$1", &quoted_id).replace("$2", &quoted_at(at)),
            "predictions_created_id_key",
        ),
        (
            "feedback of a page",
            queries::FEEDBACK_FOR
                .replace("$1", &format!("ARRAY[{quoted_id}]"))
                .replace("$2", "now() - interval '1 hour'")
                .replace("$3", "now()"),
            "feedback_prediction_idx",
        ),
        (
            "model stats",
            stats::MODEL_STATS
                .replace("$1", "'m3'")
                .replace("$2", "'hour'")
                .replace("$3", "now() - interval '7 days'"),
            "prediction_rollups_pkey",
        ),
        (
            "all models' stats",
            stats::ALL_MODELS_STATS.replace("$1", "'minute'").replace("$2", "now() - interval '1 hour'"),
            "prediction_rollups_period_start_idx",
        ),
    ];
    // Plans name each partition's own index; the catalog says which parent index it is a copy of.
    let parents = common::db::parent_indexes(&pool).await;
    for (what, sql, index) in cases {
        let plan = explain(&pool, &sql).await;
        let seq: Vec<_> = plan
            .iter()
            // An empty partition (the days ahead) is scanned for nothing: its plan costs 0.
            .filter(|n| {
                n["Node Type"] == "Seq Scan"
                    && n["Relation Name"].as_str().is_some_and(|r| r.starts_with("prediction"))
                    && n["Total Cost"].as_f64() != Some(0.0)
            })
            .collect();
        assert!(seq.is_empty(), "{what} scans predictions sequentially: {plan:?}");
        // A partition's index counts as its parent's; the rollups are not partitioned.
        let uses = |n: &Value| {
            n["Index Name"].as_str().is_some_and(|i| i == index || parents.get(i).is_some_and(|p| p == index))
        };
        assert!(plan.iter().any(uses), "{what} does not use {index}: {plan:?}");
    }
}
