//! Backoffs: of a failing reconcile (`reconcile_retry`), and of the controller's watches
//! (`WatchBackoff`). For the watches, kube's default grows to 30 s and starts over only after two quiet
//! minutes; a restarted API server answers every watch with 410 Gone in turn, and those pauses added up to
//! more than a minute during which new ModelDeployments went unseen (found by the restart test). This one
//! stays short and starts over as soon as anything arrives.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The requeue delay after `failures` reconciles of one object failed in a row: 1 s, doubling, at
/// most 5 minutes.
pub fn reconcile_retry(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(9)).min(300))
}

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(MAX);
        Some(current)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_retries_double_from_one_second_and_stop_at_five_minutes() {
        let delays: Vec<u64> = (1..=11).map(|n| reconcile_retry(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn delays_double_to_five_seconds_and_start_over_on_reset() {
        let mut b = WatchBackoff::default();
        let delays: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
