//! Which queued requests form the next batch, and whether to wait for more. Pure: no clocks, no locks.

use std::time::{Duration, Instant};

/// What the policy needs to know about one queued request.
pub trait Pending {
    /// Rows the request carries along the batch dimension.
    fn rows(&self) -> usize;
    /// Non-batch dimensions of each input; only requests with equal keys can be stacked.
    fn key(&self) -> &[Vec<usize>];
    fn enqueued(&self) -> Instant;
    /// The request cannot share a batch (its inputs disagree on the batch dimension).
    fn alone(&self) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most rows in a batch; 0 means the model cannot batch and runs one request at a time.
    pub max_rows: usize,
    /// How long the oldest request may wait for a batch below `max_rows` to fill; zero never waits.
    pub max_delay: Duration,
    /// Sizes a batch below `max_rows` is cut to and run at once, the largest the queue can make, without
    /// waiting out `max_delay` (Triton's preferred_batch_size). Empty: no preference.
    pub preferred: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is queued.
    Idle,
    /// Run these queue positions (ascending) as one batch now.
    Run(Vec<usize>),
    /// The batch is below target and the oldest request may still wait until then for company.
    WaitUntil(Instant),
}

/// The oldest request always leads the batch (so nothing starves); later requests with the same key
/// join it in arrival order while their rows fit.
pub fn decide<'a, P: Pending + 'a>(
    queue: impl IntoIterator<Item = &'a P>,
    limits: &Limits,
    now: Instant,
) -> Decision {
    let mut queue = queue.into_iter().enumerate();
    let Some((_, first)) = queue.next() else {
        return Decision::Idle;
    };
    if limits.max_rows == 0 || first.alone() {
        return Decision::Run(vec![0]);
    }
    let mut picked = vec![0];
    // Rows of the batch after each picked request.
    let mut rows = vec![first.rows()];
    for (i, p) in queue {
        let total = rows[rows.len() - 1];
        if total >= limits.max_rows {
            break;
        }
        if !p.alone() && p.key() == first.key() && total + p.rows() <= limits.max_rows {
            picked.push(i);
            rows.push(total + p.rows());
        }
    }
    let total = rows[rows.len() - 1];
    if total < limits.max_rows && !limits.preferred.contains(&total) {
        if let Some(cut) = rows.iter().rposition(|r| limits.preferred.contains(r)) {
            picked.truncate(cut + 1);
            return Decision::Run(picked);
        }
        if !limits.max_delay.is_zero() {
            let until = first.enqueued() + limits.max_delay;
            if now < until {
                return Decision::WaitUntil(until);
            }
        }
    }
    Decision::Run(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        rows: usize,
        key: Vec<Vec<usize>>,
        at: Instant,
        alone: bool,
    }

    impl Pending for Req {
        fn rows(&self) -> usize {
            self.rows
        }
        fn key(&self) -> &[Vec<usize>] {
            &self.key
        }
        fn enqueued(&self) -> Instant {
            self.at
        }
        fn alone(&self) -> bool {
            self.alone
        }
    }

    fn req(rows: usize, width: usize, at: Instant) -> Req {
        Req { rows, key: vec![vec![width]], at, alone: false }
    }

    const NO_WAIT: Limits = Limits { max_rows: 8, max_delay: Duration::ZERO, preferred: Vec::new() };

    fn delayed(max_rows: usize, delay: Duration) -> Limits {
        Limits { max_rows, max_delay: delay, preferred: vec![] }
    }

    #[test]
    fn an_empty_queue_is_idle() {
        assert_eq!(decide(&Vec::<Req>::new(), &NO_WAIT, Instant::now()), Decision::Idle);
    }

    #[test]
    fn a_lone_request_runs_at_once_when_no_delay_is_configured() {
        let now = Instant::now();
        assert_eq!(decide(&[req(1, 4, now)], &NO_WAIT, now), Decision::Run(vec![0]));
    }

    #[test]
    fn compatible_requests_join_the_oldest_until_the_batch_is_full() {
        let now = Instant::now();
        let q: Vec<Req> = (0..12).map(|_| req(1, 4, now)).collect();
        assert_eq!(decide(&q, &NO_WAIT, now), Decision::Run((0..8).collect()));
    }

    #[test]
    fn requests_with_other_non_batch_dimensions_are_left_for_a_later_batch() {
        let now = Instant::now();
        let q = [req(1, 4, now), req(1, 5, now), req(2, 4, now)];
        assert_eq!(decide(&q, &NO_WAIT, now), Decision::Run(vec![0, 2]));
    }

    #[test]
    fn a_request_whose_rows_do_not_fit_is_skipped_but_smaller_ones_behind_it_join() {
        let now = Instant::now();
        let q = [req(5, 4, now), req(4, 4, now), req(3, 4, now)];
        assert_eq!(decide(&q, &NO_WAIT, now), Decision::Run(vec![0, 2]));
    }

    #[test]
    fn a_model_that_cannot_batch_runs_one_request_at_a_time() {
        let now = Instant::now();
        let q = [req(1, 4, now), req(1, 4, now)];
        assert_eq!(decide(&q, &delayed(0, Duration::from_millis(5)), now), Decision::Run(vec![0]));
    }

    #[test]
    fn with_a_delay_a_short_batch_waits_until_the_oldest_request_has_waited_that_long() {
        let t0 = Instant::now();
        let limits = &delayed(8, Duration::from_millis(5));
        let q = [req(1, 4, t0)];
        assert_eq!(
            decide(&q, limits, t0 + Duration::from_millis(1)),
            Decision::WaitUntil(t0 + Duration::from_millis(5))
        );
        assert_eq!(decide(&q, limits, t0 + Duration::from_millis(5)), Decision::Run(vec![0]));
    }

    #[test]
    fn with_a_delay_a_full_batch_still_runs_at_once() {
        let t0 = Instant::now();
        let limits = &delayed(2, Duration::from_secs(1));
        let q = [req(1, 4, t0), req(1, 4, t0)];
        assert_eq!(decide(&q, limits, t0), Decision::Run(vec![0, 1]));
    }

    #[test]
    fn a_request_that_must_run_alone_neither_leads_nor_joins_a_shared_batch() {
        let now = Instant::now();
        let alone = Req { alone: true, ..req(2, 4, now) };
        assert_eq!(decide(&[alone, req(1, 4, now)], &NO_WAIT, now), Decision::Run(vec![0]));
        let alone = Req { alone: true, ..req(2, 4, now) };
        assert_eq!(
            decide(&[req(1, 4, now), alone, req(1, 4, now)], &NO_WAIT, now),
            Decision::Run(vec![0, 2])
        );
    }

    #[test]
    fn a_batch_that_reaches_a_preferred_size_runs_at_once_cut_to_the_largest_one_it_can_make() {
        let t0 = Instant::now();
        let limits = Limits { preferred: vec![2, 4], ..delayed(16, Duration::from_secs(1)) };
        let q: Vec<Req> = (0..5).map(|_| req(1, 4, t0)).collect();
        assert_eq!(decide(&q, &limits, t0), Decision::Run(vec![0, 1, 2, 3]));
        let q = [req(1, 4, t0), req(1, 4, t0)];
        assert_eq!(decide(&q, &limits, t0), Decision::Run(vec![0, 1]));
    }

    #[test]
    fn a_batch_below_every_preferred_size_waits_out_the_delay_as_before() {
        let t0 = Instant::now();
        let limits = Limits { preferred: vec![4], ..delayed(16, Duration::from_millis(5)) };
        let q = [req(3, 4, t0)];
        assert_eq!(decide(&q, &limits, t0), Decision::WaitUntil(t0 + Duration::from_millis(5)));
        assert_eq!(decide(&q, &limits, t0 + Duration::from_millis(5)), Decision::Run(vec![0]));
    }

    #[test]
    fn a_preferred_size_is_made_only_from_whole_requests() {
        let t0 = Instant::now();
        let limits = Limits { preferred: vec![4], ..NO_WAIT };
        let q = [req(3, 4, t0), req(2, 4, t0)];
        assert_eq!(decide(&q, &limits, t0), Decision::Run(vec![0, 1]));
    }
}
