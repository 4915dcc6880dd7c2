//! Which optional APIs the cluster serves. The operator only writes kinds that exist; when a
//! ModelDeployment asks for one that does not, its status says so instead.

use std::collections::HashSet;

use kube::Client;

use crate::resources::servicemonitor;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// autoscaling/v2 HorizontalPodAutoscaler (Kubernetes 1.23+).
    pub autoscaling_v2: bool,
    /// policy/v1 PodDisruptionBudget (Kubernetes 1.21+).
    pub policy_v1: bool,
    /// monitoring.coreos.com/v1 ServiceMonitor (the Prometheus Operator's CRD).
    pub service_monitor: bool,
}

impl Capabilities {
    /// Decides from the group-versions `GET /apis` lists.
    pub fn from_group_versions(served: &HashSet<String>) -> Capabilities {
        Capabilities {
            autoscaling_v2: served.contains("autoscaling/v2"),
            policy_v1: served.contains("policy/v1"),
            service_monitor: served.contains(&servicemonitor::api_resource().api_version),
        }
    }
}

/// One request: `GET /apis`.
pub async fn discover(client: &Client) -> Result<Capabilities, kube::Error> {
    let groups = client.list_api_groups().await?;
    let served: HashSet<String> =
        groups.groups.iter().flat_map(|g| g.versions.iter().map(|v| v.group_version.clone())).collect();
    Ok(Capabilities::from_group_versions(&served))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_1_20_serves_neither_hpa_v2_nor_pdb_v1() {
        let served: HashSet<String> = ["autoscaling/v1", "autoscaling/v2beta2", "policy/v1beta1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(Capabilities::from_group_versions(&served), Capabilities::default());
    }

    #[test]
    fn a_current_cluster_with_the_prometheus_operator_serves_all_three() {
        let served: HashSet<String> = ["autoscaling/v2", "policy/v1", "monitoring.coreos.com/v1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            Capabilities::from_group_versions(&served),
            Capabilities { autoscaling_v2: true, policy_v1: true, service_monitor: true }
        );
    }
}
