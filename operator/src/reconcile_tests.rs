//! Reconciles against a scripted API server (see fixtures.rs): each test lists, in order, every request
//! the operator makes for one ModelDeployment and what the API server answers.

use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::time::Duration;

use crate::controller::error_policy;
use crate::crd::ModelDeployment;
use crate::discovery::Capabilities;
use crate::error::Error;
use crate::fixtures::{
    EDGE_IMAGE, EVERYTHING, RESYNC, RETRY, SERVER_IMAGE, as_applied, model_deployment, test_context,
};
use crate::resources::{Build, configmap, deployment, hpa, networkpolicy, pdb, service, servicemonitor};
use crate::status::{self, Observed};
use crate::validate::validate;

/// The checksum a downloaded model must carry (validate.rs).
const SHA256: &str = "c87d93c26856392e675984e545c45648e195e3e65afa0a309af41ccc78f4eb39";
const PODS: &str = "/api/v1/namespaces/ml/pods";
const SERVER_CONFIG: &str = "/api/v1/namespaces/ml/configmaps/digits-server";
const EDGE_CONFIG: &str = "/api/v1/namespaces/ml/configmaps/digits-edge";
const SERVICE: &str = "/api/v1/namespaces/ml/services/digits";
const POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies/digits";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/digits";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const HPA: &str = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/digits";
const PDB: &str = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/digits";
const MONITOR: &str = "/apis/monitoring.coreos.com/v1/namespaces/ml/servicemonitors/digits";

/// Autoscaled between 1 and 3 replicas, with batching and a ServiceMonitor: every kind of child.
fn autoscaled() -> ModelDeployment {
    model_deployment(json!({
        "model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70},
        "batching": {"maxBatchSize": 16, "maxQueueDelay": "2ms"},
        "monitoring": {"serviceMonitor": true},
    }))
}

/// The status conditions as `Type=Status (Reason)`.
fn conditions(status: &Value) -> Vec<String> {
    let conditions = status["status"]["conditions"].as_array().expect("conditions");
    conditions
        .iter()
        .map(|c| format!("{}={} ({})", c["type"], c["status"], c["reason"]).replace('"', ""))
        .collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conditions = status["status"]["conditions"].as_array().expect("conditions");
    conditions.iter().find(|c| c["type"] == type_).expect("the condition")
}

/// An Event's type and reason.
fn type_and_reason(event: &Value) -> (&str, &str) {
    (event["type"].as_str().unwrap_or_default(), event["reason"].as_str().unwrap_or_default())
}

/// The API server's answer to the first apply of a Deployment: replicas defaulted, not yet rolled out.
fn created(deployment: &Value) -> Value {
    let mut created = deployment.clone();
    created["metadata"]["generation"] = json!(1);
    created["spec"]["replicas"] = deployment["spec"].get("replicas").cloned().unwrap_or(json!(1));
    created
}

#[tokio::test]
async fn a_new_model_deployment_gets_every_child_then_its_status_then_an_applied_event() {
    let md = autoscaled();
    let (ctx, api) = test_context(EVERYTHING);
    let server = api.run(md.clone(), |mut api| async move {
        api.get_missing(SERVER_CONFIG).await;
        let config = api.apply(SERVER_CONFIG).await;
        assert_eq!(
            config["metadata"]["ownerReferences"],
            json!([{"apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment", "name": "digits",
                    "uid": "6f1c2a7e-0000-4000-8000-000000000001", "controller": true}])
        );
        let data = json!({"KUBEINFER_MAX_BATCH_SIZE": "16", "KUBEINFER_MAX_QUEUE_DELAY": "2ms"});
        assert_eq!(config["data"], data);
        let applied_hash = config["metadata"]["annotations"]["kubeinfer.io/applied-hash"].as_str();
        assert_eq!(applied_hash.map(str::len), Some(64), "a SHA-256 of what was applied");
        api.get_missing(EDGE_CONFIG).await;
        api.get_missing(SERVICE).await;
        api.apply(SERVICE).await;
        api.get_missing(POLICY).await;
        api.apply(POLICY).await;
        api.get_missing(DEPLOYMENT).await;
        let deployment = api.apply_answering(DEPLOYMENT, created).await;
        let config: ConfigMap = serde_json::from_value(config).unwrap();
        let template = &deployment["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["kubeinfer.io/config-checksum"],
            configmap::checksum(&[&config]),
            "the pods carry the checksum of the ConfigMap just applied"
        );
        assert_eq!(
            template["spec"]["containers"][0]["args"],
            json!([
                "serve",
                "--log-format",
                "json",
                "--model",
                "digits:1=/models/digits/1/model.onnx",
                "--http-port",
                "8080",
                "--shutdown-delay",
                "5s",
                "--metrics-port",
                "9090",
                "--grpc-port",
                "8001"
            ])
        );
        let env_from = json!([{"configMapRef": {"name": "digits-server"}}]);
        assert_eq!(template["spec"]["containers"][0]["envFrom"], env_from);
        assert_eq!(deployment["spec"].get("replicas"), None, "the HPA owns the replica count");
        api.get_missing(HPA).await;
        let hpa = api.apply(HPA).await;
        let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits"});
        assert_eq!(hpa["spec"]["scaleTargetRef"], target);
        api.get_missing(PDB).await;
        api.apply(PDB).await;
        api.get_missing(MONITOR).await;
        api.apply(MONITOR).await;
        let status = api.apply_status().await;
        assert_eq!(status["apiVersion"], "kubeinfer.io/v1alpha1");
        assert_eq!(status["status"]["observedGeneration"], 3);
        assert_eq!(status["status"]["ready"], "0/1");
        let endpoint = "http://digits.ml.svc:8080/v2/models/digits/versions/1/infer";
        assert_eq!(status["status"]["endpoint"], endpoint);
        let selector = "app.kubernetes.io/instance=digits,app.kubernetes.io/name=kubeinfer-server";
        assert_eq!(status["status"]["selector"], selector);
        assert_eq!(
            conditions(&status),
            [
                "Ready=False (ReplicasNotReady)",
                "Progressing=True (RollingOut)",
                "Degraded=False (AsExpected)"
            ]
        );
        let event = api.event().await;
        assert_eq!(type_and_reason(&event), ("Normal", "Applied"));
        assert_eq!(event["action"], "Reconcile");
        assert_eq!(
            event["note"],
            "applied ConfigMap digits-server, applied Service digits, applied NetworkPolicy digits, applied Deployment digits, \
             applied HorizontalPodAutoscaler digits, applied PodDisruptionBudget digits, \
             applied ServiceMonitor digits"
        );
        api
    });
    let action = server.reconcile(ctx).await.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_model_deployment_whose_children_and_status_are_up_to_date_writes_nothing() {
    // The cluster as the last reconcile left it: every child carries the hash of what was applied, the
    // HPA has scaled to 2 replicas that are all ready, and the status says so.
    let mut md = autoscaled();
    let uri = validate(&md.spec).unwrap();
    let b = Build {
        md: &md,
        uri: &uri,
        server_image: SERVER_IMAGE,
        edge_image: EDGE_IMAGE,
        autoscaler: true,
        prometheus_url: None,
    };
    let server_config = configmap::server(&b);
    let mut live = as_applied(deployment::deployment(&b, &configmap::checksum(&[&server_config])));
    live["metadata"]["generation"] = json!(4);
    live["spec"]["replicas"] = json!(2);
    live["status"] =
        json!({"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2});
    let (config, service, policy, hpa, pdb, monitor) = (
        as_applied(server_config),
        as_applied(service::service(&b)),
        as_applied(networkpolicy::network_policy(&b).unwrap()),
        as_applied(hpa::hpa(&b).unwrap()),
        as_applied(pdb::pdb(&b).unwrap()),
        as_applied(servicemonitor::service_monitor(&b).unwrap()),
    );
    let observed = Observed {
        deployment: Some(&serde_json::from_value(live.clone()).unwrap()),
        problems: &[],
        selector: Some(b.selector_string()),
        endpoint: Some(b.endpoint()),
    };
    let earlier = Time(Timestamp::from_second(1_700_000_000).unwrap());
    md.status = Some(status::compute(&md, &observed, &earlier));

    let (ctx, api) = test_context(EVERYTHING);
    let server = api.run(md, |mut api| async move {
        api.get(SERVER_CONFIG, config).await;
        api.get_missing(EDGE_CONFIG).await;
        api.get(SERVICE, service).await;
        api.get(POLICY, policy).await;
        api.get(DEPLOYMENT, live).await;
        api.get(HPA, hpa).await;
        api.get(PDB, pdb).await;
        api.get(MONITOR, monitor).await;
        api // and nothing more: no apply, no status, no event
    });
    let action = server.reconcile(ctx).await.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_invalid_spec_applies_nothing_and_says_why_in_the_status_and_a_warning() {
    let md = model_deployment(json!({"model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256},
        "replicas": 2, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}));
    let (ctx, api) = test_context(EVERYTHING);
    let server = api.run(md.clone(), |mut api| async move {
        let status = api.apply_status().await;
        assert_eq!(condition(&status, "Ready")["status"], "False");
        assert_eq!(condition(&status, "Ready")["reason"], "InvalidSpec");
        assert_eq!(condition(&status, "Ready")["message"], "set either replicas or autoscaling, not both");
        assert_eq!(condition(&status, "Degraded")["status"], "True");
        let event = api.event().await;
        assert_eq!(type_and_reason(&event), ("Warning", "InvalidSpec"));
        assert_eq!(event["note"], "set either replicas or autoscaling, not both");
        api
    });
    let action = server.reconcile(ctx).await.expect("an invalid spec is not a reconcile error");
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn autoscaling_without_autoscaling_v2_runs_the_minimum_without_an_hpa_and_warns() {
    let md = model_deployment(json!({"model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}));
    let caps = Capabilities { autoscaling_v2: false, ..EVERYTHING };
    let (ctx, api) = test_context(caps);
    let server = api.run(md.clone(), |mut api| async move {
        api.get_missing(SERVER_CONFIG).await;
        api.apply(SERVER_CONFIG).await;
        api.get_missing(EDGE_CONFIG).await;
        api.get_missing(SERVICE).await;
        api.apply(SERVICE).await;
        api.get_missing(POLICY).await;
        api.apply(POLICY).await;
        api.get_missing(DEPLOYMENT).await;
        let deployment = api.apply_answering(DEPLOYMENT, created).await;
        assert_eq!(deployment["spec"]["replicas"], 2, "minReplicas run");
        // No HorizontalPodAutoscaler request of any kind.
        api.get_missing(PDB).await;
        api.apply(PDB).await;
        api.get_missing(MONITOR).await; // not asked for: only checked for one to delete
        let status = api.apply_status().await;
        assert_eq!(condition(&status, "Degraded")["status"], "True");
        assert_eq!(condition(&status, "Degraded")["reason"], "AutoscalingUnavailable");
        let applied = api.event().await;
        assert_eq!(type_and_reason(&applied), ("Normal", "Applied"));
        let warning = api.event().await;
        assert_eq!(type_and_reason(&warning), ("Warning", "AutoscalingUnavailable"));
        assert_eq!(warning["note"], condition(&status, "Degraded")["message"]);
        api
    });
    let action = server.reconcile(ctx).await.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(RETRY), "a degraded model is looked at again sooner");
}

#[tokio::test]
async fn a_missing_database_secret_is_read_from_the_pods_not_from_the_secret_which_the_operator_never_gets() {
    let md = model_deployment(json!({"model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256},
        "database": {"secretName": "digits-db"}}));
    let (ctx, api) = test_context(Capabilities::default());
    let server = api.run(md.clone(), |mut api| async move {
        // With a database, migrate Jobs of an earlier spec are looked for (none here).
        api.list(JOBS, "kubeinfer.io/migrate=digits", vec![]).await;
        api.get_missing(SERVER_CONFIG).await;
        api.apply(SERVER_CONFIG).await;
        api.get_missing(EDGE_CONFIG).await;
        api.get_missing(SERVICE).await;
        api.apply(SERVICE).await;
        api.get_missing(POLICY).await;
        api.apply(POLICY).await;
        api.get_missing(DEPLOYMENT).await;
        let deployment = api
            .apply_answering(DEPLOYMENT, |d| {
                let mut d = created(d);
                d["status"] = json!({"replicas": 1, "unavailableReplicas": 1});
                d
            })
            .await;
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": "digits-db", "key": "DATABASE_URL"}}}])
        );
        let waiting = json!({"waiting": {"reason": "CreateContainerConfigError",
                                         "message": "secret \"digits-db\" not found"}});
        let pod = json!({"metadata": {"name": "digits-7d9f-x2x"}, "status": {"containerStatuses": [
            {"name": "server", "image": SERVER_IMAGE, "imageID": "", "ready": false, "restartCount": 0,
             "state": waiting}]}});
        api.list(
            PODS,
            "app.kubernetes.io/instance=digits,app.kubernetes.io/name=kubeinfer-server",
            vec![pod],
        )
        .await;
        let status = api.apply_status().await;
        let degraded = condition(&status, "Degraded");
        assert_eq!(
            (degraded["status"].as_str(), degraded["reason"].as_str()),
            (Some("True"), Some("SecretNotFound"))
        );
        assert_eq!(
            degraded["message"],
            "pod digits-7d9f-x2x: container server cannot start: secret \"digits-db\" not found"
        );
        assert_eq!(api.event().await["reason"], "Applied");
        let warning = api.event().await;
        assert_eq!(type_and_reason(&warning), ("Warning", "SecretNotFound"));
        api
    });
    let action = server.reconcile(ctx).await.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(RETRY));
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_which_is_retried_after_1s_then_2s() {
    let md = autoscaled();
    let (ctx, api) = test_context(EVERYTHING);
    let server = api.run(md.clone(), |mut api| async move {
        api.fail(Method::GET, SERVER_CONFIG, 500).await;
        api // nothing after the failure
    });
    let error = server.reconcile(ctx.clone()).await.expect_err("the reconcile fails");
    assert!(matches!(&error, Error::Kube(kube::Error::Api(s)) if s.code == 500), "{error:?}");
    assert_eq!(ctx.metrics.errors.with_label_values(&["kube_api"]).get(), 1);
    assert_eq!(ctx.metrics.reconciliations.with_label_values(&["error"]).get(), 1);
    let md = std::sync::Arc::new(md);
    assert_eq!(error_policy(md.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(error_policy(md, &error, ctx), Action::requeue(Duration::from_secs(2)));
}

#[tokio::test]
async fn turning_the_edge_off_deletes_the_edge_config_the_operator_made() {
    let md = model_deployment(json!({"model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256}}));
    let owner = json!({"apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment", "name": "digits",
                       "uid": "6f1c2a7e-0000-4000-8000-000000000001", "controller": true});
    let edge_config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "digits-edge", "namespace": "ml", "uid": "e1", "ownerReferences": [owner]}});
    let (ctx, api) = test_context(Capabilities::default());
    let server = api.run(md.clone(), |mut api| async move {
        api.get_missing(SERVER_CONFIG).await;
        api.apply(SERVER_CONFIG).await;
        api.get(EDGE_CONFIG, edge_config).await;
        api.delete(EDGE_CONFIG, "e1").await;
        api.get_missing(SERVICE).await;
        api.apply(SERVICE).await;
        api.get_missing(POLICY).await;
        api.apply(POLICY).await;
        api.get_missing(DEPLOYMENT).await;
        api.apply_answering(DEPLOYMENT, created).await;
        api.apply_status().await;
        let event = api.event().await;
        assert_eq!(
            event["note"],
            "applied ConfigMap digits-server, deleted ConfigMap digits-edge, applied Service digits, \
             applied NetworkPolicy digits, applied Deployment digits"
        );
        api
    });
    server.reconcile(ctx).await.expect("reconcile succeeds");
}

#[tokio::test]
async fn an_edge_config_that_someone_else_made_is_left_alone() {
    let md = model_deployment(json!({"model": {"uri": "s3://models/digits/model.onnx", "sha256": SHA256}}));
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "digits-edge", "namespace": "ml", "uid": "e1"}});
    let (ctx, api) = test_context(Capabilities::default());
    let server = api.run(md.clone(), |mut api| async move {
        api.get_missing(SERVER_CONFIG).await;
        api.apply(SERVER_CONFIG).await;
        api.get(EDGE_CONFIG, theirs).await; // not owned: no DELETE
        api.get_missing(SERVICE).await;
        api.apply(SERVICE).await;
        api.get_missing(POLICY).await;
        api.apply(POLICY).await;
        api.get_missing(DEPLOYMENT).await;
        api.apply_answering(DEPLOYMENT, created).await;
        api.apply_status().await;
        assert_eq!(api.event().await["reason"], "Applied");
        api
    });
    server.reconcile(ctx).await.expect("reconcile succeeds");
}
