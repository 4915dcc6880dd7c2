//! The model's batch cost curve, learned online from the batches it runs: how long one instance takes
//! for a batch of `rows`. A latency target needs it to size batches and to tell early which requests
//! cannot be answered in time. Pure: fed durations, asked for predictions.
//!
//! A prediction is the class's average plus twice its average deviation, as TCP's retransmission
//! timeout adds the deviation to the smoothed round trip. Batch times vary with what else runs on the
//! cores. Predicted by the average alone, under overload the server's own clock found only 54 to 71 %
//! of answers within the target (heavy_mlp at 1.6x capacity); with the deviation, 85 to 98 %
//! (docs/benchmarks.md).

use std::time::Duration;

/// Size classes by rows: 1, 2, 3-4, 5-8, ..., up to 65536 (the largest max_batch_size).
const CLASSES: usize = 17;
/// Each batch moves its class's estimate by this share: a handful of batches follow a real change (a
/// noisy neighbour, a thermal limit), while one outlier moves it little.
const WEIGHT: f64 = 0.2;

/// Deviations added to the average in a prediction.
const SPREAD: f64 = 2.0;
/// The most a single batch counts for, as a multiple of its class's prediction.
const OUTLIER: f64 = 2.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostModel {
    /// Seconds per batch, by size class; `None` until a batch of that class has run.
    seconds: [Option<f64>; CLASSES],
    /// The mean absolute deviation from `seconds`, by class, followed the same way.
    spread: [f64; CLASSES],
}

/// The class of a batch of `rows`: the smallest k with rows <= 2^k.
fn class(rows: usize) -> usize {
    (rows.max(1).next_power_of_two().trailing_zeros() as usize).min(CLASSES - 1)
}

impl CostModel {
    pub fn observe(&mut self, rows: usize, took: Duration) {
        let k = class(rows);
        // One stall (the VM descheduled, a page fault storm) counts as at most twice the prediction:
        // taken whole, it raised the average and the deviation so far that arrivals were shed for
        // many batches after it, at half of capacity. A lasting slowdown still doubles the
        // prediction every few batches.
        let took = match self.upper(k) {
            Some(predicted) => took.as_secs_f64().min(OUTLIER * predicted),
            None => took.as_secs_f64(),
        };
        let slot = &mut self.seconds[k];
        if let Some(before) = *slot {
            self.spread[k] += WEIGHT * ((took - before).abs() - self.spread[k]);
        }
        *slot = Some(match *slot {
            Some(before) => before + WEIGHT * (took - before),
            None => took,
        });
    }

    /// The time a batch of `rows` should take: its class's estimate, else the tighter of two bounds
    /// from the nearest classes that have one: a batch costs at most proportionally more than a smaller
    /// one, and no more than a larger one. The latter also caps a class's own estimate: a class that
    /// runs rarely under load (single rows, when batches are full) keeps an outlier for long, and
    /// would otherwise have every request shed as hopeless. `None` before any batch has run (a target
    /// is then not enforced).
    pub fn predict(&self, rows: usize) -> Option<Duration> {
        let k = class(rows);
        let above = (k + 1..CLASSES).filter_map(|j| self.upper(j)).reduce(f64::min);
        let seconds = match self.upper(k) {
            Some(own) => above.map_or(own, |a| own.min(a)),
            None => {
                let below = self.extrapolate(k);
                match (below, above) {
                    (Some(b), Some(a)) => b.min(a),
                    (Some(s), None) | (None, Some(s)) => s,
                    (None, None) => return None,
                }
            }
        };
        Some(Duration::from_secs_f64(seconds))
    }

    /// An unlearned class `k` predicted from the learned classes below it, each taken at its largest
    /// row count: on along the steeper of the line through the nearest two and the line from the
    /// smallest to the nearest, and never more than proportionally more than the nearest (the only
    /// bound when one class is learned). Doubling per class, as before, predicted a model whose cost is
    /// mostly fixed (heavy_mlp on two cores) so dear at large batches that under a target they never
    /// ran and their cost was never learned (simulation_tests.rs).
    fn extrapolate(&self, k: usize) -> Option<f64> {
        let point = |j: usize| Some(((1u64 << j) as f64, self.upper(j)?));
        let mut learned = (0..k).rev().filter_map(point);
        let nearest = learned.next()?;
        let proportional = nearest.1 * (1u64 << k) as f64 / nearest.0;
        let slope = |a: (f64, f64)| (nearest.1 - a.1) / (nearest.0 - a.0);
        let steepest = match (learned.next(), learned.next_back()) {
            (Some(next), Some(smallest)) => slope(next).max(slope(smallest)),
            (Some(next), None) => slope(next),
            (None, _) => return Some(proportional),
        };
        Some((nearest.1 + steepest.max(0.0) * ((1u64 << k) as f64 - nearest.0)).min(proportional))
    }

    /// Class `k`'s prediction: its average plus `SPREAD` deviations.
    fn upper(&self, k: usize) -> Option<f64> {
        Some(self.seconds[k]? + SPREAD * self.spread[k])
    }

    /// The class `rows` falls in, by its largest row count, and that class's own average.
    pub fn learned(&self, rows: usize) -> Option<(usize, Duration)> {
        let k = class(rows);
        Some((1 << k, Duration::from_secs_f64(self.seconds[k]?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A prediction in whole microseconds, where float arithmetic leaves a few nanoseconds either way.
    fn us(predicted: Option<Duration>) -> u128 {
        predicted.map_or(0, |d| (d.as_nanos() + 500) / 1_000)
    }

    #[test]
    fn nothing_is_predicted_before_a_batch_has_run() {
        assert_eq!(CostModel::default().predict(8), None);
    }

    #[test]
    fn a_size_class_predicts_its_own_average_which_follows_new_batches_a_fifth_at_a_time() {
        let mut cost = CostModel::default();
        cost.observe(8, ms(10));
        assert_eq!(cost.predict(8), Some(ms(10)));
        assert_eq!(cost.predict(5), Some(ms(10)), "5 to 8 rows are one class");
        cost.observe(7, ms(10));
        assert_eq!(cost.predict(8), Some(ms(10)), "no deviation yet");
        assert_eq!(cost.learned(8), Some((8, ms(10))));
    }

    #[test]
    fn a_class_that_varies_is_predicted_its_average_plus_twice_its_average_deviation() {
        let mut cost = CostModel::default();
        cost.observe(8, ms(10));
        cost.observe(8, ms(20));
        // Average 10 + (20 - 10) / 5 = 12 ms; deviation (|20 - 10| - 0) / 5 = 2 ms.
        assert_eq!(cost.learned(8), Some((8, ms(12))));
        assert_eq!(cost.predict(8), Some(ms(16)));
        cost.observe(8, ms(12));
        // The average stays; the deviation moves a fifth of the way to 0: 1.6 ms.
        assert_eq!(cost.learned(8), Some((8, ms(12))));
        assert_eq!(cost.predict(8), Some(Duration::from_secs_f64(0.0152)));
    }

    #[test]
    fn an_unseen_larger_class_is_predicted_proportionally_and_a_smaller_one_no_cheaper() {
        let mut cost = CostModel::default();
        cost.observe(4, ms(2));
        assert_eq!(cost.predict(16), Some(ms(8)), "16 rows: four times 4 rows at most");
        cost.observe(64, ms(20));
        assert_eq!(cost.predict(1), Some(ms(2)), "the nearest class above bounds a smaller batch");
        assert_eq!(cost.predict(32), Some(ms(16)), "4 rows' cost times 8, under 64 rows' 20 ms");
        let mut cost = CostModel::default();
        cost.observe(4, ms(3));
        cost.observe(64, ms(20));
        assert_eq!(
            cost.predict(32),
            Some(ms(20)),
            "4 rows' cost times 8 is 24 ms: 64 rows' 20 ms is tighter"
        );
    }

    #[test]
    fn a_larger_class_goes_on_along_the_steeper_of_the_last_and_the_overall_slope_of_those_learned() {
        // Mostly fixed cost, as heavy_mlp's on two cores: doubled per class, 64 rows would be 20 ms.
        let mut cost = CostModel::default();
        cost.observe(1, ms(2));
        cost.observe(16, ms(5));
        assert_eq!(us(cost.predict(64)), 14_600, "5 ms + 48 rows at 0.2 ms");
        assert_eq!(us(cost.predict(32)), 8_200, "5 ms + 16 rows at 0.2 ms");
        cost.observe(8, ms(4));
        assert_eq!(us(cost.predict(64)), 14_600, "the overall slope 0.2 ms a row, the last 0.125 ms");
        let mut cost = CostModel::default();
        cost.observe(4, ms(1));
        cost.observe(8, ms(8));
        assert_eq!(cost.predict(16), Some(ms(16)), "no more than proportionally more: 8 ms times 2");
    }

    #[test]
    fn one_stall_counts_as_twice_the_prediction_and_a_lasting_slowdown_is_followed() {
        let mut cost = CostModel::default();
        cost.observe(8, ms(10));
        cost.observe(8, ms(100));
        // Counted as 20 ms: average 12, deviation 2, predicted 16 (taken whole: 28 + 2 * 18 = 64).
        assert_eq!(cost.predict(8), Some(ms(16)));
        for _ in 0..12 {
            cost.observe(8, ms(100));
        }
        assert!(cost.predict(8) > Some(ms(100)), "{:?}", cost.predict(8));
    }

    #[test]
    fn a_class_is_predicted_no_dearer_than_any_larger_one() {
        let mut cost = CostModel::default();
        cost.observe(1, ms(7));
        cost.observe(4, ms(3));
        cost.observe(64, ms(11));
        assert_eq!(cost.predict(1), Some(ms(3)), "one row's outlier of 7 ms is capped by 4 rows' 3 ms");
        assert_eq!(cost.learned(1), Some((1, ms(7))), "the class keeps what it learned");
        assert_eq!(cost.predict(64), Some(ms(11)));
    }

    #[test]
    fn a_class_is_named_by_its_largest_row_count() {
        let mut cost = CostModel::default();
        cost.observe(3, ms(1));
        cost.observe(100, ms(5));
        assert_eq!(cost.learned(4), Some((4, ms(1))));
        assert_eq!(cost.learned(70), Some((128, ms(5))));
        assert_eq!(cost.learned(8), None);
    }
}
