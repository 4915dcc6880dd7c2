//! Autoscaling on the latency objective against a real API server: the HorizontalPodAutoscaler the
//! operator builds passes the API server's own validation, and KEDA is used once the cluster serves it.
//! This binary has its own control plane, since it installs KEDA's CRD cluster-wide.

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_operator::resources::{Build, hpa, keda};
use kubeinfer_operator::validate::validate;
use kubeinfer_tests::e2e::{Env, eventually, workspace};
use serde_json::json;

static ENV: OnceLock<Option<Env>> = OnceLock::new();

fn env() -> Option<&'static Env> {
    ENV.get_or_init(Env::install).as_ref()
}

const WAIT: Duration = Duration::from_secs(60);
const PROMETHEUS_URL: &str = "http://prometheus-operated.monitoring:9090";

fn example(name: &str) -> String {
    std::fs::read_to_string(workspace().join("manifests/examples").join(name)).expect("example")
}

fn apply(env: &Env, ns: &str, yaml: &str, extra: &[&str]) {
    let args: Vec<&str> = ["-n", ns].into_iter().chain(extra.iter().copied()).collect();
    let out = env.cluster.apply(yaml, &args);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The Degraded condition's (status, reason, message).
fn degraded(md: &ModelDeployment) -> Option<(String, String, String)> {
    let c = md.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Degraded")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_with_pods_metrics_and_behavior_passes_the_api_servers_validation() {
    let Some(env) = env() else { return };
    let ns = env.namespace("hpa-shape");
    let client = env.client().await;
    // Kubernetes 1.20 serves autoscaling/v2beta2, whose HPA has the fields of v2 (1.23+): the API server's
    // validation (metric sources, quantities, behavior policies), not just a schema, judges the object.
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": ns, "uid": "6f1c2a7e-0000-4000-8000-000000000002"},
        "spec": {"model": {"uri": "file:///models/digits/1/model.onnx"},
            "batching": {"latencyTarget": "20ms"},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetCPUUtilizationPercentage": 70,
                "targetInFlightRequests": 16, "targetQueueTime": "2.5ms",
                "targetLatencyUtilizationPercentage": 60,
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}
    }))
    .unwrap();
    let uri = validate(&md.spec).unwrap();
    let b = Build {
        md: &md,
        uri: &uri,
        server_image: "kubeinfer-server:e2e",
        edge_image: "nginx:e2e",
        autoscaler: true,
        prometheus_url: None,
    };
    let mut sent = serde_json::to_value(hpa::hpa(&b).unwrap()).unwrap();
    sent["apiVersion"] = json!("autoscaling/v2beta2");
    sent["kind"] = json!("HorizontalPodAutoscaler");
    sent["metadata"].as_object_mut().unwrap().remove("ownerReferences");
    let ar =
        ApiResource::from_gvk(&GroupVersionKind::gvk("autoscaling", "v2beta2", "HorizontalPodAutoscaler"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
    let object: DynamicObject = serde_json::from_value(sent.clone()).unwrap();
    let created = api
        .create(&PostParams { dry_run: true, ..Default::default() }, &object)
        .await
        .unwrap_or_else(|e| panic!("the API server refused the HPA: {e}\n{sent:#}"));
    let spec = &created.data["spec"];
    // Kept field for field (nothing pruned or rejected); the API server writes 2.5m as 2500u, and its
    // conversion of v2beta2 may reorder the metrics.
    assert_eq!(spec["behavior"], sent["spec"]["behavior"]);
    let sorted = |v: &serde_json::Value| {
        let mut items: Vec<String> = v.as_array().unwrap().iter().map(|m| m.to_string()).collect();
        items.sort();
        items
    };
    let expected = json!([
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
        {"type": "Pods", "pods": {"metric": {"name": "kubeinfer_inference_requests_in_flight"},
            "target": {"type": "AverageValue", "averageValue": "16"}}},
        {"type": "Pods", "pods": {"metric": {"name": "kubeinfer_queue_wait_recent_seconds"},
            "target": {"type": "AverageValue", "averageValue": "2500u"}}},
        {"type": "Pods", "pods": {"metric": {"name": "kubeinfer_latency_target_used_ratio"},
            "target": {"type": "AverageValue", "averageValue": "600m"}}},
    ]);
    assert_eq!(sorted(&spec["metrics"]), sorted(&expected));
    assert_eq!((spec["minReplicas"].clone(), spec["maxReplicas"].clone()), (json!(2), json!(8)));
}

/// Installs KEDA's ScaledObject CRD (the schema of tests/fixtures/keda) and waits until it is served.
fn install_keda(env: &Env) {
    let crd = std::fs::read_to_string(workspace().join("tests/fixtures/keda/scaledobjects.keda.sh.yaml"))
        .expect("KEDA CRD fixture");
    // Kubernetes before 1.25 drops x-kubernetes-validations; kubectl's client-side check would refuse it.
    let out = env.cluster.apply(&crd, &["--validate=false"]);
    assert!(out.status.success(), "KEDA CRD install failed: {}", String::from_utf8_lossy(&out.stderr));
    env.cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/scaledobjects.keda.sh",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scales_the_model_once_the_cluster_serves_it_and_its_scaled_object_survives_validation() {
    let Some(env) = env() else { return };
    let ns = env.namespace("keda");
    let operator = env.operator(
        Some(&ns),
        &["--prometheus-url", PROMETHEUS_URL, "--discovery-interval-seconds", "1", "--retry-seconds", "1"],
    );
    let client = env.client().await;
    apply(env, &ns, &example("keda.yaml"), &[]);
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let md = eventually("Degraded=True for the missing KEDA", WAIT, || async {
        let md = mds.get("digits-keda").await.ok()?;
        (degraded(&md)?.0 == "True").then_some(md)
    })
    .await;
    let (_, reason, message) = degraded(&md).unwrap();
    assert_eq!(reason, "AutoscalingUnavailable");
    assert!(
        message.starts_with("spec.autoscaling.provider KEDA needs keda.sh/v1alpha1 ScaledObjects"),
        "{message}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicas = eventually("the Deployment", WAIT, || async {
        deployments.get_opt("digits-keda").await.ok().flatten()?.spec.replicas
    })
    .await;
    assert_eq!(replicas, 1, "without KEDA the minimum runs");

    install_keda(env);
    let ar = kubeinfer_operator::kinds::scaled_object();
    let scaled: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let object =
        eventually("the ScaledObject", WAIT, || async { scaled.get_opt("digits-keda").await.ok().flatten() })
            .await;
    // What the API server stored after pruning by KEDA's schema: every field the operator wrote survived.
    let live = mds.get("digits-keda").await.unwrap();
    let uri = validate(&live.spec).unwrap();
    let b = Build {
        md: &live,
        uri: &uri,
        server_image: "kubeinfer-server:e2e",
        edge_image: "nginx:e2e",
        autoscaler: true,
        prometheus_url: Some(PROMETHEUS_URL),
    };
    let built = keda::scaled_object(&b).unwrap();
    assert_eq!(object.data["spec"], built.data["spec"]);
    assert_eq!(
        object.data["spec"]["triggers"][1]["metadata"]["query"],
        json!(format!(
            r#"sum(max by (pod) (kubeinfer_latency_target_used_ratio{{namespace="{ns}",pod=~"digits-keda-[a-z0-9]+-[a-z0-9]+"}}))"#
        ))
    );
    let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ModelDeployment", "digits-keda", Some(true))
    );
    // What stays degraded is only what 1.20 lacks besides KEDA: policy/v1 for the disruption budget.
    eventually("AutoscalingUnavailable gone once KEDA scales", WAIT, || async {
        let md = mds.get("digits-keda").await.ok()?;
        (degraded(&md)?.1 == "DisruptionBudgetUnavailable").then_some(())
    })
    .await;

    // The operator's lines about this ModelDeployment carry its reconcile span.
    let applied = operator
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["message"] == "applied" && l["changes"].as_str().is_some_and(|c| c.contains("ScaledObject"))
        })
        .unwrap_or_else(|| panic!("no 'applied' line for the ScaledObject:\n{}", operator.log_text()));
    assert_eq!(applied["span"]["name"], "reconcile", "{applied}");
    assert_eq!(applied["span"]["model_deployment"], format!("{ns}/digits-keda"), "{applied}");

    // Back to the HPA provider: the ScaledObject goes (this cluster has no autoscaling/v2 to give instead).
    let patch = json!({"spec": {"autoscaling": {"provider": "HPA"}}});
    mds.patch("digits-keda", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the ScaledObject deleted", WAIT, || async {
        scaled.get_opt("digits-keda").await.ok().filter(Option::is_none).map(|_| ())
    })
    .await;
}
