//! The batch policy on hand-made queues and a simulated clock: no threads, no sleeping.

use super::*;

pub(super) struct Req {
    rows: usize,
    key: Vec<Vec<usize>>,
    at: Instant,
    alone: bool,
    deadline: Option<Instant>,
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
    fn deadline(&self) -> Instant {
        self.deadline.unwrap_or(self.at + Duration::from_secs(30))
    }
    fn alone(&self) -> bool {
        self.alone
    }
}

pub(super) fn req(rows: usize, width: usize, at: Instant) -> Req {
    Req { rows, key: vec![vec![width]], at, alone: false, deadline: None }
}

const NO_WAIT: Limits =
    Limits { max_rows: 8, max_delay: Duration::ZERO, preferred: Vec::new(), target: None };

fn delayed(max_rows: usize, delay: Duration) -> Limits {
    Limits { max_rows, max_delay: delay, preferred: vec![], target: None }
}

/// A decision with nothing learned of the model's cost: a target, if any, cannot be enforced.
fn untimed<'a>(q: impl IntoIterator<Item = &'a Req> + Clone, limits: &Limits, now: Instant) -> Decision {
    decide(q, limits, &CostModel::default(), now)
}

#[test]
fn an_empty_queue_is_idle() {
    assert_eq!(untimed(&Vec::<Req>::new(), &NO_WAIT, Instant::now()), Decision::Idle);
}

#[test]
fn a_lone_request_runs_at_once_when_no_delay_is_configured() {
    let now = Instant::now();
    assert_eq!(untimed(&[req(1, 4, now)], &NO_WAIT, now), Decision::Run(vec![0]));
}

#[test]
fn compatible_requests_join_the_oldest_until_the_batch_is_full() {
    let now = Instant::now();
    let q: Vec<Req> = (0..12).map(|_| req(1, 4, now)).collect();
    assert_eq!(untimed(&q, &NO_WAIT, now), Decision::Run((0..8).collect()));
}

#[test]
fn requests_with_other_non_batch_dimensions_are_left_for_a_later_batch() {
    let now = Instant::now();
    let q = [req(1, 4, now), req(1, 5, now), req(2, 4, now)];
    assert_eq!(untimed(&q, &NO_WAIT, now), Decision::Run(vec![0, 2]));
}

#[test]
fn a_request_whose_rows_do_not_fit_is_skipped_but_smaller_ones_behind_it_join() {
    let now = Instant::now();
    let q = [req(5, 4, now), req(4, 4, now), req(3, 4, now)];
    assert_eq!(untimed(&q, &NO_WAIT, now), Decision::Run(vec![0, 2]));
}

#[test]
fn a_model_that_cannot_batch_runs_one_request_at_a_time() {
    let now = Instant::now();
    let q = [req(1, 4, now), req(1, 4, now)];
    assert_eq!(untimed(&q, &delayed(0, Duration::from_millis(5)), now), Decision::Run(vec![0]));
}

#[test]
fn with_a_delay_a_short_batch_waits_until_the_oldest_request_has_waited_that_long() {
    let t0 = Instant::now();
    let limits = &delayed(8, Duration::from_millis(5));
    let q = [req(1, 4, t0)];
    assert_eq!(
        untimed(&q, limits, t0 + Duration::from_millis(1)),
        Decision::WaitUntil(t0 + Duration::from_millis(5))
    );
    assert_eq!(untimed(&q, limits, t0 + Duration::from_millis(5)), Decision::Run(vec![0]));
}

#[test]
fn with_a_delay_a_full_batch_still_runs_at_once() {
    let t0 = Instant::now();
    let limits = &delayed(2, Duration::from_secs(1));
    let q = [req(1, 4, t0), req(1, 4, t0)];
    assert_eq!(untimed(&q, limits, t0), Decision::Run(vec![0, 1]));
}

#[test]
fn a_request_that_must_run_alone_neither_leads_nor_joins_a_shared_batch() {
    let now = Instant::now();
    let alone = Req { alone: true, ..req(2, 4, now) };
    assert_eq!(untimed(&[alone, req(1, 4, now)], &NO_WAIT, now), Decision::Run(vec![0]));
    let alone = Req { alone: true, ..req(2, 4, now) };
    assert_eq!(untimed(&[req(1, 4, now), alone, req(1, 4, now)], &NO_WAIT, now), Decision::Run(vec![0, 2]));
}

#[test]
fn a_batch_that_reaches_a_preferred_size_runs_at_once_cut_to_the_largest_one_it_can_make() {
    let t0 = Instant::now();
    let limits = Limits { preferred: vec![2, 4], ..delayed(16, Duration::from_secs(1)) };
    let q: Vec<Req> = (0..5).map(|_| req(1, 4, t0)).collect();
    assert_eq!(untimed(&q, &limits, t0), Decision::Run(vec![0, 1, 2, 3]));
    let q = [req(1, 4, t0), req(1, 4, t0)];
    assert_eq!(untimed(&q, &limits, t0), Decision::Run(vec![0, 1]));
}

#[test]
fn a_batch_below_every_preferred_size_waits_out_the_delay_as_before() {
    let t0 = Instant::now();
    let limits = Limits { preferred: vec![4], ..delayed(16, Duration::from_millis(5)) };
    let q = [req(3, 4, t0)];
    assert_eq!(untimed(&q, &limits, t0), Decision::WaitUntil(t0 + Duration::from_millis(5)));
    assert_eq!(untimed(&q, &limits, t0 + Duration::from_millis(5)), Decision::Run(vec![0]));
}

#[test]
fn a_preferred_size_is_made_only_from_whole_requests() {
    let t0 = Instant::now();
    let limits = Limits { preferred: vec![4], ..NO_WAIT };
    let q = [req(3, 4, t0), req(2, 4, t0)];
    assert_eq!(untimed(&q, &limits, t0), Decision::Run(vec![0, 1]));
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Batches of 1, 2, 4 and 8 rows take 2, 4, 8 and 16 ms.
fn linear() -> CostModel {
    let mut cost = CostModel::exact();
    for rows in [1, 2, 4, 8] {
        cost.observe(rows, ms(2 * rows as u64));
    }
    cost
}

fn targeted(target: u64) -> Limits {
    Limits { target: Some(ms(target)), ..NO_WAIT }
}

#[test]
fn with_a_target_a_request_that_cannot_finish_in_time_even_alone_is_shed_and_the_rest_kept() {
    let t0 = Instant::now();
    let mut cost = CostModel::exact();
    cost.observe(1, ms(10));
    let q = [req(1, 4, t0), req(1, 4, t0 + ms(10))];
    // At 15 ms the first is due at 20 and would finish at 25; the second is due at 30.
    assert_eq!(decide(&q, &targeted(20), &cost, t0 + ms(15)), Decision::Shed(vec![0]));
    assert_eq!(decide(&q[1..], &targeted(20), &cost, t0 + ms(15)), Decision::Run(vec![0]));
}

#[test]
fn with_a_target_the_batch_grows_only_while_its_predicted_cost_lets_the_oldest_finish_in_time() {
    let t0 = Instant::now();
    let q: Vec<Req> = (0..8).map(|_| req(1, 4, t0)).collect();
    // 14 ms left: 4 rows take 8 ms, 5 to 8 rows 16 ms.
    assert_eq!(decide(&q, &targeted(20), &linear(), t0 + ms(6)), Decision::Run(vec![0, 1, 2, 3]));
    assert_eq!(decide(&q, &targeted(20), &linear(), t0), Decision::Run((0..8).collect()));
    assert_eq!(untimed(&q, &targeted(20), t0 + ms(6)), Decision::Run((0..8).collect()));
}

#[test]
fn a_requests_own_timeout_is_its_deadline_when_it_is_sooner_than_the_target() {
    let t0 = Instant::now();
    let hurried = Req { deadline: Some(t0 + ms(5)), ..req(1, 4, t0) };
    let mut cost = CostModel::exact();
    cost.observe(1, ms(10));
    assert_eq!(decide(&[hurried], &targeted(20), &cost, t0), Decision::Shed(vec![0]));
}

#[test]
fn with_a_target_waiting_for_company_ends_when_the_batch_must_start_to_finish_in_time() {
    let t0 = Instant::now();
    let limits = Limits { max_delay: ms(50), ..targeted(20) };
    let q = [req(1, 4, t0)];
    assert_eq!(decide(&q, &limits, &linear(), t0), Decision::WaitUntil(t0 + ms(18)));
    assert_eq!(decide(&q, &limits, &linear(), t0 + ms(18)), Decision::Run(vec![0]));
    assert_eq!(untimed(&q, &limits, t0), Decision::WaitUntil(t0 + ms(50)));
}

#[test]
fn arrival_predicts_the_batches_ahead_shared_among_the_instances() {
    let t0 = Instant::now();
    let mut cost = linear();
    cost.observe(16, ms(10));
    // 40 queued rows and 4 more: 3 batches of 16, 2 rounds on 2 instances, 10 ms each.
    assert_eq!(predicted_completion((10, 40), 4, 16, 2, &cost, t0), Some(t0 + ms(20)));
    // Without batching each request is a batch: 3 ahead and its own, 2 rows each at 4 ms.
    assert_eq!(predicted_completion((3, 6), 2, 0, 1, &cost, t0), Some(t0 + ms(16)));
    assert_eq!(predicted_completion((3, 6), 2, 0, 1, &CostModel::default(), t0), None);
}

#[test]
fn arrival_counts_from_when_the_batch_in_progress_should_end_or_now_when_an_instance_is_idle() {
    let t0 = Instant::now();
    let now = t0 + ms(2);
    let admission = Admission { target: Some(ms(20)), max_rows: 8, instances: 2 };
    let busy: [Running; 2] = [Some((t0, 4)), Some((t0 + ms(1), 8))];
    // 4 rows started at 0 end at 8 ms; 1 queued row and 1 more take 4 ms after that: 10 ms from now.
    assert_eq!(admit(admission, &linear(), (1, 1), &busy, 1, now, None), Ok(()));
    let tight = Admission { target: Some(ms(9)), ..admission };
    assert_eq!(admit(tight, &linear(), (1, 1), &busy, 1, now, None), Err(ms(10)));
    assert_eq!(admit(admission, &linear(), (1, 1), &busy, 1, now, Some(now + ms(9))), Err(ms(10)));
    let idle: [Running; 2] = [Some((t0, 4)), None];
    assert_eq!(admit(tight, &linear(), (1, 1), &idle, 1, now, None), Ok(()), "4 ms from now");
    let untargeted = Admission { target: None, ..admission };
    assert_eq!(admit(untargeted, &linear(), (1, 1), &busy, 1, now, Some(now)), Ok(()));
}

#[test]
fn a_queue_that_has_fallen_behind_sheds_its_oldest_so_that_a_full_batch_makes_it_in_time() {
    let t0 = Instant::now();
    // Two requests that have waited 10 ms, then eight fresh ones. At 10 ms, a full batch of 8
    // (16 ms) would make the oldest late at 26 ms; led by the third (due at 30), it is in time.
    let mut q: Vec<Req> = (0..2).map(|_| req(1, 4, t0)).collect();
    q.extend((0..8).map(|_| req(1, 4, t0 + ms(10))));
    assert_eq!(decide(&q, &targeted(20), &linear(), t0 + ms(10)), Decision::Shed(vec![0, 1]));
    assert_eq!(decide(&q[2..], &targeted(20), &linear(), t0 + ms(10)), Decision::Run((0..8).collect()));
}

#[test]
fn a_short_queue_is_never_dropped_early() {
    let t0 = Instant::now();
    let q = [req(1, 4, t0), req(1, 4, t0 + ms(1))];
    assert_eq!(decide(&q, &targeted(20), &linear(), t0 + ms(15)), Decision::Run(vec![0, 1]));
}

/// A batch costs 4 ms whatever its size up to 1 row, then 1 ms more per doubling: most of the cost is
/// fixed, as heavy_mlp's is on two cores.
fn mostly_fixed() -> CostModel {
    let mut cost = CostModel::exact();
    for (rows, took) in [(1, 4), (2, 5), (4, 6), (8, 8)] {
        cost.observe(rows, ms(took));
    }
    cost
}

#[test]
fn a_queue_shorter_than_a_full_batch_sheds_its_oldest_when_a_later_lead_answers_more_rows_per_second() {
    let t0 = Instant::now();
    // At 15 ms the two oldest have 5 ms left: together they take 5 ms (400 rows/s). The five fresh
    // ones behind them take 8 ms and are due at 35 (625 rows/s).
    let mut q: Vec<Req> = (0..2).map(|_| req(1, 4, t0)).collect();
    q.extend((0..5).map(|_| req(1, 4, t0 + ms(15))));
    assert_eq!(decide(&q, &targeted(20), &mostly_fixed(), t0 + ms(15)), Decision::Shed(vec![0, 1]));
    assert_eq!(decide(&q[2..], &targeted(20), &mostly_fixed(), t0 + ms(15)), Decision::Run((0..5).collect()));
    // At 12 ms the oldest have 8 ms left and lead all seven in time: nothing is shed.
    assert_eq!(decide(&q, &targeted(20), &mostly_fixed(), t0 + ms(12)), Decision::Run((0..7).collect()));
}

#[test]
fn requests_are_not_shed_for_a_later_batch_that_answers_no_more_rows_per_second() {
    let t0 = Instant::now();
    // Linear cost: the oldest's 4 rows in 8 ms and the fresh lead's 4 rows in 8 ms are as efficient.
    let mut q: Vec<Req> = (0..4).map(|_| req(1, 4, t0)).collect();
    q.extend((0..4).map(|_| req(1, 4, t0 + ms(12))));
    assert_eq!(decide(&q, &targeted(20), &linear(), t0 + ms(12)), Decision::Run((0..4).collect()));
}
