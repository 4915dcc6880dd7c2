//! Means over the last 30 seconds, exported as gauges computed at scrape time: the pods metrics an
//! autoscaler reads (`kubeinfer_queue_wait_recent_seconds`, `kubeinfer_latency_target_used_ratio`).
//!
//! Why gauges and not PromQL over the histograms: an HPA reads one number per pod through a metrics
//! adapter, and a mean of the last seconds that falls to 0 when traffic stops is that number with no
//! query to get wrong. Computed at scrape, so an idle pod reads 0 rather than its last busy value.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::{GaugeVec, Opts, proto::MetricFamily};

/// The span the means cover.
pub const WINDOW: Duration = Duration::from_secs(30);
const SLOTS: usize = WINDOW.as_secs() as usize;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Whole seconds since the window's origin; a slot holding an older second is stale.
    second: u64,
    sum: f64,
    count: u64,
}

/// The mean of the values recorded in the last `WINDOW`, in one-second slots (a ring: recording and
/// reading cost the same whatever the request rate).
pub struct Window {
    origin: Instant,
    slots: Mutex<[Slot; SLOTS]>,
}

impl Window {
    pub fn new(origin: Instant) -> Window {
        Window { origin, slots: Mutex::new([Slot::default(); SLOTS]) }
    }

    fn second(&self, at: Instant) -> u64 {
        // Slot 0 holds second 0 from the start, so seconds count from 1 to tell it from "never used".
        at.saturating_duration_since(self.origin).as_secs() + 1
    }

    pub fn record(&self, at: Instant, value: f64) {
        let second = self.second(at);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot { second, sum: 0.0, count: 0 };
        }
        slot.sum += value;
        slot.count += 1;
    }

    /// The mean of what was recorded in the `WINDOW` before `at` (its current second included); 0
    /// when nothing was.
    pub fn mean(&self, at: Instant) -> f64 {
        let now = self.second(at);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (sum, count) = slots
            .iter()
            .filter(|s| s.second != 0 && s.second + (SLOTS as u64) > now && s.second <= now)
            .fold((0.0, 0u64), |(sum, count), s| (sum + s.sum, count + s.count));
        if count == 0 { 0.0 } else { sum / count as f64 }
    }
}

/// One model version's windows.
pub struct ModelWindows {
    /// Queue wait of answered requests, in seconds.
    pub queue_wait: Window,
    /// Answer time over the latency target; 1 for a shed or timed-out request. Only with a target.
    pub target_used: Option<Window>,
}

impl ModelWindows {
    pub fn new(target: Option<Duration>) -> ModelWindows {
        let now = Instant::now();
        ModelWindows { queue_wait: Window::new(now), target_used: target.map(|_| Window::new(now)) }
    }
}

/// The collector: sets each model's gauges from its windows when scraped. Clones share the windows.
#[derive(Clone)]
pub struct Recent {
    queue_wait: GaugeVec,
    target_used: GaugeVec,
    models: Arc<Mutex<Vec<Tracked>>>,
}

type Tracked = ([String; 2], Arc<ModelWindows>);

impl Recent {
    pub fn new() -> Recent {
        let family = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["model", "version"])
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        Recent {
            queue_wait: family(
                "kubeinfer_queue_wait_recent_seconds",
                "Mean queue wait of the requests answered in the last 30 s (0 when none): the pods metric \
                 for autoscaling on queue time.",
            ),
            target_used: family(
                "kubeinfer_latency_target_used_ratio",
                "Mean share of the latency target used by the requests of the last 30 s: answer time over \
                 the target, 1 for each request shed or timed out (0 when none; absent without a target). \
                 The pods metric for autoscaling on the objective.",
            ),
            models: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Exports `windows` under the labels; a second call for the same labels replaces the first.
    pub fn track(&self, model: &str, version: &str, windows: Arc<ModelWindows>) {
        let labels = [model.to_string(), version.to_string()];
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.retain(|(l, _)| *l != labels);
        models.push((labels, windows));
    }

    fn refresh(&self, at: Instant) {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        for ([model, version], w) in models.iter() {
            let labels = [model.as_str(), version.as_str()];
            self.queue_wait.with_label_values(&labels).set(w.queue_wait.mean(at));
            if let Some(used) = &w.target_used {
                self.target_used.with_label_values(&labels).set(used.mean(at));
            }
        }
    }
}

impl Default for Recent {
    fn default() -> Recent {
        Recent::new()
    }
}

impl Collector for Recent {
    fn desc(&self) -> Vec<&Desc> {
        self.queue_wait.desc().into_iter().chain(self.target_used.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh(Instant::now());
        self.queue_wait.collect().into_iter().chain(self.target_used.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: Instant, millis: u64) -> Instant {
        origin + Duration::from_millis(millis)
    }

    #[test]
    fn the_mean_covers_the_last_thirty_seconds_and_nothing_older() {
        let t0 = Instant::now();
        let w = Window::new(t0);
        w.record(at(t0, 500), 0.010);
        w.record(at(t0, 10_000), 0.020);
        w.record(at(t0, 10_200), 0.030);
        assert_eq!(w.mean(at(t0, 11_000)), 0.020);
        // At 30.5 s the record of second 0 is more than 30 s old.
        assert_eq!(w.mean(at(t0, 30_500)), 0.025);
        assert_eq!(w.mean(at(t0, 40_500)), 0.0);
    }

    #[test]
    fn a_slot_reused_a_lap_later_forgets_its_old_values() {
        let t0 = Instant::now();
        let w = Window::new(t0);
        w.record(at(t0, 2_000), 5.0);
        w.record(at(t0, 32_000), 1.0);
        assert_eq!(w.mean(at(t0, 32_500)), 1.0);
    }

    #[test]
    fn an_idle_window_reads_zero() {
        let t0 = Instant::now();
        assert_eq!(Window::new(t0).mean(at(t0, 1_000)), 0.0);
    }

    #[test]
    fn a_scrape_sets_the_gauges_of_each_tracked_model_and_only_targets_get_the_ratio() {
        let recent = Recent::new();
        let with_target = Arc::new(ModelWindows::new(Some(Duration::from_millis(20))));
        let without = Arc::new(ModelWindows::new(None));
        with_target.queue_wait.record(Instant::now(), 0.004);
        if let Some(w) = &with_target.target_used {
            w.record(Instant::now(), 0.5);
        }
        recent.track("fast", "1", with_target);
        recent.track("plain", "1", without);
        let families = recent.collect();
        let values: Vec<(String, String, f64)> = families
            .iter()
            .flat_map(|f| {
                f.get_metric().iter().map(move |m| {
                    (f.name().to_string(), m.get_label()[0].value().to_string(), m.get_gauge().get_value())
                })
            })
            .collect();
        assert_eq!(
            values,
            vec![
                ("kubeinfer_queue_wait_recent_seconds".into(), "fast".into(), 0.004),
                ("kubeinfer_queue_wait_recent_seconds".into(), "plain".into(), 0.0),
                ("kubeinfer_latency_target_used_ratio".into(), "fast".into(), 0.5),
            ]
        );
    }
}
