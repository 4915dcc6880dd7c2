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
