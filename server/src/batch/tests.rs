//! The batcher driven by a stand-in runner whose every run waits at a gate the test opens, so that
//! what is queued while an instance is busy is exactly known.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::metrics::Metrics;
use crate::model::RunError;
use crate::protocol::TensorData;

const PATIENCE: Duration = Duration::from_secs(10);

/// y = 2x on one FP32 input. Reports each batch's rows on `started`, then waits for a token on `gate`.
struct Gated {
    started: mpsc::Sender<usize>,
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Runner for Gated {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        let x = &inputs[0];
        let _ = self.started.send(x.shape[0]);
        let gate = self.gate.lock().map_err(|_| RunError::from("gate poisoned".to_string()))?;
        gate.recv_timeout(PATIENCE)
            .map_err(|_| RunError::from("the test never opened the gate".to_string()))?;
        let TensorData::Fp32(v) = &x.data else { return Err(RunError::from("not FP32".to_string())) };
        Ok(vec![Tensor {
            name: "y".into(),
            shape: x.shape.clone(),
            data: TensorData::Fp32(v.iter().map(|a| a * 2.0).collect()),
        }])
    }
}

struct Harness {
    batcher: Arc<Batcher>,
    metrics: ModelMetrics,
    started: mpsc::Receiver<usize>,
    gate: mpsc::Sender<()>,
}

fn harness(instances: usize, max_rows: usize, capacity: usize) -> Harness {
    targeted(instances, max_rows, capacity, None)
}

fn targeted(instances: usize, max_rows: usize, capacity: usize, target: Option<Duration>) -> Harness {
    let (started_tx, started) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel();
    let gate_rx = Arc::new(Mutex::new(gate_rx));
    let runners: Vec<Box<dyn Runner>> = (0..instances)
        .map(|_| Box::new(Gated { started: started_tx.clone(), gate: gate_rx.clone() }) as Box<dyn Runner>)
        .collect();
    let metrics = Metrics::new("test").for_model("m", 1, target);
    let limits = Limits { max_rows, max_delay: Duration::ZERO, preferred: vec![], target };
    let batcher = Batcher::start(
        "m",
        runners,
        BatchConfig { limits, capacity, idle_spin: Duration::ZERO, probe: None },
        &metrics,
        Arc::new(TritonStats::default()),
    )
    .unwrap();
    Harness { batcher: Arc::new(batcher), metrics, started, gate }
}

fn x(values: &[f32]) -> Vec<Tensor> {
    vec![Tensor { name: "x".into(), shape: vec![values.len(), 1], data: TensorData::Fp32(values.to_vec()) }]
}

impl Harness {
    fn submit(
        &self,
        values: &[f32],
        timeout: Duration,
    ) -> tokio::task::JoinHandle<Result<BatchReply, Error>> {
        let batcher = self.batcher.clone();
        let inputs = x(values);
        let rows = values.len();
        tokio::spawn(async move { batcher.submit(inputs, rows, false, timeout).await })
    }

    fn next_batch_rows(&self) -> usize {
        self.started.recv_timeout(PATIENCE).expect("a batch should have started")
    }

    async fn wait_for_queue(&self, len: usize) {
        for _ in 0..1000 {
            if self.batcher.queue_len() == len {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("queue never reached {len}; it holds {}", self.batcher.queue_len());
    }

    fn open(&self, times: usize) {
        for _ in 0..times {
            self.gate.send(()).unwrap();
        }
    }
}

fn y(done: &BatchReply) -> Vec<f32> {
    match &done.outputs[0].data {
        TensorData::Fp32(v) => v.clone(),
        other => panic!("unexpected output {other:?}"),
    }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_while_the_instance_is_busy_run_together_and_each_gets_its_own_rows() {
    let h = harness(1, 8, 16);
    let a = h.submit(&[1.0], LONG);
    assert_eq!(h.next_batch_rows(), 1);
    let b = h.submit(&[2.0, 3.0], LONG);
    let c = h.submit(&[4.0], LONG);
    h.wait_for_queue(2).await;
    h.open(1);
    assert_eq!(h.next_batch_rows(), 3);
    h.open(1);
    assert_eq!(y(&a.await.unwrap().unwrap()), vec![2.0]);
    let b = b.await.unwrap().unwrap();
    assert_eq!(y(&b), vec![4.0, 6.0]);
    assert_eq!(b.batch_rows, 3);
    assert_eq!(y(&c.await.unwrap().unwrap()), vec![8.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_turns_the_next_request_away_at_once() {
    let h = harness(1, 8, 2);
    let _a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let _b = h.submit(&[1.0], LONG);
    let _c = h.submit(&[1.0], LONG);
    h.wait_for_queue(2).await;
    let d = h.submit(&[1.0], LONG).await.unwrap();
    assert!(matches!(d, Err(Error::QueueFull { capacity: 2, .. })), "{d:?}");
    h.open(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_queued_at_its_timeout_is_rejected_and_never_run() {
    let h = harness(1, 8, 8);
    let a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let b = h.submit(&[5.0], Duration::from_millis(30)).await.unwrap();
    assert!(matches!(b, Err(Error::Timeout { .. })), "{b:?}");
    h.open(1);
    a.await.unwrap().unwrap();
    assert!(h.started.recv_timeout(Duration::from_millis(200)).is_err(), "the timed-out request ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_caller_left_is_dropped_before_it_is_computed() {
    let h = harness(1, 8, 8);
    let a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let b = h.submit(&[5.0], LONG);
    h.wait_for_queue(1).await;
    b.abort();
    let _ = b.await;
    h.open(1);
    a.await.unwrap().unwrap();
    assert!(h.started.recv_timeout(Duration::from_millis(200)).is_err(), "the abandoned request ran");
    assert_eq!(h.batcher.queue_len(), 0, "it was withdrawn from the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_batch_runs_queued_requests_one_by_one() {
    let h = harness(1, 0, 8);
    let a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let b = h.submit(&[2.0], LONG);
    let c = h.submit(&[3.0], LONG);
    h.wait_for_queue(2).await;
    h.open(3);
    assert_eq!((h.next_batch_rows(), h.next_batch_rows()), (1, 1));
    for (task, want) in [(a, 2.0), (b, 4.0), (c, 6.0)] {
        let done = task.await.unwrap().unwrap();
        assert_eq!((y(&done), done.batch_rows), (vec![want], 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_run_batches_in_parallel() {
    let h = harness(2, 8, 8);
    let a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let b = h.submit(&[2.0], LONG);
    // The second instance takes b while the first is still inside a's run.
    assert_eq!(h.next_batch_rows(), 1);
    h.open(2);
    assert_eq!(y(&a.await.unwrap().unwrap()), vec![2.0]);
    assert_eq!(y(&b.await.unwrap().unwrap()), vec![4.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_everything_queued_then_refuses_new_requests() {
    let h = harness(1, 1, 8);
    let a = h.submit(&[1.0], LONG);
    h.next_batch_rows();
    let b = h.submit(&[2.0], LONG);
    h.wait_for_queue(1).await;
    let batcher = h.batcher.clone();
    let stopping = std::thread::spawn(move || batcher.shutdown());
    h.open(2);
    assert_eq!(y(&a.await.unwrap().unwrap()), vec![2.0]);
    assert_eq!(y(&b.await.unwrap().unwrap()), vec![4.0]);
    stopping.join().unwrap();
    let late = h.submit(&[3.0], LONG).await.unwrap();
    assert!(matches!(late, Err(Error::ShuttingDown)), "{late:?}");
}

struct Panicky {
    calls: usize,
}

impl Runner for Panicky {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        self.calls += 1;
        if self.calls == 1 {
            panic!("boom");
        }
        Ok(inputs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_panics_fails_its_batch_and_the_instance_keeps_serving() {
    let metrics = Metrics::new("test").for_model("m", 1, None);
    let limits = Limits { max_rows: 8, max_delay: Duration::ZERO, preferred: vec![], target: None };
    let runners: Vec<Box<dyn Runner>> = vec![Box::new(Panicky { calls: 0 })];
    let config = BatchConfig { limits, capacity: 8, idle_spin: Duration::from_micros(50), probe: None };
    let batcher = Batcher::start("m", runners, config, &metrics, Arc::new(TritonStats::default())).unwrap();
    let first = batcher.submit(x(&[1.0]), 1, false, LONG).await;
    assert!(
        matches!(&first, Err(Error::Inference { source, .. }) if source.to_string() == "the model runner panicked"),
        "{first:?}"
    );
    let second = batcher.submit(x(&[1.0]), 1, false, LONG).await.unwrap();
    assert_eq!(second.outputs, x(&[1.0]));
}

/// Claims as many rows as it was given but returns one element: splitting that between requests panics
/// outside the runner's own guard, as a bug in the batcher would.
struct Lying;

impl Runner for Lying {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        Ok(vec![Tensor {
            name: "y".into(),
            shape: inputs[0].shape.clone(),
            data: TensorData::Fp32(vec![0.0]),
        }])
    }
}

#[tokio::test]
async fn an_instance_thread_that_dies_is_counted_and_makes_the_model_unhealthy() {
    let metrics = Metrics::new("test").for_model("m", 1, None);
    let limits =
        Limits { max_rows: 8, max_delay: Duration::from_millis(200), preferred: vec![], target: None };
    let config = BatchConfig { limits, capacity: 8, idle_spin: Duration::ZERO, probe: None };
    let batcher = Arc::new(
        Batcher::start("m", vec![Box::new(Lying)], config, &metrics, Arc::new(TritonStats::default()))
            .unwrap(),
    );
    assert!(batcher.healthy());
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(x(&[1.0]), 1, false, LONG).await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "inference failed for model 'm': the model instance stopped");
    }
    for _ in 0..100 {
        if !batcher.healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!batcher.healthy());
    assert_eq!(metrics.instance_deaths.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_target_requests_the_learned_cost_makes_late_are_shed_at_arrival_or_when_their_turn_comes() {
    let h = targeted(1, 1, 16, Some(Duration::from_millis(160)));
    // The first batch teaches the cost, c: at least 48 ms, predicted with the starting margin as
    // 1.25c. With B in progress, C is answered 2.5c from now, in time, and D 3.75c from now, late, for
    // any c from 43 to 64 ms.
    let a = h.submit(&[1.0], LONG);
    assert_eq!(h.next_batch_rows(), 1);
    std::thread::sleep(Duration::from_millis(48));
    h.open(1);
    assert_eq!(y(&a.await.unwrap().unwrap()), [2.0]);

    let b = h.submit(&[2.0], LONG);
    assert_eq!(h.next_batch_rows(), 1);
    let c = h.submit(&[3.0], LONG);
    h.wait_for_queue(1).await;
    let d = h.submit(&[4.0], LONG).await.unwrap().unwrap_err();
    assert!(matches!(d, Error::Shed { .. }), "{d}");
    assert!(
        d.to_string().ends_with(
            "past its latency target of 160ms: shed rather than answered late; retry later or elsewhere"
        ),
        "{d}"
    );
    // B holds the instance for longer than its cost said: C, run alone when its turn comes (at 120 ms,
    // predicted at least 1.25c), would be late.
    std::thread::sleep(Duration::from_millis(120));
    h.open(1);
    assert_eq!(y(&b.await.unwrap().unwrap()), [4.0]);
    let c = c.await.unwrap().unwrap_err();
    assert!(matches!(c, Error::Shed { .. }), "{c}");
    assert_eq!((h.metrics.shed_at_arrival.get(), h.metrics.shed_in_queue.get()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_target_the_same_load_is_queued_and_answered_late() {
    let h = harness(1, 1, 16);
    let a = h.submit(&[1.0], LONG);
    assert_eq!(h.next_batch_rows(), 1);
    let (b, c) = (h.submit(&[2.0], LONG), h.submit(&[3.0], LONG));
    h.wait_for_queue(2).await;
    h.open(3);
    for (call, want) in [(a, 2.0), (b, 4.0), (c, 6.0)] {
        assert_eq!(y(&call.await.unwrap().unwrap()), [want]);
    }
    assert_eq!((h.metrics.shed_at_arrival.get(), h.metrics.shed_in_queue.get()), (0, 0));
}
