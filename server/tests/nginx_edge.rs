//! Debian's real nginx, with manifests/nginx/nginx.conf (the file the operator ships), in front of the real
//! server: one long-lived Cache-Control on hashed assets, none on the page, gzip, a proxied inference,
//! 413 for a body over the limit, /metrics kept off the edge, and gRPC through its own listener.

mod common;

use kubeinfer_tests::process::ServerProcess;
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::json;

use common::nginx::{nginx, nginx_with_grpc};

fn cache_control(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all(CACHE_CONTROL).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_caches_hashed_assets_for_a_year_never_the_page_and_proxies_inference() {
    let repo = common::repository(&["affine", "digits"]);
    let server = ServerProcess::start(common::server_binary(), repo.path(), &[]);
    let Some(edge) = nginx(server.addr) else { return };
    let base = format!("http://127.0.0.1:{}", edge.port);
    let client = reqwest::Client::new();

    let page = client.get(format!("{base}/")).header(ACCEPT_ENCODING, "gzip").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(cache_control(&page), ["no-cache"]);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(page.headers()[CONTENT_ENCODING], "gzip");
    let html = client.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#""name":"affine""#), "the page lists the served models");

    let links: Vec<String> =
        html.split('"').filter(|s| s.starts_with("/assets/")).map(str::to_string).collect();
    assert_eq!(links.len(), 3, "app.css, log.js and app.js: {html}");
    let mut gzipped_total = page.bytes().await.unwrap().len();
    for link in &links {
        let r = client.get(format!("{base}{link}")).header(ACCEPT_ENCODING, "gzip").send().await.unwrap();
        assert_eq!(r.status(), 200, "{link}");
        assert_eq!(cache_control(&r), ["public, max-age=31536000, immutable"], "{link}");
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip", "{link}");
        gzipped_total += r.bytes().await.unwrap().len();
    }
    assert!(gzipped_total < 100 * 1024, "the page and its assets are {gzipped_total} bytes gzipped");
    // The page asks for the server's metadata at /v2 itself, not /v2/ (which nginx used to redirect to).
    let metadata = client.get(format!("{base}/v2")).send().await.unwrap();
    assert_eq!(metadata.status(), 200);
    assert_eq!(metadata.json::<serde_json::Value>().await.unwrap()["name"], "kubeinfer");
    let missing = client.get(format!("{base}/assets/app.000000000000.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(cache_control(&missing), ["no-store"]);

    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let r = client.post(format!("{base}/v2/models/affine/infer")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["outputs"][0]["data"], json!([2.0, 5.0, 8.0, 11.0]));

    let rows = vec![vec![0.5f32; 64]; 16];
    let digits =
        json!({"inputs": [{"name": "float_input", "shape": [16, 64], "datatype": "FP32", "data": rows}]});
    let r = client
        .post(format!("{base}/v2/models/digits/infer"))
        .header(ACCEPT_ENCODING, "gzip")
        .json(&digits)
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[CONTENT_ENCODING].to_str().unwrap()), (200, "gzip"));

    assert_eq!(client.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(client.get(format!("{}/metrics", server.url(""))).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_servers_limit_is_refused_at_the_edge_with_413() {
    let repo = common::repository(&["affine"]);
    let server = ServerProcess::start(common::server_binary(), repo.path(), &[]);
    let Some(edge) = nginx(server.addr) else { return };
    let oversized = vec![b' '; 33 * 1024 * 1024];
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v2/models/affine/infer", edge.port))
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// A tritonclient.grpc call through `addr` that must fail: its status code and message.
fn grpc_refusal(venv: &std::path::Path, addr: &str, call: &str) -> String {
    let script = format!(
        r#"
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
try:
    g.InferenceServerClient("{addr}").{call}
    raise SystemExit("FAILED: the call was answered")
except InferenceServerException as e:
    print(e.status(), e.message())
"#
    );
    let out = std::process::Command::new(venv.join("bin/python")).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn grpc_through_the_edge_gets_every_answer_and_code_and_a_missing_server_is_unavailable() {
    let Some(venv) = common::test_venv() else { return };
    let repo = common::repository(&["affine", "digits", "echo"]);
    let (server, grpc) = common::with_grpc(repo.path(), &[]);
    let Some(edge) = nginx_with_grpc(server.addr, &grpc) else { return };
    let through_edge = format!("127.0.0.1:{}", edge.grpc_port);
    common::python_check(
        &venv,
        "tritonclient_grpc_check.py",
        &[through_edge.as_ref()],
        "all tritonclient.grpc checks passed",
    );
    let unimplemented = grpc_refusal(&venv, &through_edge, "unload_model('affine')");
    assert!(unimplemented.starts_with("StatusCode.UNIMPLEMENTED"), "{unimplemented}");
    drop(server);
    let unavailable = grpc_refusal(&venv, &through_edge, "is_server_live()");
    assert!(unavailable.starts_with("StatusCode.UNAVAILABLE"), "{unavailable}");
}
