//! The web page in a real browser: Debian's headless Chromium, driven by selenium from the test
//! virtualenv, loads the page through the nginx edge (manifests/nginx/nginx.conf) from a server with API
//! keys and the prediction log on a real Postgres. It says the log needs a key, takes one, lists the
//! models, runs an inference from the form and shows the exact answer, lists that prediction in the log,
//! adds feedback and shows it, logs no console error, and reloads its hashed assets from the cache
//! (server/tests/clients/browser_check.py). The page's Largest Contentful Paint
//! and transferred bytes, cold and warm, are printed as a table: `make bench` runs this test to report them.

mod common;

use kubeinfer_tests::process::ServerProcess;

const CHROMIUM: &str = "/usr/bin/chromium";
const KEY: &str = "browser-key-0123456789";

#[test]
fn the_page_lists_models_and_answers_from_its_form_in_chromium_through_the_edge() {
    let Some(venv) = common::test_venv() else { return };
    if !std::path::Path::new(CHROMIUM).exists() {
        kubeinfer_tests::require::missing(
            &format!("{CHROMIUM} is missing"),
            "run scripts/test-deps.sh (make test does)",
        );
        return;
    }
    let repo = common::repository(&["affine", "digits"]);
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), format!("{KEY} infer,read,write\n")).unwrap();
    let database = common::db::fresh_database();
    let flags = ["--api-keys-file", keys.path().to_str().unwrap(), "--database-url", database.as_str()];
    let server = ServerProcess::start(common::server_binary(), repo.path(), &flags);
    let Some(edge) = common::nginx::nginx(server.addr) else { return };
    let url = format!("http://127.0.0.1:{}/", edge.port);
    let out = common::python_check(
        &venv,
        "browser_check.py",
        &[url.as_ref(), KEY.as_ref()],
        "all browser checks passed",
    );
    let measured: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no measurements in:\n{out}"));
    println!("| page through the edge | LCP (ms) | transferred (bytes) |");
    println!("|---|---:|---:|");
    for (cache, lcp, bytes) in [("cold", "lcp_cold_ms", "bytes_cold"), ("warm", "lcp_warm_ms", "bytes_warm")]
    {
        println!(
            "| {cache} cache | {:.0} | {} |",
            measured[lcp].as_f64().unwrap_or(f64::NAN),
            measured[bytes]
        );
    }
    let bytes = |key: &str| measured[key].as_u64().unwrap_or_else(|| panic!("{key} missing: {measured}"));
    assert!(bytes("bytes_warm") < bytes("bytes_cold"), "the reload transferred less: {measured}");
}
