//! The learned batch cost as Prometheus sees it (batch/cost.rs): each size class's average and the
//! model's margin, published by the instances as they learn.

use prometheus::GaugeVec;
use prometheus::core::Collector;

use crate::batch::cost::CostModel;

/// The two families, labelled by model and version (and size class).
#[derive(Clone)]
pub struct CostFamilies {
    seconds: GaugeVec,
    margin: GaugeVec,
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(prometheus::Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric: {e}"))
}

impl CostFamilies {
    pub fn new() -> CostFamilies {
        CostFamilies {
            seconds: gauges(
                "kubeinfer_batch_cost_seconds",
                "The learned average time of one batch on one instance, by size class (rows: up to 1, 2, 4, \
                 8, ...). Times kubeinfer_batch_cost_margin, it sizes batches and sheds requests for the \
                 latency target.",
                &["model", "version", "rows"],
            ),
            margin: gauges(
                "kubeinfer_batch_cost_margin",
                "The factor the latency target multiplies a size class's learned batch cost by: the ratio \
                 of a batch's time to its class's average that all but one batch in 200 stay within, \
                 learned from every batch. How much batch times vary: near 1 on a quiet node, 1.5 or more \
                 where the model shares its cores.",
                &["model", "version"],
            ),
        }
    }

    pub fn collectors(&self) -> [Box<dyn Collector>; 2] {
        [Box::new(self.seconds.clone()), Box::new(self.margin.clone())]
    }

    pub fn for_model(&self, model: &str, version: &str) -> BatchCost {
        BatchCost { families: self.clone(), model: model.to_string(), version: version.to_string() }
    }
}

impl Default for CostFamilies {
    fn default() -> Self {
        CostFamilies::new()
    }
}

/// The learned batch cost of one model version.
#[derive(Clone)]
pub struct BatchCost {
    families: CostFamilies,
    model: String,
    version: String,
}

impl BatchCost {
    /// Sets the average of the size class a batch of `rows` falls in, and the margin, as `cost` has
    /// them now.
    pub fn publish(&self, cost: &CostModel, rows: usize) {
        let labels = [self.model.as_str(), self.version.as_str()];
        if let Some((class, average)) = cost.learned(rows) {
            let class = class.to_string();
            let labels = [labels[0], labels[1], class.as_str()];
            self.families.seconds.with_label_values(&labels).set(average.as_secs_f64());
        }
        self.families.margin.with_label_values(&labels).set(cost.margin());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::Duration;

    #[test]
    fn a_batch_publishes_its_size_class_average_and_the_margin_in_the_servers_registry() {
        let metrics = Metrics::new("test");
        let mut cost = CostModel::default();
        cost.observe(3, Duration::from_millis(2));
        metrics.for_model("m", 1, None).batch_cost.publish(&cost, 3);
        let text = metrics.render();
        assert!(
            text.contains("kubeinfer_batch_cost_seconds{model=\"m\",rows=\"4\",version=\"1\"} 0.002\n"),
            "{text}"
        );
        assert!(text.contains("kubeinfer_batch_cost_margin{model=\"m\",version=\"1\"} 1.25\n"), "{text}");
    }
}
