//! `--metrics-port` on the real binary: /metrics moves to its own port, open to scrapers, and the API
//! port no longer answers it.

mod common;

use kubeinfer_tests::process::{ServerProcess, http_get};

#[test]
fn metrics_move_to_their_own_port_and_leave_the_api_port() {
    let repo = common::repository(&["affine"]);
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "a-scraper-never-needs-this-key infer\n").unwrap();
    let server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--metrics-port", "0", "--api-keys-file", keys.path().to_str().unwrap()],
    );
    let port = server.logged_addr("metrics listening").expect("the metrics port is logged").port();
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    assert_eq!(status, 200, "scrapers need no key");
    assert!(body.contains("kubeinfer_build_info"), "{body}");
    assert!(body.contains("kubeinfer_runtime_wake_delay_seconds_count"), "the async workers' delay: {body}");
    assert_eq!(http_get(&format!("http://127.0.0.1:{port}/v2/health/ready")).unwrap().0, 404);
    let (status, body) = http_get(&server.url("/metrics")).unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(http_get(&server.url("/v2/health/ready")).unwrap().0, 200);
}
