//! The per-model request queue shared by the async request handlers (which push) and the instance
//! threads (which block until a batch is ready). A plain mutex and condvar: the instance threads are OS
//! threads, never the async runtime's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use tokio::sync::oneshot;

use super::cost::CostModel;
use super::policy::{self, Admission, Decision, Limits, Pending, Running};
use crate::protocol::Tensor;

/// An entry's life: queued, then either taken by an instance or cancelled (timed out, or its caller
/// went away). Both sides race to move it out of `QUEUED`; whoever wins decides what happens.
pub const QUEUED: u8 = 0;
pub const TAKEN: u8 = 1;
pub const CANCELLED: u8 = 2;

/// What the instance thread sends back for one request.
#[derive(Debug)]
pub struct BatchReply {
    /// Every output of the model, in signature order, holding only this request's rows.
    pub outputs: Vec<Tensor>,
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// Rows in the batch this request ran in.
    pub batch_rows: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout {
        waited: Duration,
    },
    /// Shed when its turn came: even alone, the learned cost put its answer past the latency target.
    Shed {
        predicted: Duration,
    },
    /// The batch failed; `invalid_input` when the model blamed the inputs of a batch holding only this request.
    Inference {
        reason: String,
        invalid_input: bool,
    },
}

pub type Reply = Result<BatchReply, Failure>;

pub struct Entry {
    /// Inputs in the model's signature order.
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    pub key: Vec<Vec<usize>>,
    pub alone: bool,
    pub enqueued: Instant,
    pub deadline: Instant,
    pub state: Arc<AtomicU8>,
    pub reply: oneshot::Sender<Reply>,
    /// The request's span, so that what the instance thread logs about it carries the request's fields.
    pub span: tracing::Span,
}

impl Entry {
    fn claim(&self, to: u8) -> bool {
        self.state.compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) != QUEUED || self.reply.is_closed()
    }
}

impl Pending for Entry {
    fn rows(&self) -> usize {
        self.rows
    }
    fn key(&self) -> &[Vec<usize>] {
        &self.key
    }
    fn enqueued(&self) -> Instant {
        self.enqueued
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn alone(&self) -> bool {
        self.alone
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
    /// Refused at arrival: the batches ahead of it would put its answer past the latency target, by the
    /// learned cost (`predicted` from now).
    Shed {
        predicted: Duration,
    },
}

#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    depth: IntGauge,
    /// Bumped on every push, so an idle instance can watch for work without taking the lock.
    pushes: AtomicU64,
    /// How long an instance that ran out of work watches for more before it sleeps. Waking a sleeping
    /// thread costs tens of microseconds on a VM; at low concurrency that is most of the serving overhead.
    idle_spin: Duration,
    admission: Admission,
}

struct State {
    entries: VecDeque<Entry>,
    closed: bool,
    /// Learned from every batch the instances run; read by the policy under the same lock.
    cost: CostModel,
    /// Per instance, its batch in progress.
    running: Vec<Running>,
}

impl Queue {
    pub fn new(capacity: usize, idle_spin: Duration, depth: IntGauge, admission: Admission) -> Queue {
        let entries = VecDeque::with_capacity(capacity.min(4096));
        let running = vec![None; admission.instances];
        let state = State { entries, closed: false, cost: CostModel::default(), running };
        Queue {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                ready: Condvar::new(),
                capacity,
                depth,
                pushes: AtomicU64::new(0),
                idle_spin,
                admission,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue itself consistent (VecDeque ops don't unwind midway).
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, entry: Entry) -> Result<(), PushError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.entries.len() >= self.shared.capacity {
            // Entries whose callers left still count until an instance sweeps them; sweep now
            // rather than turn a live request away.
            st.entries.retain(|e| !e.abandoned());
            if st.entries.len() >= self.shared.capacity {
                return Err(PushError::Full);
            }
        }
        self.admit(&st, &entry)?;
        st.entries.push_back(entry);
        self.shared.depth.set(st.entries.len() as i64);
        self.shared.pushes.fetch_add(1, Ordering::Release);
        drop(st);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// With a target, refuses a request whose answer the learned cost puts past its due time.
    fn admit(&self, st: &State, entry: &Entry) -> Result<(), PushError> {
        admit(st, self.shared.admission, entry.rows, entry.enqueued, Some(entry.deadline))
    }

    /// Whether a request of `rows` arriving now would be admitted, asked before its body is read and
    /// decoded: under overload, shedding what cannot make it should cost as little as possible.
    pub fn would_admit(&self, rows: usize) -> Result<(), PushError> {
        let now = Instant::now();
        admit(&self.lock(), self.shared.admission, rows, now, None)
    }

    /// Counts the batch of `rows` that `instance` ran in `took` into the learned cost, and marks the
    /// instance idle; returns the cost model as it now is.
    pub fn record_cost(&self, instance: usize, rows: usize, took: Duration) -> CostModel {
        let mut st = self.lock();
        st.cost.observe(rows, took);
        if let Some(slot) = st.running.get_mut(instance) {
            *slot = None;
        }
        st.cost
    }

    /// Stops accepting requests; instances finish what is queued and then `next_batch` returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks until a batch is ready and claims it; `None` once the queue is closed and drained.
    pub fn next_batch(&self, limits: &Limits, instance: usize) -> Option<Vec<Entry>> {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            sweep(&mut st.entries, now);
            // Once closed, nothing more will arrive: short batches run at once instead of waiting.
            let closing;
            let limits = if st.closed {
                closing = Limits { max_delay: Duration::ZERO, ..limits.clone() };
                &closing
            } else {
                limits
            };
            match policy::decide(&st.entries, limits, &st.cost, now) {
                Decision::Idle if st.closed => return None,
                Decision::Idle => st = self.idle(st),
                Decision::WaitUntil(t) => {
                    st = self.shared.ready.wait_timeout(st, t - now).unwrap_or_else(|p| p.into_inner()).0;
                }
                Decision::Shed(picked) => {
                    for e in self.take(&mut st, picked) {
                        let predicted = st.cost.predict(e.rows).unwrap_or_default();
                        let _ = e.reply.send(Err(Failure::Shed { predicted }));
                    }
                }
                Decision::Run(picked) => {
                    let batch = self.take(&mut st, picked);
                    if !batch.is_empty() {
                        let rows = batch.iter().map(|e| e.rows).sum();
                        if let Some(slot) = st.running.get_mut(instance) {
                            *slot = Some((now, rows));
                        }
                        return Some(batch);
                    }
                }
            }
        }
    }

    /// Watches for a push for a short while, then sleeps until one comes. Pushes happen under the lock,
    /// and the sleep re-checks under it, so no wake-up is lost.
    fn idle<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let seen = self.shared.pushes.load(Ordering::Acquire);
        drop(st);
        let until = Instant::now() + self.shared.idle_spin;
        while self.shared.pushes.load(Ordering::Acquire) == seen && Instant::now() < until {
            std::hint::spin_loop();
        }
        let st = self.lock();
        if self.shared.pushes.load(Ordering::Acquire) != seen || st.closed {
            return st;
        }
        self.shared.ready.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, st: &mut State, picked: Vec<usize>) -> Vec<Entry> {
        let mut batch: Vec<Entry> = picked.iter().rev().filter_map(|&i| st.entries.remove(i)).collect();
        batch.reverse();
        batch.retain(|e| e.claim(TAKEN));
        self.shared.depth.set(st.entries.len() as i64);
        if !st.entries.is_empty() {
            // Another idle instance can start on what this batch left behind.
            self.shared.ready.notify_one();
        }
        batch
    }
}

/// With a target, refuses a request of `rows` arriving at `now` (and giving up at `deadline`, when its
/// own is known yet) whose answer the learned cost puts past its due time.
fn admit(
    st: &State,
    a: Admission,
    rows: usize,
    now: Instant,
    deadline: Option<Instant>,
) -> Result<(), PushError> {
    let queued = (st.entries.len(), st.entries.iter().map(|e| e.rows).sum());
    policy::admit(a, &st.cost, queued, &st.running, rows, now, deadline)
        .map_err(|predicted| PushError::Shed { predicted })
}

/// Drops entries whose callers have gone, and answers those whose deadline has passed.
fn sweep(entries: &mut VecDeque<Entry>, now: Instant) {
    if !entries.iter().any(|e| e.deadline <= now || e.abandoned()) {
        return;
    }
    for e in std::mem::take(entries) {
        if e.abandoned() {
            continue;
        }
        if e.deadline > now {
            entries.push_back(e);
        } else if e.claim(CANCELLED) {
            let _ = e.reply.send(Err(Failure::Timeout { waited: now - e.enqueued }));
        }
    }
}
