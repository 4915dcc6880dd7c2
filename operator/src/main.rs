use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeinfer_operator::config::{Config, LogFormat};
use kubeinfer_operator::controller::{self, Context, Settings};
use kubeinfer_operator::discovery::{self, Capabilities};
use kubeinfer_operator::leader::Elector;
use kubeinfer_operator::metrics::{self, Metrics};
use tokio::sync::watch;

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

/// Resolves on SIGTERM or Ctrl-C; every clone of the receiver sees it.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Re-checks the optional APIs every `interval`, so a cluster that gains one (a ServiceMonitor CRD
/// installed later, say) gets those objects from the next reconcile, without a restart. The watches
/// are set up once, at start: changes to such objects wake reconciles only after a restart (until
/// then the periodic resync covers them).
fn refresh_capabilities(client: kube::Client, caps: Arc<RwLock<Capabilities>>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match discovery::discover(&client).await {
                Ok(found) => {
                    let mut current = caps.write().unwrap_or_else(|p| p.into_inner());
                    if *current != found {
                        tracing::info!(?found, "served APIs changed");
                        *current = found;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "API discovery failed; keeping what was known"),
            }
        }
    });
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
    refresh_capabilities(
        client.clone(),
        caps.clone(),
        Duration::from_secs(config.discovery_interval_seconds),
    );

    let settings = Settings {
        server_image: config.server_image.clone(),
        edge_image: config.edge_image.clone(),
        resync: Duration::from_secs(config.resync_seconds),
        retry: Duration::from_secs(config.retry_seconds),
        prometheus_url: config.prometheus_url.clone().filter(|u| !u.is_empty()),
        allowed_images: config
            .allowed_images
            .iter()
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect(),
    };
    let ctx = Arc::new(Context::new(client.clone(), settings, caps, metrics.clone()));
    let namespace = Some(config.watch_namespace.clone()).filter(|n| !n.is_empty());
    let shutdown = shutdown_signal();

    if !config.leader_election {
        metrics.leader.set(1);
        controller::run(ctx, namespace, config.concurrency, stopped(shutdown)).await;
        return Ok(());
    }
    let leases: Api<Lease> = Api::namespaced(client, &config.lease_namespace());
    let elector = Elector::new(
        leases,
        config.lease_name.clone(),
        Config::identity(),
        Duration::from_secs(u64::from(config.lease_duration_seconds)),
    );
    loop {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = stopped(shutdown.clone()) => return Ok(()),
        }
        lead(&elector, ctx.clone(), namespace.clone(), config.concurrency, &shutdown, &metrics).await;
        if *shutdown.borrow() {
            elector.release().await;
            return Ok(());
        }
    }
}

/// Reconciles while this replica holds the lease. Leading ends with the shutdown signal or with the
/// lease lost; after a loss the caller stands by again.
async fn lead(
    elector: &Elector,
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: &watch::Receiver<bool>,
    metrics: &Metrics,
) {
    metrics.leader.set(1);
    let (lost_tx, lost_rx) = watch::channel(false);
    let mut stop = shutdown.clone();
    let end = async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = async { let mut l = lost_rx; let _ = l.wait_for(|l| *l).await; } => {}
        }
    };
    let run = controller::run(ctx, namespace, concurrency, end);
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => {}
        reason = elector.hold() => {
            tracing::error!(error = %reason, "lost leadership; stopping reconciles");
            let _ = lost_tx.send(true);
            run.await;
        }
    }
    metrics.leader.set(0);
}
