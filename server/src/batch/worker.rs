//! An instance thread: takes a batch from the queue, stacks the requests' inputs, runs the model once,
//! and splits the outputs back to each request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::policy::Limits;
use super::queue::{BatchReply, Entry, Failure, Queue};
use crate::metrics::ModelMetrics;
use crate::model::{RunError, Runner};
use crate::protocol::Tensor;
use crate::protocol::tensor::{concat_rows, split_rows};
use crate::stats::{BatchTimes, TritonStats};

pub struct Worker {
    pub queue: Queue,
    /// This instance's number, under which the queue tracks its batch in progress.
    pub instance: usize,
    pub runner: Box<dyn Runner>,
    pub limits: Limits,
    pub metrics: ModelMetrics,
    pub stats: Arc<TritonStats>,
    /// Batches this instance has run: the id of the next one's span.
    pub batches: u64,
}

impl Worker {
    /// Runs batches until the queue is closed and drained.
    pub fn run(mut self) {
        while let Some(batch) = self.queue.next_batch(&self.limits, self.instance) {
            self.execute(batch);
        }
    }

    fn execute(&mut self, batch: Vec<Entry>) {
        let started = Instant::now();
        let rows: Vec<usize> = batch.iter().map(|e| e.rows).collect();
        let total_rows: usize = rows.iter().sum();
        self.batches += 1;
        let span =
            tracing::info_span!("batch", instance = self.instance, id = self.batches, rows = total_rows);
        let _entered = span.enter();
        let mut inputs_per_request = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for e in batch {
            span.follows_from(&e.span);
            inputs_per_request.push(e.inputs);
            waiting.push(Waiting { reply: e.reply, queue_time: started - e.enqueued, span: e.span });
        }
        let inputs = stack(inputs_per_request);
        let infer_start = Instant::now();
        let result = run_guarded(self.runner.as_mut(), inputs);
        let infer_end = Instant::now();
        let result = result.and_then(|outputs| unstack(outputs, &rows, total_rows).map_err(RunError::from));
        let done = Instant::now();
        let times = BatchTimes {
            rows: total_rows,
            requests: rows.len(),
            input: infer_start - started,
            infer: infer_end - infer_start,
            output: done - infer_end,
        };
        self.stats.record_batch(times);
        let compute = done - started;
        self.metrics.compute.observe(compute.as_secs_f64());
        let cost = self.queue.record_cost(self.instance, total_rows, compute);
        self.metrics.batch_cost.publish(&cost, total_rows);
        self.metrics.batch_size.observe(total_rows as f64);
        match result {
            Ok(per_request) => {
                for (w, outputs) in waiting.into_iter().zip(per_request) {
                    tracing::debug!(parent: &w.span, queue_seconds = w.queue_time.as_secs_f64(), "answered in its batch");
                    let queue_time = w.queue_time;
                    let _ = w.reply.send(Ok(BatchReply {
                        outputs,
                        queue_time,
                        compute_time: compute,
                        batch_rows: total_rows,
                    }));
                }
            }
            Err(e) => {
                let invalid_input = e.invalid_input && waiting.len() == 1;
                if !invalid_input {
                    tracing::error!(reason = %e.message, rows = total_rows, "batch failed");
                }
                for w in waiting {
                    tracing::debug!(parent: &w.span, reason = %e.message, "failed in its batch");
                    let _ =
                        w.reply.send(Err(Failure::Inference { reason: e.message.clone(), invalid_input }));
                }
            }
        }
    }
}

/// A request of the running batch, waiting for its share of the outputs.
struct Waiting {
    reply: tokio::sync::oneshot::Sender<super::queue::Reply>,
    queue_time: std::time::Duration,
    span: tracing::Span,
}

/// Runs one batch; a runner that panics fails the batch instead of the instance thread.
pub(super) fn run_guarded(runner: &mut dyn Runner, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
    catch_unwind(AssertUnwindSafe(|| runner.run(inputs)))
        .unwrap_or_else(|_| Err(RunError::from("the model runner panicked".to_string())))
}

/// One request's inputs are used as they are; several are concatenated input by input.
pub(super) fn stack(mut per_request: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    if per_request.len() == 1 {
        return per_request.pop().unwrap_or_default();
    }
    let n_inputs = per_request[0].len();
    (0..n_inputs)
        .map(|i| {
            let parts: Vec<&Tensor> = per_request.iter().map(|inputs| &inputs[i]).collect();
            concat_rows(&parts[0].name, &parts)
        })
        .collect()
}

/// Splits each output by the requests' row counts; returns the outputs of each request.
fn unstack(outputs: Vec<Tensor>, rows: &[usize], total_rows: usize) -> Result<Vec<Vec<Tensor>>, String> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let mut per_request: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        if output.rows() != Some(total_rows) {
            return Err(format!(
                "output '{}' has shape {:?}, which does not start with the batch's {total_rows} rows, so it \
                 cannot be split between requests; set max_batch_size = 0 for this model",
                output.name, output.shape
            ));
        }
        for (mine, piece) in per_request.iter_mut().zip(split_rows(output, rows)) {
            mine.push(piece);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TensorData;

    fn fp32(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor { name: "y".into(), shape: shape.to_vec(), data: TensorData::Fp32(data.to_vec()) }
    }

    #[test]
    fn outputs_are_split_by_each_requests_rows() {
        let out = unstack(vec![fp32(&[3, 1], &[1.0, 2.0, 3.0])], &[2, 1], 3).unwrap();
        assert_eq!(out, vec![vec![fp32(&[2, 1], &[1.0, 2.0])], vec![fp32(&[1, 1], &[3.0])]]);
    }

    #[test]
    fn an_output_without_the_batch_dimension_cannot_be_split() {
        let err = unstack(vec![fp32(&[1], &[9.0])], &[1, 1], 2).unwrap_err();
        assert!(
            err.starts_with("output 'y' has shape [1], which does not start with the batch's 2 rows"),
            "{err}"
        );
    }

    #[test]
    fn a_single_request_is_passed_through_untouched() {
        let inputs = vec![vec![fp32(&[1, 2], &[1.0, 2.0])]];
        assert_eq!(stack(inputs), vec![fp32(&[1, 2], &[1.0, 2.0])]);
    }
}
