//! The operator's Prometheus metrics and its small HTTP server (/metrics, /healthz, /readyz).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub duration: Histogram,
    pub errors: IntCounterVec,
    pub leader: IntGauge,
    pub model_deployments: IntGauge,
    /// Set once the API server has answered; /readyz reports it.
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::new(),
            reconciliations: IntCounterVec::new(
                Opts::new(
                    "kubeinfer_operator_reconciliations_total",
                    "Reconciles by result (success, error).",
                ),
                &["result"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubeinfer_operator_reconcile_duration_seconds",
                    "Time one reconcile took.",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            errors: IntCounterVec::new(
                Opts::new(
                    "kubeinfer_operator_reconcile_errors_total",
                    "Failed reconciles by reason (kube_api, other).",
                ),
                &["reason"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            leader: IntGauge::new(
                "kubeinfer_operator_leader",
                "1 while this replica holds the leader Lease.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            model_deployments: IntGauge::new(
                "kubeinfer_operator_model_deployments",
                "ModelDeployments watched.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            ready: AtomicBool::new(false),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.reconciliations.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.errors.clone()),
            Box::new(metrics.leader.clone()),
            Box::new(metrics.model_deployments.clone()),
        ];
        for c in collectors {
            if let Err(e) = metrics.registry.register(c) {
                tracing::warn!(error = %e, "metric registered twice");
            }
        }
        // Every label value exists from the start, at 0, so alerts on rates see a series, not an absence.
        for result in ["success", "error"] {
            metrics.reconciliations.with_label_values(&[result]);
        }
        for reason in ["kube_api", "other"] {
            metrics.errors.with_label_values(&[reason]);
        }
        metrics
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.render() }))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Acquire) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
            }),
        )
        .with_state(metrics)
}

pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health listening");
    axum::serve(listener, router(metrics)).await
}
