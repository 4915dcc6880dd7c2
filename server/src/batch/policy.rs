//! Which queued requests form the next batch, whether to wait for more, and (with a latency target)
//! which requests to shed because they can no longer be answered in time. Pure: no clocks, no locks.

use std::time::{Duration, Instant};

use super::cost::CostModel;

/// What the policy needs to know about one queued request.
pub trait Pending {
    /// Rows the request carries along the batch dimension.
    fn rows(&self) -> usize;
    /// Non-batch dimensions of each input; only requests with equal keys can be stacked.
    fn key(&self) -> &[Vec<usize>];
    fn enqueued(&self) -> Instant;
    /// When the request gives up waiting in the queue (its own `timeout`, or the server's).
    fn deadline(&self) -> Instant;
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
    /// The latency objective: a request is answered within this of its arrival or not at all. Batches
    /// are kept small enough for their oldest request to make it, and a request that cannot make it
    /// even alone is shed. `None`: no objective, batches as above.
    pub target: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is queued.
    Idle,
    /// Run these queue positions (ascending) as one batch now.
    Run(Vec<usize>),
    /// The batch is below target and the oldest request may still wait until then for company.
    WaitUntil(Instant),
    /// Answer these queue positions (ascending) at once as shed: by the learned cost they cannot be
    /// answered in time (their own timeout, if sooner than the target), even run alone now; or they are
    /// the oldest, dropped early so that a full batch behind them is in time.
    Shed(Vec<usize>),
}

/// When `p` must be answered by: its arrival plus the target, or its own deadline if sooner.
fn due<P: Pending + ?Sized>(p: &P, target: Duration) -> Instant {
    (p.enqueued() + target).min(p.deadline())
}

/// The oldest request always leads the batch (so nothing starves); later requests with the same key
/// join it in arrival order while their rows fit and, with a target, while the batch's predicted cost
/// still lets every request in it finish in time.
pub fn decide<'a, P: Pending + 'a>(
    queue: impl IntoIterator<Item = &'a P> + Clone,
    limits: &Limits,
    cost: &CostModel,
    now: Instant,
) -> Decision {
    // Run alone now, would each request still finish in time? Those that would not are shed.
    let objective = limits.target.filter(|_| cost.predict(1).is_some());
    if let Some(target) = objective {
        let late = |p: &P| cost.predict(p.rows()).is_some_and(|c| now + c > due(p, target));
        let hopeless: Vec<usize> =
            queue.clone().into_iter().enumerate().filter(|(_, p)| late(p)).map(|(i, _)| i).collect();
        if !hopeless.is_empty() {
            return Decision::Shed(hopeless);
        }
        let skip = early_drop(queue.clone(), limits.max_rows, cost, target, now);
        if skip > 0 {
            return Decision::Shed((0..skip).collect());
        }
    }
    let mut queue = queue.into_iter().enumerate();
    let Some((_, first)) = queue.next() else {
        return Decision::Idle;
    };
    if limits.max_rows == 0 || first.alone() {
        return Decision::Run(vec![0]);
    }
    let finishes = |rows: usize, by: Instant| cost.predict(rows).is_none_or(|c| now + c <= by);
    let mut picked = vec![0];
    // Rows of the batch after each picked request, and the earliest due time among them.
    let mut rows = vec![first.rows()];
    let mut due_by = objective.map(|t| due(first, t));
    for (i, p) in queue {
        let total = rows[rows.len() - 1];
        if total >= limits.max_rows {
            break;
        }
        if p.alone() || p.key() != first.key() || total + p.rows() > limits.max_rows {
            continue;
        }
        let joined_due = objective.map(|t| due(p, t)).into_iter().chain(due_by).min();
        if joined_due.is_some_and(|by| !finishes(total + p.rows(), by)) {
            continue;
        }
        picked.push(i);
        rows.push(total + p.rows());
        due_by = joined_due;
    }
    let total = rows[rows.len() - 1];
    if total < limits.max_rows && !limits.preferred.contains(&total) {
        if let Some(cut) = rows.iter().rposition(|r| limits.preferred.contains(r)) {
            picked.truncate(cut + 1);
            return Decision::Run(picked);
        }
        if !limits.max_delay.is_zero() {
            let mut until = first.enqueued() + limits.max_delay;
            // With a target, waiting for company must leave the batch time to run.
            if let (Some(by), Some(c)) = (due_by, cost.predict(total)) {
                until = until.min(by.checked_sub(c).unwrap_or(now));
            }
            if now < until {
                return Decision::WaitUntil(until);
            }
        }
    }
    Decision::Run(picked)
}

/// How many of the oldest requests to shed so that the next batch answers the most rows per second of
/// compute and still finishes in time for its own oldest member (Nexus's early drop). Without this, a
/// queue that has fallen behind runs ever smaller batches to save its oldest requests; where a batch
/// has a fixed cost (waking the threads, one pass over the weights), small batches answer few rows per
/// second, the queue falls further behind, and batches shrink again (measured: heavy_mlp's mean batch
/// fell from 64 rows to 12 at capacity). With it, the requests that are answered are answered in time
/// and batches stay efficient. 0 when the batch the oldest request can lead in time is at least as
/// efficient as any a later request could (on a tie, the one with more rows wins).
fn early_drop<'a, P: Pending + 'a>(
    queue: impl IntoIterator<Item = &'a P> + Clone,
    max_rows: usize,
    cost: &CostModel,
    target: Duration,
    now: Instant,
) -> usize {
    let Some(first) = queue.clone().into_iter().next() else { return 0 };
    if max_rows == 0 || first.alone() {
        return 0;
    }
    // The requests that could share the first one's batch: (position, rows, due).
    let stackable: Vec<(usize, usize, Instant)> = queue
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.alone() && p.key() == first.key())
        .map(|(i, p)| (i, p.rows(), due(p, target)))
        .collect();
    let mut left: usize = stackable.iter().map(|&(_, rows, _)| rows).sum();
    // The best batch so far: (position of its lead, rows, predicted cost).
    let mut best: Option<(usize, usize, Duration)> = None;
    for (j, &(position, lead_rows, by)) in stackable.iter().enumerate() {
        if best.is_some_and(|(_, rows, _)| rows >= left) {
            break; // the rest of the queue cannot lead a larger batch
        }
        left -= lead_rows;
        let Some((rows, took)) = batch_in_time(&stackable[j..], max_rows, cost, now, by) else { continue };
        if best.is_none_or(|b| better((rows, took), (b.1, b.2))) {
            best = Some((position, rows, took));
        }
        if rows == max_rows {
            break;
        }
    }
    best.map_or(0, |(position, _, _)| position)
}

/// The rows of the largest batch that the first of `stackable` leads, and its predicted cost, if it
/// finishes by `by`.
fn batch_in_time(
    stackable: &[(usize, usize, Instant)],
    max_rows: usize,
    cost: &CostModel,
    now: Instant,
    by: Instant,
) -> Option<(usize, Duration)> {
    let mut fits = None;
    let mut rows = 0;
    for &(_, more, _) in stackable {
        if rows + more > max_rows {
            break;
        }
        let took = cost.predict(rows + more)?;
        if now + took > by {
            break;
        }
        rows += more;
        fits = Some((rows, took));
    }
    fits
}

/// Whether batch `a` answers more rows per second than `b` (exactly, in integers), or as many and more.
fn better(a: (usize, Duration), b: (usize, Duration)) -> bool {
    let (a_rate, b_rate) = (a.0 as u128 * b.1.as_nanos(), b.0 as u128 * a.1.as_nanos());
    a_rate > b_rate || (a_rate == b_rate && a.0 > b.0)
}

/// What arrival admission needs besides the queue: the target, and how batches are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub target: Option<Duration>,
    pub max_rows: usize,
    pub instances: usize,
}

/// One instance's batch in progress: when it started and its rows; `None` when the instance is idle.
pub type Running = Option<(Instant, usize)>;

/// With a target, whether a request of `rows` arriving `now` (giving up at `deadline`, when its own is
/// known yet) can be answered in time behind `queued` (requests, rows) and the batches `running`;
/// `Err` with the predicted time to its answer when it cannot.
pub fn admit(
    a: Admission,
    cost: &CostModel,
    queued: (usize, usize),
    running: &[Running],
    rows: usize,
    now: Instant,
    deadline: Option<Instant>,
) -> Result<(), Duration> {
    let Some(target) = a.target else { return Ok(()) };
    // The queue starts moving when the first instance is free: now if one is idle, else when the
    // earliest batch in progress should end.
    let ends = |r: &Running| match *r {
        Some((start, rows)) => cost.predict(rows).map_or(now, |c| (start + c).max(now)),
        None => now,
    };
    let free = running.iter().map(ends).min().unwrap_or(now);
    match predicted_completion(queued, rows, a.max_rows, a.instances, cost, free) {
        Some(done) if done > deadline.into_iter().fold(now + target, Instant::min) => Err(done - now),
        _ => Ok(()),
    }
}

/// When a request of `rows` that joins the queue would be answered, if the learned cost holds: the
/// batches ahead of it and its own, as full as `max_rows` allows, shared among `instances` (0 max_rows:
/// one request per batch), run from `free`, when the first instance is free.
pub fn predicted_completion(
    queued: (usize, usize),
    rows: usize,
    max_rows: usize,
    instances: usize,
    cost: &CostModel,
    free: Instant,
) -> Option<Instant> {
    let (queued_requests, queued_rows) = queued;
    let (batches, batch_rows) = match max_rows {
        0 => (queued_requests + 1, rows),
        max => ((queued_rows + rows).div_ceil(max), max.min(queued_rows + rows)),
    };
    let rounds = u32::try_from(batches.div_ceil(instances.max(1))).unwrap_or(u32::MAX);
    Some(free + cost.predict(batch_rows)?.saturating_mul(rounds))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "simulation_tests.rs"]
mod simulation;
