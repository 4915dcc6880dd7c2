use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeinfer_operator::config::{Config, LogFormat};
use kubeinfer_operator::context::Context;
use kubeinfer_operator::discovery;
use kubeinfer_operator::leader::Elector;
use kubeinfer_operator::leading::{self, Scope};
use kubeinfer_operator::metrics::{self, Metrics};
use kubeinfer_operator::shutdown;

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Picks rustls' crypto provider for the process. Built alone the operator links only ring, but a
/// workspace build unifies features and links aws-lc-rs too (the server's object store wants it); with
/// two providers and none chosen, rustls panics at the first TLS connection.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(&config)?;
    install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let addr = SocketAddr::new(config.metrics_host, config.metrics_port);
    let server_metrics = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, server_metrics).await {
            tracing::error!(error = %e, %addr, "metrics server stopped");
        }
    });

    let client = kube::Client::try_default().await?;
    let found = discovery::discover(&client).await?;
    tracing::info!(?found, "optional APIs");
    metrics.ready.store(true, std::sync::atomic::Ordering::Release);
    let caps = Arc::new(RwLock::new(found));
    let interval = Duration::from_secs(config.discovery_interval_seconds);
    discovery::spawn_refresh(client.clone(), caps.clone(), interval);

    let ctx = Arc::new(Context::new(client.clone(), config.settings(), caps, metrics.clone()));
    let scope = Scope {
        namespace: Some(config.watch_namespace.clone()).filter(|n| !n.is_empty()),
        concurrency: config.concurrency,
    };
    let stop = shutdown::signal();
    if !config.leader_election {
        leading::run_alone(ctx, scope, stop, &metrics).await;
        return Ok(());
    }
    let leases: Api<Lease> = Api::namespaced(client, &config.lease_namespace());
    let lease_duration = Duration::from_secs(u64::from(config.lease_duration_seconds));
    let elector = Elector::new(leases, config.lease_name.clone(), Config::identity(), lease_duration);
    leading::run_while_leading(&elector, ctx, scope, stop, &metrics).await;
    Ok(())
}
