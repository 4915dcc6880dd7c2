//! The OpenAPI document at /openapi.json against the code: every route of the real router is in it
//! (and nothing else), and every documented operation, called on the real server with the prediction
//! log on, answers what the document says (server/tests/clients/openapi_check.py).

mod common;

use std::collections::BTreeSet;

use kubeinfer_tests::process::ServerProcess;
use serde_json::Value;

/// The route templates of a router, read from its Debug form (axum offers no other way to list them):
/// the quoted paths of its path router, before the fallback router's.
fn routes(debug: &str) -> BTreeSet<String> {
    let start = debug.find("path_router:").expect("a Router's Debug names its path_router");
    let end = debug.find("fallback_router:").expect("and its fallback_router");
    debug[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_route_of_the_router_is_in_the_document_and_every_documented_path_is_routed() {
    let app = common::start(&["affine"], common::defaults());
    let routed = routes(&format!("{:?}", app.app));
    let doc: Value = serde_json::from_str(kubeinfer_server::http::openapi::json()).unwrap();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(routed.len(), 23, "{routed:?}");
    assert_eq!(routed, documented);
}

#[test]
fn real_answers_of_every_documented_operation_validate_against_the_document() {
    let Some(venv) = common::test_venv() else { return };
    let database = common::db::fresh_database();
    let repo = common::repository(&["affine", "digits"]);
    let server = ServerProcess::start(
        common::server_binary(),
        repo.path(),
        &["--database-url", &database, "--public-prediction-log", "--prediction-log-flush-interval", "50ms"],
    );
    let url = format!("http://{}", server.addr);
    common::python_check(&venv, "openapi_check.py", &[url.as_ref()], "all openapi checks passed");
}
