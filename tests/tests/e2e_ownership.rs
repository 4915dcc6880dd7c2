//! The operator never takes what is not its own: a Service already named like a ModelDeployment's child
//! keeps its selector, the ModelDeployment says NameConflict (condition and Event), and deleting the
//! ModelDeployment leaves the Service where it was.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_tests::e2e::{Env, eventually, workspace};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_it_did_not_create_is_reported_as_a_name_conflict_and_left_alone() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("conflict");
    let _operator = env.operator(Some(&ns), &[]);
    let client = env.client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "digits"},
        "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &theirs).await.unwrap();

    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let ready = eventually("Ready=False with reason NameConflict", WAIT, || async {
        let md = mds.get("digits").await.ok()?;
        let ready = md.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "NameConflict").then_some(ready)
    })
    .await;
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message,
        "Service \"digits\" already exists and is not controlled by this ModelDeployment, so it is left \
         untouched: delete or rename it, or give the ModelDeployment another name"
    );
    let events = env.cluster.events(&ns);
    assert!(events.lines().any(|l| l == "Warning NameConflict"), "{events}");
    let service = services.get("digits").await.unwrap();
    let selector = service.spec.and_then(|s| s.selector);
    assert_eq!(selector, Some(BTreeMap::from([("app".to_string(), "payments".to_string())])));
    assert_eq!(service.metadata.owner_references, None);

    // The ConfigMap it did create goes with the ModelDeployment; the Service it did not, stays.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(configmaps.get_opt("digits-server").await.unwrap().is_some());
    mds.delete("digits", &DeleteParams::default()).await.unwrap();
    eventually("the ModelDeployment's ConfigMap collected", WAIT, || async {
        configmaps.get_opt("digits-server").await.ok()?.is_none().then_some(())
    })
    .await;
    let service = services.get("digits").await.unwrap();
    assert_eq!(
        service.spec.and_then(|s| s.selector),
        Some(BTreeMap::from([("app".to_string(), "payments".to_string())]))
    );
}
