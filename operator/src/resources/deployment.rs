//! The server Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, CONFIG_CHECKSUM, edge, pod};

/// Surge a new pod before an old one goes, except on GPUs: there the spare GPU a surge needs is rarely
/// free, so one old pod makes room first.
fn strategy(b: &Build) -> DeploymentStrategy {
    let (surge, unavailable) = match b.md.spec.gpu {
        Some(_) => (IntOrString::Int(0), IntOrString::Int(1)),
        None => (IntOrString::String("25%".into()), IntOrString::Int(0)),
    };
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

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
        topology_spread_constraints: (b.md.spec.max_replicas() > 1).then(|| {
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
            strategy: Some(strategy(b)),
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, KeyToPath, PodSpec, SecretEnvSource, SecretKeySelector, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    use super::*;
    use crate::resources::configmap;
    use crate::resources::testing::{build, md};
    use crate::validate::parse_uri;

    /// The Deployment the operator builds for `spec`, with the checksum of the ConfigMaps it would apply.
    fn deploy(spec: serde_json::Value) -> Deployment {
        let md = md(spec);
        let uri = parse_uri(&md.spec.model.uri).unwrap();
        let b = build(&md, &uri);
        let edge = configmap::edge(&b);
        let server = configmap::server(&b);
        let checksum =
            configmap::checksum(&[Some(&server), edge.as_ref()].into_iter().flatten().collect::<Vec<_>>());
        deployment(&b, &checksum)
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    fn server(d: &Deployment) -> &Container {
        pod(d).containers.iter().find(|c| c.name == "server").unwrap()
    }

    fn names<T>(items: &Option<Vec<T>>, name: impl Fn(&T) -> &str) -> Vec<&str> {
        items.iter().flatten().map(name).collect()
    }

    #[test]
    fn a_gpu_pod_asks_for_the_gpu_tolerates_its_taint_runs_cuda_and_uses_the_runtime_class() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"},
            "gpu": {"count": 2, "resourceName": "amd.com/gpu", "runtimeClassName": "rocm"}}));
        let limits = server(&d).resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits.get("amd.com/gpu"), Some(&Quantity("2".into())));
        assert_eq!(
            pod(&d).tolerations,
            Some(vec![Toleration {
                key: Some("amd.com/gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }])
        );
        assert!(server(&d).args.as_ref().unwrap().ends_with(&["--device".into(), "cuda".into()]));
        assert_eq!(pod(&d).runtime_class_name.as_deref(), Some("rocm"));
    }

    #[test]
    fn a_cpu_pod_has_no_gpu_toleration_device_flag_or_runtime_class() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}}));
        assert_eq!(pod(&d).tolerations, None);
        assert!(!server(&d).args.as_ref().unwrap().contains(&"--device".to_string()));
        assert_eq!(pod(&d).runtime_class_name, None);
    }

    #[test]
    fn a_remote_model_is_pulled_into_an_empty_dir_that_the_server_reads_read_only() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx", "sha256": "ab".repeat(32)}}));
        let pull = &pod(&d).init_containers.as_ref().unwrap()[0];
        assert_eq!(
            pull.args.as_ref().unwrap(),
            &[
                "pull",
                "--uri",
                "s3://b/m.onnx",
                "--dest",
                "/models/digits/1/model.onnx",
                "--sha256",
                &"ab".repeat(32),
                "--max-bytes",
                "21474836480"
            ]
        );
        let models = pod(&d).volumes.iter().flatten().find(|v| v.name == "models").unwrap();
        assert!(models.empty_dir.is_some());
        let mount = server(&d).volume_mounts.iter().flatten().find(|m| m.name == "models").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/models", Some(true)));
        assert!(
            server(&d).args.as_ref().unwrap().contains(&"digits:1=/models/digits/1/model.onnx".to_string())
        );
    }

    #[test]
    fn a_pvc_model_is_mounted_read_only_and_needs_no_pull() {
        let d = deploy(json!({"model": {"uri": "pvc://store/resnet/1/model.onnx", "name": "resnet"}}));
        assert_eq!(pod(&d).init_containers, None);
        let source = pod(&d).volumes.iter().flatten().find(|v| v.name == "model-source").unwrap();
        let claim = source.persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("store", Some(true)));
        let mount = server(&d).volume_mounts.iter().flatten().find(|m| m.name == "model-source").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/mnt/model", Some(true)));
        assert!(
            server(&d)
                .args
                .as_ref()
                .unwrap()
                .contains(&"resnet:1=/mnt/model/resnet/1/model.onnx".to_string())
        );
    }

    #[test]
    fn a_model_in_the_image_needs_no_pull_and_no_model_volume() {
        let d = deploy(json!({"model": {"uri": "file:///opt/models/m.onnx"}}));
        assert_eq!(pod(&d).init_containers, None);
        assert_eq!(names(&pod(&d).volumes, |v| &v.name), vec!["tmp"]);
        assert_eq!(names(&server(&d).volume_mounts, |m| &m.name), vec!["tmp"]);
        assert!(server(&d).args.as_ref().unwrap().contains(&"digits:1=/opt/models/m.onnx".to_string()));
    }

    #[test]
    fn the_database_url_comes_from_the_secret() {
        let d = deploy(
            json!({"model": {"uri": "s3://b/m.onnx"}, "database": {"secretName": "db", "key": "url"}}),
        );
        let env = server(&d).env.as_ref().unwrap();
        let url = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        assert_eq!(url.value, None);
        assert_eq!(
            url.value_from.as_ref().unwrap().secret_key_ref,
            Some(SecretKeySelector { name: "db".into(), key: "url".into(), optional: None })
        );
        let pull = &pod(&d).init_containers.as_ref().unwrap()[0];
        assert_eq!(pull.env, None, "the pull container has no business with the database");
    }

    #[test]
    fn the_download_is_capped_by_the_model_size_limit_in_the_pull_and_the_volume() {
        let limits = |model: serde_json::Value| {
            let d = deploy(json!({"model": model}));
            let args = pod(&d).init_containers.as_ref().unwrap()[0].args.clone().unwrap();
            let cap = args.windows(2).find(|w| w[0] == "--max-bytes").map(|w| w[1].clone());
            let volume =
                pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name == "models").cloned().unwrap();
            (cap, volume.empty_dir.unwrap().size_limit.map(|q| q.0))
        };
        assert_eq!(
            limits(json!({"uri": "s3://b/m.onnx"})),
            (Some("21474836480".into()), Some("20Gi".into()))
        );
        assert_eq!(
            limits(json!({"uri": "s3://b/m.onnx", "maxSize": "500M"})),
            (Some("500000000".into()), Some("500M".into()))
        );
    }

    #[test]
    fn download_credentials_reach_the_pull_container_as_its_environment_and_nothing_else() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx", "credentialsSecret": {"name": "s3-creds"}}}));
        let pull = &pod(&d).init_containers.as_ref().unwrap()[0];
        assert_eq!(
            pull.env_from,
            Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: "s3-creds".into(), optional: None }),
                ..Default::default()
            }])
        );
        assert!(pull.args.as_ref().unwrap().iter().all(|a| !a.contains("s3-creds")));
        let server_env_from = serde_json::to_string(&server(&d).env_from).unwrap();
        assert!(!server_env_from.contains("s3-creds"), "the server never sees them: {server_env_from}");
    }

    #[test]
    fn a_database_ca_is_mounted_and_the_server_verifies_the_database_against_it() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"},
            "database": {"secretName": "db", "caSecret": {"name": "db-tls"}}}));
        let volume = pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name == "db-ca").unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("db-tls"));
        assert_eq!(
            secret.items,
            Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), ..Default::default() }])
        );
        let mount = server(&d).volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "db-ca").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/kubeinfer/db-ca", Some(true)));
        let env = server(&d).env.as_ref().unwrap();
        let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
        assert_eq!(value("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(value("PGSSLROOTCERT").as_deref(), Some("/etc/kubeinfer/db-ca/ca.crt"));

        let plain = deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "database": {"secretName": "db"}}));
        assert!(server(&plain).env.as_ref().unwrap().iter().all(|e| e.name != "PGSSLMODE"));
        assert!(pod(&plain).volumes.as_ref().unwrap().iter().all(|v| v.name != "db-ca"));
    }

    #[test]
    fn the_api_keys_secret_is_mounted_as_a_directory_and_named_to_the_server() {
        let d =
            deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "auth": {"apiKeysSecret": {"name": "keys"}}}));
        let volume = pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name == "api-keys").unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("keys"));
        assert_eq!(
            secret.items,
            Some(vec![KeyToPath { key: "api-keys".into(), path: "api-keys".into(), ..Default::default() }])
        );
        let mount = server(&d).volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "api-keys").unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only, mount.sub_path.as_deref()),
            ("/etc/kubeinfer/auth", Some(true), None)
        );
        let env = server(&d).env.as_ref().unwrap();
        let file = env.iter().find(|e| e.name == "KUBEINFER_API_KEYS_FILE").unwrap();
        assert_eq!(file.value.as_deref(), Some("/etc/kubeinfer/auth/api-keys"));
        let pull = &pod(&d).init_containers.as_ref().unwrap()[0];
        assert!(pull.volume_mounts.as_ref().unwrap().iter().all(|m| m.name != "api-keys"));
    }

    #[test]
    fn every_container_runs_restricted() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": true}}));
        let p = pod(&d);
        let all: Vec<&Container> = p.init_containers.iter().flatten().chain(&p.containers).collect();
        assert_eq!(all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["pull", "server", "edge"]);
        for c in all {
            let s = c.security_context.as_ref().unwrap();
            assert_eq!(s.run_as_non_root, Some(true), "{} runs as non-root", c.name);
            assert_eq!(s.read_only_root_filesystem, Some(true), "{} has a read-only root", c.name);
            assert_eq!(s.allow_privilege_escalation, Some(false), "{} cannot escalate", c.name);
            assert_eq!(s.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]), "{}", c.name);
            assert_eq!(s.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault", "{}", c.name);
        }
        let ps = p.security_context.as_ref().unwrap();
        assert_eq!((ps.run_as_non_root, ps.run_as_user), (Some(true), Some(65532)));
        assert_eq!(ps.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn pods_spread_across_nodes_only_when_there_can_be_more_than_one() {
        let one = deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "replicas": 1}));
        assert_eq!(pod(&one).topology_spread_constraints, None);
        let autoscaled = deploy(json!({"model": {"uri": "s3://b/m.onnx"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 2}}));
        let spread = &pod(&autoscaled).topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(
            (spread.max_skew, spread.topology_key.as_str(), spread.when_unsatisfiable.as_str()),
            (1, "kubernetes.io/hostname", "ScheduleAnyway")
        );
        let pods =
            json!({"app.kubernetes.io/instance": "digits", "app.kubernetes.io/name": "kubeinfer-server"});
        assert_eq!(serde_json::to_value(&spread.label_selector).unwrap(), json!({"matchLabels": pods}));
    }

    #[test]
    fn the_edge_adds_nginx_and_its_config_volume() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": true}}));
        let nginx = pod(&d).containers.iter().find(|c| c.name == "edge").unwrap();
        assert_eq!(nginx.image.as_deref(), Some("nginxinc/nginx-unprivileged:1.27-alpine"));
        let ports: Vec<(&str, i32)> =
            nginx.ports.iter().flatten().map(|p| (p.name.as_deref().unwrap(), p.container_port)).collect();
        assert_eq!(ports, [("edge", 8081), ("grpc-edge", 8082)]);
        let volume = pod(&d).volumes.iter().flatten().find(|v| v.name == "edge-config").unwrap();
        assert_eq!(volume.config_map.as_ref().unwrap().name, "digits-edge");
        let without = deploy(json!({"model": {"uri": "s3://b/m.onnx"}}));
        assert_eq!(names(&Some(pod(&without).containers.clone()), |c| &c.name), vec!["server"]);
        assert!(!names(&pod(&without).volumes, |v| &v.name).contains(&"edge-config"));
    }

    #[test]
    fn a_batching_change_changes_the_config_checksum_and_so_rolls_the_pods() {
        let checksum = |batch: i32| {
            let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}, "batching": {"maxBatchSize": batch}}));
            d.spec.template.metadata.unwrap().annotations.unwrap()[CONFIG_CHECKSUM].clone()
        };
        assert_eq!(checksum(8), checksum(8));
        assert_ne!(checksum(8), checksum(16));
    }

    #[test]
    fn pods_get_longer_to_stop_than_the_server_takes_to_drain() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}}));
        let grace = pod(&d).termination_grace_period_seconds.unwrap();
        let args = server(&d).args.clone().unwrap();
        let delay = &args[args.iter().position(|a| a == "--shutdown-delay").unwrap() + 1];
        assert_eq!(delay, &format!("{}s", pod::SHUTDOWN_DELAY_SECONDS));
        // The delay, the server's default 30 s drain timeout, its 5 s instance stop, its 10 s log grace.
        assert_eq!(grace, 60);
        assert!(grace > pod::SHUTDOWN_DELAY_SECONDS + 30 + 5 + 10, "grace {grace}s");
    }

    #[test]
    fn the_probes_watch_the_health_endpoints_and_give_large_models_time_to_load() {
        let d = deploy(json!({"model": {"uri": "s3://b/m.onnx"}}));
        let s = server(&d);
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap()
        };
        assert_eq!(path(&s.startup_probe), "/v2/health/ready");
        assert_eq!(path(&s.readiness_probe), "/v2/health/ready");
        assert_eq!(path(&s.liveness_probe), "/v2/health/live");
        let startup = s.startup_probe.as_ref().unwrap();
        let seconds = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
        assert_eq!(seconds, 30 * 60, "30 minutes to fetch and load");
    }

    #[test]
    fn the_replica_count_is_left_to_the_hpa_when_there_is_one() {
        let replicas = |autoscaler: bool| {
            let md = md(json!({"model": {"uri": "s3://b/m.onnx"},
                "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}));
            let uri = parse_uri(&md.spec.model.uri).unwrap();
            let b = Build { autoscaler, ..build(&md, &uri) };
            deployment(&b, "c").spec.replicas
        };
        assert_eq!(replicas(true), None);
        assert_eq!(replicas(false), Some(2), "without an HPA, minReplicas run");
        assert_eq!(deploy(json!({"model": {"uri": "s3://b/m.onnx"}})).spec.replicas, Some(1));
    }
}
