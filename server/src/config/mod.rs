//! Command-line configuration. Every flag also reads `KUBEINFER_<FLAG>` from the environment; `--help`
//! is the reference documentation.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::device::Device;
use crate::model::layout::ModelFile;
use crate::model::settings::ModelSettings;
use crate::units::parse_duration;

mod database;
mod exposure;
pub use database::{DatabaseArgs, MigrateMode, PayloadMode};
pub use exposure::ExposureArgs;

#[derive(Debug, Parser)]
#[command(name = "kubeinfer-server", version, about = "Serves ONNX models over the Open Inference Protocol")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    /// Where a failed command writes its one-line reason, for Kubernetes to show in the pod's status
    /// (the container's terminationMessagePath). Written only if the file exists, as the kubelet makes it.
    #[arg(long, env = "KUBEINFER_TERMINATION_LOG", default_value = "/dev/termination-log", global = true)]
    pub termination_log: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every model in a model repository and serve it over HTTP.
    Serve(Box<ServeArgs>),
    /// Fetch a model file (the operator's init container runs this): https://, s3://, gs:// or file://,
    /// written atomically, checksum verified, transient failures retried.
    Pull(PullArgs),
    /// Apply the prediction log's database migrations, make its partitions ahead, drop expired ones,
    /// and exit (for those who run it as a Job or CronJob; `serve --migrate=auto` does it by itself).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Postgres connection URL (a role with DDL rights: it creates and drops partitions too).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// As `serve --prediction-log-retention`: days wholly older than this are dropped; 0 keeps all.
    /// Run `migrate` daily (a CronJob) when the servers run with --migrate=off, so that partitions are
    /// made ahead and expired ones dropped.
    #[arg(long, env = "KUBEINFER_PREDICTION_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub prediction_log_retention: Duration,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The model: https://host/path, s3://bucket/key, gs://bucket/object or file:///path. A path ending
    /// in '/' (s3, gs, file) pulls every object under it; one ending in .tar, .tar.gz, .tgz or .zip is
    /// unpacked. S3 and GCS credentials come from the standard environment (AWS_* variables, IRSA,
    /// GOOGLE_* / workload identity); AWS_ENDPOINT and AWS_ALLOW_HTTP=true point at S3-compatible stores.
    #[arg(long, env = "KUBEINFER_URI")]
    pub uri: String,

    /// Where to write the file, or for a prefix or an archive the model directory (Triton's layout, for
    /// `serve --model-repository` on its parent); its parent is created. It appears only when complete
    /// and verified.
    #[arg(long, env = "KUBEINFER_DEST")]
    pub dest: PathBuf,

    /// The version directory a pulled directory's files go into when it is flat (model.onnx at its top,
    /// no config.pbtxt and no numbered directories).
    #[arg(long, env = "KUBEINFER_MODEL_VERSION", default_value_t = 1)]
    pub model_version: u64,

    /// The whole Authorization header for https:// and http:// (e.g. "Bearer ..."), in place of any
    /// user:password in the URI. From the environment only (a Secret's key in Kubernetes), so that it is
    /// never in the pod's arguments; never logged.
    #[arg(skip = std::env::var("KUBEINFER_PULL_AUTHORIZATION").ok())]
    pub authorization: Option<String>,

    /// Expected SHA-256, in hex, of the file or archive (of a prefix: of the `sha256sum` listing of its
    /// objects, sorted by path); a mismatch fails the pull and leaves nothing behind.
    #[arg(long, env = "KUBEINFER_SHA256", value_parser = parse_sha256)]
    pub sha256: Option<String>,

    /// Largest model accepted, in bytes (a file, an archive and what it unpacks to, or a prefix's objects
    /// together): a larger one fails the pull before (or as soon as) it outgrows this, instead of filling
    /// the volume. Unset: no limit.
    #[arg(long, env = "KUBEINFER_MAX_BYTES")]
    pub max_bytes: Option<u64>,

    /// Retries after a transient failure (connection lost, 5xx, a stalled or truncated body).
    #[arg(long, env = "KUBEINFER_RETRIES", default_value_t = 5)]
    pub retries: u32,

    /// Give up on an attempt when no bytes arrive for this long.
    #[arg(long, env = "KUBEINFER_STALL_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
}

fn parse_sha256(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(lower)
    } else {
        Err(format!("{s:?} is not a SHA-256: expected 64 hex digits"))
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format: `text` for terminals, `json` for log collectors in clusters.
    #[arg(long, env = "KUBEINFER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `kubeinfer_server=debug,info`.
    #[arg(long, env = "KUBEINFER_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model repository in Triton's layout: DIR/<model>/<version>/model.onnx, with an optional
    /// DIR/<model>/config.toml overriding the batching flags below for that model. Every version is
    /// loaded; the highest is served when a request names none.
    #[arg(long, env = "KUBEINFER_MODEL_REPOSITORY", required_unless_present = "model")]
    pub model_repository: Option<PathBuf>,

    /// A single model file outside any repository, as NAME:VERSION=PATH (repeatable), e.g.
    /// digits:1=/mnt/models/digits.onnx. The batching flags below apply to it. Several may share one
    /// flag or KUBEINFER_MODEL, separated by commas (so a PATH cannot contain one).
    #[arg(long, env = "KUBEINFER_MODEL", value_parser = parse_model_file, value_delimiter = ',')]
    pub model: Vec<ModelFile>,

    /// Address to listen on.
    #[arg(long, env = "KUBEINFER_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: IpAddr,

    /// Port for the whole HTTP API: inference, health, metrics and the prediction log.
    #[arg(long, env = "KUBEINFER_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Port for the Open Inference Protocol over gRPC (inference.GRPCInferenceService and
    /// grpc.health.v1), on the same host as HTTP; 8001 as in Triton. 0 turns gRPC off.
    #[arg(long, env = "KUBEINFER_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,

    #[command(flatten)]
    pub exposure: ExposureArgs,

    /// Largest request body accepted; larger ones get 413. Keep any proxy's limit equal to it.
    #[arg(long, env = "KUBEINFER_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    #[command(flatten)]
    pub batching: BatchingArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Where to run models: `cpu`, or `cuda` / `cuda:N` for ONNX Runtime's CUDA execution provider
    /// (needs the onnxruntime-gpu library). If CUDA cannot be used, start-up fails rather than
    /// silently running on the CPU.
    #[arg(long, env = "KUBEINFER_DEVICE", default_value = "cpu")]
    pub device: Device,

    /// Path of the ONNX Runtime shared library (libonnxruntime.so, version 1.31). Falls back to
    /// ORT_DYLIB_PATH, then to the cache that `make ort` fills.
    #[arg(long, env = "KUBEINFER_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,

    /// After SIGTERM, how long readiness reports 503 before the server stops accepting connections,
    /// so that load balancers stop sending new requests first.
    #[arg(long, env = "KUBEINFER_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After the shutdown delay, how long accepted requests and open connections get to finish; then
    /// the server closes what is left and exits (the pod's termination grace covers delay, drain, and
    /// the prediction log's shutdown grace).
    #[arg(long, env = "KUBEINFER_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// Server-wide defaults for every model; `<model>/config.toml` overrides them.
#[derive(Debug, Clone, Args)]
pub struct BatchingArgs {
    /// Most rows in one batch. Concurrent requests whose non-batch dimensions agree are run together
    /// as soon as a session is free. 0 turns batching off.
    #[arg(long, env = "KUBEINFER_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,

    /// How long a batch below max-batch-size may wait for more requests. The default, 0, never waits:
    /// batches form from whatever queued while the sessions were busy.
    #[arg(long, env = "KUBEINFER_MAX_QUEUE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub max_queue_delay: Duration,

    /// Requests that may wait per model; when full, new requests get 503 with Retry-After.
    #[arg(long, env = "KUBEINFER_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,

    /// ONNX Runtime sessions per model, each on its own thread, running batches in parallel.
    #[arg(long, env = "KUBEINFER_INSTANCES", default_value_t = 1)]
    pub instances: usize,

    /// Threads each session uses inside one operator (0: one per core).
    #[arg(long, env = "KUBEINFER_INTRA_OP_THREADS", default_value_t = 0)]
    pub intra_op_threads: usize,

    /// Whether ONNX Runtime's idle intra-op threads spin briefly before sleeping. Off by default: measured
    /// on 2 cores, spinning helped a heavy model's single-request latency in one run and not in another,
    /// but always took the cores the HTTP side needs under load (-38 to -45 % requests/s for a small
    /// model at concurrency 64; docs/benchmarks.md).
    #[arg(long, env = "KUBEINFER_INTRA_OP_SPINNING", default_value_t = false, action = clap::ArgAction::Set)]
    pub intra_op_spinning: bool,

    /// Longest a request may wait in the queue when it sets no `timeout` parameter of its own.
    #[arg(long, env = "KUBEINFER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an instance that has run out of work keeps watching the queue before it sleeps. Waking
    /// a sleeping thread costs tens of microseconds, most of the serving overhead at low concurrency;
    /// the price is up to this much busy CPU after each batch. 0 sleeps at once.
    #[arg(long, env = "KUBEINFER_IDLE_SPIN", default_value = "100us", value_parser = parse_duration)]
    pub idle_spin: Duration,

    /// Most tensor elements one request's inputs may hold together; more get 400 before they are
    /// queued (open dimensions would otherwise let a caller ask for any amount of compute).
    #[arg(long, env = "KUBEINFER_MAX_ELEMENTS", default_value_t = 1 << 24)]
    pub max_elements: usize,

    /// A latency objective for every model (config.toml's latency_target overrides it per model): each
    /// request is answered within this of its arrival or shed with 503 and Retry-After. The server
    /// learns each model's batch cost as it runs, keeps batches small enough to finish in time, and
    /// sheds a request when, by that cost, it cannot be answered in time (at arrival or when its turn
    /// comes). A request's own `timeout` is a tighter deadline. Unset: no objective.
    #[arg(long, env = "KUBEINFER_LATENCY_TARGET", value_parser = parse_duration)]
    pub latency_target: Option<Duration>,
}

impl BatchingArgs {
    pub fn settings(&self) -> ModelSettings {
        ModelSettings {
            max_batch_size: self.max_batch_size,
            max_queue_delay: self.max_queue_delay,
            queue_capacity: self.queue_capacity,
            instances: self.instances,
            intra_op_threads: self.intra_op_threads,
            intra_op_spinning: self.intra_op_spinning,
            request_timeout: self.request_timeout,
            default_version: None,
            idle_spin: self.idle_spin,
            batchable: None,
            max_elements: self.max_elements,
            dynamic_batching: true,
            preferred_batch_sizes: vec![],
            allow_timeout_override: true,
            latency_target: self.latency_target,
        }
    }
}

pub fn parse_model_file(s: &str) -> Result<ModelFile, String> {
    let bad = || format!("{s:?} is not NAME:VERSION=PATH, e.g. digits:1=/models/digits.onnx");
    let (id, path) = s.split_once('=').ok_or_else(bad)?;
    let (name, version) = id.split_once(':').ok_or_else(bad)?;
    let version = version.parse().map_err(|_| bad())?;
    if !crate::model::layout::valid_name(name) || path.is_empty() {
        return Err(bad());
    }
    Ok(ModelFile { name: name.to_string(), version, path: PathBuf::from(path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_files_name_a_version_and_a_path() {
        assert_eq!(
            parse_model_file("digits:2=/mnt/m.onnx"),
            Ok(ModelFile { name: "digits".into(), version: 2, path: "/mnt/m.onnx".into() })
        );
        assert!(parse_model_file("digits=/mnt/m.onnx").is_err());
        assert!(parse_model_file("digits:x=/mnt/m.onnx").is_err());
        assert!(parse_model_file("a/b:1=/m.onnx").is_err());
    }

    #[test]
    fn every_flag_has_help_and_the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
