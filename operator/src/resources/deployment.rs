//! The server Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, CONFIG_CHECKSUM, edge, pod};

/// `config_checksum` is `configmap::checksum` of the ConfigMaps the pods read.
pub fn deployment(b: &Build, config_checksum: &str) -> Deployment {
    let mut annotations: BTreeMap<String, String> = b.md.spec.pod_annotations.clone();
    annotations.insert(CONFIG_CHECKSUM.into(), config_checksum.into());
    let mut containers = vec![pod::server_container(b)];
    if b.edge_enabled() {
        containers.push(edge::container(b));
    }
    let spec = &b.md.spec;
    let pod_spec = PodSpec {
        init_containers: pod::pull_container(b).map(|c| vec![c]),
        containers,
        volumes: Some(pod::volumes(b)),
        security_context: Some(pod::restricted_pod()),
        termination_grace_period_seconds: Some(pod::TERMINATION_GRACE_SECONDS),
        service_account_name: spec.service_account_name.clone(),
        automount_service_account_token: Some(false),
        image_pull_secrets: Some(spec.image_pull_secrets.clone()).filter(|s| !s.is_empty()),
        node_selector: Some(spec.node_selector.clone()).filter(|n| !n.is_empty()),
        tolerations: pod::tolerations(b),
        affinity: spec.affinity.clone(),
        runtime_class_name: spec.gpu.as_ref().and_then(|g| g.runtime_class_name.clone()),
        topology_spread_constraints: (b.max_replicas() > 1).then(|| {
            vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".into(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: Some(b.selector()),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    Deployment {
        metadata: b.metadata(b.name()),
        spec: DeploymentSpec {
            // Under an HPA the autoscaler owns the replica count, so the operator leaves the field alone;
            // where the cluster has no HPA to give, the minimum is what runs.
            replicas: match &spec.autoscaling {
                Some(_) if b.autoscaler => None,
                Some(a) => Some(a.min_replicas),
                None => Some(spec.replicas.unwrap_or(1)),
            },
            selector: b.selector(),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(b.labels()),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}
