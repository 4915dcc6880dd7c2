//! The KEDA ScaledObject (keda.sh/v1alpha1), a CRD: built as a dynamic object. KEDA makes and owns the
//! HorizontalPodAutoscaler itself; the pods metrics reach it as Prometheus queries, so no metrics
//! adapter is needed.

use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::Build;
use super::hpa::{Signal, signals};
use crate::crd::{Autoscaling, AutoscalingProvider};
use crate::kinds;

/// Whether any of `a`'s signals is a Prometheus query (everything but CPU), which needs
/// `--prometheus-url`.
pub fn needs_prometheus(a: &Autoscaling) -> bool {
    signals(a).iter().any(|s| matches!(s, Signal::Pods { .. }))
}

/// The PromQL sum over this model's pods of one pods metric: what KEDA divides by the threshold, as
/// the HPA does with a pods metric's average. Pods of Deployment `name` are `name-<hash>-<hash>`, a
/// pattern no other Deployment's pods match.
pub fn query(namespace: &str, name: &str, signal: &Signal) -> Option<String> {
    let Signal::Pods { metric, .. } = signal else { return None };
    Some(format!(
        r#"sum({agg} by (pod) ({metric}{{namespace="{namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"}}))"#,
        agg = metric.per_pod,
        metric = metric.name,
    ))
}

fn trigger(b: &Build, prometheus_url: &str, signal: &Signal) -> Value {
    match signal {
        Signal::Cpu(percent) => {
            json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": percent.to_string()}})
        }
        Signal::Pods { metric, value, .. } => json!({
            "type": "prometheus",
            "name": metric.name.replace('_', "-"),
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": query(&b.namespace(), &b.name(), signal),
                "threshold": value.to_string(),
            },
        }),
    }
}

/// The ScaledObject, when autoscaling is asked of KEDA and the triggers it needs can be built.
pub fn scaled_object(b: &Build) -> Option<DynamicObject> {
    let a = b.md.spec.autoscaling.as_ref().filter(|a| a.provider == AutoscalingProvider::Keda)?;
    let prometheus_url = match b.prometheus_url {
        Some(url) => url,
        None if needs_prometheus(a) => return None,
        None => "",
    };
    let triggers: Vec<Value> = signals(a).iter().map(|s| trigger(b, prometheus_url, s)).collect();
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": b.name()},
        "minReplicaCount": a.min_replicas,
        "maxReplicaCount": a.max_replicas,
        "triggers": triggers,
    });
    if let Some(behavior) = &a.behavior {
        spec["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior": behavior}});
    }
    let mut obj = DynamicObject::new(&b.name(), &kinds::scaled_object()).data(json!({"spec": spec}));
    obj.metadata = b.metadata(b.name());
    Some(obj)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn spec_of(spec: Value, prometheus_url: Option<&str>) -> Option<Value> {
        let md = md(spec);
        let uri = ModelUri::Remote("s3://b/m.onnx".into());
        let b = Build { prometheus_url, ..build(&md, &uri) };
        scaled_object(&b).map(|o| o.data["spec"].clone())
    }

    #[test]
    fn the_scaled_object_queries_prometheus_for_this_models_pods_and_passes_behavior_through() {
        let spec = spec_of(
            json!({"model": {"uri": "s3://b/m.onnx"}, "batching": {"latencyTarget": "20ms"},
                "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "provider": "KEDA",
                    "targetCPUUtilizationPercentage": 75, "targetLatencyUtilizationPercentage": 70,
                    "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}}),
            Some("http://prometheus.monitoring:9090"),
        )
        .unwrap();
        assert_eq!(
            spec,
            json!({
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits"},
                "minReplicaCount": 2,
                "maxReplicaCount": 6,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}},
                "triggers": [
                    {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "75"}},
                    {"type": "prometheus", "name": "kubeinfer-latency-target-used-ratio",
                     "metricType": "AverageValue",
                     "metadata": {
                         "serverAddress": "http://prometheus.monitoring:9090",
                         "query": r#"sum(max by (pod) (kubeinfer_latency_target_used_ratio{namespace="ml",pod=~"digits-[a-z0-9]+-[a-z0-9]+"}))"#,
                         "threshold": "0.7"}},
                ],
            })
        );
    }

    #[test]
    fn in_flight_requests_sum_a_pods_model_versions_and_queue_time_is_in_seconds() {
        let spec = spec_of(
            json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": {"maxReplicas": 4, "provider": "KEDA",
                "targetInFlightRequests": 16, "targetQueueTime": "5ms"}}),
            Some("http://p:9090"),
        )
        .unwrap();
        let queries: Vec<(&str, &str)> = spec["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["metadata"]["query"].as_str().unwrap(), t["metadata"]["threshold"].as_str().unwrap()))
            .collect();
        assert_eq!(
            queries,
            vec![
                (
                    r#"sum(sum by (pod) (kubeinfer_inference_requests_in_flight{namespace="ml",pod=~"digits-[a-z0-9]+-[a-z0-9]+"}))"#,
                    "16"
                ),
                (
                    r#"sum(max by (pod) (kubeinfer_queue_wait_recent_seconds{namespace="ml",pod=~"digits-[a-z0-9]+-[a-z0-9]+"}))"#,
                    "0.005"
                ),
            ]
        );
    }

    #[test]
    fn prometheus_triggers_need_a_prometheus_url_and_cpu_alone_does_not() {
        let pods = json!({"model": {"uri": "s3://b/m.onnx"},
            "autoscaling": {"maxReplicas": 4, "provider": "KEDA", "targetQueueTime": "5ms"}});
        assert_eq!(spec_of(pods, None), None);
        let cpu = spec_of(
            json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": {"maxReplicas": 4, "provider": "KEDA"}}),
            None,
        )
        .unwrap();
        assert_eq!(
            cpu["triggers"],
            json!([{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}])
        );
    }

    #[test]
    fn the_hpa_provider_needs_no_scaled_object() {
        let spec = json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": {"maxReplicas": 4}});
        assert_eq!(spec_of(spec, Some("http://p:9090")), None);
    }
}
