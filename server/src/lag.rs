//! How long a task that is ready to run waits for one of the async workers. A probe task asks to wake
//! every `PERIOD` and records how late it woke. A request waits the same way before its handler starts
//! and after it returns, and neither its own time nor the latency target counts that wait, so it is
//! headroom to leave between the server's target and the objective clients measure. Tokio's timers
//! tick every millisecond, so about 1 ms is the floor; a pod short of CPU shows more (measured in
//! docs/benchmarks.md, "What the server's clock does not see"). Go's runtime exports the same as
//! `go_sched_latencies_seconds`.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts};
use tokio::time::Instant;

/// How often the probe wakes: often enough to catch a stall of a few milliseconds within a scrape, few
/// enough wake-ups (100 a second) to cost nothing measurable.
pub const PERIOD: Duration = Duration::from_millis(10);

/// Tokio's timers fire on a millisecond tick, so an idle server shows up to a millisecond; the buckets
/// above it double up to a quarter of a second, where a worker is blocked rather than busy.
const BUCKETS: &[f64] = &[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0];

pub fn histogram() -> Histogram {
    let opts = HistogramOpts::new(
        "kubeinfer_runtime_wake_delay_seconds",
        "How late a task asking to wake every 10 ms woke: the time a ready request waits for an async \
         worker before its handler starts and after it returns, which the request's own time and the \
         latency target do not count.",
    )
    .buckets(BUCKETS.to_vec());
    Histogram::with_opts(opts).unwrap_or_else(|e| unreachable!("metric is well-formed: {e}"))
}

/// Wakes every `period` and hands how late it woke to `late`, until dropped (or the runtime stops).
pub async fn probe(period: Duration, mut late: impl FnMut(Duration)) {
    let mut due = Instant::now() + period;
    loop {
        tokio::time::sleep_until(due).await;
        let woke = Instant::now();
        late(woke.saturating_duration_since(due));
        due = woke + period;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_worker_blocked_for_thirty_milliseconds_makes_the_probe_wake_at_least_twenty_late() {
        let delay = histogram();
        let observed = delay.clone();
        let probe =
            tokio::spawn(probe(Duration::from_millis(5), move |late| observed.observe(late.as_secs_f64())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = delay.get_sample_count();
        // The only worker is held: the probe's wake-up, due within 5 ms, waits for it.
        std::thread::sleep(Duration::from_millis(30));
        for _ in 0..100 {
            if delay.get_sample_count() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        probe.abort();
        let late = delay.get_sample_sum();
        assert!(before >= 1, "the probe woke before the block: {before}");
        assert!(delay.get_sample_count() > before, "and after it");
        assert!(late >= 0.020, "at least 20 ms late in all: {late}");
    }

    #[test]
    fn the_delay_is_exported_under_its_name_with_millisecond_buckets() {
        let delay = histogram();
        delay.observe(0.003);
        let metrics = crate::metrics::Metrics::new("test");
        metrics.register(Box::new(delay));
        let text = metrics.render();
        assert!(text.contains(r#"kubeinfer_runtime_wake_delay_seconds_bucket{le="0.002"} 0"#), "{text}");
        assert!(text.contains(r#"kubeinfer_runtime_wake_delay_seconds_bucket{le="0.004"} 1"#), "{text}");
        assert!(text.contains("kubeinfer_runtime_wake_delay_seconds_count 1"), "{text}");
    }
}
