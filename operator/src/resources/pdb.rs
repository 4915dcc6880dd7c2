//! The PodDisruptionBudget (policy/v1): at most one server pod down at a time, when there can be more
//! than one.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Build;

pub fn pdb(b: &Build) -> Option<PodDisruptionBudget> {
    (b.md.spec.max_replicas() > 1).then(|| PodDisruptionBudget {
        metadata: b.metadata(b.name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(b.selector()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    /// The PDB for a model on s3 with `scale` (replicas or autoscaling) added to its spec.
    fn pdb_for(scale: serde_json::Value) -> Option<PodDisruptionBudget> {
        let mut spec = json!({"model": {"uri": "s3://b/m.onnx"}});
        spec.as_object_mut().unwrap().extend(scale.as_object().unwrap().clone());
        let md = md(spec);
        pdb(&build(&md, &ModelUri::Remote("s3://b/m.onnx".into())))
    }

    #[test]
    fn a_disruption_budget_exists_only_when_there_can_be_more_than_one_replica() {
        assert!(pdb_for(json!({})).is_none());
        assert!(pdb_for(json!({"replicas": 1})).is_none());
        assert!(pdb_for(json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 1}})).is_none());
        assert!(pdb_for(json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 3}})).is_some());
        let spec = pdb_for(json!({"replicas": 2})).unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)), "one pod down at a time");
        assert_eq!(spec.min_available, None);
        let pods =
            json!({"app.kubernetes.io/instance": "digits", "app.kubernetes.io/name": "kubeinfer-server"});
        assert_eq!(serde_json::to_value(spec.selector).unwrap(), json!({"matchLabels": pods}));
    }
}
