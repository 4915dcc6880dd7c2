//! `make test` never passes by skipping: with no cluster, the end-to-end tests fail under
//! KUBEINFER_REQUIRE_ALL and say how to provide one; run by hand they skip with the same note.
//! The probe below is this binary re-run on itself with a controlled environment.

use std::process::{Command, Output};

use kubeinfer_tests::control_plane::Cluster;

#[test]
#[ignore = "a probe that the_end_to_end_tests_without_a_cluster_* run in a child process"]
fn probe_the_cluster_from_the_environment() {
    let _ = Cluster::from_env();
}

fn probe(require_all: bool) -> (Output, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "probe_the_cluster_from_the_environment", "--nocapture"])
        .env_remove("KUBEBUILDER_ASSETS")
        .env_remove("KUBEINFER_E2E_KUBECONFIG")
        .env_remove("KUBEINFER_REQUIRE_ALL");
    if require_all {
        cmd.env("KUBEINFER_REQUIRE_ALL", "1");
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

const HOW: &str =
    "set KUBEBUILDER_ASSETS to a directory with etcd, kube-apiserver and kube-controller-manager";

#[test]
fn the_end_to_end_tests_without_a_cluster_fail_when_everything_is_required() {
    let (out, text) = probe(true);
    assert!(!out.status.success(), "the probe passed without a cluster:\n{text}");
    assert!(text.contains(&format!("the end-to-end tests need a Kubernetes cluster: {HOW}")), "{text}");
    assert!(text.contains("(KUBEINFER_REQUIRE_ALL is set, so this test may not skip)"), "{text}");
}

#[test]
fn the_end_to_end_tests_without_a_cluster_skip_with_a_note_when_run_by_hand() {
    let (out, text) = probe(false);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("skipped: the end-to-end tests need a Kubernetes cluster; {HOW}")),
        "{text}"
    );
}
