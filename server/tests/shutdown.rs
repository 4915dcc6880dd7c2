//! SIGTERM on the real binary under load: readiness turns 503 at once, requests keep being served during
//! the shutdown delay, requests still queued when the server stops accepting are answered, and it exits 0.

mod common;

use std::time::{Duration, Instant};

use kubeinfer_tests::process::{ServerProcess, http_status};
use serde_json::json;

async fn infer(client: &reqwest::Client, url: &str, i: usize) -> (u16, serde_json::Value) {
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [i, 0, 0, 0]}]});
    let r = client.post(url).json(&body).send().await.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_every_accepted_request_and_exits_zero() {
    let repo = common::repository(&["affine"]);
    // Batches wait up to 600 ms for company, so the last wave is still queued when accepting stops at 1 s.
    let mut server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--shutdown-delay", "1s", "--max-queue-delay", "600ms"],
    );
    let url = server.url("/v2/models/affine/infer");
    let client = reqwest::Client::new();

    let mut load = Vec::new();
    for i in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        load.push(tokio::spawn(async move { infer(&client, &url, i).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sigterm = Instant::now();
    server.terminate();

    let ready_url = server.url("/v2/health/ready");
    let mut became_unready = None;
    for _ in 0..100 {
        let status = tokio::task::spawn_blocking({
            let u = ready_url.clone();
            move || http_status(&u)
        })
        .await
        .unwrap();
        if status.is_ok_and(|s| s == 503) {
            became_unready = Some(sigterm.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unready = became_unready.expect("readiness never turned 503");
    assert!(unready < Duration::from_millis(900), "readiness turned 503 only after {unready:?}");

    // Half-way through the shutdown delay the server still accepts; these wait in the queue past the moment
    // it stops accepting.
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(sigterm.elapsed())).await;
    for i in 16..24 {
        let (client, url) = (client.clone(), url.clone());
        load.push(tokio::spawn(async move { infer(&client, &url, i).await }));
    }
    for (i, task) in load.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["outputs"][0]["data"][0], json!(3.0 * i as f64 - 1.0), "request {i}");
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(20));
        (status, server)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(http_status(&ready_url).is_err(), "the port still answers after exit");
    let log = status.1.log.lock().unwrap().join("\n");
    assert!(log.contains("shutdown requested: readiness is now 503"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
}

#[test]
fn a_client_that_never_finishes_its_request_does_not_hold_the_shutdown_past_the_drain_timeout() {
    use std::io::Write;
    let repo = common::repository(&["affine"]);
    let mut server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--shutdown-delay", "0s", "--drain-timeout", "1s"],
    );
    let addr = server.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    // Headers promise 100 bytes of body; 10 arrive, and then nothing.
    write!(
        stalled,
        "POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"inputs\":"
    )
    .unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let status = server.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    let log = server.log_text();
    assert!(log.contains("drain timeout: closing the connections still open"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
    drop(stalled);
}
