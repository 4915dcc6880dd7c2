//! Prometheus metrics, kept in one non-global registry owned by the app state so tests stay isolated.
//! Names follow design.md: prefix `kubeinfer_`, base units, latencies as histograms.

use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::cost_metrics::{BatchCost, CostFamilies};
use crate::outcome::Outcome;
use crate::recent::{ModelWindows, Recent};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 50 µs (a tiny model's compute) to 10 s (a queue backed up behind a large one).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
const MODEL: &[&str] = &["model", "version"];
const MODEL_PROTOCOL: &[&str] = &["model", "version", "protocol"];

/// The protocol an inference request came over: the `protocol` label of the per-request series and the
/// prediction log's `protocol` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Grpc => "grpc",
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    model: ModelSeries,
    recent: Recent,
}

/// The per-model families, labelled by model and version; `for_model` resolves them.
struct ModelSeries {
    inference_requests: IntCounterVec,
    inference_duration: HistogramVec,
    inference_overhead: HistogramVec,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    queue_depth: IntGaugeVec,
    in_flight: IntGaugeVec,
    load_duration: GaugeVec,
    warmup_failures: IntCounterVec,
    instance_deaths: IntCounterVec,
    latency_target: GaugeVec,
    within_target: IntCounterVec,
    shed: IntCounterVec,
    batch_cost: CostFamilies,
}

pub fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

impl ModelSeries {
    fn new() -> ModelSeries {
        ModelSeries {
            inference_requests: counter(
                "kubeinfer_inference_requests_total",
                "Inference requests by model, version, protocol (rest, grpc) and outcome (success, invalid, \
                 rejected, timeout, shed, cancelled, error).",
                &["model", "version", "protocol", "outcome"],
            ),
            inference_duration: histogram(
                "kubeinfer_inference_request_duration_seconds",
                "End-to-end server time of successful inference requests: decode, queue, compute, encode.",
                MODEL_PROTOCOL,
                LATENCY_BUCKETS,
            ),
            inference_overhead: histogram(
                "kubeinfer_inference_overhead_seconds",
                "Server time of successful inference requests excluding queue wait and model compute: \
                 the API's own cost (decode, validate, batch, split, encode).",
                MODEL_PROTOCOL,
                LATENCY_BUCKETS,
            ),
            queue_duration: histogram(
                "kubeinfer_inference_queue_duration_seconds",
                "Time requests waited in the model's queue before their batch started.",
                MODEL,
                LATENCY_BUCKETS,
            ),
            compute_duration: histogram(
                "kubeinfer_inference_compute_duration_seconds",
                "Time ONNX Runtime took to run one batch (including concatenation and splitting).",
                MODEL,
                LATENCY_BUCKETS,
            ),
            batch_size: histogram(
                "kubeinfer_inference_batch_size",
                "Rows per executed batch.",
                MODEL,
                BATCH_BUCKETS,
            ),
            queue_depth: gauge(
                "kubeinfer_inference_queue_depth",
                "Requests waiting in the model's queue.",
                MODEL,
            ),
            in_flight: gauge(
                "kubeinfer_inference_requests_in_flight",
                "Inference requests accepted and not yet answered (queued or computing); the autoscaling signal.",
                MODEL,
            ),
            load_duration: GaugeVec::new(
                Opts::new(
                    "kubeinfer_model_load_duration_seconds",
                    "Time to load and warm up the model at start-up.",
                ),
                MODEL,
            )
            .unwrap_or_else(|e| unreachable!("metric: {e}")),
            instance_deaths: counter(
                "kubeinfer_instance_thread_deaths_total",
                "Model instance threads that died (a panic outside the model run); readiness answers 503 \
                 from the first one on.",
                MODEL,
            ),
            warmup_failures: counter(
                "kubeinfer_model_warmup_failures_total",
                "Synthetic warm-up runs the model refused at start-up; the model is served anyway and its \
                 first request pays for the warm-up (a warmup.json sample avoids this).",
                MODEL,
            ),
            latency_target: GaugeVec::new(
                Opts::new(
                    "kubeinfer_latency_target_seconds",
                    "The model's latency objective (--latency-target, latency_target); absent without one.",
                ),
                MODEL,
            )
            .unwrap_or_else(|e| unreachable!("metric: {e}")),
            within_target: counter(
                "kubeinfer_inference_within_target_total",
                "Answered inference requests whose server time was within the latency target: over \
                 requests_total{outcome=\"success\"}, the share of answers in time; as a rate, goodput.",
                MODEL_PROTOCOL,
            ),
            shed: counter(
                "kubeinfer_inference_shed_total",
                "Requests shed for the latency target (503 + Retry-After), by stage: arrival (the batches \
                 ahead would make it late) or queue (even run alone when its turn came, it would be late).",
                &["model", "version", "stage"],
            ),
            batch_cost: CostFamilies::new(),
        }
    }
}

impl Metrics {
    pub fn new(ort_version: &str) -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            http_requests: counter(
                "kubeinfer_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "kubeinfer_http_request_duration_seconds",
                "Time from request received to response headers sent, by route template and method.",
                &["route", "method"],
                LATENCY_BUCKETS,
            ),
            model: ModelSeries::new(),
            recent: Recent::new(),
        };
        let build = IntGaugeVec::new(
            Opts::new("kubeinfer_build_info", "Always 1; labels carry the server and ONNX Runtime versions."),
            &["version", "onnxruntime"],
        )
        .unwrap_or_else(|e| unreachable!("metric: {e}"));
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), ort_version]).set(1);
        let s = &m.model;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(s.inference_requests.clone()),
            Box::new(s.inference_duration.clone()),
            Box::new(s.inference_overhead.clone()),
            Box::new(s.queue_duration.clone()),
            Box::new(s.compute_duration.clone()),
            Box::new(s.batch_size.clone()),
            Box::new(s.queue_depth.clone()),
            Box::new(s.in_flight.clone()),
            Box::new(s.load_duration.clone()),
            Box::new(s.warmup_failures.clone()),
            Box::new(s.instance_deaths.clone()),
            Box::new(s.latency_target.clone()),
            Box::new(s.within_target.clone()),
            Box::new(s.shed.clone()),
            Box::new(m.recent.clone()),
            Box::new(build),
        ];
        for c in collectors.into_iter().chain(m.model.batch_cost.collectors()) {
            m.register(c);
        }
        m
    }

    /// Registers a collector owned elsewhere (the prediction log's, say) in this registry.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::warn!(error = %e, "metric registered twice");
        }
    }

    /// Resolves the per-model series once, so the request path does no label lookups. `target`: the
    /// model's latency objective, if it has one.
    pub fn for_model(&self, model: &str, version: u64, target: Option<Duration>) -> ModelMetrics {
        let v = version.to_string();
        let labels = [model, v.as_str()];
        if let Some(t) = target {
            self.model.latency_target.with_label_values(&labels).set(t.as_secs_f64());
        }
        let shed = |stage: &str| self.model.shed.with_label_values(&[model, v.as_str(), stage]);
        let windows = Arc::new(ModelWindows::new(target));
        self.recent.track(model, &v, windows.clone());
        ModelMetrics {
            rest: self.outcomes(model, &v, Protocol::Rest, target, &windows),
            grpc: self.outcomes(model, &v, Protocol::Grpc, target, &windows),
            windows,
            shed_at_arrival: shed("arrival"),
            shed_in_queue: shed("queue"),
            batch_cost: self.model.batch_cost.for_model(model, &v),
            queue: self.model.queue_duration.with_label_values(&labels),
            compute: self.model.compute_duration.with_label_values(&labels),
            batch_size: self.model.batch_size.with_label_values(&labels),
            queue_depth: self.model.queue_depth.with_label_values(&labels),
            in_flight: self.model.in_flight.with_label_values(&labels),
            load: self.model.load_duration.with_label_values(&labels),
            warmup_failures: self.model.warmup_failures.with_label_values(&labels),
            instance_deaths: self.model.instance_deaths.with_label_values(&labels),
        }
    }

    fn outcomes(
        &self,
        model: &str,
        version: &str,
        protocol: Protocol,
        target: Option<Duration>,
        windows: &Arc<ModelWindows>,
    ) -> Outcomes {
        let labels = [model, version, protocol.as_str()];
        let counters = Outcome::ALL.map(|o| {
            self.model.inference_requests.with_label_values(&[model, version, protocol.as_str(), o.as_str()])
        });
        Outcomes {
            counters,
            duration: self.model.inference_duration.with_label_values(&labels),
            overhead: self.model.inference_overhead.with_label_values(&labels),
            within_target: self.model.within_target.with_label_values(&labels),
            target,
            windows: windows.clone(),
        }
    }

    /// The text exposition format of every registered metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One model version's series, resolved.
#[derive(Clone)]
pub struct ModelMetrics {
    pub rest: Outcomes,
    pub grpc: Outcomes,
    /// The last 30 s, for the autoscaling gauges.
    pub windows: Arc<ModelWindows>,
    pub shed_at_arrival: IntCounter,
    pub shed_in_queue: IntCounter,
    pub batch_cost: BatchCost,
    pub queue: Histogram,
    pub compute: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub in_flight: IntGauge,
    pub load: Gauge,
    pub warmup_failures: IntCounter,
    pub instance_deaths: IntCounter,
}

impl ModelMetrics {
    /// The per-request series of requests that came over `protocol`.
    pub fn over(&self, protocol: Protocol) -> &Outcomes {
        match protocol {
            Protocol::Rest => &self.rest,
            Protocol::Grpc => &self.grpc,
        }
    }
}

/// One model version's per-request series for one protocol: outcomes and the time of answered requests.
#[derive(Clone)]
pub struct Outcomes {
    /// Indexed by `Outcome` (whose `ALL` is in declaration order).
    counters: [IntCounter; Outcome::ALL.len()],
    pub duration: Histogram,
    pub overhead: Histogram,
    pub within_target: IntCounter,
    target: Option<Duration>,
    windows: Arc<ModelWindows>,
}

impl Outcomes {
    pub fn counter(&self, outcome: Outcome) -> &IntCounter {
        &self.counters[outcome as usize]
    }

    /// Starts counting one request that arrived at `started`: it is counted once, when it finishes or,
    /// if it never does (its caller went away, its handler was cut off), as cancelled.
    pub fn start(&self, started: Instant) -> Observation<'_> {
        Observation { outcomes: self, started, finished: false }
    }
}

/// One request being counted (`Outcomes::start`).
pub struct Observation<'a> {
    outcomes: &'a Outcomes,
    started: Instant,
    finished: bool,
}

impl Observation<'_> {
    /// Counts the request under `outcome`; an answered one also by its time, of which `model` went to
    /// the queue and the model (the rest is the server's own overhead).
    pub fn finish(mut self, outcome: Outcome, model: Duration) {
        self.finished = true;
        let o = self.outcomes;
        o.counter(outcome).inc();
        let total = self.started.elapsed();
        if let (Some(target), Some(used)) = (o.target, &o.windows.target_used) {
            match outcome {
                Outcome::Success => used.record(Instant::now(), total.as_secs_f64() / target.as_secs_f64()),
                Outcome::Shed | Outcome::Timeout => used.record(Instant::now(), 1.0),
                // Not load: a bad request is refused whatever the load, a cancelled one has no time.
                Outcome::Invalid | Outcome::Rejected | Outcome::Cancelled | Outcome::Error => {}
            }
        }
        if outcome == Outcome::Success {
            o.duration.observe(total.as_secs_f64());
            o.overhead.observe(total.saturating_sub(model).as_secs_f64());
            if o.target.is_some_and(|t| total <= t) {
                o.within_target.inc();
            }
        }
    }
}

impl Drop for Observation<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.outcomes.counter(Outcome::Cancelled).inc();
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
