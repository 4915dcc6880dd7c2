//! Dynamic batching for one model version: a bounded queue, and `instances` threads that each take the
//! next batch when they are free. No timer runs when the server is idle: a batch is whatever queued while
//! the instances were busy, plus, only if `max_queue_delay` is set, what arrives while it waits to fill.

pub mod cost;
pub mod policy;
pub mod probe;
pub mod queue;
pub mod worker;

#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::Error;
use crate::metrics::ModelMetrics;
use crate::model::Runner;
use crate::protocol::Tensor;
use crate::stats::TritonStats;
use policy::Admission;
pub use policy::Limits;
pub use queue::BatchReply;
use queue::{CANCELLED, Entry, Failure, PushError, QUEUED, Queue};
use worker::Worker;

/// How one model's requests are queued and batched.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub limits: Limits,
    /// Requests that may wait; more get 503.
    pub capacity: usize,
    /// How long an idle instance watches the queue before sleeping (see `queue::Shared::idle_spin`).
    pub idle_spin: Duration,
    /// One request's inputs (a row each) from which, with a latency target, each batch size's cost is
    /// timed before the first request (`probe`); `None`: learned from traffic only.
    pub probe: Option<Vec<Tensor>>,
}

pub struct Batcher {
    model: String,
    queue: Queue,
    capacity: usize,
    batchable: bool,
    target: Option<Duration>,
    shed_at_arrival: prometheus::IntCounter,
    shed_in_queue: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Instance threads that died (a panic outside the runner's own guard): the model is not healthy.
    dead: Arc<AtomicUsize>,
}

impl Batcher {
    /// Starts one thread per runner. `limits.max_rows == 0` runs one request per batch.
    pub fn start(
        model: &str,
        mut runners: Vec<Box<dyn Runner>>,
        config: BatchConfig,
        metrics: &ModelMetrics,
        stats: Arc<TritonStats>,
    ) -> Result<Batcher, std::io::Error> {
        let BatchConfig { limits, capacity, idle_spin, probe } = config;
        let admission =
            Admission { target: limits.target, max_rows: limits.max_rows, instances: runners.len() };
        let queue = Queue::new(capacity, idle_spin, metrics.queue_depth.clone(), admission);
        if let (Some(one), Some(_), Some(first)) = (probe, limits.target, runners.first_mut()) {
            let timed = probe::measure(first.as_mut(), &one, limits.max_rows.max(1), probe::BUDGET);
            for &(rows, took) in &timed {
                metrics.batch_cost.publish(&queue.record_cost(0, rows, took), rows);
            }
            tracing::info!(model, sizes = timed.len(), "timed the batch sizes for the latency target");
        }
        let mut threads = Vec::with_capacity(runners.len());
        let dead = Arc::new(AtomicUsize::new(0));
        for (i, runner) in runners.into_iter().enumerate() {
            let worker = Worker {
                queue: queue.clone(),
                instance: i,
                runner,
                limits: limits.clone(),
                metrics: metrics.clone(),
                stats: stats.clone(),
                batches: 0,
            };
            let name: String = format!("{model}#{i}").chars().take(15).collect();
            let (dead, deaths, model) = (dead.clone(), metrics.instance_deaths.clone(), model.to_string());
            let guarded = move || {
                if catch_unwind(AssertUnwindSafe(|| worker.run())).is_err() {
                    dead.fetch_add(1, Ordering::AcqRel);
                    deaths.inc();
                    tracing::error!(
                        model,
                        instance = i,
                        "a model instance thread died; readiness now answers 503"
                    );
                }
            };
            threads.push(std::thread::Builder::new().name(name).spawn(guarded)?);
        }
        Ok(Batcher {
            model: model.to_string(),
            queue,
            capacity,
            batchable: limits.max_rows > 0,
            target: limits.target,
            shed_at_arrival: metrics.shed_at_arrival.clone(),
            shed_in_queue: metrics.shed_in_queue.clone(),
            in_flight: metrics.in_flight.clone(),
            threads: Mutex::new(threads),
            dead,
        })
    }

    /// Queues one request and waits for its outputs. `inputs` are in the model's order and already
    /// checked; `alone` keeps the request out of shared batches. The request is dropped unrun if it is
    /// still queued at `timeout`, or if the caller goes away (this future is dropped) before an instance
    /// takes it.
    pub async fn submit(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        alone: bool,
        timeout: Duration,
    ) -> Result<BatchReply, Error> {
        let enqueued = Instant::now();
        let (reply, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let alone = alone || !self.batchable;
        let key = if alone { Vec::new() } else { inputs.iter().map(|t| t.shape[1..].to_vec()).collect() };
        let deadline = enqueued + timeout;
        let span = tracing::Span::current();
        let entry = Entry { inputs, rows, key, alone, enqueued, deadline, state: state.clone(), reply, span };
        self.queue.push(entry).map_err(|e| match e {
            PushError::Full => Error::QueueFull { model: self.model.clone(), capacity: self.capacity },
            PushError::Closed => Error::ShuttingDown,
            PushError::Shed { predicted } => self.shed(&self.shed_at_arrival, predicted),
        })?;
        let _guard = InFlight::new(&state, &self.in_flight);
        let received = match tokio::time::timeout_at(deadline.into(), &mut rx).await {
            Ok(received) => received,
            // Still queued: give up now. Already taken: the batch is running, so wait for it.
            Err(_) if cancel(&state) => Ok(Err(Failure::Timeout { waited: enqueued.elapsed() })),
            Err(_) => rx.await,
        };
        match received {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(Failure::Timeout { waited })) => {
                Err(Error::Timeout { model: self.model.clone(), waited, timeout })
            }
            Ok(Err(Failure::Shed { predicted })) => Err(self.shed(&self.shed_in_queue, predicted)),
            Ok(Err(Failure::Inference { reason, invalid_input: true })) => {
                Err(Error::BadRequest(format!("model '{}' rejected the request: {reason}", self.model)))
            }
            Ok(Err(Failure::Inference { reason, .. })) => {
                Err(Error::Inference { model: self.model.clone(), source: reason.into() })
            }
            Err(_) => Err(Error::Inference {
                model: self.model.clone(),
                source: "the model instance stopped".into(),
            }),
        }
    }

    /// Sheds at arrival, before the body is read, a request of one row that the latency target would
    /// shed anyway once queued: it costs the server as little as a refusal can.
    pub fn admit_early(&self) -> Result<(), Error> {
        match self.queue.would_admit(1) {
            Err(PushError::Shed { predicted }) => Err(self.shed(&self.shed_at_arrival, predicted)),
            _ => Ok(()),
        }
    }

    fn shed(&self, stage: &prometheus::IntCounter, predicted: Duration) -> Error {
        stage.inc();
        Error::Shed { model: self.model.clone(), predicted, target: self.target.unwrap_or_default() }
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every instance thread is still alive.
    pub fn healthy(&self) -> bool {
        self.dead.load(Ordering::Acquire) == 0
    }

    /// Stops accepting requests and waits until every queued one has been answered.
    pub fn shutdown(&self) {
        self.queue.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn cancel(state: &AtomicU8) -> bool {
    state.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// Counts the request as in flight, and withdraws it from the queue if the caller goes away first (the
/// caller's own count, `metrics::Observation`, says cancelled).
struct InFlight<'a> {
    state: &'a AtomicU8,
    gauge: &'a prometheus::IntGauge,
}

impl<'a> InFlight<'a> {
    fn new(state: &'a AtomicU8, gauge: &'a prometheus::IntGauge) -> InFlight<'a> {
        gauge.inc();
        InFlight { state, gauge }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        cancel(self.state);
        self.gauge.dec();
    }
}
