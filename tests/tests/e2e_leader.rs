//! Two operator replicas with leader election on a coordination.k8s.io/v1 Lease: only the holder
//! reconciles, and when it dies the standby takes over within the lease time.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kubeinfer_tests::e2e::{Env, eventually, scrape, workspace};

const LEASE_SECONDS: u64 = 6;

fn leader(metrics: &str) -> f64 {
    scrape(metrics, "kubeinfer_operator_leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_the_standby_takes_over_when_it_dies() {
    let Some(env) = Env::install() else { return };
    let ns = env.namespace("leader");
    let args = ["--leader-election", "--lease-name", "e2e-leader", "--lease-duration-seconds", "6"];
    let mut first = env.operator_named("operator-a", Some(&ns), &args);
    let first_metrics = format!("http://{}/metrics", first.addr);
    eventually("operator-a to lead", Duration::from_secs(30), || async {
        (leader(&first_metrics) == 1.0).then_some(())
    })
    .await;
    let second = env.operator_named("operator-b", Some(&ns), &args);
    let second_metrics = format!("http://{}/metrics", second.addr);

    let client = env.client().await;
    let example = std::fs::read_to_string(workspace().join("manifests/examples/cpu.yaml")).unwrap();
    let out = env.cluster.apply(&example, &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually("the leader to create the Deployment", Duration::from_secs(60), || async {
        deployments.get_opt("digits").await.ok().flatten()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leader(&second_metrics), 0.0, "operator-b leads while operator-a holds the lease");
    assert_eq!(
        scrape(&second_metrics, r#"kubeinfer_operator_reconciliations_total{result="success"}"#),
        0.0,
        "the standby reconciled"
    );
    let holder = env.cluster.kubectl_ok(&[
        "get",
        "lease",
        "e2e-leader",
        "-n",
        "kubeinfer-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "operator-a");

    first.kill();
    let killed = Instant::now();
    eventually("operator-b to take over", Duration::from_secs(30), || async {
        (leader(&second_metrics) == 1.0).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS + 4),
        "took over after {takeover:?}, lease {LEASE_SECONDS} s"
    );
    let out = env.cluster.apply(&example.replace("name: digits\n", "name: digits-two\n"), &["-n", &ns]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the new leader to create the second Deployment", Duration::from_secs(60), || async {
        deployments.get_opt("digits-two").await.ok().flatten()
    })
    .await;
    eprintln!("standby took over {takeover:?} after the leader was killed");
}
