//! The reconcile loop: watches ModelDeployments and what they own, and for each one applies its
//! children, deletes those no longer wanted, and writes its status.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::backoff::{WatchBackoff, reconcile_retry};
use crate::context::Context;
use crate::crd::ModelDeployment;
use crate::error::Error;
use crate::kinds;
use crate::reconcile::Reconciler;
use crate::resources::MANAGER;

fn key(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

/// One reconcile, in a span naming the ModelDeployment and its generation: every line it logs (and the
/// apply calls' lines) carries them.
#[tracing::instrument(name = "reconcile", skip_all, fields(model_deployment = %key(&md), generation = md.metadata.generation))]
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.duration.start_timer();
    let result = Reconciler::new(md.clone(), ctx.clone()).run().await;
    timer.observe_duration();
    match &result {
        Ok(_) => {
            ctx.metrics.reconciliations.with_label_values(&["success"]).inc();
            ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(&md));
        }
        Err(e) => {
            ctx.metrics.reconciliations.with_label_values(&["error"]).inc();
            ctx.metrics.errors.with_label_values(&[e.metric_label()]).inc();
        }
    }
    result
}

/// Per-object exponential backoff: 1 s, 2 s, 4 s, ... up to 5 minutes.
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key(&md)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = reconcile_retry(*n);
    tracing::warn!(model_deployment = %key(&md), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves, then finishes the reconciles in flight.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let caps = ctx.capabilities();
    let mut controller =
        Controller::new(api::<ModelDeployment>(&client, &namespace), watcher::Config::default())
            .owns(api::<Deployment>(&client, &namespace), children.clone())
            .owns(api::<Service>(&client, &namespace), children.clone())
            .owns(api::<ConfigMap>(&client, &namespace), children.clone())
            .owns(api::<NetworkPolicy>(&client, &namespace), children.clone())
            .owns(api::<Job>(&client, &namespace), children.clone());
    if caps.autoscaling_v2 {
        controller = controller.owns(api::<HorizontalPodAutoscaler>(&client, &namespace), children.clone());
    }
    if caps.policy_v1 {
        controller = controller.owns(api::<PodDisruptionBudget>(&client, &namespace), children.clone());
    }
    if caps.cron_job_v1 {
        controller = controller.owns(api::<CronJob>(&client, &namespace), children.clone());
    }
    let dynamic = |ar: &ApiResource| -> Api<DynamicObject> {
        match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
            None => Api::all_with(client.clone(), ar),
        }
    };
    if caps.service_monitor {
        let ar = kinds::service_monitor();
        controller = controller.owns_with(dynamic(&ar), ar, children.clone());
    }
    if caps.keda {
        let ar = kinds::scaled_object();
        controller = controller.owns_with(dynamic(&ar), ar, children.clone());
    }
    let store = controller.store();
    let metrics = ctx.metrics.clone();
    let counter = tokio::spawn(async move {
        loop {
            metrics.model_deployments.set(store.state().len() as i64);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    counter.abort();
}
