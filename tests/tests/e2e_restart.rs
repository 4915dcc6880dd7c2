//! The API server and etcd restart under the running operator: it recovers by itself and converges.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kubeinfer_tests::control_plane::Cluster;
use kubeinfer_tests::e2e::{Env, eventually, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_recovers_and_converges_after_the_api_server_and_etcd_restart() {
    let Some(mut env) = Env::install() else { return };
    let ns = env.namespace("restart");
    let mut operator = env.operator(Some(&ns), &[]);
    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    {
        let client = env.client().await;
        let deployments: Api<Deployment> = Api::namespaced(client, &ns);
        eventually("the first Deployment", Duration::from_secs(60), || async {
            deployments.get_opt("digits").await.ok().flatten()
        })
        .await;
    }
    let Cluster::Local(cp) = &mut env.cluster else {
        kubeinfer_tests::require::missing(
            "restarting the API server needs the local control plane",
            "set KUBEBUILDER_ASSETS instead of KUBEINFER_E2E_KUBECONFIG",
        );
        return;
    };
    cp.stop_api();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cp.start_api();
    assert!(
        operator.running(),
        "the operator exited while the API server was down:\n{}",
        operator.log_text()
    );

    let out = env.cluster.apply(&example.replace("name: digits\n", "name: digits-after\n"), &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let client = env.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    eventually(
        "a Deployment for the ModelDeployment made after the restart",
        Duration::from_secs(90),
        || async { deployments.get_opt("digits-after").await.ok().flatten() },
    )
    .await;
}
