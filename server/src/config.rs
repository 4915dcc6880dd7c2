//! Command-line configuration. Every flag also reads `KUBEINFER_<FLAG>` from the environment; `--help`
//! is the reference documentation.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::settings::ModelSettings;

#[derive(Debug, Parser)]
#[command(name = "kubeinfer-server", version, about = "Serves ONNX models over the Open Inference Protocol")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every model in a model repository and serve it over HTTP.
    Serve(Box<ServeArgs>),
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
    #[arg(long, env = "KUBEINFER_MODEL_REPOSITORY")]
    pub model_repository: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "KUBEINFER_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: IpAddr,

    /// Port for the whole HTTP API: inference, health, metrics and the prediction log.
    #[arg(long, env = "KUBEINFER_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Largest request body accepted; larger ones get 413. Keep any proxy's limit equal to it.
    #[arg(long, env = "KUBEINFER_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    #[command(flatten)]
    pub batching: BatchingArgs,

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

    /// Longest a request may wait in the queue when it sets no `timeout` parameter of its own.
    #[arg(long, env = "KUBEINFER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an instance that has run out of work keeps watching the queue before it sleeps. Waking
    /// a sleeping thread costs tens of microseconds, most of the serving overhead at low concurrency;
    /// the price is up to this much busy CPU after each batch. 0 sleeps at once.
    #[arg(long, env = "KUBEINFER_IDLE_SPIN", default_value = "100us", value_parser = parse_duration)]
    pub idle_spin: Duration,
}

impl BatchingArgs {
    pub fn settings(&self) -> ModelSettings {
        ModelSettings {
            max_batch_size: self.max_batch_size,
            max_queue_delay: self.max_queue_delay,
            queue_capacity: self.queue_capacity,
            instances: self.instances,
            intra_op_threads: self.intra_op_threads,
            request_timeout: self.request_timeout,
            default_version: None,
            idle_spin: self.idle_spin,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(Device::Cuda)
                .ok_or_else(|| format!("{s:?} is not a device; use cpu, cuda or cuda:N")),
        }
    }
}

/// Parses `250us`, `5ms`, `1.5s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; use a number with us, ms, s or m, e.g. 5ms");
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 hours").is_err());
    }

    #[test]
    fn devices_parse_with_an_optional_index() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(Device::Cuda(1)));
        assert_eq!("gpu".parse::<Device>(), Err("\"gpu\" is not a device; use cpu, cuda or cuda:N".into()));
    }

    #[test]
    fn every_flag_has_help_and_the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
