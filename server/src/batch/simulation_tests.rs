//! The whole latency-target policy (arrival admission, batch forming, shedding, learning the cost) run
//! against open-loop load on a simulated clock: one instance, a model whose batches cost a fixed part
//! plus a part per row, with noise and the odd stall, as heavy_mlp's do on two shared cores. No
//! threads, no sleeping: each run takes milliseconds and gives the same figures every time.

use super::tests::{Req, req};
use super::*;
use std::collections::VecDeque;

const MAX_ROWS: usize = 64;

/// A model's mean batch cost: a fixed part and a part per row, in microseconds.
#[derive(Clone, Copy)]
struct Curve {
    fixed_us: f64,
    per_row_us: f64,
}

/// heavy_mlp under overload on a slow day of this VM (the bench's learned costs): one row 2.6 ms, 64
/// rows 12.1 ms. Mostly fixed cost.
const SLOW_DAY: Curve = Curve { fixed_us: 2_450.0, per_row_us: 150.0 };
/// The same on a fast day: one row 1.1 ms, 64 rows 8.7 ms.
const FAST_DAY: Curve = Curve { fixed_us: 1_000.0, per_row_us: 120.0 };

impl Curve {
    fn mean(&self, rows: usize) -> f64 {
        self.fixed_us + self.per_row_us * rows as f64
    }

    /// Requests per second the model answers in full batches, by the mean cost (stalls included).
    fn capacity(&self) -> f64 {
        MAX_ROWS as f64 / (self.mean(MAX_ROWS) * 1.02 / 1e6)
    }
}

/// xorshift64*: the noise, the same on every run.
struct Noise(u64, Curve);

impl Noise {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What a batch of `rows` really takes: its mean cost times 0.8 to 1.2, and one batch in fifty
    /// stalls for twice that.
    fn cost(&mut self, rows: usize) -> Duration {
        let mean = self.1.mean(rows);
        let stall = if self.next() < 0.02 { 2.0 } else { 1.0 };
        Duration::from_secs_f64(mean * (0.8 + 0.4 * self.next()) * stall / 1e6)
    }
}

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    capacity: f64,
    offered: usize,
    answered: usize,
    in_time: usize,
    shed_at_arrival: usize,
    shed_in_queue: usize,
    batches: usize,
}

impl Outcome {
    /// Answers within the target per second of the measured window, as a share of capacity.
    fn goodput(&self, seconds: f64) -> f64 {
        self.in_time as f64 / seconds / self.capacity
    }

    fn mean_batch(&self) -> f64 {
        self.answered as f64 / self.batches.max(1) as f64
    }
}

/// Offers one single-row request every `1 / (load × capacity)` seconds for `seconds`, counting only
/// those that arrive after the first second (the cost is learned by then).
fn simulate(curve: Curve, load: f64, target: Duration, seconds: f64) -> Outcome {
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / (load * curve.capacity()));
    let warm = t0 + Duration::from_secs(1);
    let end = t0 + Duration::from_secs_f64(seconds + 1.0);
    let limits =
        Limits { max_rows: MAX_ROWS, max_delay: Duration::ZERO, preferred: vec![], target: Some(target) };
    let admission = Admission { target: Some(target), max_rows: MAX_ROWS, instances: 1 };
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15, curve);
    let mut cost = CostModel::default();
    let mut out = Outcome { capacity: curve.capacity(), ..Outcome::default() };
    let mut queue: VecDeque<Req> = VecDeque::new();
    // The batch in progress: when it started, its rows, and when it really ends.
    let mut running: Option<(Instant, usize, Instant)> = None;
    let mut next_arrival = t0;
    let mut now = t0;
    while now < end {
        match running {
            Some((start, rows, done)) if done <= next_arrival => {
                now = done;
                cost.observe(rows, done - start);
                running = None;
            }
            _ => {
                now = next_arrival;
                next_arrival += gap;
                let counted = now >= warm;
                out.offered += usize::from(counted);
                let busy = running.map(|(start, rows, _)| (start, rows));
                let queued = (queue.len(), queue.len());
                if admit(admission, &cost, queued, &[busy], 1, now, None).is_err() {
                    out.shed_at_arrival += usize::from(counted);
                    continue;
                }
                queue.push_back(req(1, 4, now));
                if running.is_some() {
                    continue;
                }
            }
        }
        // The instance is free: it takes the next batch, if any.
        while let decision @ (Decision::Shed(_) | Decision::Run(_)) = decide(&queue, &limits, &cost, now) {
            let (Decision::Shed(picked) | Decision::Run(picked)) = &decision else { break };
            let taken: Vec<Req> = picked.iter().rev().filter_map(|&i| queue.remove(i)).collect();
            let counted = taken.iter().filter(|r| r.enqueued() >= warm);
            if matches!(decision, Decision::Shed(_)) {
                out.shed_in_queue += counted.count();
                continue;
            }
            let done = now + noise.cost(taken.len());
            running = Some((now, taken.len(), done));
            out.batches += usize::from(now >= warm);
            for r in counted {
                out.answered += 1;
                out.in_time += usize::from(done - r.enqueued() <= target);
            }
            break;
        }
    }
    out
}

fn report(load: f64, o: &Outcome, seconds: f64) -> String {
    format!(
        "at {load}x: goodput {:.2} of capacity, {} of {} answered, {} in time, shed {} at arrival and {} in queue, mean batch {:.1}",
        o.goodput(seconds),
        o.answered,
        o.offered,
        o.in_time,
        o.shed_at_arrival,
        o.shed_in_queue,
        o.mean_batch()
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(curve: Curve, load: f64, target: u64) -> (Outcome, String) {
    let o = simulate(curve, load, ms(target), 5.0);
    let said = format!("{target} ms {}", report(load, &o, 5.0));
    (o, said)
}

#[test]
fn at_half_of_capacity_nothing_is_shed_and_every_answer_is_in_time() {
    for (curve, target) in [(SLOW_DAY, 20), (FAST_DAY, 20), (FAST_DAY, 15)] {
        let (o, said) = run(curve, 0.5, target);
        assert_eq!((o.shed_at_arrival, o.shed_in_queue), (0, 0), "{said}");
        assert_eq!(o.in_time, o.answered, "{said}");
        assert!(o.offered - o.answered <= 10, "only the last few are still running: {said}");
    }
}

/// The goal at 1.6x capacity, and at 2x: three quarters of capacity answered in time.
#[test]
fn beyond_capacity_three_quarters_of_capacity_is_answered_and_nearly_all_answers_are_in_time() {
    for (load, target) in [(1.6, 15), (2.0, 15), (1.6, 20), (2.0, 20)] {
        let (o, said) = run(FAST_DAY, load, target);
        assert!(o.goodput(5.0) >= 0.75, "{said}");
        assert!(o.mean_batch() >= 25.0, "{said}");
        // The late ones ran in batches that stalled (one in fifty takes twice its cost).
        assert!(o.in_time * 1000 >= o.answered * 990, "{said}");
    }
}

/// Where most of a batch's cost is fixed, small batches answer few rows per second. Predicted by
/// doubling per size class above the largest class learned, as before, this simulation gave 0.69 of
/// capacity at 20 ms (0.56 at 15 ms); along the line through the learned classes, 0.72 (0.60).
#[test]
fn a_model_whose_cost_is_mostly_fixed_keeps_seven_tenths_of_capacity_in_time_beyond_it() {
    for load in [1.6, 2.0] {
        let (o, said) = run(SLOW_DAY, load, 20);
        assert!(o.goodput(5.0) >= 0.70, "{said}");
        assert!(o.mean_batch() >= 20.0, "{said}");
        assert!(o.in_time * 100 >= o.answered * 98, "{said}");
    }
}
