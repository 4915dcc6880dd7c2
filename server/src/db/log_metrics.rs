//! The prediction log's own metrics: the writer's counters and flush histograms, drops by reason, the
//! buffer's bytes and each pool's connections.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use sqlx::PgPool;

use crate::metrics::LATENCY_BUCKETS;

/// Why a row never reached the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The buffer's byte budget was spent (database down or slower than the traffic).
    BufferFull,
    /// Postgres refused the row itself (a constraint, a value it cannot store).
    Refused,
    /// Still unwritten when the shutdown grace ran out.
    Shutdown,
}

impl Drop {
    pub const ALL: [Drop; 3] = [Drop::BufferFull, Drop::Refused, Drop::Shutdown];

    pub fn label(self) -> &'static str {
        match self {
            Drop::BufferFull => "buffer_full",
            Drop::Refused => "refused",
            Drop::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone)]
pub struct WriterMetrics {
    pub written: IntCounter,
    pub dropped: IntCounterVec,
    pub flush_rows: Histogram,
    pub flush_duration: Histogram,
    pub buffer_bytes: IntGauge,
}

impl WriterMetrics {
    pub fn new() -> WriterMetrics {
        let dropped = IntCounterVec::new(
            Opts::new(
                "kubeinfer_prediction_log_dropped_total",
                "Prediction log rows dropped, by reason: buffer_full (the byte budget was spent while the \
                 database was down or slow), refused (the database refused the row) or shutdown (unwritten \
                 when the shutdown grace ran out).",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        for reason in Drop::ALL {
            dropped.with_label_values(&[reason.label()]);
        }
        WriterMetrics {
            written: IntCounter::new(
                "kubeinfer_prediction_log_rows_written_total",
                "Prediction log rows written to Postgres.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            dropped,
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
            buffer_bytes: IntGauge::new(
                "kubeinfer_prediction_log_buffer_bytes",
                "Bytes of prediction log rows held in memory: queued or being written.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        }
    }

    pub fn dropped(&self, reason: Drop) -> IntCounter {
        self.dropped.with_label_values(&[reason.label()])
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.written.clone()),
            Box::new(self.dropped.clone()),
            Box::new(self.flush_rows.clone()),
            Box::new(self.flush_duration.clone()),
            Box::new(self.buffer_bytes.clone()),
        ]
    }

    /// The drops so far by reason, for the line logged at shutdown.
    pub fn drops(&self) -> [(&'static str, u64); 3] {
        Drop::ALL.map(|r| (r.label(), self.dropped(r).get()))
    }
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics::new()
    }
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("{name}: {e}"))
}

/// kubeinfer_db_pool_connections{pool, state}, read from the pools at scrape time.
pub struct PoolGauges {
    pools: Vec<(&'static str, PgPool)>,
    gauges: IntGaugeVec,
}

impl PoolGauges {
    pub fn new(pools: Vec<(&'static str, PgPool)>) -> PoolGauges {
        let gauges = IntGaugeVec::new(
            Opts::new(
                "kubeinfer_db_pool_connections",
                "Connections in each database pool (writer, api), by state (idle, active).",
            ),
            &["pool", "state"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        PoolGauges { pools, gauges }
    }
}

impl Collector for PoolGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (name, pool) in &self.pools {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(0);
            self.gauges.with_label_values(&[name, "idle"]).set(idle);
            self.gauges.with_label_values(&[name, "active"]).set(size - idle);
        }
        self.gauges.collect()
    }
}
