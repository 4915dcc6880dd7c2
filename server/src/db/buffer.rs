//! The byte budget of the rows the prediction log holds: queued for the writer or in the batch it is
//! writing. A count of rows would not bound memory: with `--log-payloads full` one row can be a thousand
//! times another.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

pub struct ByteBudget {
    used: AtomicUsize,
    /// Rows held, so that those still held when the writer is given up on are counted as dropped.
    rows: AtomicUsize,
    limit: usize,
    gauge: IntGauge,
}

impl ByteBudget {
    pub fn new(limit: usize, gauge: IntGauge) -> ByteBudget {
        ByteBudget { used: AtomicUsize::new(0), rows: AtomicUsize::new(0), limit, gauge }
    }

    /// Takes `bytes` for one row from the budget; false (and nothing taken) when they do not fit.
    pub fn reserve(&self, bytes: usize) -> bool {
        let taken = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|&total| total <= self.limit)
        });
        if let Ok(before) = taken {
            self.rows.fetch_add(1, Ordering::AcqRel);
            self.gauge.set(i64::try_from(before + bytes).unwrap_or(i64::MAX));
        }
        taken.is_ok()
    }

    /// Gives back what `reserve` took for `rows` rows, once they are written or dropped.
    pub fn release(&self, bytes: usize, rows: usize) {
        self.rows.fetch_sub(rows, Ordering::AcqRel);
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.gauge.set(i64::try_from(before.saturating_sub(bytes)).unwrap_or(0));
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> ByteBudget {
        ByteBudget::new(limit, IntGauge::new("b", "b").unwrap())
    }

    #[test]
    fn rows_are_taken_while_they_fit_and_refused_past_the_limit() {
        let b = budget(1000);
        assert!(b.reserve(600));
        assert!(!b.reserve(500), "600 + 500 is over 1000");
        assert!(b.reserve(400));
        assert_eq!((b.used(), b.rows()), (1000, 2));
        assert_eq!(b.gauge.get(), 1000);
    }

    #[test]
    fn released_bytes_make_room_again() {
        let b = budget(1000);
        assert!(b.reserve(600));
        assert!(b.reserve(400));
        b.release(600, 1);
        assert_eq!((b.used(), b.rows()), (400, 1));
        b.release(100, 0);
        assert_eq!(b.used(), 300);
        assert!(b.reserve(700));
        assert!(!b.reserve(1));
    }

    #[test]
    fn one_row_larger_than_the_whole_budget_is_refused() {
        assert!(!budget(100).reserve(101));
        assert!(!budget(100).reserve(usize::MAX));
    }
}
