//! Graceful shutdown: on SIGTERM (or Ctrl-C) readiness turns 503 at once, and only after the configured
//! delay does the server stop accepting connections, so load balancers stop routing to it first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::state::AppState;

/// Resolves when the process is asked to stop.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The future handed to axum's graceful shutdown: readiness off, wait `delay`, then stop accepting
/// and notify `draining`, which starts the drain deadline.
pub async fn drain(state: Arc<AppState>, delay: Duration, draining: Arc<Notify>) {
    signal().await;
    state.begin_shutdown();
    tracing::info!(delay_ms = delay.as_millis() as u64, "shutdown requested: readiness is now 503");
    tokio::time::sleep(delay).await;
    tracing::info!("no longer accepting connections; finishing accepted requests");
    // Wakes the gRPC server, already waiting; the permit wakes the drain deadline even when it starts
    // waiting later (a SIGTERM while models load).
    draining.notify_waiters();
    draining.notify_one();
}
