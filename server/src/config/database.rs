//! Flags of the prediction log (Postgres): connections and their timeouts, the writer's buffer, what
//! each row keeps, how long rows are kept, and who applies migrations.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::units::parse_duration;

/// The prediction log (Postgres). Off when DATABASE_URL is unset.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL for the prediction log, e.g. postgres://user:pass@host/db. Unset: no prediction log,
    /// and the /api routes answer 503.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connections of the writer's pool. The writer has its own pool so that slow /api queries can
    /// never take the connections it needs. It writes a batch on each of them but one, which is left
    /// for partition maintenance (at least one batch at a time).
    #[arg(long, env = "KUBEINFER_DB_WRITER_CONNECTIONS", default_value_t = 3)]
    pub db_writer_connections: u32,

    /// Connections of the /api query pool.
    #[arg(long, env = "KUBEINFER_DB_API_CONNECTIONS", default_value_t = 4)]
    pub db_api_connections: u32,

    /// Longest a statement may run (Postgres's statement_timeout on every connection, and the
    /// server's own deadline on each query, which also holds when Postgres hangs without answering).
    /// An open transaction left idle is ended after twice this (idle_in_transaction_session_timeout).
    #[arg(long, env = "KUBEINFER_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// Longest a query waits for a pooled connection, connecting included; past it /api answers 503.
    #[arg(long, env = "KUBEINFER_DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Bytes of rows the prediction log holds while the database is slow or down (the rows waiting and
    /// the batch being written); beyond it rows are dropped and counted in
    /// kubeinfer_prediction_log_dropped_total{reason="buffer_full"}.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_BUFFER_BYTES", default_value_t = 64 << 20)]
    pub prediction_log_buffer_bytes: usize,

    /// Most rows per insert.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_BATCH", default_value_t = 2000)]
    pub prediction_log_batch: usize,

    /// Longest a row waits before its batch is written.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_FLUSH_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub prediction_log_flush_interval: Duration,

    /// At shutdown, how long the writer keeps trying to flush before it gives the remaining rows up.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub prediction_log_shutdown_grace: Duration,

    /// How long predictions and their feedback are kept, e.g. 30d or 12h; 0 keeps them forever. Whole
    /// days are dropped at once (the log is partitioned by day), so a row lives up to a day longer.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub prediction_log_retention: Duration,

    /// `auto`: apply the prediction log's migrations at start-up (the database role needs DDL rights).
    /// `off`: never change the schema; `kubeinfer-server migrate` does it (a Job with a DDL role) and
    /// the server waits until the schema it needs is there, so its own role can be DML only.
    #[arg(long = "migrate", env = "KUBEINFER_MIGRATE", value_enum, default_value_t = MigrateMode::Auto)]
    pub migrate: MigrateMode,

    /// What of each request to keep: `off`, `digest` (SHA-256 and size of the body) or `full` (the JSON
    /// request when it is at most --log-payload-max-bytes, else its digest).
    #[arg(long, env = "KUBEINFER_LOG_PAYLOADS", value_enum, default_value_t = PayloadMode::Off)]
    pub log_payloads: PayloadMode,

    /// Largest request body kept whole with --log-payloads full.
    #[arg(long, env = "KUBEINFER_LOG_PAYLOAD_MAX_BYTES", default_value_t = 16 * 1024)]
    pub log_payload_max_bytes: usize,

    /// How long /api/models/{m}/stats and /api/models keep an aggregate before querying again.
    #[arg(long, env = "KUBEINFER_STATS_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub stats_cache_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadMode {
    Off,
    Digest,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateMode {
    Auto,
    Off,
}
