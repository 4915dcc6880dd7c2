//! The PodDisruptionBudget (policy/v1): at most one server pod down at a time, when there can be more
//! than one.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Build;

pub fn pdb(b: &Build) -> Option<PodDisruptionBudget> {
    (b.max_replicas() > 1).then(|| PodDisruptionBudget {
        metadata: b.metadata(b.name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(b.selector()),
            ..Default::default()
        }),
        ..Default::default()
    })
}
