//! The operator's real binary against a real Kubernetes API server, authenticated as the chart's
//! ServiceAccount with the chart's ClusterRole: if the RBAC lacks a verb, these tests fail. Each test has
//! its own namespace and its own operator watching only that namespace.

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_tests::e2e::{Env, eventually, mark_pods_ready, scrape, workspace};

static ENV: OnceLock<Option<Env>> = OnceLock::new();

fn env() -> Option<&'static Env> {
    ENV.get_or_init(Env::install).as_ref()
}

const WAIT: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    std::fs::read_to_string(workspace().join("manifests/examples").join(name)).expect("example")
}

fn apply(env: &Env, ns: &str, yaml: &str) {
    let out = env.cluster.apply(yaml, &["-n", ns]);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(&format!("Deployment {ns}/{name}"), WAIT, || async { api.get_opt(name).await.ok().flatten() })
        .await
}

fn condition(md: &ModelDeployment, type_: &str) -> Option<(String, String)> {
    let c = md.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_gets_the_children_its_spec_asks_for() {
    let Some(env) = env() else { return };
    let ns = env.namespace("examples");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    for file in ["cpu.yaml", "https.yaml", "gpu.yaml", "autoscaled.yaml", "database.yaml", "edge.yaml"] {
        apply(env, &ns, &example(file));
    }
    let cpu = deployment(&client, &ns, "digits").await;
    let pod = cpu.spec.template.spec.clone().unwrap();
    let server = &pod.containers[0];
    assert_eq!(
        server.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/v2/health/ready")
    );
    assert_eq!(
        server.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/v2/health/live")
    );
    assert!(server.startup_probe.is_some());
    let sc = server.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.read_only_root_filesystem, sc.allow_privilege_escalation, sc.run_as_non_root),
        (Some(true), Some(false), Some(true))
    );
    // The model is in the image: nothing to pull. The https example pulls it first.
    assert_eq!(pod.init_containers, None);
    let remote = deployment(&client, &ns, "digits-remote").await.spec.template.spec.unwrap();
    assert_eq!(remote.init_containers.unwrap()[0].args.as_ref().unwrap()[0], "pull");

    let gpu = deployment(&client, &ns, "resnet50").await.spec.template.spec.unwrap();
    let limits = gpu.containers[0].resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert!(
        gpu.tolerations
            .unwrap()
            .iter()
            .any(|t| t.key.as_deref() == Some("nvidia.com/gpu") && t.effect.as_deref() == Some("NoSchedule"))
    );
    assert_eq!(gpu.runtime_class_name.as_deref(), Some("nvidia"));
    assert!(gpu.containers[0].args.as_ref().unwrap().windows(2).any(|w| w == ["--device", "cuda"]));

    let db = deployment(&client, &ns, "digits-logged").await.spec.template.spec.unwrap();
    let url = db.containers[0].env.as_ref().unwrap().iter().find(|e| e.name == "DATABASE_URL").unwrap();
    let secret = url.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("digits-db", "DATABASE_URL"));

    let edge = deployment(&client, &ns, "digits-edge").await.spec.template.spec.unwrap();
    assert_eq!(edge.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["server", "edge"]);
    let svc: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ports: Vec<(i32, IntOrString)> = svc
        .get("digits-edge")
        .await
        .unwrap()
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.port, p.target_port.unwrap()))
        .collect();
    let named = |name: &str| IntOrString::String(name.into());
    assert_eq!(
        ports,
        [(8081, named("edge")), (8001, named("grpc-edge")), (9090, named("metrics"))],
        "with the edge on, HTTP and gRPC are reachable only through nginx"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let ingress = policies.get("digits-edge").await.unwrap().spec.unwrap().ingress.unwrap();
    let admitted: Vec<_> =
        ingress.iter().flat_map(|r| r.ports.iter().flatten()).map(|p| p.port.clone()).collect();
    assert_eq!(
        admitted,
        [Some(IntOrString::Int(8081)), Some(IntOrString::Int(8082)), Some(IntOrString::Int(9090))]
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let conf = cms.get("digits-edge-edge").await.unwrap().data.unwrap()["nginx.conf"].clone();
    assert!(conf.contains("immutable") && conf.contains("grpc_pass grpc://kubeinfer_grpc;"));

    let scaled = deployment(&client, &ns, "digits-autoscaled").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let md = mds.get("digits-autoscaled").await.unwrap();
    let min = md.spec.autoscaling.as_ref().unwrap().min_replicas;
    assert_eq!(scaled.spec.replicas, Some(min), "without an HPA the minimum runs");
    for name in ["digits", "resnet50", "digits-logged", "digits-edge", "digits-autoscaled"] {
        let md = eventually(&format!("{name}'s status"), WAIT, || async {
            mds.get(name)
                .await
                .ok()
                .filter(|m| m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation)
        })
        .await;
        assert_eq!(
            md.status.unwrap().selector.as_deref(),
            Some(
                format!("app.kubernetes.io/instance={name},app.kubernetes.io/name=kubeinfer-server").as_str()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_pods_make_the_model_ready_and_a_batch_size_change_rolls_the_pods() {
    let Some(env) = env() else { return };
    let ns = env.namespace("ready");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    apply(env, &ns, &example("cpu.yaml"));
    deployment(&client, &ns, "digits").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let ready = eventually("2 ready replicas and Ready=True", WAIT, || async {
        mark_pods_ready(&client, &ns, "digits").await;
        let md = mds.get("digits").await.ok()?;
        let s = md.status.clone()?;
        (s.ready_replicas == 2 && condition(&md, "Ready") == Some(("True".into(), "AllReplicasReady".into())))
            .then_some(md)
    })
    .await;
    assert_eq!(ready.status.as_ref().unwrap().observed_generation, Some(1));
    let before = deployment(&client, &ns, "digits")
        .await
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()["kubeinfer.io/config-checksum"]
        .clone();

    let changed = example("cpu.yaml").replace("maxBatchSize: 32", "maxBatchSize: 16");
    apply(env, &ns, &changed);
    eventually("observedGeneration 2", WAIT, || async {
        let md = mds.get("digits").await.ok()?;
        (md.status.as_ref()?.observed_generation == Some(2)).then_some(())
    })
    .await;
    let after = deployment(&client, &ns, "digits").await.spec.template.metadata.unwrap().annotations.unwrap()
        ["kubeinfer.io/config-checksum"]
        .clone();
    assert_ne!(before, after, "the config checksum did not change");
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    eventually("a second ReplicaSet (the rollout)", WAIT, || async {
        let n = rs
            .list(&ListParams::default().labels("app.kubernetes.io/instance=digits"))
            .await
            .ok()?
            .items
            .len();
        (n == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_goes_through_the_scale_subresource_to_the_deployment() {
    let Some(env) = env() else { return };
    let ns = env.namespace("scale");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    apply(env, &ns, &example("edge.yaml"));
    deployment(&client, &ns, "digits-edge").await;
    env.cluster.kubectl_ok(&["scale", "-n", &ns, "md/digits-edge", "--replicas=3"]);
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually("3 replicas on the Deployment", WAIT, || async {
        (api.get("digits-edge").await.ok()?.spec.replicas == Some(3)).then_some(())
    })
    .await;
    let scale = env.cluster.kubectl_ok(&[
        "get",
        "-n",
        &ns,
        "--raw",
        &format!("/apis/kubeinfer.io/v1alpha1/namespaces/{ns}/modeldeployments/digits-edge/scale"),
    ]);
    assert!(scale.contains(r#""replicas":3"#), "{scale}");
}

/// resourceVersions of the ModelDeployment and each child.
async fn versions(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let md: Api<ModelDeployment> = Api::namespaced(client.clone(), ns);
    let d: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let s: Api<Service> = Api::namespaced(client.clone(), ns);
    let c: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    vec![
        md.get(name).await.unwrap().resource_version().unwrap(),
        d.get(name).await.unwrap().resource_version().unwrap(),
        s.get(name).await.unwrap().resource_version().unwrap(),
        c.get(&format!("{name}-server")).await.unwrap().resource_version().unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_model_deployment_is_not_written_across_resyncs_or_an_operator_restart() {
    let Some(env) = env() else { return };
    let ns = env.namespace("idle");
    let operator = env.operator(Some(&ns), &["--resync-seconds", "1", "--retry-seconds", "1"]);
    let client = env.client().await;
    apply(env, &ns, &example("edge.yaml"));
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    eventually("a status", WAIT, || async { mds.get("digits-edge").await.ok()?.status }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = versions(&client, &ns, "digits-edge").await;
    let reconciles = scrape(
        &format!("http://{}/metrics", operator.addr),
        r#"kubeinfer_operator_reconciliations_total{result="success"}"#,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(versions(&client, &ns, "digits-edge").await, settled, "a resync wrote something");
    let later = scrape(
        &format!("http://{}/metrics", operator.addr),
        r#"kubeinfer_operator_reconciliations_total{result="success"}"#,
    );
    assert!(later >= reconciles + 3.0, "the resyncs did not happen ({reconciles} -> {later})");
    drop(operator);
    let _restarted = env.operator(Some(&ns), &["--resync-seconds", "1", "--retry-seconds", "1"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(versions(&client, &ns, "digits-edge").await, settled, "a restarted operator wrote something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_a_child_is_undone_by_the_operator() {
    let Some(env) = env() else { return };
    let ns = env.namespace("drift");
    let operator = env.operator(Some(&ns), &["--resync-seconds", "1"]);
    let client = env.client().await;
    apply(env, &ns, &example("cpu.yaml"));
    let original = deployment(&client, &ns, "digits").await;
    let container = &original.spec.template.spec.as_ref().unwrap().containers[0];
    let (name, image) = (container.name.clone(), container.image.clone().unwrap());
    let image_of = |d: &Deployment| d.spec.template.spec.as_ref()?.containers[0].image.clone();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // Three hand edits: a changed image, an added port (an element of a list the operator sets, which it
    // cannot take back from its new owner), and a removed probe (an edit that leaves no field owner).
    let edit = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": name, "image": "tampered:1", "ports": [{"containerPort": 9999, "name": "by-hand"}]}]}}}});
    let edited =
        deployments.patch("digits", &PatchParams::default(), &Patch::Strategic(&edit)).await.unwrap();
    assert_eq!(image_of(&edited).as_deref(), Some("tampered:1"));
    let remove = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": name, "readinessProbe": null}]}}}});
    let removed =
        deployments.patch("digits", &PatchParams::default(), &Patch::Strategic(&remove)).await.unwrap();
    assert!(removed.spec.template.spec.as_ref().unwrap().containers[0].readiness_probe.is_none());
    let probe_of = |d: &Deployment| d.spec.template.spec.as_ref()?.containers[0].readiness_probe.clone();
    eventually("the image and the probe restored", WAIT, || async {
        let d = deployments.get("digits").await.ok()?;
        (image_of(&d).as_deref() == Some(image.as_str()) && probe_of(&d).is_some()).then_some(())
    })
    .await;
    // Then left alone: nothing is written across several 1 s resyncs, although the added port (owned
    // by the hand edit's field manager) is still there.
    eventually("no writes for 3 s", WAIT, || async {
        let before = versions(&client, &ns, "digits").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        (versions(&client, &ns, "digits").await == before).then_some(())
    })
    .await;
    let log = operator.log_text();
    assert!(log.contains("cannot restore the field"), "the added port was not reported: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_by_the_api_server_with_messages_a_user_understands() {
    let Some(env) = env() else { return };
    let ns = env.namespace("invalid");
    let md = |spec: &str| {
        format!(
            "apiVersion: kubeinfer.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: bad}}\nspec: {spec}\n"
        )
    };
    for (spec, message) in [
        ("{model: {uri: 'ftp://host/m.onnx'}}", "spec.model.uri in body should match"),
        (
            "{model: {uri: 's3://b/m.onnx', sha256: 'xyz'}}",
            "spec.model.sha256 in body should match '^[0-9a-f]{64}$'",
        ),
        (
            "{model: {uri: 's3://b/m.onnx'}, replicas: -1}",
            "spec.replicas in body should be greater than or equal to 0",
        ),
        (
            "{model: {uri: 's3://b/m.onnx'}, batching: {maxQueueDelay: 'soon'}}",
            "spec.batching.maxQueueDelay in body should match",
        ),
        ("{replicas: 1}", "spec.model: Required value"),
    ] {
        // --validate=false: the API server, not kubectl's client-side check, is what must refuse it.
        let out = env.cluster.apply(&md(spec), &["-n", &ns, "--validate=false"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec} was accepted");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_model_deployment_garbage_collects_its_children() {
    let Some(env) = env() else { return };
    let ns = env.namespace("delete");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    apply(env, &ns, &example("edge.yaml"));
    deployment(&client, &ns, "digits-edge").await;
    env.cluster.kubectl_ok(&["delete", "-n", &ns, "md/digits-edge", "--wait=true"]);
    let d: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let s: Api<Service> = Api::namespaced(client.clone(), &ns);
    let c: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually("the children to be garbage-collected", WAIT, || async {
        let gone = d.get_opt("digits-edge").await.ok()?.is_none()
            && s.get_opt("digits-edge").await.ok()?.is_none()
            && c.get_opt("digits-edge-server").await.ok()?.is_none()
            && c.get_opt("digits-edge-edge").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_what_the_cluster_lacks_gives_a_condition_and_an_event_and_no_hot_loop() {
    let Some(env) = env() else { return };
    let served = env.cluster.kubectl_ok(&["api-versions"]);
    if served.lines().any(|l| l == "autoscaling/v2") {
        kubeinfer_tests::require::missing(
            "this cluster serves autoscaling/v2, so nothing is lacking",
            "run against the Kubernetes 1.20 control plane of KUBEBUILDER_ASSETS",
        );
        return;
    }
    let ns = env.namespace("lacking");
    let operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    apply(env, &ns, &example("autoscaled.yaml"));
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let md = eventually("Degraded=True", WAIT, || async {
        let md = mds.get("digits-autoscaled").await.ok()?;
        (condition(&md, "Degraded")?.0 == "True").then_some(md)
    })
    .await;
    assert_eq!(condition(&md, "Degraded"), Some(("True".into(), "AutoscalingUnavailable".into())));
    let events = env.cluster.events(&ns);
    assert!(events.lines().any(|l| l == "Warning AutoscalingUnavailable"), "{events}");
    assert!(events.lines().any(|l| l == "Warning DisruptionBudgetUnavailable"), "{events}");
    let url = format!("http://{}/metrics", operator.addr);
    let series = r#"kubeinfer_operator_reconciliations_total{result="success"}"#;
    let before = scrape(&url, series);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = scrape(&url, series);
    assert!(after - before <= 4.0, "{} reconciles in 8 s: a hot loop", after - before);
    assert!(operator.log_text().lines().all(|l| !l.contains("\"ERROR\"")), "{}", operator.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_service_account_can_read_no_secret_and_a_database_secret_is_still_wired_in() {
    let Some(env) = env() else { return };
    let operator = "system:serviceaccount:kubeinfer-system:kubeinfer-operator";
    for verb in ["get", "list", "watch"] {
        let out =
            env.cluster.kubectl(&["auth", "can-i", verb, "secrets", "--all-namespaces", "--as", operator]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "{verb} secrets");
    }
    let ns = env.namespace("no-secrets");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    apply(env, &ns, &example("database.yaml"));
    let logged = deployment(&client, &ns, "digits-logged").await;
    let server = &logged.spec.template.spec.unwrap().containers[0];
    let url = server.env.iter().flatten().find(|e| e.name == "DATABASE_URL").unwrap();
    assert_eq!(url.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "digits-db");
}
