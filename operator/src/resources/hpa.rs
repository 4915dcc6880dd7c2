//! The HorizontalPodAutoscaler (autoscaling/v2), scaling the Deployment on CPU and/or in-flight requests.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Build;

/// Utilisation target when autoscaling names neither target.
const DEFAULT_CPU_PERCENT: i32 = 80;

pub fn hpa(b: &Build) -> Option<HorizontalPodAutoscaler> {
    let a = b.md.spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    let cpu = a
        .target_cpu_utilization_percentage
        .or((a.target_in_flight_requests.is_none()).then_some(DEFAULT_CPU_PERCENT));
    if let Some(percent) = cpu {
        metrics.push(MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(percent),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    if let Some(in_flight) = a.target_in_flight_requests {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: "kubeinfer_inference_requests_in_flight".into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(in_flight.to_string())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
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
            metrics: Some(metrics),
            ..Default::default()
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
}
