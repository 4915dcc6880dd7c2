//! The prediction log's benchmark on a throwaway PostgreSQL with durable settings (fsync on): the writer's
//! sustained rows/s, then the list and stats queries' latency on a million-row table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args as ClapArgs;
use kubeinfer_server::config::{DatabaseArgs, MigrateMode, PayloadMode};
use kubeinfer_server::db::queries::Prediction;
use kubeinfer_server::db::queries::{self, Cursor, ListFilter};
use kubeinfer_server::db::rollups::Period;
use kubeinfer_server::db::stats;
use kubeinfer_server::db::{PredictionLog, PredictionRow, partitions};
use kubeinfer_server::metrics::Metrics;
use kubeinfer_tests::postgres::{Postgres, seed_predictions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Rows pushed through the writer.
    #[arg(long, default_value_t = 300_000)]
    rows: usize,
    /// Rows in the table the queries run on.
    #[arg(long, default_value_t = 1_000_000)]
    table_rows: i64,
    /// Runs of each query.
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Batches in flight for the heavy_mlp rows with outputs, each measured in turn (the writer keeps
    /// one fewer than its connections).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    in_flight: Vec<u32>,
    /// Rows per batch for those rows, each measured in turn (the server's default is 2000).
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    batch: Vec<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Production-like durability: only the settings a laptop cluster needs.
    let pg = Postgres::start(&["max_connections=100", "shared_buffers=256MB"]);
    let url = pg.create_database("bench");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let pool = PgPool::connect(&url).await?;
        kubeinfer_server::db::setup(&pool).await?;
        println!("## Prediction log (PostgreSQL 15, fsync on, this machine)\n");
        println!("| writer | rows | time | rows/s | batches | dropped |");
        println!("|---|---:|---:|---:|---:|---:|");
        writer(&url, args.rows, None, Setup::default(), "").await?;
        // What the rollups cost the writer: the same rows with prediction_rollups_add emptied, then restored.
        let definition: String =
            sqlx::query_scalar("SELECT pg_get_functiondef('prediction_rollups_add'::regproc)").fetch_one(&pool).await?;
        sqlx::raw_sql(ROLLUPS_OFF).execute(&pool).await?;
        writer(&url, args.rows, None, Setup::default(), " (rollups off)").await?;
        sqlx::raw_sql(AssertSqlSafe(definition)).execute(&pool).await?;
        let (json_request, response) = heavy_mlp_payloads();
        // A binary request (perf_analyzer's and tritonclient's way) is kept as its digest.
        let digest = r#"{"sha256":"9f2c0de45b6a1e2f7c9d8b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2","bytes":2104,"cut":"binary tensors"}"#;
        let binary = Some((digest.to_string(), response.clone()));
        for in_flight in &args.in_flight {
            for batch in &args.batch {
                let setup = Setup { connections: in_flight + 1, batch: *batch };
                writer(&url, args.rows, binary.clone(), setup, "").await?;
            }
        }
        writer(&url, args.rows / 3, Some((json_request, response)), Setup::default(), "").await?;
        println!();
        queries(&pool, &args).await
    })
}

/// What `--log-payloads full` keeps of one heavy_mlp inference: the JSON request (512 floats) and the
/// JSON response (10 logits), as the server would write them.
fn heavy_mlp_payloads() -> (String, String) {
    let floats =
        |n: usize| (0..n).map(|i| format!("{:.6}", (i as f32 * 0.37).sin())).collect::<Vec<_>>().join(",");
    let request = format!(
        r#"{{"request":{{"inputs":[{{"name":"input","shape":[1,512],"datatype":"FP32","data":[{}]}}]}}}}"#,
        floats(512)
    );
    let response = format!(
        r#"{{"model_name":"heavy_mlp","model_version":"1","outputs":[{{"name":"logits","datatype":"FP32","shape":[1,10],"data":[{}]}}]}}"#,
        floats(10)
    );
    (request, response)
}

fn row(i: usize, now: chrono::DateTime<Utc>, payloads: Option<&(String, String)>) -> PredictionRow {
    PredictionRow {
        prediction: Prediction {
            request_id: Some(format!("req-{i}")),
            client_id: i.is_multiple_of(10).then(|| format!("c{}", i % 97)),
            queue_us: 20,
            compute_us: 300,
            total_us: 400 + (i % 1000) as i64,
            batch_size: 1 + (i % 8) as i32,
            outcome: if i.is_multiple_of(50) { "error" } else { "success" }.to_string(),
            protocol: if i.is_multiple_of(3) { "grpc" } else { "rest" }.to_string(),
            predicted_class: payloads.map(|_| (i % 10) as i32),
            predicted_score: payloads.map(|_| 0.5),
            ..Prediction::answered(&format!("m{}", i % 4), 1, now)
        },
        payload: payloads.map(|(request, _)| request.clone()),
        response: payloads.map(|(_, response)| response.clone()),
    }
}

/// The writer's connections (one more than its batches in flight) and rows per batch.
#[derive(Debug, Clone, Copy)]
struct Setup {
    connections: u32,
    batch: usize,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup { connections: 3, batch: 2000 }
    }
}

/// prediction_rollups_add (migration 0010) doing nothing, for the A/B of what the rollups cost.
const ROLLUPS_OFF: &str = "CREATE OR REPLACE FUNCTION prediction_rollups_add(models TEXT[], periods TEXT[], \
     starts TIMESTAMPTZ[], requests BIGINT[], errors BIGINT[], successes BIGINT[], batch_rows BIGINT[], \
     firsts INTEGER[], offsets INTEGER[], lengths INTEGER[], latency BIGINT[]) RETURNS VOID LANGUAGE plpgsql AS $$ BEGIN END $$";

/// Pushes `rows` through `record()` as fast as this thread can, then waits for them to be written.
async fn writer(
    url: &str,
    rows: usize,
    payloads: Option<(String, String)>,
    setup: Setup,
    note: &str,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("bench");
    let args = DatabaseArgs {
        database_url: Some(url.to_string()),
        db_writer_connections: setup.connections,
        db_api_connections: 2,
        db_statement_timeout: Duration::from_secs(30),
        db_acquire_timeout: Duration::from_secs(5),
        prediction_log_buffer_bytes: rows * 16 * 1024,
        prediction_log_batch: setup.batch,
        prediction_log_flush_interval: Duration::from_millis(200),
        prediction_log_shutdown_grace: Duration::from_secs(30),
        prediction_log_retention: Duration::ZERO,
        migrate: MigrateMode::Auto,
        log_payloads: PayloadMode::Off,
        log_payload_max_bytes: 0,
        stats_cache_ttl: Duration::from_secs(300),
    };
    let log: Arc<PredictionLog> = PredictionLog::start(url, &args, &metrics)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The rows are made before the clock starts: on two cores, making them took a tenth of the time
    // PostgreSQL had, and a server's requests are made by its clients.
    let now = Utc::now();
    let made: Vec<PredictionRow> = (0..rows).map(|i| row(i, now, payloads.as_ref())).collect();
    let started = Instant::now();
    for row in made {
        log.record(row);
    }
    let queued = started.elapsed();
    log.shutdown().await;
    let elapsed = started.elapsed();
    let text = metrics.render();
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    };
    let written = value("kubeinfer_prediction_log_rows_written_total");
    let flushes = value("kubeinfer_prediction_log_flush_rows_count");
    let what = describe(payloads.as_ref(), setup, note);
    println!(
        "| {what} | {written} | {:.2} s | {:.0} | {flushes} | {} |",
        elapsed.as_secs_f64(),
        written / elapsed.as_secs_f64(),
        ["buffer_full", "refused", "shutdown"]
            .map(|r| value(&format!("kubeinfer_prediction_log_dropped_total{{reason=\"{r}\"}}")))
            .iter()
            .sum::<f64>()
    );
    eprintln!(
        "(the request path queued the {rows} rows in {:.1} ms: {:.2} µs a row)",
        queued.as_secs_f64() * 1e3,
        queued.as_secs_f64() * 1e6 / rows as f64
    );
    Ok(())
}

/// The writer table's first column: what the rows held and how they were written.
fn describe(payloads: Option<&(String, String)>, setup: Setup, note: &str) -> String {
    let in_flight = match kubeinfer_server::db::concurrent_flushes(setup.connections) {
        1 => "1 batch in flight".to_string(),
        n => format!("{n} batches in flight"),
    };
    match payloads {
        None => format!("COPY batches of {}, no payloads, {in_flight}{note}", setup.batch),
        Some((request, response)) => format!(
            "`full`, heavy_mlp: {} B request{}, {} B response, predicted class, batches of {}, {in_flight}{note}",
            request.len(),
            if request.contains("\"cut\"") { " (binary, its digest)" } else { " (JSON)" },
            response.len(),
            setup.batch
        ),
    }
}

fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

async fn time_runs<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(f64, f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        f(i).await?;
        times.push(t.elapsed());
    }
    Ok(quantiles(times))
}

async fn queries(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE predictions, feedback, prediction_rollups").execute(pool).await?;
    // A month of traffic for 8 models, newest first, spread over 31 day partitions.
    let seconds_apart = 30.0 * 86400.0 / args.table_rows as f64;
    let today = Utc::now().date_naive();
    let days: Vec<_> = (0..=31).filter_map(|n| today.checked_sub_days(chrono::Days::new(n))).collect();
    partitions::ensure_days(pool, &days).await?;
    seed_predictions(pool, args.table_rows, seconds_apart).await?;
    // What migration 0010 does to an existing log (the seeded rows bypassed the writer's rollups).
    let started = Instant::now();
    sqlx::query("SELECT prediction_rollups_rebuild('-infinity')").execute(pool).await?;
    let rebuild = started.elapsed();
    sqlx::query("VACUUM ANALYZE predictions").execute(pool).await?;
    sqlx::query("VACUUM ANALYZE prediction_rollups").execute(pool).await?;
    let page = |model: usize, after: Option<Cursor>| ListFilter {
        model: Some(format!("m{}", model % 8)),
        after,
        limit: 50,
        ..Default::default()
    };
    let first = time_runs(args.runs, |i| async move {
        queries::list(pool, &page(i, None)).await?;
        Ok(())
    })
    .await?;
    let deep = Some(Cursor { created_at: Utc::now() - chrono::Duration::days(12), id: Uuid::max() });
    let later = time_runs(args.runs, |i| async move {
        queries::list(pool, &page(i, deep)).await?;
        Ok(())
    })
    .await?;
    let failures = time_runs(args.runs, |_| async move {
        let f =
            ListFilter { outcome: Some(queries::OutcomeFilter::Failure), limit: 50, ..Default::default() };
        queries::list(pool, &f).await?;
        Ok(())
    })
    .await?;
    let everything = time_runs(args.runs, |_| async move {
        queries::list(pool, &ListFilter { limit: 50, ..Default::default() }).await?;
        Ok(())
    })
    .await?;
    // Ids from all over the month, each found as GET /api/predictions/{id} finds it.
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM predictions TABLESAMPLE SYSTEM (1) LIMIT $1")
        .bind(i64::try_from(args.runs)?)
        .fetch_all(pool)
        .await?;
    let ids = &ids;
    let by_id = time_runs(args.runs, |i| async move {
        if let Some(&id) = ids.get(i % ids.len().max(1)) {
            anyhow::ensure!(queries::get(pool, id).await?.is_some(), "prediction {id} not found by its id");
        }
        Ok(())
    })
    .await?;
    let model_stats = |window: f64| {
        time_runs(args.runs, move |i| async move {
            stats::model_stats(pool, &format!("m{}", i % 8), Period::window(window, Utc::now())).await?;
            Ok(())
        })
    };
    let stats_1h = model_stats(3600.0).await?;
    let stats_24h = model_stats(86400.0).await?;
    let stats_7d = model_stats(7.0 * 86400.0).await?;
    let all_models_stats = |window: f64| {
        time_runs(args.runs, move |_| async move {
            stats::all_models_stats(pool, window).await?;
            Ok(())
        })
    };
    let all_1h = all_models_stats(3600.0).await?;
    let all_24h = all_models_stats(86400.0).await?;
    let rows = [
        ("list, one model, first page of 50", first),
        ("list, one model, page 12 days back (keyset)", later),
        ("list, failures of all models", failures),
        ("list, every model, first page of 50", everything),
        ("one prediction by its id", by_id),
        ("stats, one model, 1 h window", stats_1h),
        ("stats, one model, 24 h window", stats_24h),
        ("stats, one model, 7 d window", stats_7d),
        ("stats, every model, 1 h window", all_1h),
        ("stats, every model, 24 h window", all_24h),
    ];
    print_queries(args, &rows);
    println!(
        "Rollups rebuilt from {} rows (migration 0010 on an existing log) in {:.1} s.\n",
        args.table_rows,
        rebuild.as_secs_f64()
    );
    retention(pool, args.table_rows).await
}

/// Drops the oldest day of the seeded month (29 days kept), as the server's maintenance does.
async fn retention(pool: &PgPool, table_rows: i64) -> anyhow::Result<()> {
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(pool).await?;
    let started = Instant::now();
    let done = partitions::maintain(pool, Duration::from_secs(29 * 86400), Utc::now()).await?;
    let took = started.elapsed();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(pool).await?;
    println!("| retention on {table_rows} rows | partitions dropped | rows dropped | time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| days older than 29 d | {} | {} | {:.3} s |\n",
        done.dropped,
        before - after,
        took.as_secs_f64()
    );
    Ok(())
}

fn print_queries(args: &Args, rows: &[(&str, (f64, f64, f64))]) {
    println!(
        "| query on {} rows (uncached, {} runs) | p50 ms | p99 ms | max ms |",
        args.table_rows, args.runs
    );
    println!("|---|---:|---:|---:|");
    for (name, (p50, p99, max)) in rows {
        println!("| {name} | {p50:.3} | {p99:.3} | {max:.3} |");
    }
    println!();
}
