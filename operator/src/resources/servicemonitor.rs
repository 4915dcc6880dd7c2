//! The Prometheus Operator ServiceMonitor (monitoring.coreos.com/v1), a CRD: built as a dynamic object.

use kube::api::DynamicObject;
use serde_json::json;

use super::Build;
use crate::kinds;

pub fn service_monitor(b: &Build) -> Option<DynamicObject> {
    let monitoring = b.md.spec.monitoring.as_ref().filter(|m| m.service_monitor)?;
    let mut endpoint = json!({"port": "metrics", "path": "/metrics"});
    if let Some(interval) = &monitoring.interval {
        endpoint["interval"] = json!(interval);
    }
    let mut obj = DynamicObject::new(&b.name(), &kinds::service_monitor()).data(json!({
        "spec": {
            "selector": {"matchLabels": b.selector_labels()},
            "endpoints": [endpoint],
        }
    }));
    obj.metadata = b.metadata(b.name());
    Some(obj)
}
