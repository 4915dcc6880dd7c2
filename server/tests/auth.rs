//! API keys: each route group needs its scope (401 without a valid key, 403 without the scope), probes
//! and metrics stay open, the prediction log is never public by accident, and a rewritten keys file
//! takes effect on a running server without a restart.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::TestApp;
use kubeinfer_server::auth::{Access, KeyFile};
use kubeinfer_tests::process::ServerProcess;

const KEYS: &str = "# scopes per key\n\
                    infer-key-0123456789 infer\n\
                    read-key-0123456789 read\n\
                    write-key-0123456789 write\n";

const INFER: &str = r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#;

fn with_keys() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, KEYS).unwrap();
    let keys = Some(Arc::new(KeyFile::open(&path).unwrap()));
    (TestApp::with_access(&["affine"], Access { keys, public_prediction_log: false }), dir)
}

/// `(method, uri)` sent with `key`: the status and the error message, if any.
async fn call(app: &TestApp, method: &str, uri: &str, key: Option<&str>) -> (u16, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = if method == "POST" {
        Body::from(if uri.contains("feedback") { "{}" } else { INFER })
    } else {
        Body::empty()
    };
    let reply = app.send(request.body(body).unwrap()).await;
    let error = if reply.status.is_success() { String::new() } else { reply.error() };
    (reply.status.as_u16(), error)
}

const FEEDBACK: &str = "/api/predictions/0190a4c2-0000-7000-8000-000000000000/feedback";
const NOT_CONFIGURED: &str =
    "the prediction log is not configured: start the server with DATABASE_URL to use /api";

#[tokio::test]
async fn without_a_key_only_probes_and_metrics_answer() {
    let (app, _dir) = with_keys();
    for open in ["/v2/health/live", "/v2/health/ready", "/v2/models/affine/ready", "/metrics"] {
        assert_eq!(call(&app, "GET", open, None).await.0, 200, "{open}");
    }
    let missing = "this route needs an API key: send `Authorization: Bearer KEY`".to_string();
    for (method, uri) in [
        ("POST", "/v2/models/affine/infer"),
        ("GET", "/v2/models/affine"),
        ("GET", "/v2"),
        ("GET", "/api/predictions"),
        ("POST", FEEDBACK),
    ] {
        assert_eq!(call(&app, method, uri, None).await, (401, missing.clone()), "{method} {uri}");
    }
    let reply = app.send(Request::post("/v2/models/affine/infer").body(Body::from(INFER)).unwrap()).await;
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    assert_eq!(reply.headers["connection"], "close", "refused with its body unread: not to be reused");
    let probe = app.send(Request::get("/v2/models/affine").body(Body::empty()).unwrap()).await;
    assert_eq!(probe.status, 401);
    assert!(probe.headers.get("connection").is_none(), "a request without a body leaves nothing unread");
    assert_eq!(
        call(&app, "POST", "/v2/models/affine/infer", Some("guess-0123456789")).await,
        (401, "the API key is not valid".to_string())
    );
}

#[tokio::test]
async fn each_key_reaches_exactly_its_route_group() {
    let (app, _dir) = with_keys();
    let lacks = |scope: &str| (403, format!("the API key lacks the '{scope}' scope this route needs"));
    let infer = Some("infer-key-0123456789");
    assert_eq!(call(&app, "POST", "/v2/models/affine/infer", infer).await, (200, String::new()));
    assert_eq!(call(&app, "GET", "/v2/models/affine/config", infer).await, (200, String::new()));
    assert_eq!(call(&app, "GET", "/api/predictions", infer).await, lacks("read"));
    assert_eq!(call(&app, "POST", FEEDBACK, infer).await, lacks("write"));

    // Past the key check, /api answers that this server has no database: the key was accepted.
    let read = Some("read-key-0123456789");
    assert_eq!(call(&app, "POST", "/v2/models/affine/infer", read).await, lacks("infer"));
    assert_eq!(call(&app, "GET", "/api/predictions", read).await, (503, NOT_CONFIGURED.to_string()));
    assert_eq!(call(&app, "POST", FEEDBACK, read).await, lacks("write"));
    let write = Some("write-key-0123456789");
    assert_eq!(call(&app, "POST", FEEDBACK, write).await, (503, NOT_CONFIGURED.to_string()));
    assert_eq!(call(&app, "GET", "/api/predictions/x", write).await, lacks("read"));
}

#[tokio::test]
async fn without_keys_the_prediction_logs_entries_are_refused_unless_made_public() {
    let private = TestApp::with_access(&["affine"], Access::default());
    assert_eq!(call(&private, "POST", "/v2/models/affine/infer", None).await.0, 200);
    let refused = (
        403,
        "the prediction log holds request data and is not public: give the server an --api-keys-file (callers \
         then need a key with the read or write scope), or start it with --public-prediction-log"
            .to_string(),
    );
    assert_eq!(call(&private, "GET", "/api/predictions", None).await, refused);
    assert_eq!(call(&private, "GET", "/api/predictions/x", None).await, refused);
    assert_eq!(call(&private, "POST", FEEDBACK, None).await, refused);
    assert_eq!(call(&private, "GET", "/api/models", None).await, (503, NOT_CONFIGURED.to_string()));

    let public = TestApp::with_access(&["affine"], Access { keys: None, public_prediction_log: true });
    assert_eq!(call(&public, "GET", "/api/predictions", None).await, (503, NOT_CONFIGURED.to_string()));
}

async fn infer_status(client: &reqwest::Client, server: &ServerProcess, key: &str) -> u16 {
    client
        .post(server.url("/v2/models/affine/infer"))
        .bearer_auth(key)
        .body(INFER)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rewritten_keys_file_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "first-key-0123456789 infer\n").unwrap();
    let repo = common::repository(&["affine"]);
    let server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--api-keys-file", path.to_str().unwrap()],
    );
    let client = reqwest::Client::new();
    assert_eq!(infer_status(&client, &server, "first-key-0123456789").await, 200);

    // As a mounted Secret is updated: a new file renamed over the old one.
    std::fs::write(dir.path().join("keys.new"), "second-key-0123456789 infer\n").unwrap();
    std::fs::rename(dir.path().join("keys.new"), &path).unwrap();
    let started = Instant::now();
    while infer_status(&client, &server, "second-key-0123456789").await != 200 {
        assert!(started.elapsed() < Duration::from_secs(15), "the new key was not taken within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(infer_status(&client, &server, "first-key-0123456789").await, 401);
    assert!(server.log_text().contains("API keys reloaded"), "{}", server.log_text());
    assert!(!server.log_text().contains("key-0123456789"), "a key reached the log:\n{}", server.log_text());
}
