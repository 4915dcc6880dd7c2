//! Every log line of a request carries its span: the route, the method and the request's id, also for
//! what the instance thread logs about it, together with the batch it ran in (instance, id, rows).

mod common;

use kubeinfer_tests::process::ServerProcess;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_request_logs_its_batch_under_the_requests_span() {
    let repo = common::repository(&["affine"]);
    let server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--log-level", "kubeinfer_server=debug,info", "--max-batch-size", "0"],
    );
    let body = json!({"id": "req-42",
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let status = reqwest::Client::new()
        .post(server.url("/v2/models/affine/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let line = common::eventually_line(&server, |l| l["message"] == "answered in its batch");
    assert_eq!(
        line["span"],
        json!({"name": "request", "method": "POST", "route": "/v2/models/{model}/infer", "id": "req-42"}),
        "{line}"
    );
    // The event's own span is the request's; the instance thread's context is the batch it ran in.
    assert_eq!(line["spans"], json!([{"name": "batch", "instance": 0, "id": 1, "rows": 1}]), "{line}");
}
