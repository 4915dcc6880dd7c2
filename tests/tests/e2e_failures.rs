//! A model that fails to come up says why where users look: the reason the pull or the server wrote to
//! its termination log reaches the ModelDeployment's Ready condition, an Event and `kubectl get md`.
//! There is no kubelet here, so the test writes the pod statuses a kubelet would.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_tests::e2e::{Env, eventually, workspace};

const WAIT: Duration = Duration::from_secs(60);

fn container(name: &str, state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": name, "ready": false, "restartCount": 2, "image": "kubeinfer-server:test",
                       "imageID": "", "state": state, "lastState": last})
}

async fn set_statuses(pods: &Api<Pod>, status: serde_json::Value) -> usize {
    let list = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=digits")).await.unwrap();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let body = serde_json::json!({ "status": status });
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await.unwrap();
    }
    list.items.len()
}

async fn ready_reason(mds: &Api<ModelDeployment>, want: &str) -> String {
    eventually(&format!("Ready=False with reason {want}"), WAIT, || async {
        let md = mds.get("digits").await.ok()?;
        let ready = md.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == want && ready.status == "False").then_some(ready.message)
    })
    .await
}

/// The condition `type_` of ModelDeployment `name`, if it has one yet.
async fn condition(
    mds: &Api<ModelDeployment>,
    name: &str,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    mds.get(name).await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pull_and_a_failed_model_load_show_their_reasons_on_the_model_deployment() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("failures");
    let _operator = env.operator(Some(&ns), &["--retry-seconds", "1"]);
    let client = env.client().await;
    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("the Deployment's pods", WAIT, || async {
        let list =
            pods.list(&ListParams::default().labels("app.kubernetes.io/instance=digits")).await.ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;

    let back_off = serde_json::json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}});
    let pull_said = "pull https://models.example/digits.onnx: SHA-256 is 9f86d081, expected 2c26b46b";
    let failed = serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error", "message": pull_said}});
    assert!(
        set_statuses(
            &pods,
            serde_json::json!({"phase": "Pending",
        "initContainerStatuses": [container("pull", back_off.clone(), failed)]})
        )
        .await
            > 0
    );
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let message = ready_reason(&mds, "PullFailed").await;
    assert!(message.ends_with(&format!(": pulling the model failed: {pull_said}")), "{message}");
    let listed = env.cluster.kubectl_ok(&["get", "md", "digits", "-n", &ns]);
    assert!(listed.lines().next().unwrap_or_default().contains("REASON"), "{listed}");
    assert!(listed.contains("PullFailed"), "{listed}");

    let server_said = "cannot load model /models/digits/1/model.onnx: Unsupported model IR version: 11";
    let done = serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    let crashed =
        serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error", "message": server_said}});
    set_statuses(
        &pods,
        serde_json::json!({"phase": "Running",
        "initContainerStatuses": [container("pull", done, serde_json::json!({}))],
        "containerStatuses": [container("server", back_off, crashed)]}),
    )
    .await;
    let message = ready_reason(&mds, "ModelLoadFailed").await;
    assert!(message.ends_with(&format!(": the server could not start: {server_said}")), "{message}");
    let events = env.cluster.events(&ns);
    assert!(events.lines().any(|l| l == "Warning PullFailed"), "{events}");
    assert!(events.lines().any(|l| l == "Warning ModelLoadFailed"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_outside_the_allow_list_is_refused_and_the_running_deployment_is_kept() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("allow-list");
    let _operator =
        env.operator(Some(&ns), &["--retry-seconds", "1", "--allowed-images", "ghcr.io/kubeinfer/"]);
    let client = env.client().await;
    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let image = |d: Deployment| d.spec.template.spec?.containers.first()?.image.clone();
    let before = eventually("the Deployment, with the operator's own image", WAIT, || async {
        image(deployments.get_opt("digits").await.ok().flatten()?)
    })
    .await;
    assert_eq!(before, "kubeinfer-server:e2e", "--server-image needs no allow-list entry");

    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"image": "docker.io/someone/miner:1"}});
    mds.patch("digits", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let message = ready_reason(&mds, "ImageNotAllowed").await;
    assert_eq!(
        message,
        "spec.image \"docker.io/someone/miner:1\" is not in the operator's --allowed-images (ghcr.io/kubeinfer/); \
         nothing was changed"
    );
    let events = env.cluster.events(&ns);
    assert!(events.lines().any(|l| l == "Warning ImageNotAllowed"), "{events}");
    let after = image(deployments.get("digits").await.unwrap());
    assert_eq!(after.as_deref(), Some("kubeinfer-server:e2e"), "the running pods are left as they were");

    let allowed = serde_json::json!({"spec": {"image": "ghcr.io/kubeinfer/kubeinfer-server:0.2.0"}});
    mds.patch("digits", &PatchParams::default(), &Patch::Merge(&allowed)).await.unwrap();
    eventually("the allowed image rolled out", WAIT, || async {
        let now = image(deployments.get("digits").await.ok()?)?;
        (now == "ghcr.io/kubeinfer/kubeinfer-server:0.2.0").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_volume_the_kubelet_cannot_mount_is_reported_from_its_failed_mount_event() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("mount");
    let _operator = env.operator(Some(&ns), &["--retry-seconds", "1"]);
    let client = env.client().await;
    // Nothing else this cluster lacks (two replicas want policy/v1, a ServiceMonitor its CRD), so that
    // the mount failure is Degraded's reason.
    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 1")
        .replace("serviceMonitor: true", "serviceMonitor: false")
        + "  auth:\n    apiKeysSecret:\n      name: digits-keys\n";
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually("a pod of the Deployment", WAIT, || async {
        let list =
            pods.list(&ListParams::default().labels("app.kubernetes.io/instance=digits")).await.ok()?;
        list.items.into_iter().next()?.metadata.name
    })
    .await;
    let creating = serde_json::json!({"waiting": {"reason": "ContainerCreating"}});
    set_statuses(
        &pods,
        serde_json::json!({"phase": "Pending",
        "containerStatuses": [container("server", creating, serde_json::json!({}))]}),
    )
    .await;
    // What the kubelet writes when the Secret of a volume does not exist.
    let said = "MountVolume.SetUp failed for volume \"api-keys\" : secret \"digits-keys\" not found";
    let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{pod}.mount")},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns, "apiVersion": "v1"},
        "reason": "FailedMount", "type": "Warning", "message": said,
        "firstTimestamp": "2026-11-30T10:00:00Z", "lastTimestamp": "2026-11-30T10:00:00Z",
        "source": {"component": "kubelet"}}))
    .unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    events.create(&Default::default(), &event).await.unwrap();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let degraded = eventually("Degraded=True with reason SecretNotFound", WAIT, || async {
        let c = condition(&mds, "digits", "Degraded").await?;
        (c.reason == "SecretNotFound" && c.status == "True").then_some(c.message)
    })
    .await;
    assert_eq!(degraded, format!("pod {pod} cannot start: {said}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_as_a_job_per_image_and_a_failed_one_is_reported() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("migrate");
    let _operator = env.operator(Some(&ns), &["--retry-seconds", "1"]);
    let client = env.client().await;
    let example =
        std::fs::read_to_string(workspace().join("manifests/examples/database-roles.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mine = ListParams::default().labels("kubeinfer.io/migrate=digits-roles");
    let first = eventually("the migrate Job", WAIT, || async {
        jobs.list(&mine).await.ok()?.items.into_iter().next()
    })
    .await;
    let container = &first.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.args.as_deref().unwrap()[0], "migrate");
    let url = container.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().secret_key_ref.clone().unwrap();
    assert_eq!((url.name.as_str(), url.key.as_str()), ("digits-db-owner", "DATABASE_URL"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let server_env = eventually("the Deployment", WAIT, || async {
        deployments.get_opt("digits-roles").await.ok().flatten()?.spec.template.spec?.containers[0]
            .env
            .clone()
    })
    .await;
    let env_of = |name: &str| server_env.iter().find(|e| e.name == name).cloned();
    assert_eq!(env_of("KUBEINFER_MIGRATE").and_then(|e| e.value).as_deref(), Some("off"));
    let pods_url = env_of("DATABASE_URL").unwrap().value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(pods_url.name, "digits-db-writer", "the pods connect with the DML role");

    // Kubernetes 1.20 serves no batch/v1 CronJob: the partitions' maintenance is the user's, and Degraded says so.
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let reason = eventually("Degraded=True", WAIT, || async {
        let c = condition(&mds, "digits-roles", "Degraded").await?;
        (c.status == "True").then_some(c.reason)
    })
    .await;
    assert_eq!(reason, "PartitionMaintenanceUnavailable");

    // A failed Job (what the Job controller writes after its last try) is Degraded's message too.
    let failed = serde_json::json!({"status": {"conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
    let first_name = first.metadata.name.clone().unwrap();
    jobs.patch_status(&first_name, &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    let message = eventually("the failure in Degraded", WAIT, || async {
        let c = condition(&mds, "digits-roles", "Degraded").await?;
        c.message.contains("failed").then_some(c.message)
    })
    .await;
    assert!(
        message.contains(&format!(
            "the migrate Job {first_name} failed: Job has reached the specified backoff limit"
        )),
        "{message}"
    );

    // A new image is a new Job; the one before it goes.
    let image = serde_json::json!({"spec": {"image": "ghcr.io/kubeinfer/kubeinfer-server:0.2.0"}});
    mds.patch("digits-roles", &PatchParams::default(), &Patch::Merge(&image)).await.unwrap();
    let names = eventually("one new Job", WAIT, || async {
        let names: Vec<String> =
            jobs.list(&mine).await.ok()?.items.into_iter().filter_map(|j| j.metadata.name).collect();
        (names.len() == 1 && names[0] != first_name).then_some(names)
    })
    .await;
    assert!(names[0].starts_with("digits-roles-migrate-"), "{names:?}");
}
