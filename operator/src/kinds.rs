//! The kinds other projects' CRDs serve that the operator writes: their group, version and plural.
//! Discovery asks whether they are served, the builders make them, the controller watches them.

use kube::api::{ApiResource, GroupVersionKind};

/// The Prometheus Operator's ServiceMonitor.
pub fn service_monitor() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// KEDA's ScaledObject.
pub fn scaled_object() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}
