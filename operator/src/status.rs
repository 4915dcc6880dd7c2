//! The ModelDeployment's status, computed from its Deployment and the problems the reconcile found.
//! Pure: the caller passes the clock.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{ModelDeployment, ModelDeploymentStatus};

/// Something that keeps the ModelDeployment from being what it asks for. `reason` is a CamelCase
/// condition reason from a fixed set; `message` says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Problem {
        Problem { reason, message: message.into() }
    }

    /// Whether nothing can be rolled out, or come up, while this lasts, so that it is the reason Ready is
    /// False.
    pub fn blocks_rollout(&self) -> bool {
        matches!(
            self.reason,
            reason::INVALID_SPEC
                | reason::IMAGE_NOT_ALLOWED
                | reason::NAME_CONFLICT
                | reason::APPLY_FAILED
                | reason::PULL_FAILED
                | reason::MODEL_LOAD_FAILED
                | reason::CRASH_LOOP_BACK_OFF
                | reason::IMAGE_PULL_BACK_OFF
        )
    }
}

/// Reasons, as constants so that tests and alerts can rely on them.
pub mod reason {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";
    pub const NAME_CONFLICT: &str = "NameConflict";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const PULL_FAILED: &str = "PullFailed";
    pub const MODEL_LOAD_FAILED: &str = "ModelLoadFailed";
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    pub const CONTAINER_CONFIG_ERROR: &str = "ContainerConfigError";
    pub const VOLUME_MOUNT_FAILED: &str = "VolumeMountFailed";
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    pub const PARTITION_MAINTENANCE_UNAVAILABLE: &str = "PartitionMaintenanceUnavailable";
    pub const PVC_NOT_FOUND: &str = "PersistentVolumeClaimNotFound";
    pub const AUTOSCALING_UNAVAILABLE: &str = "AutoscalingUnavailable";
    pub const DISRUPTION_BUDGET_UNAVAILABLE: &str = "DisruptionBudgetUnavailable";
    pub const SERVICE_MONITOR_UNAVAILABLE: &str = "ServiceMonitorUnavailable";
    pub const ALL_REPLICAS_READY: &str = "AllReplicasReady";
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const DEPLOYMENT_MISSING: &str = "DeploymentNotCreated";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const ROLLED_OUT: &str = "RolledOut";
    pub const AS_EXPECTED: &str = "AsExpected";
}

/// What the reconcile learned, besides the ModelDeployment itself.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    pub deployment: Option<&'a Deployment>,
    pub problems: &'a [Problem],
    pub selector: Option<String>,
    pub endpoint: Option<String>,
}

pub fn compute(md: &ModelDeployment, observed: &Observed, now: &Time) -> ModelDeploymentStatus {
    let previous = md.status.clone().unwrap_or_default();
    let counts = counts(md, observed.deployment);
    let conditions = Conditions { previous: &previous.conditions, now, generation: md.metadata.generation };
    let invalid = observed.problems.iter().find(|p| p.blocks_rollout());
    ModelDeploymentStatus {
        observed_generation: md.metadata.generation,
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        ready: Some(format!("{}/{}", counts.ready, counts.desired)),
        model: Some(format!("{}:{}", md.served_name(), md.spec.model.version)),
        selector: observed.selector.clone(),
        endpoint: observed.endpoint.clone(),
        conditions: vec![
            ready(&conditions, invalid, observed.deployment, &counts),
            progressing(&conditions, invalid, observed.deployment, &counts),
            degraded(&conditions, observed.problems),
        ],
    }
}

/// Builds conditions, keeping a condition's transition time while its status stays the same, as
/// Kubernetes' own conditions do.
struct Conditions<'a> {
    previous: &'a [Condition],
    now: &'a Time,
    generation: Option<i64>,
}

impl Conditions<'_> {
    fn condition(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        let status = if status { "True" } else { "False" };
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: self.generation,
        }
    }
}

fn ready(
    conditions: &Conditions,
    invalid: Option<&Problem>,
    deployment: Option<&Deployment>,
    c: &Counts,
) -> Condition {
    let (ready, desired) = (c.ready, c.desired);
    match (invalid, deployment) {
        (Some(p), _) => conditions.condition("Ready", false, p.reason, p.message.clone()),
        (None, None) => conditions.condition(
            "Ready",
            false,
            reason::DEPLOYMENT_MISSING,
            "the Deployment does not exist yet".into(),
        ),
        (None, Some(_)) if desired == 0 => {
            conditions.condition("Ready", false, reason::SCALED_TO_ZERO, "replicas is 0".into())
        }
        (None, Some(_)) if ready >= desired && c.updated >= desired => conditions.condition(
            "Ready",
            true,
            reason::ALL_REPLICAS_READY,
            format!("{ready}/{desired} replicas ready"),
        ),
        (None, Some(_)) => conditions.condition(
            "Ready",
            false,
            reason::REPLICAS_NOT_READY,
            format!("{ready}/{desired} replicas ready"),
        ),
    }
}

fn progressing(
    conditions: &Conditions,
    invalid: Option<&Problem>,
    deployment: Option<&Deployment>,
    c: &Counts,
) -> Condition {
    let rolling = deployment.is_some()
        && (c.updated < c.desired || c.replicas > c.desired || !deployment_observed(deployment));
    match (deployment, invalid) {
        (None, Some(p)) => conditions.condition(
            "Progressing",
            false,
            p.reason,
            format!("nothing is rolled out: {}", p.message),
        ),
        (None, None) => conditions.condition(
            "Progressing",
            false,
            reason::DEPLOYMENT_MISSING,
            "the Deployment does not exist yet".into(),
        ),
        _ if rolling => conditions.condition(
            "Progressing",
            true,
            reason::ROLLING_OUT,
            format!("{}/{} replicas updated", c.updated, c.desired),
        ),
        _ => conditions.condition(
            "Progressing",
            false,
            reason::ROLLED_OUT,
            "the Deployment is up to date".into(),
        ),
    }
}

fn degraded(conditions: &Conditions, problems: &[Problem]) -> Condition {
    match problems.first() {
        Some(first) => {
            let message = problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
            conditions.condition("Degraded", true, first.reason, message)
        }
        None => conditions.condition("Degraded", false, reason::AS_EXPECTED, "no problems found".into()),
    }
}

/// Replica counts from the Deployment's spec and status.
struct Counts {
    replicas: i32,
    ready: i32,
    updated: i32,
    desired: i32,
}

fn counts(md: &ModelDeployment, deployment: Option<&Deployment>) -> Counts {
    let Some(d) = deployment else {
        return Counts { replicas: 0, ready: 0, updated: 0, desired: md.spec.replicas.unwrap_or(1) };
    };
    let s = d.status.clone().unwrap_or_default();
    Counts {
        replicas: s.replicas.unwrap_or(0),
        ready: s.ready_replicas.unwrap_or(0),
        updated: s.updated_replicas.unwrap_or(0),
        desired: d.spec.replicas.unwrap_or(1),
    }
}

/// Whether the Deployment controller has seen the Deployment's latest spec.
fn deployment_observed(deployment: Option<&Deployment>) -> bool {
    deployment.is_some_and(|d| {
        let observed = d.status.as_ref().and_then(|s| s.observed_generation);
        observed.is_some() && observed == d.metadata.generation
    })
}

/// Whether `new` differs from what the object holds, so that an unchanged status is never written.
pub fn changed(md: &ModelDeployment, new: &ModelDeploymentStatus) -> bool {
    md.status.as_ref() != Some(new)
}

/// Problems not already reported in the current status: the ones worth an Event. A problem counts as
/// reported when its message is a whole item of the Degraded message (items are joined with "; "), not
/// when it is only a part of another problem's message. (A message that itself holds "; " can still be
/// taken for the first part of a longer one; the condition keeps only the text.)
pub fn new_problems<'a>(md: &ModelDeployment, problems: &'a [Problem]) -> Vec<&'a Problem> {
    let reported = md
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "True"))
        .map(|c| format!("; {}; ", c.message));
    let is_reported =
        |p: &Problem| reported.as_ref().is_some_and(|r| r.contains(&format!("; {}; ", p.message)));
    problems.iter().filter(|p| !is_reported(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::jiff::Timestamp;

    fn md() -> ModelDeployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeinfer.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "digits", "namespace": "ml", "generation": 4},
            "spec": {"model": {"uri": "s3://b/m.onnx"}, "replicas": 2}}))
        .unwrap()
    }

    fn deployment(desired: i32, ready: i32, updated: i32) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta { generation: Some(2), ..Default::default() },
            spec: DeploymentSpec { replicas: Some(desired), ..Default::default() },
            status: Some(DeploymentStatus {
                replicas: Some(desired),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                observed_generation: Some(2),
                ..Default::default()
            }),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn find<'a>(s: &'a ModelDeploymentStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_replicas_ready_makes_ready_true_and_records_the_generation() {
        let d = deployment(2, 2, 2);
        let s = compute(&md(), &Observed { deployment: Some(&d), ..Default::default() }, &at(100));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!((s.replicas, s.ready_replicas, s.ready.as_deref()), (2, 2, Some("2/2")));
        let ready = find(&s, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", reason::ALL_REPLICAS_READY));
        assert_eq!(find(&s, "Progressing").status, "False");
        assert_eq!(find(&s, "Degraded").status, "False");
    }

    #[test]
    fn missing_replicas_keep_ready_false_and_progressing_true() {
        let d = deployment(2, 1, 1);
        let s = compute(&md(), &Observed { deployment: Some(&d), ..Default::default() }, &at(100));
        let ready = find(&s, "Ready");
        assert_eq!((ready.status.as_str(), ready.message.as_str()), ("False", "1/2 replicas ready"));
        assert_eq!(find(&s, "Progressing").reason, reason::ROLLING_OUT);
    }

    #[test]
    fn problems_make_degraded_true_with_the_first_reason_and_every_message() {
        let d = deployment(2, 2, 2);
        let problems = [
            Problem::new(reason::SECRET_NOT_FOUND, "Secret db does not exist"),
            Problem::new(reason::AUTOSCALING_UNAVAILABLE, "no autoscaling/v2"),
        ];
        let s = compute(
            &md(),
            &Observed { deployment: Some(&d), problems: &problems, ..Default::default() },
            &at(100),
        );
        let degraded = find(&s, "Degraded");
        assert_eq!(degraded.reason, reason::SECRET_NOT_FOUND);
        assert_eq!(degraded.message, "Secret db does not exist; no autoscaling/v2");
    }

    #[test]
    fn an_invalid_spec_is_not_ready_for_that_reason() {
        let problems = [Problem::new(reason::INVALID_SPEC, "set either replicas or autoscaling, not both")];
        let s = compute(&md(), &Observed { problems: &problems, ..Default::default() }, &at(100));
        assert_eq!(find(&s, "Ready").reason, reason::INVALID_SPEC);
    }

    #[test]
    fn an_invalid_spec_does_not_claim_a_rollout() {
        let problems = [Problem::new(reason::INVALID_SPEC, "bad")];
        let s = compute(&md(), &Observed { problems: &problems, ..Default::default() }, &at(100));
        let p = find(&s, "Progressing");
        assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", reason::INVALID_SPEC));
    }

    #[test]
    fn a_name_conflict_or_a_refused_child_is_why_it_is_not_ready() {
        for reason in [reason::NAME_CONFLICT, reason::APPLY_FAILED] {
            let problems = [
                Problem::new(reason, "Service \"digits\" already exists"),
                Problem::new(reason::AUTOSCALING_UNAVAILABLE, "no HPA"),
            ];
            let d = deployment(2, 2, 2);
            let observed = Observed { deployment: Some(&d), problems: &problems, ..Default::default() };
            let s = compute(&md(), &observed, &at(100));
            let ready = find(&s, "Ready");
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason));
            assert_eq!(ready.message, "Service \"digits\" already exists");
            assert_eq!(find(&s, "Degraded").status, "True");
        }
    }

    #[test]
    fn a_problem_is_new_unless_its_whole_message_is_an_item_of_the_reported_degraded_message() {
        let reported = [
            Problem::new(reason::SECRET_NOT_FOUND, "Secret db-tls does not exist"),
            Problem::new(reason::AUTOSCALING_UNAVAILABLE, "no autoscaling/v2"),
        ];
        let d = deployment(2, 2, 2);
        let mut m = md();
        m.status = Some(compute(
            &m,
            &Observed { deployment: Some(&d), problems: &reported, ..Default::default() },
            &at(100),
        ));
        let now = [
            Problem::new(reason::AUTOSCALING_UNAVAILABLE, "no autoscaling/v2"),
            // Not reported: a message beside a reported one, and parts of reported ones.
            Problem::new(reason::SECRET_NOT_FOUND, "Secret db does not exist"),
            Problem::new(reason::SECRET_NOT_FOUND, "tls does not exist"),
            Problem::new(reason::AUTOSCALING_UNAVAILABLE, "no autoscaling"),
        ];
        let new: Vec<&str> = new_problems(&m, &now).iter().map(|p| p.message.as_str()).collect();
        assert_eq!(new, ["Secret db does not exist", "tls does not exist", "no autoscaling"]);
        assert_eq!(new_problems(&md(), &now[..1]).len(), 1, "nothing is reported without a status");
    }

    #[test]
    fn transition_times_stay_while_a_condition_keeps_its_status() {
        let d = deployment(2, 2, 2);
        let mut m = md();
        let first = compute(&m, &Observed { deployment: Some(&d), ..Default::default() }, &at(100));
        m.status = Some(first.clone());
        let second = compute(&m, &Observed { deployment: Some(&d), ..Default::default() }, &at(500));
        assert_eq!(second, first);
        assert!(!changed(&m, &second));
        let d = deployment(2, 1, 2);
        let third = compute(&m, &Observed { deployment: Some(&d), ..Default::default() }, &at(900));
        assert_eq!(find(&third, "Ready").last_transition_time, at(900));
        assert_eq!(find(&third, "Degraded").last_transition_time, at(100));
    }
}
