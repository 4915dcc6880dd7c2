//! The server container's requests and limits: the spec's, plus the GPU limit and, where the spec sets
//! none, a memory limit. Without one a few large requests (or a model larger than the node expects)
//! take the node's memory instead of OOM-killing one pod; and the server sizes its in-flight byte
//! budget (--max-inflight-bytes, a quarter of the limit) from it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Build;
use crate::validate::quantity_bytes;

const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;
/// The memory limit when the spec sets none and names no model.maxSize.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 * GI;
/// The memory request that goes with a defaulted limit, when the spec asks for none: a pod that is
/// scheduled like a small one, and may use up to its limit.
pub const DEFAULT_MEMORY_REQUEST: u64 = 256 * MI;

fn quantity(bytes: u64) -> Quantity {
    Quantity(match bytes {
        b if b % GI == 0 => format!("{}Gi", b / GI),
        b if b % MI == 0 => format!("{}Mi", b / MI),
        b => b.to_string(),
    })
}

/// The memory limit to use when the spec sets none: twice model.maxSize plus 1 GiB (ONNX Runtime's
/// copy of the weights and its arenas, and the server's request budget), else `DEFAULT_MEMORY_LIMIT`;
/// never below the spec's memory request. `None` when the request is a quantity this cannot compare.
fn default_memory_limit(b: &Build, requested: Option<&Quantity>) -> Option<u64> {
    let from_size = match &b.md.spec.model.max_size {
        Some(size) => quantity_bytes(&size.0).ok()?.checked_mul(2)?.checked_add(GI)?,
        None => DEFAULT_MEMORY_LIMIT,
    };
    match requested {
        Some(q) => Some(from_size.max(quantity_bytes(&q.0).ok()?)),
        None => Some(from_size),
    }
}

pub fn server(b: &Build) -> Option<ResourceRequirements> {
    let mut resources = b.md.spec.resources.clone().unwrap_or_default();
    let limits = resources.limits.get_or_insert_with(BTreeMap::new);
    if !limits.contains_key("memory") {
        let requested = resources.requests.as_ref().and_then(|r| r.get("memory"));
        if let Some(limit) = default_memory_limit(b, requested) {
            limits.insert("memory".into(), quantity(limit));
            if requested.is_none() {
                let requests = resources.requests.get_or_insert_with(BTreeMap::new);
                requests.insert("memory".into(), quantity(DEFAULT_MEMORY_REQUEST.min(limit)));
            }
        }
    }
    if let Some(gpu) = &b.md.spec.gpu {
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(gpu.resource_name.clone(), Quantity(gpu.count.to_string()));
    }
    Some(resources)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn memory(spec: serde_json::Value) -> (Option<String>, Option<String>) {
        let md = md(spec);
        let r = server(&build(&md, &ModelUri::File("/models/m.onnx".into()))).unwrap();
        let get =
            |m: Option<BTreeMap<String, Quantity>>| m.and_then(|m| m.get("memory").map(|q| q.0.clone()));
        (get(r.requests), get(r.limits))
    }

    #[test]
    fn without_a_memory_limit_the_pod_gets_2gi_and_a_small_request() {
        assert_eq!(
            memory(json!({"model": {"uri": "file:///models/m.onnx"}})),
            (Some("256Mi".into()), Some("2Gi".into()))
        );
    }

    #[test]
    fn a_model_size_bound_sizes_the_default_limit() {
        assert_eq!(
            memory(json!({"model": {"uri": "file:///models/m.onnx", "maxSize": "4Gi"}})),
            (Some("256Mi".into()), Some("9Gi".into()))
        );
    }

    #[test]
    fn the_default_limit_never_falls_below_the_request_and_an_explicit_limit_is_kept() {
        assert_eq!(
            memory(json!({"model": {"uri": "file:///models/m.onnx"},
                "resources": {"requests": {"memory": "3Gi", "cpu": "1"}}})),
            (Some("3Gi".into()), Some("3Gi".into()))
        );
        assert_eq!(
            memory(json!({"model": {"uri": "file:///models/m.onnx"},
                "resources": {"limits": {"memory": "512Mi"}}})),
            (None, Some("512Mi".into()))
        );
    }

    #[test]
    fn a_request_this_cannot_compare_gets_no_default_limit() {
        assert_eq!(
            memory(json!({"model": {"uri": "file:///models/m.onnx"},
                "resources": {"requests": {"memory": "1.5Gi"}}})),
            (Some("1.5Gi".into()), None)
        );
    }
}
