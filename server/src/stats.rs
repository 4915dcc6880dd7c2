//! Per-model counters for Triton's statistics extension (`GET /v2/models/{m}/stats`): cumulative counts
//! and nanoseconds per model, and per batch size.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

impl StatDuration {
    fn add(&mut self, times: u64, d: Duration) {
        self.count += times;
        self.ns += (d.as_nanos() as u64).saturating_mul(times);
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InferenceStats {
    pub success: StatDuration,
    pub fail: StatDuration,
    pub queue: StatDuration,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
    pub cache_hit: StatDuration,
    pub cache_miss: StatDuration,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
}

/// One entry of Triton's `model_stats` array.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TritonStatsJson {
    pub name: String,
    pub version: String,
    /// Milliseconds since the epoch of the last completed inference; 0 before the first.
    pub last_inference: u64,
    /// Rows inferred (a request with 4 rows counts 4).
    pub inference_count: u64,
    /// Batches run.
    pub execution_count: u64,
    pub inference_stats: InferenceStats,
    pub batch_stats: Vec<BatchStats>,
}

#[derive(Debug, Default)]
struct Inner {
    last_inference: u64,
    inference_count: u64,
    execution_count: u64,
    inference: InferenceStats,
    batches: BTreeMap<u64, BatchStats>,
}

/// Timings of one executed batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchTimes {
    pub rows: usize,
    pub requests: usize,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

#[derive(Debug, Default)]
pub struct TritonStats {
    inner: Mutex<Inner>,
}

impl TritonStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called once per executed batch by the instance thread.
    pub fn record_batch(&self, t: BatchTimes) {
        let mut s = self.lock();
        s.execution_count += 1;
        s.inference_count += t.rows as u64;
        let requests = t.requests as u64;
        s.inference.compute_input.add(requests, t.input);
        s.inference.compute_infer.add(requests, t.infer);
        s.inference.compute_output.add(requests, t.output);
        let b = s
            .batches
            .entry(t.rows as u64)
            .or_insert_with(|| BatchStats { batch_size: t.rows as u64, ..Default::default() });
        b.compute_input.add(1, t.input);
        b.compute_infer.add(1, t.infer);
        b.compute_output.add(1, t.output);
    }

    /// Called once per request when it is answered: `total` is its whole server time.
    pub fn record_request(&self, ok: bool, total: Duration, queue: Duration) {
        let mut s = self.lock();
        if ok {
            s.inference.success.add(1, total);
            s.inference.queue.add(1, queue);
            s.last_inference =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        } else {
            s.inference.fail.add(1, total);
        }
    }

    pub fn snapshot(&self, name: &str, version: u64) -> TritonStatsJson {
        let s = self.lock();
        TritonStatsJson {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: s.last_inference,
            inference_count: s.inference_count,
            execution_count: s.execution_count,
            inference_stats: s.inference.clone(),
            batch_stats: s.batches.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_once_per_execution_and_once_per_request_in_the_totals() {
        let stats = TritonStats::default();
        let ms = Duration::from_millis(1);
        stats.record_batch(BatchTimes { rows: 4, requests: 3, input: ms, infer: 2 * ms, output: ms });
        stats.record_request(true, 5 * ms, ms);
        let s = stats.snapshot("m", 1);
        assert_eq!(s.execution_count, 1);
        assert_eq!(s.inference_count, 4);
        assert_eq!(s.inference_stats.compute_infer, StatDuration { count: 3, ns: 6_000_000 });
        assert_eq!(s.inference_stats.success, StatDuration { count: 1, ns: 5_000_000 });
        assert_eq!(
            s.batch_stats,
            vec![BatchStats {
                batch_size: 4,
                compute_input: StatDuration { count: 1, ns: 1_000_000 },
                compute_infer: StatDuration { count: 1, ns: 2_000_000 },
                compute_output: StatDuration { count: 1, ns: 1_000_000 },
            }]
        );
    }

    #[test]
    fn failures_are_counted_apart() {
        let stats = TritonStats::default();
        stats.record_request(false, Duration::from_micros(3), Duration::ZERO);
        let s = stats.snapshot("m", 2);
        assert_eq!(s.inference_stats.fail, StatDuration { count: 1, ns: 3_000 });
        assert_eq!(s.inference_stats.success.count, 0);
        assert_eq!(s.version, "2");
    }
}
