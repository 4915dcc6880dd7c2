//! `spec.autoscaling` of the ModelDeployment: what scales the server pods, on which signals.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// HorizontalPodAutoscaler settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest server pods.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Most server pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Target average CPU utilisation, in percent of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Target average of in-flight inference requests per pod (the pods metric
    /// kubeinfer_inference_requests_in_flight; needs a custom metrics adapter such as prometheus-adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_in_flight_requests: Option<i32>,

    /// Target average queue wait per pod, e.g. "5ms": the pods metric
    /// kubeinfer_queue_wait_recent_seconds, the mean wait of the last 30 s (needs a custom metrics
    /// adapter; the chart's prometheusAdapter values ship its rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(us|ms|s)$"))]
    pub target_queue_time: Option<String>,

    /// Target average share of batching.latencyTarget used per pod, in percent: the pods metric
    /// kubeinfer_latency_target_used_ratio (answer time over the target, a shed request counting as
    /// the whole target; needs batching.latencyTarget and a custom metrics adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_latency_utilization_percentage: Option<i32>,

    /// Scale-up and scale-down behaviour (stabilisation windows, rate policies), passed as is to the
    /// HorizontalPodAutoscaler, or to the one KEDA makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,

    /// What scales the pods: HPA (a HorizontalPodAutoscaler; the default) or KEDA (a KEDA ScaledObject
    /// whose triggers query Prometheus at the operator's --prometheus-url; needs keda.sh/v1alpha1).
    #[serde(default, skip_serializing_if = "is_default")]
    pub provider: AutoscalingProvider,
}

/// What scales the server pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoscalingProvider {
    #[default]
    #[serde(rename = "HPA")]
    Hpa,
    #[serde(rename = "KEDA")]
    Keda,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn default_min_replicas() -> i32 {
    1
}
