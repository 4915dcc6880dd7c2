//! The install material against the real binaries: scripts/check-chart.sh (helm lint, renders validated
//! against Kubernetes' schemas, examples against the CRD, nginx -t, ...) with the metric names taken from
//! scrapes of a running server (with its prediction log) and a running operator, so that every alert and
//! dashboard panel queries a series that exists.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kubeinfer_tests::e2e::{Env, binary, workspace};
use kubeinfer_tests::postgres::{Postgres, TEST_SETTINGS};
use kubeinfer_tests::process::ServerProcess;

fn get(url: &str) -> String {
    let out = Command::new("curl").args(["-sf", url]).output().expect("curl runs");
    assert!(out.status.success(), "GET {url} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The metric family names in a Prometheus text scrape.
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A scrape of the real server after an inference, a failed one and a prediction-log query.
fn server_scrape() -> String {
    let pg = Postgres::start(TEST_SETTINGS);
    let url = pg.create_database("metrics");
    let repo = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(workspace().join("examples/models/affine"), repo.path().join("affine"))
        .unwrap();
    let mut cmd = Command::new(binary("kubeinfer-server"));
    cmd.env("DATABASE_URL", &url)
        .args([
            "--log-format",
            "json",
            "serve",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--model-repository",
        ])
        .arg(repo.path())
        .args(["--prediction-log-flush-interval", "10ms", "--public-prediction-log"])
        // A target far above affine's cost: its series exist, nothing is shed.
        .args(["--latency-target", "10s"]);
    let server = ServerProcess::spawn(cmd, "listening");
    server.wait_ready();
    let infer = server.url("/v2/models/affine/infer");
    for body in
        [r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#, r#"{"inputs":[]}"#]
    {
        Command::new("curl").args(["-s", "-o", "/dev/null", "-d", body, &infer]).status().unwrap();
    }
    for _ in 0..100 {
        if get(&server.url("/metrics")).contains("kubeinfer_prediction_log_rows_written_total 2") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    get(&server.url("/api/predictions?limit=1"));
    get(&server.url("/v2/health/ready"));
    get(&server.url("/metrics"))
}

fn known_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join("charts/kubeinfer/known-metrics.txt")).unwrap();
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

fn check_chart(scrapes: &[&Path]) {
    let out = Command::new(workspace().join("scripts/check-chart.sh"))
        .args(scrapes)
        .output()
        .expect("check-chart runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-chart failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("check-chart: all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboards_query_only_metrics_the_running_binaries_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_scrape();
    let server_file = dir.path().join("server.prom");
    std::fs::write(&server_file, &server).unwrap();
    let Some(env) = Env::install() else {
        // Without a cluster the operator cannot run: its names come from the committed list.
        check_chart(&[&server_file, &workspace().join("charts/kubeinfer/known-metrics.txt")]);
        return;
    };
    let operator = env.operator(None, &[]);
    let operator_scrape = get(&format!("http://{}/metrics", operator.addr));
    let operator_file = dir.path().join("operator.prom");
    std::fs::write(&operator_file, &operator_scrape).unwrap();
    check_chart(&[&server_file, &operator_file]);

    let exported: BTreeSet<String> = families(&server).union(&families(&operator_scrape)).cloned().collect();
    let listed = known_metrics();
    let stale: Vec<_> = listed.difference(&exported).collect();
    assert!(stale.is_empty(), "charts/kubeinfer/known-metrics.txt lists metrics nothing exports: {stale:?}");
    let unlisted: Vec<_> =
        exported.iter().filter(|m| m.starts_with("kubeinfer_")).filter(|m| !listed.contains(*m)).collect();
    assert!(unlisted.is_empty(), "exported but missing from known-metrics.txt: {unlisted:?}");
}
