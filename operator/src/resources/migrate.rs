//! The migrate Job (`spec.database.migrations`): `kubeinfer-server migrate` with the URL of a role that
//! may change the schema, so that the server pods run with `--migrate=off` and a role with DML only.
//! A Job's pod template cannot change, so the name carries a hash of what the Job runs (image, Secrets):
//! a new image gets a new Job, and the reconcile deletes the ones before it. A CronJob runs the same
//! `migrate` every few hours, since only it may make the partitions ahead.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::Build;
use super::pod::{
    database_ca_mount, database_ca_volume, database_env, image, restricted_container, restricted_pod,
};

/// The label that marks a ModelDeployment's migrate Jobs (value: the ModelDeployment's name).
pub const ROLE_LABEL: &str = "kubeinfer.io/migrate";
/// Tries before the Job fails (the pods keep retrying to find the schema meanwhile).
const BACKOFF_LIMIT: i32 = 6;

/// The Job's name: the ModelDeployment's, `-migrate-`, and 8 hex digits of what it runs.
pub fn name(b: &Build) -> Option<String> {
    let db = b.md.spec.database.as_ref()?;
    let m = db.migrations.as_ref()?;
    let ca = db.ca_secret.as_ref().map(|c| format!("{}/{}", c.name, c.key)).unwrap_or_default();
    let what = format!("{}\n{}/{}\n{ca}", image(b), m.secret_name, m.key);
    let hash = format!("{:x}", Sha256::digest(what.as_bytes()));
    Some(format!("{}-migrate-{}", b.name(), &hash[..8]))
}

pub fn job(b: &Build) -> Option<Job> {
    let mut metadata = b.metadata(name(b)?);
    metadata.labels.get_or_insert_with(Default::default).insert(ROLE_LABEL.into(), b.name());
    Some(Job { metadata, spec: Some(job_spec(b)?), ..Default::default() })
}

/// How often the CronJob runs `migrate`, which makes partitions three days ahead and drops expired ones:
/// every 6 hours leaves a day of missed runs before a partition is missing.
pub const MAINTENANCE_SCHEDULE: &str = "17 */6 * * *";

/// The CronJob that keeps the partitions made ahead while the pods, with --migrate=off, cannot.
pub fn cron_job(b: &Build) -> Option<CronJob> {
    let spec = job_spec(b)?;
    Some(CronJob {
        metadata: b.metadata(cron_job_name(b)),
        spec: CronJobSpec {
            schedule: MAINTENANCE_SCHEDULE.into(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec { metadata: None, spec: Some(spec) },
            ..Default::default()
        },
        ..Default::default()
    })
}

pub fn cron_job_name(b: &Build) -> String {
    format!("{}-maintain", b.name())
}

fn job_spec(b: &Build) -> Option<JobSpec> {
    let m = b.md.spec.database.as_ref()?.migrations.as_ref()?;
    // Not the server's selector labels: the model's Service must never send traffic to this pod.
    let pod_labels = [
        ("app.kubernetes.io/name".to_string(), "kubeinfer-migrate".to_string()),
        ("app.kubernetes.io/instance".to_string(), b.name()),
        (ROLE_LABEL.to_string(), b.name()),
    ];
    let small = |cpu: &str, memory: &str| {
        [("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))].into()
    };
    let container = Container {
        name: "migrate".into(),
        image: Some(image(b)),
        image_pull_policy: b.md.spec.image_pull_policy.clone(),
        args: Some(vec!["migrate".into(), "--log-format".into(), "json".into()]),
        env: Some(database_env(b, &m.secret_name, &m.key)),
        volume_mounts: database_ca_mount(b).map(|m| vec![m]),
        resources: Some(ResourceRequirements {
            requests: Some(small("50m", "64Mi")),
            limits: Some(small("1", "256Mi")),
            ..Default::default()
        }),
        security_context: Some(restricted_container()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Some(JobSpec {
        backoff_limit: Some(BACKOFF_LIMIT),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(pod_labels.into()), ..Default::default() }),
            spec: Some(PodSpec {
                restart_policy: Some("OnFailure".into()),
                security_context: Some(restricted_pod()),
                service_account_name: b.md.spec.service_account_name.clone(),
                automount_service_account_token: Some(false),
                containers: vec![container],
                volumes: database_ca_volume(b).map(|v| vec![v]),
                ..Default::default()
            }),
        },
        ..Default::default()
    })
}

/// Why the Job failed, when it has.
pub fn failure(job: &Job) -> Option<String> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True")?;
    let why = failed.message.clone().or_else(|| failed.reason.clone()).unwrap_or_default();
    Some(format!("the migrate Job {} failed: {why}", job.metadata.name.as_deref().unwrap_or("?")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn job_for(spec: serde_json::Value) -> Option<Job> {
        let md = md(spec);
        job(&build(&md, &ModelUri::File("/models/m.onnx".into())))
    }

    const DB: &str = "digits-db";

    #[test]
    fn with_migrations_a_job_runs_migrate_with_the_ddl_url_and_not_as_a_server_pod() {
        let j = job_for(json!({"model": {"uri": "file:///models/m.onnx"},
            "database": {"secretName": DB, "migrations": {"secretName": "digits-db-owner"}}}))
        .unwrap();
        let name = j.metadata.name.clone().unwrap();
        assert!(name.starts_with("digits-migrate-") && name.len() == "digits-migrate-".len() + 8, "{name}");
        let pod = j.spec.unwrap().template;
        let labels = pod.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "kubeinfer-migrate");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            c.args.as_deref(),
            Some(&["migrate".to_string(), "--log-format".into(), "json".into()][..])
        );
        let url = c.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((url.name.as_str(), url.key.as_str()), ("digits-db-owner", "DATABASE_URL"));
        assert_eq!(pod.spec.unwrap().restart_policy.as_deref(), Some("OnFailure"));
    }

    #[test]
    fn a_new_image_is_a_new_job_and_no_migrations_no_job() {
        let spec = |image: &str| {
            json!({"model": {"uri": "file:///models/m.onnx"}, "image": image,
                "database": {"secretName": DB, "migrations": {"secretName": "owner"}}})
        };
        let a = job_for(spec("ghcr.io/kubeinfer/kubeinfer-server:0.1.0")).unwrap().metadata.name;
        let b = job_for(spec("ghcr.io/kubeinfer/kubeinfer-server:0.2.0")).unwrap().metadata.name;
        assert_ne!(a, b);
        assert!(
            job_for(json!({"model": {"uri": "file:///models/m.onnx"}, "database": {"secretName": DB}}))
                .is_none()
        );
    }

    #[test]
    fn a_failed_job_says_why() {
        let j: Job = serde_json::from_value(json!({"metadata": {"name": "digits-migrate-0123abcd"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}}))
        .unwrap();
        assert_eq!(
            failure(&j).as_deref(),
            Some(
                "the migrate Job digits-migrate-0123abcd failed: Job has reached the specified backoff limit"
            )
        );
    }

    #[test]
    fn the_cron_job_runs_the_same_migrate_every_six_hours_one_at_a_time() {
        let md = md(json!({"model": {"uri": "file:///models/m.onnx"},
            "database": {"secretName": DB, "migrations": {"secretName": "owner"}}}));
        let uri = ModelUri::File("/models/m.onnx".into());
        let b = build(&md, &uri);
        let cron = cron_job(&b).unwrap();
        assert_eq!(cron.metadata.name.as_deref(), Some("digits-maintain"));
        assert_eq!(
            (cron.spec.schedule.as_str(), cron.spec.concurrency_policy.as_deref()),
            ("17 */6 * * *", Some("Forbid"))
        );
        assert_eq!(cron.spec.job_template.spec, job(&b).unwrap().spec);
    }
}
