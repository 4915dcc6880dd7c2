//! A command that fails leaves a one-line reason in its termination log, which the kubelet copies into
//! the pod's status for the operator to report (see operator/src/pod_failures.rs).

mod common;

use std::path::Path;
use std::process::Command;

fn run(log: &Path, args: &[&str]) -> String {
    let out = Command::new(common::server_binary())
        .env("KUBEINFER_GRPC_PORT", "0")
        .arg("--termination-log")
        .arg(log)
        .args(args)
        .output()
        .expect("the server runs");
    assert!(!out.status.success(), "{args:?} succeeded");
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn a_model_that_cannot_load_leaves_its_reason_in_the_termination_log() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("repo/broken/1/model.onnx");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::fs::write(&model, b"this is not an ONNX file").unwrap();
    let log = dir.path().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let repo = dir.path().join("repo");
    let said = run(
        &log,
        &[
            "serve",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--model-repository",
            repo.to_str().unwrap(),
        ],
    );
    assert!(said.starts_with(&format!("cannot load model {}: ", model.display())), "{said}");
    assert!(!said.contains('\n'), "{said}");
}

#[test]
fn a_failed_pull_leaves_its_reason_and_nothing_is_written_where_no_log_exists() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let dest = dir.path().join("model.onnx");
    let said =
        run(&log, &["pull", "--uri", "file:///nonexistent/model.onnx", "--dest", dest.to_str().unwrap()]);
    assert!(said.starts_with("pull file:///nonexistent/model.onnx: "), "{said}");

    let absent = dir.path().join("no-log-here");
    let out = Command::new(common::server_binary())
        .arg("--termination-log")
        .arg(&absent)
        .args(["pull", "--uri", "file:///nonexistent/model.onnx", "--dest", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!absent.exists(), "a termination log was created outside a container");
}
