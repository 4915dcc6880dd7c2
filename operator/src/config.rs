//! Command-line configuration; every flag also reads `KUBEINFER_<FLAG>`. `--help` documents them.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::context::Settings;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubeinfer-operator",
    version,
    about = "Reconciles ModelDeployments into kubeinfer-server pods"
)]
pub struct Config {
    /// kubeinfer-server image for ModelDeployments that name none.
    #[arg(long, env = "KUBEINFER_SERVER_IMAGE", default_value = "ghcr.io/kubeinfer/kubeinfer-server:0.1.0")]
    pub server_image: String,

    /// nginx image of the edge container (must run as a non-root user).
    #[arg(long, env = "KUBEINFER_EDGE_IMAGE", default_value = "nginxinc/nginx-unprivileged:1.27-alpine")]
    pub edge_image: String,

    /// Watch ModelDeployments in this namespace only; empty watches all namespaces.
    #[arg(long, visible_alias = "namespace", env = "KUBEINFER_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,

    /// Port serving /metrics, /healthz and /readyz.
    #[arg(long, env = "KUBEINFER_METRICS_PORT", default_value_t = 8080)]
    pub metrics_port: u16,

    /// Address for the metrics port.
    #[arg(long, env = "KUBEINFER_METRICS_HOST", default_value = "0.0.0.0")]
    pub metrics_host: IpAddr,

    /// Reconcile only while holding a coordination.k8s.io/v1 Lease, so several replicas are safe.
    #[arg(long, env = "KUBEINFER_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the Lease; defaults to the pod's namespace (POD_NAMESPACE), then "default".
    #[arg(long, env = "KUBEINFER_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, env = "KUBEINFER_LEASE_NAME", default_value = "kubeinfer-operator")]
    pub lease_name: String,

    /// Seconds a leader's Lease is valid without renewal; a standby takes over within this time.
    #[arg(long, env = "KUBEINFER_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(3..=300))]
    pub lease_duration_seconds: u32,

    /// Images a ModelDeployment may name in spec.image and spec.edge.image, comma-separated: an entry
    /// ending in `/` admits everything under it (`ghcr.io/kubeinfer/`), any other one repository with any
    /// tag or digest. Empty: any image. --server-image and --edge-image are always allowed. A spec naming
    /// another image gets Ready=False, reason ImageNotAllowed, and nothing is changed.
    #[arg(long, env = "KUBEINFER_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Vec<String>,

    /// Prometheus that KEDA ScaledObjects query for kubeinfer's pods metrics (autoscaling.provider KEDA
    /// with a queue-time, latency-target or in-flight target), e.g. http://prometheus.monitoring:9090.
    #[arg(long, env = "KUBEINFER_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,

    /// Seconds between checks of which optional APIs (autoscaling/v2, policy/v1, ServiceMonitor, KEDA) exist.
    #[arg(long, env = "KUBEINFER_DISCOVERY_INTERVAL_SECONDS", default_value_t = 60)]
    pub discovery_interval_seconds: u64,

    /// Seconds between reconciles of an unchanged ModelDeployment.
    #[arg(long, env = "KUBEINFER_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,

    /// Seconds before a ModelDeployment with problems (a missing Secret, an API the cluster lacks) is
    /// reconciled again.
    #[arg(long, env = "KUBEINFER_RETRY_SECONDS", default_value_t = 30)]
    pub retry_seconds: u64,

    /// ModelDeployments reconciled at the same time.
    #[arg(long, env = "KUBEINFER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Log line format.
    #[arg(long, env = "KUBEINFER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax.
    #[arg(long, env = "KUBEINFER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// This replica's name in the Lease: the pod name, else the host name.
    pub fn identity() -> String {
        std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("kubeinfer-operator-{}", std::process::id()))
    }

    /// What reconciles need of the command line.
    pub fn settings(&self) -> Settings {
        Settings {
            server_image: self.server_image.clone(),
            edge_image: self.edge_image.clone(),
            resync: Duration::from_secs(self.resync_seconds),
            retry: Duration::from_secs(self.retry_seconds),
            prometheus_url: self.prometheus_url.clone().filter(|u| !u.is_empty()),
            allowed_images: self
                .allowed_images
                .iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect(),
        }
    }

    pub fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
