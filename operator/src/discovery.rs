//! Which optional APIs the cluster serves. The operator only writes kinds that exist; when a
//! ModelDeployment asks for one that does not, its status says so instead (`unavailable`).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::Client;

use crate::crd::{AutoscalingProvider, ModelDeployment};
use crate::kinds;
use crate::resources::keda::needs_prometheus;
use crate::status::{Problem, reason};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// autoscaling/v2 HorizontalPodAutoscaler (Kubernetes 1.23+).
    pub autoscaling_v2: bool,
    /// policy/v1 PodDisruptionBudget (Kubernetes 1.21+).
    pub policy_v1: bool,
    /// monitoring.coreos.com/v1 ServiceMonitor (the Prometheus Operator's CRD).
    pub service_monitor: bool,
    /// keda.sh/v1alpha1 ScaledObject (KEDA's CRD).
    pub keda: bool,
    /// batch/v1 CronJob (Kubernetes 1.21+), for the prediction log's partition maintenance.
    pub cron_job_v1: bool,
}

impl Capabilities {
    /// Every optional API: a current cluster with the Prometheus Operator and KEDA.
    pub const ALL: Capabilities = Capabilities {
        autoscaling_v2: true,
        policy_v1: true,
        service_monitor: true,
        keda: true,
        cron_job_v1: true,
    };

    /// Decides from the group-versions `GET /apis` lists.
    pub fn from_group_versions(served: &HashSet<String>) -> Capabilities {
        Capabilities {
            autoscaling_v2: served.contains("autoscaling/v2"),
            policy_v1: served.contains("policy/v1"),
            service_monitor: served.contains(&kinds::service_monitor().api_version),
            keda: served.contains(&kinds::scaled_object().api_version),
            // A kind, not a group-version: batch/v1 has served Jobs far longer than CronJobs.
            cron_job_v1: false,
        }
    }
}

/// Two requests: `GET /apis`, and `GET /apis/batch/v1` for its kinds.
pub async fn discover(client: &Client) -> Result<Capabilities, kube::Error> {
    let groups = client.list_api_groups().await?;
    let served: HashSet<String> =
        groups.groups.iter().flat_map(|g| g.versions.iter().map(|v| v.group_version.clone())).collect();
    let batch = client.list_api_group_resources("batch/v1").await?;
    let cron_job_v1 = batch.resources.iter().any(|r| r.name == "cronjobs");
    Ok(Capabilities { cron_job_v1, ..Capabilities::from_group_versions(&served) })
}

/// Re-checks the optional APIs every `interval`, so a cluster that gains one (a ServiceMonitor CRD
/// installed later, say) gets those objects from the next reconcile, without a restart. The watches
/// are set up once, at start: changes to such objects wake reconciles only after a restart (until
/// then the periodic resync covers them).
pub fn spawn_refresh(client: Client, caps: Arc<RwLock<Capabilities>>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match discover(&client).await {
                Ok(found) => {
                    let mut current = caps.write().unwrap_or_else(|p| p.into_inner());
                    if *current != found {
                        tracing::info!(?found, "served APIs changed");
                        *current = found;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "API discovery failed; keeping what was known"),
            }
        }
    });
}

/// Why `md`'s autoscaling cannot be given (its minimum then runs), or `None` when it can or is not
/// asked for. `prometheus`: whether the operator has a --prometheus-url for KEDA's queries.
pub fn autoscaling_problem(md: &ModelDeployment, caps: Capabilities, prometheus: bool) -> Option<Problem> {
    let a = md.spec.autoscaling.as_ref()?;
    let message = match a.provider {
        AutoscalingProvider::Hpa if !caps.autoscaling_v2 => {
            "spec.autoscaling needs autoscaling/v2 HorizontalPodAutoscalers, which this cluster does not serve \
             (Kubernetes 1.23+); running autoscaling.minReplicas replicas"
        }
        AutoscalingProvider::Keda if !caps.keda => {
            "spec.autoscaling.provider KEDA needs keda.sh/v1alpha1 ScaledObjects, which this cluster does not \
             serve (install KEDA); running autoscaling.minReplicas replicas"
        }
        AutoscalingProvider::Keda if !prometheus && needs_prometheus(a) => {
            "spec.autoscaling.provider KEDA with a pods metric target needs the operator's --prometheus-url \
             (chart value prometheusUrl) for its queries; running autoscaling.minReplicas replicas"
        }
        AutoscalingProvider::Hpa | AutoscalingProvider::Keda => return None,
    };
    Some(Problem::new(reason::AUTOSCALING_UNAVAILABLE, message))
}

/// What the spec asks for that this cluster does not serve.
pub fn unavailable(md: &ModelDeployment, caps: Capabilities, prometheus: bool) -> Vec<Problem> {
    let mut problems: Vec<Problem> = autoscaling_problem(md, caps, prometheus).into_iter().collect();
    if md.spec.max_replicas() > 1 && !caps.policy_v1 {
        problems.push(Problem::new(
            reason::DISRUPTION_BUDGET_UNAVAILABLE,
            "more than one replica wants a policy/v1 PodDisruptionBudget, which this cluster does not serve \
             (Kubernetes 1.21+); voluntary disruptions are not limited",
        ));
    }
    if md.spec.database.as_ref().is_some_and(|d| d.migrations.is_some()) && !caps.cron_job_v1 {
        problems.push(Problem::new(
            reason::PARTITION_MAINTENANCE_UNAVAILABLE,
            "spec.database.migrations needs batch/v1 CronJobs (Kubernetes 1.21+) to make the prediction log's \
             partitions ahead, which this cluster does not serve: run `kubeinfer-server migrate` at least daily \
             yourself, or drop migrations so that the pods maintain the partitions",
        ));
    }
    if md.spec.monitoring.as_ref().is_some_and(|m| m.service_monitor) && !caps.service_monitor {
        problems.push(Problem::new(
            reason::SERVICE_MONITOR_UNAVAILABLE,
            "spec.monitoring.serviceMonitor needs the monitoring.coreos.com/v1 ServiceMonitor CRD (the Prometheus \
             Operator), which this cluster does not have",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::md;

    fn served(versions: &[&str]) -> Capabilities {
        Capabilities::from_group_versions(&versions.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn kubernetes_1_20_serves_neither_hpa_v2_nor_pdb_v1() {
        assert_eq!(
            served(&["autoscaling/v1", "autoscaling/v2beta2", "policy/v1beta1"]),
            Capabilities::default()
        );
    }

    #[test]
    fn a_current_cluster_with_the_prometheus_operator_and_keda_serves_the_four_group_versions() {
        let all = served(&["autoscaling/v2", "policy/v1", "monitoring.coreos.com/v1", "keda.sh/v1alpha1"]);
        assert_eq!(
            all,
            Capabilities { cron_job_v1: false, ..Capabilities::ALL },
            "CronJobs are found per kind"
        );
    }

    #[test]
    fn an_old_cluster_explains_each_feature_it_cannot_give() {
        let m = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4}, "monitoring": {"serviceMonitor": true}}));
        let reasons: Vec<&str> =
            unavailable(&m, Capabilities::default(), false).iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            vec![
                reason::AUTOSCALING_UNAVAILABLE,
                reason::DISRUPTION_BUDGET_UNAVAILABLE,
                reason::SERVICE_MONITOR_UNAVAILABLE
            ]
        );
        assert!(unavailable(&m, Capabilities::ALL, false).is_empty());
    }

    #[test]
    fn keda_needs_its_crd_and_for_pods_metrics_a_prometheus_url() {
        let keda = |target: serde_json::Value| {
            let mut a = serde_json::json!({"minReplicas": 1, "maxReplicas": 4, "provider": "KEDA"});
            a.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
            md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}, "autoscaling": a}))
        };
        let no_keda = Capabilities { keda: false, ..Capabilities::ALL };
        let message = |m: &ModelDeployment, caps, prometheus| {
            autoscaling_problem(m, caps, prometheus)
                .map(|p| p.message.split(',').next().unwrap_or("").to_string())
        };
        let queue = keda(serde_json::json!({"targetQueueTime": "5ms"}));
        assert_eq!(
            message(&queue, no_keda, true),
            Some("spec.autoscaling.provider KEDA needs keda.sh/v1alpha1 ScaledObjects".into())
        );
        assert_eq!(
            message(&queue, Capabilities::ALL, false),
            Some("spec.autoscaling.provider KEDA with a pods metric target needs the operator's --prometheus-url (chart value prometheusUrl) for its queries; running autoscaling.minReplicas replicas".into())
        );
        assert_eq!(message(&queue, Capabilities::ALL, true), None);
        assert_eq!(message(&keda(serde_json::json!({})), Capabilities::ALL, false), None);
    }

    #[test]
    fn one_replica_needs_no_disruption_budget() {
        let m = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}}));
        assert!(unavailable(&m, Capabilities::default(), false).is_empty());
    }
}
