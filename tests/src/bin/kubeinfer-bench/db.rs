//! The prediction log's benchmark on a throwaway PostgreSQL with durable settings (fsync on): the writer's
//! sustained rows/s, then the list and stats queries' latency on a million-row table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args as ClapArgs;
use kubeinfer_server::config::{DatabaseArgs, PayloadMode};
use kubeinfer_server::db::queries::Prediction;
use kubeinfer_server::db::queries::{self, Cursor, ListFilter};
use kubeinfer_server::db::{PredictionLog, PredictionRow};
use kubeinfer_server::metrics::Metrics;
use kubeinfer_tests::postgres::{Postgres, seed_predictions};
use sqlx::PgPool;
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Production-like durability: only the settings a laptop cluster needs.
    let pg = Postgres::start(&["max_connections=100", "shared_buffers=256MB"]);
    let url = pg.create_database("bench");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let pool = PgPool::connect(&url).await?;
        kubeinfer_server::db::migrate(&pool).await?;
        println!("## Prediction log (PostgreSQL 15, fsync on, this machine)\n");
        writer(&url, args.rows).await?;
        queries(&pool, &args).await
    })
}

fn row(i: usize, now: chrono::DateTime<Utc>) -> PredictionRow {
    PredictionRow {
        prediction: Prediction {
            id: Uuid::now_v7(),
            request_id: Some(format!("req-{i}")),
            model: format!("m{}", i % 4),
            model_version: 1,
            client_id: i.is_multiple_of(10).then(|| format!("c{}", i % 97)),
            created_at: now,
            queue_us: 20,
            compute_us: 300,
            total_us: 400 + (i % 1000) as i64,
            batch_size: 1 + (i % 8) as i32,
            outcome: if i.is_multiple_of(50) { "error" } else { "success" }.to_string(),
            error: None,
        },
        payload: None,
    }
}

/// Pushes `rows` through `record()` as fast as this thread can, then waits for them to be written.
async fn writer(url: &str, rows: usize) -> anyhow::Result<()> {
    let metrics = Metrics::new("bench");
    let args = DatabaseArgs {
        database_url: Some(url.to_string()),
        db_max_connections: 4,
        prediction_log_buffer: rows,
        prediction_log_batch: 2000,
        prediction_log_flush_interval: Duration::from_millis(200),
        prediction_log_shutdown_grace: Duration::from_secs(30),
        log_payloads: PayloadMode::Off,
        log_payload_max_bytes: 0,
        stats_cache_ttl: Duration::from_secs(300),
    };
    let log: Arc<PredictionLog> = PredictionLog::start(url, &args, &metrics)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let now = Utc::now();
    for i in 0..rows {
        log.record(row(i, now));
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
    println!("| writer | rows | time | rows/s | inserts | dropped |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| UNNEST batches of 2000 | {written} | {:.2} s | {:.0} | {flushes} | {} |",
        elapsed.as_secs_f64(),
        written / elapsed.as_secs_f64(),
        value("kubeinfer_prediction_log_dropped_total")
    );
    println!(
        "\n(the request path queued the {rows} rows in {:.1} ms: {:.2} µs a row)\n",
        queued.as_secs_f64() * 1e3,
        queued.as_secs_f64() * 1e6 / rows as f64
    );
    Ok(())
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
    sqlx::query("TRUNCATE predictions CASCADE").execute(pool).await?;
    // A month of traffic for 8 models, newest first: about 0.4 rows a second per model.
    seed_predictions(pool, args.table_rows, 2.6).await?;
    sqlx::query("VACUUM ANALYZE predictions").execute(pool).await?;
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
    let stats_1h = time_runs(args.runs, |i| async move {
        queries::model_stats(pool, &format!("m{}", i % 8), 3600.0).await?;
        Ok(())
    })
    .await?;
    let stats_24h = time_runs(args.runs / 3, |i| async move {
        queries::model_stats(pool, &format!("m{}", i % 8), 86400.0).await?;
        Ok(())
    })
    .await?;
    let all_1h = time_runs(args.runs / 3, |_| async move {
        queries::all_models_stats(pool, 3600.0).await?;
        Ok(())
    })
    .await?;
    let rows = [
        ("list, one model, first page of 50", first),
        ("list, one model, page 12 days back (keyset)", later),
        ("list, failures of all models", failures),
        ("stats, one model, 1 h window (~170 rows)", stats_1h),
        ("stats, one model, 24 h window (~4.2k rows)", stats_24h),
        ("stats, every model, 1 h window (~1.4k rows)", all_1h),
    ];
    print_queries(args, &rows);
    Ok(())
}

fn print_queries(args: &Args, rows: &[(&str, (f64, f64, f64))]) {
    println!(
        "| query on {} rows (uncached, {} runs; {} for the 24 h and every-model stats) | p50 ms | p99 ms | max ms |",
        args.table_rows,
        args.runs,
        args.runs / 3
    );
    println!("|---|---:|---:|---:|");
    for (name, (p50, p99, max)) in rows {
        println!("| {name} | {p50:.3} | {p99:.3} | {max:.3} |");
    }
    println!();
}
