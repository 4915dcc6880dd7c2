//! Real clients against the real binary: Triton's Python client (`tritonclient.http`) with its defaults,
//! `perf_analyzer` in sync and async mode, and KServe's Python client over REST and gRPC. They come from
//! the virtualenvs that scripts/test-deps.sh builds; `make test` always has them.

mod common;

use std::process::Command;

use kubeinfer_tests::process::ServerProcess;

#[test]
fn triton_python_client_with_its_defaults_gets_exact_answers() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine", "digits", "echo", "multi_io"]);
    let server = ServerProcess::start(common::server_binary(), repo.path(), &[]);
    let addr = server.addr.to_string();
    let reference = common::workspace().join("server/tests/fixtures/digits_reference.json");
    common::python_check(
        &venv,
        "tritonclient_check.py",
        &[addr.as_ref(), reference.as_ref()],
        "all tritonclient checks passed",
    );
}

/// perf_analyzer's CSV for `model` at `url` over `protocol` (http or grpc), concurrency 4.
fn perf_analyzer(venv: &std::path::Path, url: &str, protocol: &str, model: &str, extra: &[&str]) -> String {
    let cudart = std::fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|python| python.path().join("site-packages/nvidia/cuda_runtime/lib"))
        .expect("the venv holds nvidia-cuda-runtime-cu12");
    let csv = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(venv.join("bin/perf_analyzer"))
        .env("LD_LIBRARY_PATH", cudart)
        .args(["-m", model, "-u", url, "-i", protocol, "--concurrency-range", "4"])
        .args([
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            "50",
            "-s",
            "80",
            "-r",
            "5",
        ])
        .arg("-f")
        .arg(csv.path())
        .args(extra)
        .output()
        .expect("perf_analyzer runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "perf_analyzer failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(csv.path()).unwrap()
}

#[test]
fn perf_analyzer_runs_against_the_server_in_sync_and_async_mode_and_reads_its_statistics() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["heavy_mlp", "digits"]);
    let server = ServerProcess::start(common::server_binary(), repo.path(), &[]);
    for (model, extra) in [("heavy_mlp", &[][..]), ("digits", &["-a"][..])] {
        measured(&perf_analyzer(&venv, &server.addr.to_string(), "http", model, extra), model);
    }
}

/// Checks that perf_analyzer's CSV has a row at concurrency 4 with a throughput, and the server-side
/// split it reports only when the statistics extension answers.
fn measured(csv: &str, model: &str) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a CSV header").split(',').collect();
    assert_eq!(&header[..3], ["Concurrency", "Inferences/Second", "Client Send"], "{csv}");
    assert!(header.contains(&"Server Compute Infer"), "{csv}");
    let row: Vec<&str> = lines.next().expect("a result row").split(',').collect();
    assert_eq!(row[0], "4");
    let throughput: f64 = row[1].parse().unwrap();
    assert!(throughput > 0.0, "{model}: {csv}");
}

/// perf_analyzer reads the model's configuration to shape its requests, so this is Triton's own client
/// on a repository written for Triton: `input [ ... ]` without a colon, batches of 2 rows, a CPU instance group.
#[test]
fn perf_analyzer_drives_a_model_served_from_its_triton_config() {
    let Some(venv) = common::test_venv() else { return };
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("digits");
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::os::unix::fs::symlink(
        common::example_models().join("digits/1/model.onnx"),
        dir.join("1/model.onnx"),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.pbtxt"),
        r#"name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "float_input"
    data_type: TYPE_FP32
    dims: [ 64 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
}
instance_group [ { count: 1, kind: KIND_CPU } ]
"#,
    )
    .unwrap();
    let server = ServerProcess::start(common::server_binary(), repo.path(), &[]);
    measured(&perf_analyzer(&venv, &server.addr.to_string(), "http", "digits", &["-b", "2"]), "digits");
}

/// perf_analyzer over gRPC reads the model's configuration and statistics through Triton's gRPC
/// extensions and sends raw tensor contents, in sync and async mode.
#[test]
fn perf_analyzer_runs_over_grpc_and_reads_the_servers_statistics() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["heavy_mlp", "digits"]);
    let (_server, addr) = common::with_grpc(repo.path(), &[]);
    for (model, extra) in [("heavy_mlp", &[][..]), ("digits", &["-a"][..])] {
        measured(&perf_analyzer(&venv, &addr, "grpc", model, extra), model);
    }
}

#[test]
fn kserve_python_client_gets_exact_answers_and_our_errors_over_rest_and_grpc() {
    let Some(venv) = common::kserve_venv() else { return };
    let repo = common::repository(&["affine", "echo"]);
    let (server, grpc) = common::with_grpc(repo.path(), &[]);
    let url = format!("http://{}", server.addr);
    common::python_check(
        &venv,
        "kserve_check.py",
        &["clients".as_ref(), url.as_ref(), grpc.as_ref()],
        "all kserve checks passed",
    );
}

#[test]
fn kserve_python_client_sends_an_api_key_as_headers_and_as_grpc_metadata() {
    let Some(venv) = common::kserve_venv() else { return };
    let repo = common::repository(&["affine"]);
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "kserve-key-0123456789 infer\n").unwrap();
    let (server, grpc) = common::with_grpc(repo.path(), &["--api-keys-file", keys.path().to_str().unwrap()]);
    let url = format!("http://{}", server.addr);
    let key = "kserve-key-0123456789";
    common::python_check(
        &venv,
        "kserve_check.py",
        &["keys".as_ref(), url.as_ref(), grpc.as_ref(), key.as_ref()],
        "all kserve checks passed",
    );
}
