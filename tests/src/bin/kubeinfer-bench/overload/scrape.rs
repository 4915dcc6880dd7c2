//! What the overload bench reads from the server's /metrics: its own counts over a point, and the
//! batch cost it learned.

use std::net::SocketAddr;

use kubeinfer_tests::prometheus::sample;

use crate::load;

/// The server's own counts over a point, from /metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows: f64,
    pub batches: f64,
    pub shed_at_arrival: f64,
    pub shed_in_queue: f64,
    pub answered: f64,
    pub within_target: f64,
    /// The server's latency target in seconds (0: none); a setting, not a count.
    pub target: f64,
    /// `kubeinfer_runtime_wake_delay_seconds`: its sum, its count, and the wake-ups within 4 ms.
    pub wake_delay: f64,
    pub wakes: f64,
    pub wakes_within_4ms: f64,
}

impl Counters {
    pub async fn scrape(addr: SocketAddr, model: &str) -> anyhow::Result<Counters> {
        let text = load::get_text(addr, "/metrics").await?;
        let value = |series: String| sample(&text, &series).unwrap_or(0.0);
        let shed = |stage: &str| {
            value(format!(r#"kubeinfer_inference_shed_total{{model="{model}",stage="{stage}",version="1"}}"#))
        };
        Ok(Counters {
            rows: value(format!(r#"kubeinfer_inference_batch_size_sum{{model="{model}",version="1"}}"#)),
            batches: value(format!(r#"kubeinfer_inference_batch_size_count{{model="{model}",version="1"}}"#)),
            shed_at_arrival: shed("arrival"),
            shed_in_queue: shed("queue"),
            answered: value(format!(
                r#"kubeinfer_inference_requests_total{{model="{model}",outcome="success",protocol="rest",version="1"}}"#
            )),
            within_target: value(format!(
                r#"kubeinfer_inference_within_target_total{{model="{model}",protocol="rest",version="1"}}"#
            )),
            target: value(format!(r#"kubeinfer_latency_target_seconds{{model="{model}",version="1"}}"#)),
            wake_delay: value("kubeinfer_runtime_wake_delay_seconds_sum".to_string()),
            wakes: value("kubeinfer_runtime_wake_delay_seconds_count".to_string()),
            wakes_within_4ms: value(r#"kubeinfer_runtime_wake_delay_seconds_bucket{le="0.004"}"#.to_string()),
        })
    }

    pub fn minus(&self, before: &Counters) -> Counters {
        Counters {
            rows: self.rows - before.rows,
            batches: self.batches - before.batches,
            shed_at_arrival: self.shed_at_arrival - before.shed_at_arrival,
            shed_in_queue: self.shed_in_queue - before.shed_in_queue,
            answered: self.answered - before.answered,
            within_target: self.within_target - before.within_target,
            target: self.target,
            wake_delay: self.wake_delay - before.wake_delay,
            wakes: self.wakes - before.wakes,
            wakes_within_4ms: self.wakes_within_4ms - before.wakes_within_4ms,
        }
    }
}

/// The server's `kubeinfer_batch_cost_seconds`, as "rows: ms" by size class, and its
/// `kubeinfer_batch_cost_margin`.
pub async fn learned_costs(addr: SocketAddr, model: &str) -> anyhow::Result<String> {
    let text = load::get_text(addr, "/metrics").await?;
    let prefix = format!(r#"kubeinfer_batch_cost_seconds{{model="{model}",rows=""#);
    let costs: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split_once(r#"",version="1"} "#))
        .filter_map(|(rows, s)| Some(format!("{rows} rows {:.2} ms", s.parse::<f64>().ok()? * 1e3)))
        .collect();
    let margin = sample(&text, &format!(r#"kubeinfer_batch_cost_margin{{model="{model}",version="1"}}"#));
    let margin = margin.map_or_else(|| "not published".to_string(), |m| format!("{m:.3}"));
    Ok(format!("{}; margin {margin}", costs.join(", ")))
}
