//! One reconcile of one ModelDeployment: validate, check what it depends on, apply its children, delete
//! the ones it no longer wants, write its status, and report changes and problems as Events.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::allowlist;
use crate::apply::{apply, delete_owned};
use crate::context::Context;
use crate::crd::ModelDeployment;
use crate::discovery::{Capabilities, autoscaling_problem, unavailable};
use crate::error::Error;
use crate::kinds;
use crate::resources::{
    Build, MANAGER, configmap, deployment, hpa, keda, migrate, networkpolicy, pdb, service, servicemonitor,
};
use crate::status::{self, Observed, Problem, reason};
use crate::validate::{ModelUri, validate};
use crate::{mount_failures, pod_failures};

pub struct Reconciler {
    md: Arc<ModelDeployment>,
    ctx: Arc<Context>,
    namespace: String,
}

/// What one pass found and did: the status, the events and the log are written from it.
struct Pass<'a> {
    deployment: Option<&'a Deployment>,
    problems: &'a [Problem],
    /// What the pass built from the spec; none when the spec stopped it.
    build: Option<&'a Build<'a>>,
    /// The children it changed, as "created Service digits".
    changes: &'a [String],
}

impl<'a> Pass<'a> {
    /// A pass that built nothing: the spec is refused for `problems`.
    fn stopped(problems: &'a [Problem]) -> Pass<'a> {
        Pass { deployment: None, problems, build: None, changes: &[] }
    }
}

impl Reconciler {
    pub fn new(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Reconciler {
        let namespace = md.namespace().unwrap_or_else(|| "default".into());
        Reconciler { md, ctx, namespace }
    }

    fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    pub async fn run(&self) -> Result<Action, Error> {
        let caps = self.ctx.capabilities();
        let checked =
            validate(&self.md.spec).map_err(|m| Problem::new(reason::INVALID_SPEC, m)).and_then(|uri| {
                allowlist::check(&self.md.spec, &self.ctx.settings.allowed_images)
                    .map(|()| uri)
                    .map_err(|m| Problem::new(reason::IMAGE_NOT_ALLOWED, m))
            });
        let uri = match checked {
            Ok(uri) => uri,
            Err(problem) => {
                // Nothing is built from a spec that makes no sense, or names an image the cluster's admin
                // did not allow; what exists stays as it was.
                self.finish(Pass::stopped(&[problem])).await?;
                return Ok(Action::requeue(self.ctx.settings.resync));
            }
        };
        let mut problems = self.dependency_problems(&uri).await?;
        let prometheus_url = self.ctx.settings.prometheus_url.as_deref();
        problems.extend(unavailable(&self.md, caps, prometheus_url.is_some()));
        let b = Build {
            md: &self.md,
            uri: &uri,
            server_image: &self.ctx.settings.server_image,
            edge_image: &self.ctx.settings.edge_image,
            autoscaler: self.md.spec.autoscaling.is_some()
                && autoscaling_problem(&self.md, caps, prometheus_url.is_some()).is_none(),
            prometheus_url,
        };
        let mut changes = Vec::new();
        let deployment = match self.apply_children(&b, caps, &mut changes).await {
            Ok((deployment, migration)) => {
                problems.extend(migration);
                deployment
            }
            Err(e) => {
                let Some(refusal) = refusal(&e) else { return Err(e) };
                // Shown on the ModelDeployment instead of only in the operator's log; retried later.
                problems.push(refusal);
                let pass = Pass { deployment: None, problems: &problems, build: Some(&b), changes: &changes };
                self.finish(pass).await?;
                return Ok(Action::requeue(self.ctx.settings.retry));
            }
        };
        let unavailable = unavailable_replicas(&deployment) > 0;
        if unavailable {
            // Say why the pods are not coming up, from what the pull and the server left in their status.
            let pods = self.api::<Pod>().list(&ListParams::default().labels(&b.selector_string())).await?;
            match pod_failures::failure(&pods.items) {
                Some(problem) => problems.push(problem),
                // A volume the kubelet cannot mount (a missing Secret) shows only in its Events.
                None if mount_failures::any_pending(&pods.items) => {
                    let selector = ListParams::default().fields(mount_failures::EVENT_SELECTOR);
                    let events = self.api::<CoreEvent>().list(&selector).await?;
                    problems.extend(mount_failures::failure(&pods.items, &events.items));
                }
                None => {}
            }
        }
        let pass =
            Pass { deployment: Some(&deployment), problems: &problems, build: Some(&b), changes: &changes };
        self.finish(pass).await?;
        // A rollout under way is looked at again soon: pod failures change no object the operator watches.
        let settled = problems.is_empty() && !unavailable;
        let next = if settled { self.ctx.settings.resync } else { self.ctx.settings.retry };
        Ok(Action::requeue(next))
    }

    /// A missing PVC does not stop the rollout (the pods wait for it), but it is reported. Secrets are
    /// never read (the operator has no `get secrets`): a missing one shows in the pods' status, which
    /// `pod_failures` reports.
    async fn dependency_problems(&self, uri: &ModelUri) -> Result<Vec<Problem>, Error> {
        let mut problems = Vec::new();
        if let ModelUri::Pvc { claim, .. } = uri
            && self.api::<PersistentVolumeClaim>().get_opt(claim).await?.is_none()
        {
            problems.push(Problem::new(
                reason::PVC_NOT_FOUND,
                format!(
                    "PersistentVolumeClaim {claim:?} (from spec.model.uri) does not exist in namespace {:?}",
                    self.namespace
                ),
            ));
        }
        Ok(problems)
    }

    async fn apply_children(
        &self,
        b: &Build<'_>,
        caps: Capabilities,
        changes: &mut Vec<String>,
    ) -> Result<(Deployment, Option<Problem>), Error> {
        let migration = self.apply_migrations(b, changes).await?;
        if caps.cron_job_v1 && self.md.spec.database.is_some() {
            let (api, name) = (self.api::<CronJob>(), migrate::cron_job_name(b));
            self.apply_or_delete(&api, "CronJob", name, migrate::cron_job(b), changes).await?;
        }
        let server_config = configmap::server(b);
        let edge_config = configmap::edge(b);
        let checksum = configmap::checksum(
            &[Some(&server_config), edge_config.as_ref()].into_iter().flatten().collect::<Vec<_>>(),
        );
        self.apply_one(&self.api(), "ConfigMap", server_config, changes).await?;
        self.apply_or_delete(
            &self.api::<ConfigMap>(),
            "ConfigMap",
            configmap::edge_name(b),
            edge_config,
            changes,
        )
        .await?;
        self.apply_one(&self.api(), "Service", service::service(b), changes).await?;
        let policy = networkpolicy::network_policy(b);
        self.apply_or_delete(&self.api::<NetworkPolicy>(), "NetworkPolicy", b.name(), policy, changes)
            .await?;
        let deployment =
            self.apply_one(&self.api(), "Deployment", deployment::deployment(b, &checksum), changes).await?;
        if caps.autoscaling_v2 {
            let api = self.api::<HorizontalPodAutoscaler>();
            self.apply_or_delete(&api, "HorizontalPodAutoscaler", b.name(), hpa::hpa(b), changes).await?;
        }
        if caps.policy_v1 {
            let api = self.api::<PodDisruptionBudget>();
            self.apply_or_delete(&api, "PodDisruptionBudget", b.name(), pdb::pdb(b), changes).await?;
        }
        if caps.service_monitor {
            let api = self.dynamic_api(&kinds::service_monitor());
            let monitor = servicemonitor::service_monitor(b);
            self.apply_or_delete(&api, "ServiceMonitor", b.name(), monitor, changes).await?;
        }
        if caps.keda {
            let api = self.dynamic_api(&kinds::scaled_object());
            let scaled = keda::scaled_object(b).filter(|_| b.autoscaler);
            self.apply_or_delete(&api, "ScaledObject", b.name(), scaled, changes).await?;
        }
        Ok((deployment, migration))
    }

    /// The migrate Job of `spec.database.migrations` (a new one per image), the ones before it deleted
    /// (all of them once `migrations` is removed); whether the current one failed.
    async fn apply_migrations(
        &self,
        b: &Build<'_>,
        changes: &mut Vec<String>,
    ) -> Result<Option<Problem>, Error> {
        if self.md.spec.database.is_none() {
            return Ok(None);
        }
        let api = self.api::<Job>();
        let wanted = migrate::name(b);
        let failed = match migrate::job(b) {
            Some(job) => migrate::failure(&self.apply_one(&api, "Job", job, changes).await?),
            None => None,
        };
        let mine = ListParams::default().labels(&format!("{}={}", migrate::ROLE_LABEL, b.name()));
        let uid = self.md.uid().unwrap_or_default();
        for old in api.list(&mine).await? {
            let name = old.name_any();
            if Some(&name) != wanted.as_ref() && delete_owned(&api, &name, &uid).await? {
                changes.push(format!("deleted Job {name}"));
            }
        }
        Ok(failed.map(|message| Problem::new(reason::MIGRATION_FAILED, message)))
    }

    fn dynamic_api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), &self.namespace, resource)
    }

    async fn apply_one<K>(
        &self,
        api: &Api<K>,
        kind: &'static str,
        desired: K,
        changes: &mut Vec<String>,
    ) -> Result<K, Error>
    where
        K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    {
        let applied = apply(api, kind, desired).await?;
        if applied.written {
            changes.push(format!("applied {kind} {}", applied.object.name_any()));
        }
        Ok(applied.object)
    }

    async fn apply_or_delete<K>(
        &self,
        api: &Api<K>,
        kind: &'static str,
        name: String,
        desired: Option<K>,
        changes: &mut Vec<String>,
    ) -> Result<(), Error>
    where
        K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    {
        match desired {
            Some(obj) => {
                self.apply_one(api, kind, obj, changes).await?;
            }
            None => {
                let uid = self.md.uid().unwrap_or_default();
                if delete_owned(api, &name, &uid).await? {
                    changes.push(format!("deleted {kind} {name}"));
                }
            }
        }
        Ok(())
    }

    /// Writes the status if it changed and publishes Events for what was written and what is newly wrong.
    async fn finish(&self, pass: Pass<'_>) -> Result<(), Error> {
        let Pass { deployment, problems, build, changes } = pass;
        let observed = Observed {
            deployment,
            problems,
            selector: build.map(Build::selector_string),
            endpoint: build.map(Build::endpoint),
        };
        let new = status::compute(&self.md, &observed, &Time(Timestamp::now()));
        if status::changed(&self.md, &new) {
            let body = serde_json::json!({"apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment", "status": new});
            self.api::<ModelDeployment>()
                .patch_status(&self.md.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
                .await?;
        }
        if !changes.is_empty() {
            let applied = changes.join(", ");
            tracing::info!(changes = %applied, "applied");
            self.event(EventType::Normal, "Applied", applied).await;
        }
        for p in status::new_problems(&self.md, problems) {
            self.event(EventType::Warning, p.reason, p.message.clone()).await;
        }
        Ok(())
    }

    /// Events are a courtesy: failing to publish one is logged, never a reconcile failure.
    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&event, &self.md.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish an event");
        }
    }
}

fn unavailable_replicas(deployment: &Deployment) -> i32 {
    deployment.status.as_ref().and_then(|s| s.unavailable_replicas).unwrap_or(0)
}

/// The problem to report for a child that could not be applied for reasons of its own.
fn refusal(e: &Error) -> Option<Problem> {
    match e {
        Error::NameConflict { .. } => Some(Problem::new(reason::NAME_CONFLICT, e.to_string())),
        Error::Refused { .. } => Some(Problem::new(reason::APPLY_FAILED, e.to_string())),
        Error::Kube(_) | Error::Encode(..) => None,
    }
}
