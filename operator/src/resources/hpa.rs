//! The HorizontalPodAutoscaler (autoscaling/v2), scaling the Deployment on CPU, in-flight requests,
//! queue wait and the share of the latency target used. The signals are shared with KEDA's builder.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Build;
use crate::crd::{Autoscaling, AutoscalingProvider};

/// Utilisation target when autoscaling names no other target.
const DEFAULT_CPU_PERCENT: i32 = 80;

/// A per-pod metric of kubeinfer-server the autoscaler can aim at, and how one pod's series (one per
/// model version) combine into the pod's value. The chart's prometheus-adapter rules expose these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodsMetric {
    pub name: &'static str,
    /// PromQL aggregation over one pod's series: `sum` for counts, `max` for means.
    pub per_pod: &'static str,
}

pub const IN_FLIGHT: PodsMetric =
    PodsMetric { name: "kubeinfer_inference_requests_in_flight", per_pod: "sum" };
pub const QUEUE_WAIT: PodsMetric = PodsMetric { name: "kubeinfer_queue_wait_recent_seconds", per_pod: "max" };
pub const TARGET_USED: PodsMetric =
    PodsMetric { name: "kubeinfer_latency_target_used_ratio", per_pod: "max" };
pub const PODS_METRICS: [PodsMetric; 3] = [IN_FLIGHT, QUEUE_WAIT, TARGET_USED];

/// One thing to scale on, with its target per pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Average CPU utilisation, in percent of the request.
    Cpu(i32),
    /// Average of a pods metric: the target as a Kubernetes quantity, and as a number (KEDA's threshold).
    Pods { metric: PodsMetric, quantity: String, value: f64 },
}

/// What `a` scales on, in a fixed order: CPU, in-flight requests, queue wait, target used. CPU at 80 %
/// when nothing else is named.
pub fn signals(a: &Autoscaling) -> Vec<Signal> {
    let mut out = Vec::new();
    let pods_targets = a.target_in_flight_requests.is_some()
        || a.target_queue_time.is_some()
        || a.target_latency_utilization_percentage.is_some();
    if let Some(percent) =
        a.target_cpu_utilization_percentage.or((!pods_targets).then_some(DEFAULT_CPU_PERCENT))
    {
        out.push(Signal::Cpu(percent));
    }
    if let Some(n) = a.target_in_flight_requests {
        out.push(Signal::Pods { metric: IN_FLIGHT, quantity: n.to_string(), value: f64::from(n) });
    }
    if let Some((quantity, value)) = a.target_queue_time.as_deref().and_then(duration_quantity) {
        out.push(Signal::Pods { metric: QUEUE_WAIT, quantity, value });
    }
    if let Some(percent) = a.target_latency_utilization_percentage {
        let value = f64::from(percent) / 100.0;
        out.push(Signal::Pods { metric: TARGET_USED, quantity: format!("{}m", percent * 10), value });
    }
    out
}

/// A duration of the CRD's form ("500us", "2.5ms", "1s") as a quantity of seconds ("500u", "2.5m",
/// "1") and as a number; `None` for anything else (the CRD's pattern refuses it first).
pub fn duration_quantity(d: &str) -> Option<(String, f64)> {
    let (number, suffix, scale) = if let Some(n) = d.strip_suffix("us") {
        (n, "u", 1e-6)
    } else if let Some(n) = d.strip_suffix("ms") {
        (n, "m", 1e-3)
    } else {
        (d.strip_suffix('s')?, "", 1.0)
    };
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v > 0.0)?;
    Some((format!("{number}{suffix}"), value * scale))
}

fn metric_spec(signal: &Signal) -> MetricSpec {
    match signal {
        Signal::Cpu(percent) => MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(*percent),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
        Signal::Pods { metric, quantity, .. } => MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier { name: metric.name.into(), selector: None },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(quantity.clone())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
    }
}

/// The HPA, when autoscaling is asked of the HPA provider.
pub fn hpa(b: &Build) -> Option<HorizontalPodAutoscaler> {
    let a = b.md.spec.autoscaling.as_ref().filter(|a| a.provider == AutoscalingProvider::Hpa)?;
    Some(HorizontalPodAutoscaler {
        metadata: b.metadata(b.name()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: b.name(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(signals(a).iter().map(metric_spec).collect()),
            behavior: a.behavior.clone(),
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn hpa_for(spec: serde_json::Value) -> Option<HorizontalPodAutoscaler> {
        let md = md(spec);
        hpa(&build(&md, &ModelUri::Remote("s3://b/m.onnx".into())))
    }

    #[test]
    fn the_hpa_scales_the_deployment_on_cpu_and_in_flight_requests() {
        let h = hpa_for(json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": {"minReplicas": 2,
            "maxReplicas": 6, "targetCPUUtilizationPercentage": 70, "targetInFlightRequests": 16}}))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&h.spec).unwrap(),
            json!({
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits"},
                "minReplicas": 2,
                "maxReplicas": 6,
                "metrics": [
                    {"type": "Resource",
                     "resource": {"name": "cpu",
                                  "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "Pods",
                     "pods": {"metric": {"name": "kubeinfer_inference_requests_in_flight"},
                              "target": {"type": "AverageValue", "averageValue": "16"}}},
                ],
            })
        );
    }

    #[test]
    fn without_a_target_the_hpa_aims_at_80_percent_cpu() {
        let h =
            hpa_for(json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": {"maxReplicas": 3}})).unwrap();
        let metrics = h.spec.metrics.unwrap();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].resource.as_ref().unwrap().target.average_utilization, Some(80));
        assert_eq!(h.spec.min_replicas, Some(1));
    }

    #[test]
    fn an_in_flight_target_alone_adds_no_cpu_metric() {
        let h = hpa_for(json!({"model": {"uri": "s3://b/m.onnx"},
            "autoscaling": {"maxReplicas": 3, "targetInFlightRequests": 8}}))
        .unwrap();
        let types: Vec<String> = h.spec.metrics.unwrap().into_iter().map(|m| m.type_).collect();
        assert_eq!(types, vec!["Pods"]);
    }

    #[test]
    fn fixed_replicas_need_no_hpa() {
        assert!(hpa_for(json!({"model": {"uri": "s3://b/m.onnx"}, "replicas": 3})).is_none());
    }

    #[test]
    fn queue_time_and_the_latency_target_are_pods_metrics_and_behavior_passes_through() {
        let h = hpa_for(json!({"model": {"uri": "s3://b/m.onnx"}, "batching": {"latencyTarget": "20ms"},
            "autoscaling": {"maxReplicas": 8, "targetQueueTime": "2.5ms",
                "targetLatencyUtilizationPercentage": 60,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120,
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}}}))
        .unwrap();
        let spec = serde_json::to_value(&h.spec).unwrap();
        assert_eq!(
            spec["metrics"],
            json!([
                {"type": "Pods",
                 "pods": {"metric": {"name": "kubeinfer_queue_wait_recent_seconds"},
                          "target": {"type": "AverageValue", "averageValue": "2.5m"}}},
                {"type": "Pods",
                 "pods": {"metric": {"name": "kubeinfer_latency_target_used_ratio"},
                          "target": {"type": "AverageValue", "averageValue": "600m"}}},
            ])
        );
        assert_eq!(
            spec["behavior"],
            json!({"scaleDown": {"stabilizationWindowSeconds": 120,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}})
        );
    }

    #[test]
    fn durations_become_quantities_of_seconds() {
        assert_eq!(duration_quantity("500us"), Some(("500u".into(), 0.0005)));
        assert_eq!(duration_quantity("5ms"), Some(("5m".into(), 0.005)));
        assert_eq!(duration_quantity("1.5s"), Some(("1.5".into(), 1.5)));
        for bad in ["", "ms", "5", "-1ms", "0s", "5m"] {
            assert_eq!(duration_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn keda_scales_instead_of_an_hpa_when_asked() {
        assert!(
            hpa_for(json!({"model": {"uri": "s3://b/m.onnx"},
            "autoscaling": {"maxReplicas": 3, "provider": "KEDA"}}))
            .is_none()
        );
    }

    #[test]
    fn the_charts_prometheus_adapter_rules_expose_exactly_the_pods_metrics_aggregated_the_same_way() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/kubeinfer/adapter/rules.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let rules: Vec<(String, String, String)> = config["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
                (s(&r["seriesQuery"]), s(&r["name"]["as"]), s(&r["metricsQuery"]))
            })
            .collect();
        let expected: Vec<(String, String, String)> = PODS_METRICS
            .iter()
            .map(|m| {
                (
                    format!(r#"{}{{namespace!="",pod!=""}}"#, m.name),
                    m.name.to_string(),
                    format!("{}(<<.Series>>{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)", m.per_pod),
                )
            })
            .collect();
        assert_eq!(rules, expected);
    }
}
