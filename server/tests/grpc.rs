//! The Open Inference Protocol over gRPC, on the real binary: Triton's Python client
//! (`tritonclient.grpc`, raw tensor contents) checks health, metadata, configuration, statistics, every
//! datatype and the error codes (`clients/tritonclient_grpc_check.py`); `perf_analyzer -i grpc` runs
//! against it in `real_clients.rs`.

mod common;

use common::with_grpc;

#[test]
fn tritonclient_grpc_gets_the_same_answers_and_errors_as_rest() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine", "digits", "echo"]);
    let (_server, addr) = with_grpc(repo.path(), &[]);
    common::python_check(
        &venv,
        "tritonclient_grpc_check.py",
        &[addr.as_ref()],
        "all tritonclient.grpc checks passed",
    );
}

#[test]
fn grpc_calls_need_an_api_key_with_the_infer_scope_when_keys_are_required() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine"]);
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "reader-key-0123456789 read\nclient-key-0123456789 infer\n").unwrap();
    let keys_path = keys.path().to_str().unwrap();
    let (_server, addr) = with_grpc(repo.path(), &["--api-keys-file", keys_path]);
    let script = format!(
        r#"
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
c = g.InferenceServerClient("{addr}")
assert c.is_server_live()
for headers, code in [(None, "StatusCode.UNAUTHENTICATED"), ({{"authorization": "Bearer reader-key-0123456789"}}, "StatusCode.PERMISSION_DENIED")]:
    try:
        c.get_model_metadata("affine", headers=headers)
        raise SystemExit("FAILED: no key was needed")
    except InferenceServerException as e:
        assert e.status() == code, (e.status(), e.message())
        print("refused:", e.status(), e.message())
meta = c.get_model_metadata("affine", headers={{"authorization": "Bearer client-key-0123456789"}}, as_json=True)
assert meta["name"] == "affine", meta
print("the infer key is accepted")
"#
    );
    let out = std::process::Command::new(venv.join("bin/python")).args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("refused: StatusCode.UNAUTHENTICATED this route needs an API key"), "{stdout}");
    assert!(
        stdout.contains("refused: StatusCode.PERMISSION_DENIED the API key lacks the 'infer' scope"),
        "{stdout}"
    );
    assert!(stdout.contains("the infer key is accepted"), "{stdout}");
}

#[test]
fn malformed_grpc_requests_are_invalid_argument_with_the_rest_messages_and_count_as_grpc() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine"]);
    let (server, addr) = with_grpc(repo.path(), &[]);
    common::python_check(
        &venv,
        "grpc_edge_cases.py",
        &["malformed".as_ref(), addr.as_ref()],
        "all malformed-request checks passed",
    );
    let (_, metrics) =
        kubeinfer_tests::process::http_get(&format!("http://{}/metrics", server.addr)).unwrap();
    let requests = |protocol: &str, outcome: &str| {
        common::sample(
            &metrics,
            &format!(
                r#"kubeinfer_inference_requests_total{{model="affine",outcome="{outcome}",protocol="{protocol}",version="1"}}"#
            ),
        )
    };
    assert_eq!(requests("grpc", "invalid"), 9.0, "the nine malformed messages count as gRPC and invalid");
    assert_eq!(requests("grpc", "success"), 1.0);
    assert_eq!(requests("rest", "invalid"), 0.0);
    assert_eq!(requests("rest", "success"), 0.0);
}

#[test]
fn sigterm_lets_grpc_calls_in_flight_finish_with_their_answers_and_the_server_exits_zero() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine"]);
    // Batches wait 2 s for company: the calls are still queued when the server stops accepting at 1 s.
    let (mut server, addr) = with_grpc(repo.path(), &["--shutdown-delay", "1s", "--max-queue-delay", "2s"]);
    let pid = server.pid().to_string();
    common::python_check(
        &venv,
        "grpc_edge_cases.py",
        &["drain".as_ref(), addr.as_ref(), pid.as_ref()],
        "all drain checks passed",
    );
    let status = server.wait(std::time::Duration::from_secs(20));
    assert!(status.success(), "the server exited with {status}:\n{}", server.log_text());
}

#[test]
fn grpc_calls_share_the_servers_concurrency_limit_and_get_resource_exhausted_over_it() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine"]);
    // The first call waits 1 s in the queue for company, holding the only slot.
    let (_server, addr) =
        with_grpc(repo.path(), &["--max-concurrent-requests", "1", "--max-queue-delay", "1s"]);
    common::python_check(
        &venv,
        "grpc_edge_cases.py",
        &["limits".as_ref(), addr.as_ref()],
        "all limit checks passed",
    );
}
