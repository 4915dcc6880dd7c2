//! Test helpers: the real router over the real example models and ONNX Runtime, driven without a socket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use kubeinfer_server::auth::Access;
use kubeinfer_server::metrics::Metrics;
use kubeinfer_server::model::device::Device;
use kubeinfer_server::model::runtime::{self, ORT_VERSION};
use kubeinfer_server::model::settings::ModelSettings;
use kubeinfer_server::registry::ModelRegistry;
use kubeinfer_server::state::AppState;
use serde_json::Value;
use tower::ServiceExt;

pub mod db;
pub mod moto;
pub mod nginx;

pub use kubeinfer_tests::e2e::workspace;

/// The `kubeinfer-server` binary cargo built for these tests.
pub fn server_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubeinfer-server"))
}

pub fn example_models() -> PathBuf {
    workspace().join("examples/models")
}

pub fn defaults() -> ModelSettings {
    ModelSettings {
        max_batch_size: 64,
        max_queue_delay: Duration::ZERO,
        queue_capacity: 1024,
        instances: 1,
        intra_op_threads: 1,
        intra_op_spinning: true,
        request_timeout: Duration::from_secs(30),
        default_version: None,
        idle_spin: Duration::from_micros(100),
        batchable: None,
        max_elements: 1 << 24,
        dynamic_batching: true,
        preferred_batch_sizes: vec![],
        allow_timeout_override: true,
        latency_target: None,
    }
}

/// A repository holding only `models` (symlinks to the examples), so each test loads what it uses.
pub fn repository(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for m in models {
        std::os::unix::fs::symlink(example_models().join(m), dir.path().join(m)).expect("symlink");
    }
    dir
}

pub struct TestApp {
    pub app: Router,
    pub state: Arc<AppState>,
    pub registry: Arc<ModelRegistry>,
    _repo: tempfile::TempDir,
}

pub fn start(models: &[&str], settings: ModelSettings) -> TestApp {
    start_with_body_limit(models, settings, 32 * 1024 * 1024)
}

pub fn start_with_body_limit(models: &[&str], settings: ModelSettings, max_body_bytes: usize) -> TestApp {
    start_full(models, settings, max_body_bytes, None)
}

/// Loads `models` as the server would, or says why it cannot.
pub fn load(models: &[&str], settings: &ModelSettings) -> Result<ModelRegistry, String> {
    let repo = repository(models);
    load_into(repo.path(), settings, &Metrics::new(ORT_VERSION))
}

/// Loads the repository at `repo` as the server would, or says why it cannot.
pub fn load_into(repo: &Path, settings: &ModelSettings, metrics: &Metrics) -> Result<ModelRegistry, String> {
    let library = runtime::library_path(None);
    let env = runtime::environment(&library).unwrap_or_else(|e| panic!("{e} (the tests need ONNX Runtime)"));
    ModelRegistry::load(Some(repo), &[], settings, &env, Device::Cpu, metrics).map_err(|e| e.to_string())
}

/// The app over `models`; with `database`, the prediction log too (call from inside a tokio runtime).
pub fn start_full(
    models: &[&str],
    settings: ModelSettings,
    max_body_bytes: usize,
    database: Option<&kubeinfer_server::config::DatabaseArgs>,
) -> TestApp {
    start_in(repository(models), settings, max_body_bytes, database)
}

/// The app over the repository `repo` (kept until the app is dropped).
pub fn start_in(
    repo: tempfile::TempDir,
    settings: ModelSettings,
    max_body_bytes: usize,
    database: Option<&kubeinfer_server::config::DatabaseArgs>,
) -> TestApp {
    let metrics = Arc::new(Metrics::new(ORT_VERSION));
    let registry = Arc::new(load_into(repo.path(), &settings, &metrics).expect("models load"));
    let predictions = database.map(|args| {
        let url = args.database_url.as_deref().expect("a database URL");
        kubeinfer_server::db::PredictionLog::start(url, args, &metrics).expect("the prediction log starts")
    });
    // Without API keys the log's entries are served only when public, as these tests were written for.
    let access = Access { keys: None, public_prediction_log: true };
    let state = Arc::new(AppState::new(metrics, max_body_bytes, predictions).with_access(access));
    state.set_registry(registry.clone());
    TestApp { app: kubeinfer_server::http::app(state.clone()), state, registry, _repo: repo }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error message of a `{"error": "..."}` body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {}", self.json()))
            .to_string()
    }
}

impl TestApp {
    /// The same models and state, with other API key rules.
    pub fn with_access(models: &[&str], access: Access) -> TestApp {
        let metrics = Arc::new(Metrics::new(ORT_VERSION));
        let repo = repository(models);
        let registry = Arc::new(load_into(repo.path(), &defaults(), &metrics).expect("models load"));
        let state = Arc::new(AppState::new(metrics, 32 * 1024 * 1024, None).with_access(access));
        state.set_registry(registry.clone());
        TestApp { app: kubeinfer_server::http::app(state.clone()), state, registry, _repo: repo }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).expect("request")).await
    }

    pub async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.post_raw(uri, serde_json::to_vec(body).expect("json"), None).await
    }

    pub async fn post_raw(&self, uri: &str, body: Vec<u8>, header_length: Option<&str>) -> Reply {
        let mut request = Request::post(uri);
        if let Some(n) = header_length {
            request = request.header("Inference-Header-Content-Length", n);
        }
        self.send(request.body(Body::from(body)).expect("request")).await
    }

    /// Posts a JSON header followed by `binary`, with the header length set.
    pub async fn post_binary(&self, uri: &str, header: &Value, binary: &[u8]) -> Reply {
        let mut body = serde_json::to_vec(header).expect("json");
        let n = body.len().to_string();
        body.extend_from_slice(binary);
        self.post_raw(uri, body, Some(&n)).await
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.get("/metrics").await.body.to_vec()).expect("utf-8 metrics")
    }
}

/// The value of a sample line `name{labels} value` in Prometheus text. A series that is absent fails
/// the test: read as 0, a misspelt or unexported series would pass every assertion of a zero count.
pub fn sample(metrics: &str, series: &str) -> f64 {
    kubeinfer_tests::prometheus::sample(metrics, series)
        .unwrap_or_else(|| panic!("no sample of {series} in the metrics:\n{metrics}"))
}

/// A flat FP32 JSON data array from a response output.
pub fn f32s(output: &Value) -> Vec<f32> {
    output["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

pub fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"]
        .as_array()
        .and_then(|outs| outs.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output {name} in {response}"))
}

/// Defaults, but a batch below max_batch_size waits `delay` for company: makes batch formation certain.
pub fn delayed(delay: Duration) -> ModelSettings {
    ModelSettings { max_queue_delay: delay, ..defaults() }
}

/// Runs `server/tests/clients/<script>` with the test virtualenv's Python: the test fails, with both of
/// its outputs, unless it exits 0 and its last words are `passed` (the scripts print
/// `all ... checks passed`). Returns stdout.
pub fn python_check(venv: &Path, script: &str, args: &[&std::ffi::OsStr], passed: &str) -> String {
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg(workspace().join("server/tests/clients").join(script))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(passed), "{stdout}");
    stdout
}

/// The test virtualenv (Triton's clients, moto, ...), or `None` with a note when it was never built and
/// `make test` (which sets KUBEINFER_REQUIRE_ALL) is not the caller.
pub fn test_venv() -> Option<PathBuf> {
    venv("KUBEINFER_TEST_VENV", ".cache/venv")
}

/// KServe's client, in a virtualenv of its own (its numpy and protobuf are newer than tritonclient's).
pub fn kserve_venv() -> Option<PathBuf> {
    venv("KUBEINFER_KSERVE_VENV", ".cache/venv-kserve")
}

fn venv(variable: &str, default: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| workspace().join(default));
    if dir.join("bin/python").exists() {
        return Some(dir);
    }
    kubeinfer_tests::require::missing(
        &format!("no test virtualenv at {}", dir.display()),
        "run scripts/test-deps.sh (make test does)",
    );
    None
}

/// The SHA-256 of `bytes` in hex, as `--sha256` takes it.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A finished command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `kubeinfer-server pull --uri URI --dest DEST EXTRA...` with `env` added.
pub fn pull(uri: &str, dest: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(server_binary())
        .args(["pull", "--uri", uri, "--dest"])
        .arg(dest)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// Every file and link below `root`, as sorted relative paths (hidden ones too, so that leftovers show).
pub fn files_below(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The real server over `repo`, with gRPC on a free port; returns it and gRPC's `127.0.0.1:PORT`.
///
/// `--grpc-port 0` turns gRPC off, so the port is chosen here, and another process may take it before
/// the server binds it: then the server exits, and it is started again on another port.
pub fn with_grpc(repo: &Path, extra: &[&str]) -> (kubeinfer_tests::process::ServerProcess, String) {
    const ATTEMPTS: usize = 5;
    let mut last_log = String::new();
    for _ in 0..ATTEMPTS {
        let port = kubeinfer_tests::process::free_port().to_string();
        let mut args = vec!["--grpc-port", port.as_str()];
        args.extend_from_slice(extra);
        let mut server = kubeinfer_tests::process::ServerProcess::launch(server_binary(), repo, &args);
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(addr) = server.logged_addr("gRPC listening") {
                server.wait_ready();
                return (server, addr.to_string());
            }
            if !server.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last_log = server.log_text();
    }
    panic!("gRPC never listened in {ATTEMPTS} attempts; the last log:\n{last_log}");
}

/// The first JSON line of `server`'s log that `wanted` accepts, waiting up to 10 s for it to appear.
pub fn eventually_line(
    server: &kubeinfer_tests::process::ServerProcess,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let log = server.log_text();
        let found =
            log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|l| wanted(l));
        match found {
            Some(line) => return line,
            None if started.elapsed() > std::time::Duration::from_secs(10) => {
                panic!("no such log line within 10 s:\n{log}")
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}
