//! With a latency target, the cost of each batch size is timed once at start-up, before the first
//! request. Otherwise a fresh instance admits everything until batches have run, then knows only the
//! sizes its first traffic happened to make: a larger size is predicted from smaller ones, and for a
//! model whose cost is mostly fixed that prediction is dear enough that such batches are never let
//! through, so never learned. A pod added by a scale-up meets its heaviest traffic in its first
//! seconds, which is when the target matters most.

use std::time::{Duration, Instant};

use super::worker::{run_guarded, stack};
use crate::model::Runner;
use crate::protocol::Tensor;

/// How long start-up may spend timing batches; the sizes not reached are learned from traffic.
pub const BUDGET: Duration = Duration::from_secs(1);

/// The batch sizes timed: one per size class (1, 2, 4, ...) up to `max_rows`, and `max_rows` itself.
pub fn sizes(max_rows: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> =
        std::iter::successors(Some(1usize), |r| r.checked_mul(2)).take_while(|&r| r < max_rows).collect();
    if max_rows > 0 {
        sizes.push(max_rows);
    }
    sizes
}

/// Runs `one` (one request's inputs, one row each) stacked to each of `sizes(max_rows)`: once so that
/// ONNX Runtime sets up that shape, once timed. Stops at the first failure (a made-up input a model
/// refuses), or before a size that would overrun `budget`. Returns each size timed, with its time.
pub fn measure(
    runner: &mut dyn Runner,
    one: &[Tensor],
    max_rows: usize,
    budget: Duration,
) -> Vec<(usize, Duration)> {
    let started = Instant::now();
    let mut timed: Vec<(usize, Duration)> = Vec::new();
    for rows in sizes(max_rows) {
        // Two runs of this size, at most proportionally dearer than the last size timed.
        let expected = timed.last().map_or(Duration::ZERO, |&(last, took)| {
            took.saturating_mul(2 * u32::try_from(rows.div_ceil(last)).unwrap_or(u32::MAX))
        });
        if started.elapsed() + expected >= budget {
            break;
        }
        let Some(inputs) = stacked(one, rows) else { break };
        if !runs(runner, inputs.clone()) {
            break;
        }
        let at = Instant::now();
        if !runs(runner, inputs) {
            break;
        }
        timed.push((rows, at.elapsed()));
    }
    timed
}

/// `one` repeated to `rows` rows, stacked as the worker stacks a batch; `None` when an input has no
/// dimension to stack along (a scalar).
fn stacked(one: &[Tensor], rows: usize) -> Option<Vec<Tensor>> {
    (rows == 1 || one.iter().all(|t| !t.shape.is_empty())).then(|| stack(vec![one.to_vec(); rows]))
}

/// Whether the runner answered; a panic, like an error, is a no.
fn runs(runner: &mut dyn Runner, inputs: Vec<Tensor>) -> bool {
    run_guarded(runner, inputs).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunError;
    use crate::protocol::TensorData;

    /// Records the rows of every batch it is given; refuses batches above `most` rows.
    struct Recorder {
        seen: Vec<usize>,
        most: usize,
    }

    impl Runner for Recorder {
        fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
            let rows = inputs[0].shape[0];
            self.seen.push(rows);
            match rows <= self.most {
                true => Ok(inputs),
                false => Err(RunError::from(format!("{rows} rows is too many"))),
            }
        }
    }

    fn one_row() -> Vec<Tensor> {
        vec![Tensor { name: "x".into(), shape: vec![1, 3], data: TensorData::Fp32(vec![1.0, 2.0, 3.0]) }]
    }

    #[test]
    fn one_size_of_each_class_is_timed_up_to_the_largest_batch() {
        assert_eq!(sizes(64), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(sizes(48), [1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(0), Vec::<usize>::new());
    }

    #[test]
    fn each_size_runs_twice_and_the_second_run_is_the_one_timed() {
        let mut runner = Recorder { seen: vec![], most: 64 };
        let timed = measure(&mut runner, &one_row(), 4, BUDGET);
        assert_eq!(runner.seen, [1, 1, 2, 2, 4, 4]);
        assert_eq!(timed.iter().map(|(rows, _)| *rows).collect::<Vec<_>>(), [1, 2, 4]);
    }

    #[test]
    fn timing_stops_at_the_first_size_the_model_refuses() {
        let mut runner = Recorder { seen: vec![], most: 2 };
        let timed = measure(&mut runner, &one_row(), 8, BUDGET);
        assert_eq!(runner.seen, [1, 1, 2, 2, 4]);
        assert_eq!(timed.len(), 2);
    }

    #[test]
    fn a_scalar_input_is_never_stacked_and_a_runner_that_panics_ends_the_timing() {
        let scalar = vec![Tensor { name: "k".into(), shape: vec![], data: TensorData::Fp32(vec![7.0]) }];
        assert_eq!(stacked(&scalar, 1), Some(scalar.clone()));
        assert_eq!(stacked(&scalar, 2), None);
        // The recorder reads the batch dimension, which a scalar lacks, and panics.
        let mut runner = Recorder { seen: vec![], most: 64 };
        assert_eq!(measure(&mut runner, &scalar, 8, BUDGET), vec![]);
    }

    /// Every batch takes 30 ms whatever its size.
    struct Slow;

    impl Runner for Slow {
        fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
            std::thread::sleep(Duration::from_millis(30));
            Ok(inputs)
        }
    }

    #[test]
    fn a_size_whose_two_runs_would_overrun_the_budget_is_not_started() {
        // 1 row takes 60 ms (two runs); 2 rows are expected to take up to 120 ms more: past 150 ms.
        let timed = measure(&mut Slow, &one_row(), 64, Duration::from_millis(150));
        assert_eq!(timed.iter().map(|(rows, _)| *rows).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn nothing_is_timed_without_a_budget() {
        let mut runner = Recorder { seen: vec![], most: 64 };
        assert_eq!(measure(&mut runner, &one_row(), 8, Duration::ZERO), vec![]);
        assert_eq!(runner.seen, Vec::<usize>::new());
    }
}
