//! Reconciling under leader election: stand by until this replica holds the Lease, reconcile while it
//! does, stand by again if it is lost, and release it on shutdown so that a standby takes over at once.

use std::sync::Arc;

use tokio::sync::watch;

use crate::context::Context;
use crate::controller;
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::shutdown::stopped;

/// What the controller runs on: the namespace it watches (all when `None`) and its concurrency.
#[derive(Debug, Clone)]
pub struct Scope {
    pub namespace: Option<String>,
    pub concurrency: u16,
}

/// Runs the controller without election, until `shutdown`.
pub async fn run_alone(ctx: Arc<Context>, scope: Scope, shutdown: watch::Receiver<bool>, metrics: &Metrics) {
    metrics.leader.set(1);
    controller::run(ctx, scope.namespace, scope.concurrency, stopped(shutdown)).await;
}

/// Runs the controller whenever this replica leads, until `shutdown`.
pub async fn run_while_leading(
    elector: &Elector,
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    loop {
        tokio::select! {
            _ = elector.acquire() => {}
            () = stopped(shutdown.clone()) => return,
        }
        lead(elector, ctx.clone(), scope.clone(), &shutdown, metrics).await;
        if *shutdown.borrow() {
            elector.release().await;
            return;
        }
    }
}

/// Reconciles while this replica holds the lease. Leading ends with the shutdown signal or with the
/// lease lost; after a loss the caller stands by again.
async fn lead(
    elector: &Elector,
    ctx: Arc<Context>,
    scope: Scope,
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
    let run = controller::run(ctx, scope.namespace, scope.concurrency, end);
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
