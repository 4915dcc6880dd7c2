//! The flags that make a server safe to expose: API keys, timeouts, and bounds on connections, requests
//! and the memory they hold.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::units::parse_duration;

/// What a caller must present, and what one connection or request may take: the flags that make a
/// server safe to expose.
#[derive(Debug, Clone, Args)]
pub struct ExposureArgs {
    /// API keys, one per line as `KEY SCOPE[,SCOPE...]` (scopes: infer, read, write; `#` comments).
    /// Callers send `Authorization: Bearer KEY`; liveness, readiness and /metrics stay open. The file is
    /// re-read when it changes (a rotated Secret needs no restart). Without it inference is open to
    /// anyone who reaches the port.
    #[arg(long, env = "KUBEINFER_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Without --api-keys-file, serve the prediction log's entries (/api/predictions...), which may
    /// hold request bodies, to anyone. Off by default so that a log is never public by accident.
    #[arg(long, env = "KUBEINFER_PUBLIC_PREDICTION_LOG")]
    pub public_prediction_log: bool,

    /// Serve /metrics on this port of --http-host instead of the API port, so that a NetworkPolicy or a
    /// Service can let scrapers in without opening the API (the operator uses 9090).
    #[arg(long, env = "KUBEINFER_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Longest a client may take to send a request's headers; then the connection is closed.
    #[arg(long, env = "KUBEINFER_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest gap between two pieces of a request body; then the request gets 408.
    #[arg(long, env = "KUBEINFER_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Longest a request may take from its headers to its response (body, queue and compute included);
    /// then it gets 503. Keep it above --request-timeout plus the slowest batch.
    #[arg(long, env = "KUBEINFER_HANDLER_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub handler_timeout: Duration,

    /// Requests handled at once (probes and /metrics excepted); more get 429 with Retry-After.
    #[arg(long, env = "KUBEINFER_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Connections open at once; more wait in the kernel's accept queue.
    #[arg(long, env = "KUBEINFER_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// Memory budget in bytes for requests in flight: each body is charged four times its size (the
    /// body, its decoded tensors, the outputs and the response) before it is read, and a request that
    /// does not fit now gets 503 with Retry-After instead of growing the process. Default: a quarter of
    /// the container's memory limit (cgroup), else 256 MiB.
    #[arg(long, env = "KUBEINFER_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<usize>,
}
