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

    /// Requests per second the model answers in full batches, by the mean cost (slow batches included).
    fn capacity(&self) -> f64 {
        let ratio: f64 = RATIOS.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum();
        MAX_ROWS as f64 / (self.mean(MAX_ROWS) * ratio / 1e6)
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

    /// What a batch of `rows` really takes, and its ratio to the mean cost, drawn from RATIOS.
    fn cost(&mut self, rows: usize) -> (Duration, f64) {
        let u = self.next();
        let ratio = RATIOS.windows(2).find(|w| u < w[1].0).map_or(RATIOS[RATIOS.len() - 1].1, |w| {
            w[0].1 + (w[1].1 - w[0].1) * (u - w[0].0) / (w[1].0 - w[0].0)
        });
        (Duration::from_secs_f64(self.1.mean(rows) * ratio / 1e6), ratio)
    }
}

/// How a batch's time varies about its size class's average on the real server: (share of batches,
/// ratio at most), between which the ratio is drawn linearly. Measured: heavy_mlp, one intra-op thread,
/// `kubeinfer-bench overload` at 0.5x and 1.6x capacity on this two-core VM, 12,141 batches
/// (docs/benchmarks.md). One batch in 400 takes more than twice the average.
const RATIOS: [(f64, f64); 15] = [
    (0.0, 0.43),
    (0.01, 0.75),
    (0.05, 0.84),
    (0.10, 0.88),
    (0.25, 0.95),
    (0.50, 0.99),
    (0.75, 1.04),
    (0.90, 1.12),
    (0.95, 1.19),
    (0.98, 1.31),
    (0.99, 1.44),
    (0.995, 1.68),
    (0.998, 2.05),
    (0.999, 2.41),
    (1.0, 9.98),
];

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    capacity: f64,
    offered: usize,
    answered: usize,
    in_time: usize,
    shed_at_arrival: usize,
    shed_in_queue: usize,
    /// Of those shed, the ones shed while a batch that took over twice its mean delayed them.
    shed_behind_slow: usize,
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

/// The state of one simulated run: one instance, its queue, and the counts so far.
struct Sim {
    target: Duration,
    limits: Limits,
    admission: Admission,
    noise: Noise,
    cost: CostModel,
    queue: VecDeque<Req>,
    /// The batch in progress: when it started, its rows, and when it really ends.
    running: Option<(Instant, usize, Instant)>,
    /// Requests arriving before this are not counted (the cost is being learned).
    warm: Instant,
    /// Until when a request may be late because of a batch that took over twice its mean: its end
    /// plus the target.
    slow_until: Option<Instant>,
    out: Outcome,
}

impl Sim {
    fn arrive(&mut self, now: Instant) {
        let counted = now >= self.warm;
        self.out.offered += usize::from(counted);
        let busy = self.running.map(|(start, rows, _)| (start, rows));
        let queued = (self.queue.len(), self.queue.len());
        if admit(self.admission, &self.cost, queued, &[busy], 1, now, None).is_err() {
            self.shed(now, usize::from(counted), true);
        } else {
            self.queue.push_back(req(1, 4, now));
        }
    }

    fn shed(&mut self, now: Instant, requests: usize, at_arrival: bool) {
        *(if at_arrival { &mut self.out.shed_at_arrival } else { &mut self.out.shed_in_queue }) += requests;
        if self.slow_until.is_some_and(|until| now <= until) {
            self.out.shed_behind_slow += requests;
        }
    }

    /// The instance is free: it takes the next batch, if any.
    fn start_next(&mut self, now: Instant) {
        while let decision @ (Decision::Shed(_) | Decision::Run(_)) =
            decide(&self.queue, &self.limits, &self.cost, now)
        {
            let (Decision::Shed(picked) | Decision::Run(picked)) = &decision else { break };
            let taken: Vec<Req> = picked.iter().rev().filter_map(|&i| self.queue.remove(i)).collect();
            let counted: Vec<&Req> = taken.iter().filter(|r| r.enqueued() >= self.warm).collect();
            if matches!(decision, Decision::Shed(_)) {
                self.shed(now, counted.len(), false);
                continue;
            }
            let (took, ratio) = self.noise.cost(taken.len());
            let done = now + took;
            if ratio > 2.0 {
                self.slow_until = Some(done + self.target);
            }
            self.running = Some((now, taken.len(), done));
            self.out.batches += usize::from(now >= self.warm);
            self.out.answered += counted.len();
            self.out.in_time += counted.iter().filter(|r| done - r.enqueued() <= self.target).count();
            break;
        }
    }
}

/// Offers one single-row request every `1 / (load × capacity)` seconds for `seconds`, counting only
/// those that arrive after the first second (the cost is learned by then).
fn simulate(curve: Curve, load: f64, target: Duration, seconds: f64) -> Outcome {
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / (load * curve.capacity()));
    let end = t0 + Duration::from_secs_f64(seconds + 1.0);
    let mut sim = Sim {
        target,
        limits: Limits {
            max_rows: MAX_ROWS,
            max_delay: Duration::ZERO,
            preferred: vec![],
            target: Some(target),
        },
        admission: Admission { target: Some(target), max_rows: MAX_ROWS, instances: 1 },
        noise: Noise(0x9e37_79b9_7f4a_7c15, curve),
        cost: CostModel::default(),
        queue: VecDeque::new(),
        running: None,
        warm: t0 + Duration::from_secs(1),
        slow_until: None,
        out: Outcome { capacity: curve.capacity(), ..Outcome::default() },
    };
    let (mut next_arrival, mut now) = (t0, t0);
    while now < end {
        match sim.running {
            Some((start, rows, done)) if done <= next_arrival => {
                now = done;
                sim.cost.observe(rows, done - start);
                sim.running = None;
            }
            _ => {
                now = next_arrival;
                next_arrival += gap;
                sim.arrive(now);
                if sim.running.is_some() {
                    continue;
                }
            }
        }
        sim.start_next(now);
    }
    sim.out
}

fn report(load: f64, o: &Outcome, seconds: f64) -> String {
    format!(
        "at {load}x: goodput {:.2} of capacity, {} of {} answered, {} in time, shed {} at arrival and {} in queue ({} behind a slow batch), mean batch {:.1}",
        o.goodput(seconds),
        o.answered,
        o.offered,
        o.in_time,
        o.shed_at_arrival,
        o.shed_in_queue,
        o.shed_behind_slow,
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

/// One batch in 1,000 takes 2.4 to 10 times its mean; at half of capacity, what waits behind it cannot
/// be answered in time, and only that is shed.
#[test]
fn at_half_of_capacity_only_what_waits_behind_a_slow_batch_is_shed_and_every_answer_is_in_time() {
    for (curve, target) in [(SLOW_DAY, 20), (FAST_DAY, 20), (FAST_DAY, 15)] {
        let (o, said) = run(curve, 0.5, target);
        assert_eq!(o.shed_at_arrival + o.shed_in_queue, o.shed_behind_slow, "{said}");
        assert_eq!(o.in_time, o.answered, "{said}");
        let shed = o.shed_at_arrival + o.shed_in_queue;
        assert!(o.offered - o.answered - shed <= 10, "only the last few are still running: {said}");
    }
}

/// The goal at 1.6x capacity, and at 2x: three quarters of capacity answered in time, and
/// so few answers late that the p99 is within the target.
#[test]
fn beyond_capacity_three_quarters_of_capacity_is_answered_and_all_but_one_in_200_answers_in_time() {
    for (load, target) in [(1.6, 15), (2.0, 15), (1.6, 20), (2.0, 20)] {
        let (o, said) = run(FAST_DAY, load, target);
        assert!(o.goodput(5.0) >= 0.75, "{said}");
        assert!(o.mean_batch() >= 25.0, "{said}");
        // The late ones ran in batches slower than the margin allows for (one in 200 is aimed at).
        assert!(o.in_time * 1000 >= o.answered * 995, "{said}");
    }
}

/// Where most of a batch's cost is fixed, small batches answer few rows per second. Predicted by
/// doubling per size class above the largest class learned, as before, this simulation gave 0.69 of
/// capacity at 20 ms (0.56 at 15 ms); along the line through the learned classes, 0.72 (0.60); with
/// the margin pooled over all classes (cost.rs), 0.80 (0.69). The per-class margin before it gave
/// 0.82 here but only 98.4 % of answers in time, as a slow batch inflated a class for good.
#[test]
fn a_model_whose_cost_is_mostly_fixed_keeps_three_quarters_of_capacity_in_time_beyond_it() {
    for load in [1.6, 2.0] {
        let (o, said) = run(SLOW_DAY, load, 20);
        assert!(o.goodput(5.0) >= 0.75, "{said}");
        assert!(o.mean_batch() >= 25.0, "{said}");
        assert!(o.in_time * 1000 >= o.answered * 995, "{said}");
    }
}

/// The figures in docs/benchmarks.md: `cargo test -p kubeinfer-server --lib simulation::figures --
/// --ignored --nocapture`.
#[test]
#[ignore = "prints figures; asserts nothing"]
fn figures() {
    for (name, curve) in [("slow", SLOW_DAY), ("fast", FAST_DAY)] {
        for target in [15, 20] {
            for load in [0.5, 1.0, 1.6, 2.0] {
                println!("{name} curve, {}", run(curve, load, target).1);
            }
        }
    }
}
