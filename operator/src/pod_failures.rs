//! Why a ModelDeployment's pods fail, read from their container statuses: the init container's model
//! pull and the server's start-up both write a one-line reason to their termination log, which the
//! kubelet copies into the status; a crash loop or an image that cannot be pulled shows in the waiting
//! state. Pure: the reconcile lists the pods and reports what this finds instead of a generic
//! "replicas not ready".

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod};

use crate::resources::pod::{PULL_CONTAINER, SERVER_CONTAINER};
use crate::status::{Problem, reason};

/// The first failing pod's problem, if any pod is failing.
pub fn failure(pods: &[Pod]) -> Option<Problem> {
    pods.iter().find_map(pod_failure)
}

fn pod_failure(pod: &Pod) -> Option<Problem> {
    let name = pod.metadata.name.as_deref().unwrap_or("a pod");
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    let all: Vec<&ContainerStatus> = init.chain(main).collect();
    if let Some(c) = all.iter().find(|c| waiting_reason(c).is_some_and(image_problem)) {
        let why = waiting_message(c).unwrap_or_default();
        return Some(Problem::new(
            reason::IMAGE_PULL_BACK_OFF,
            format!("pod {name}: image {:?} of container {} cannot be pulled: {why}", c.image, c.name),
        ));
    }
    if let Some(c) = all.iter().find(|c| waiting_reason(c) == Some("CreateContainerConfigError")) {
        return Some(config_problem(name, &c.name, waiting_message(c).unwrap_or_default()));
    }
    for c in all {
        let Some(failed) = failed_run(c) else { continue };
        let said = failed.message.as_deref().map(str::trim).filter(|m| !m.is_empty());
        let exit = match &failed.reason {
            Some(r) => format!("{r}, exit code {}", failed.exit_code),
            None => format!("exit code {}", failed.exit_code),
        };
        let problem = match (c.name.as_str(), said) {
            (PULL_CONTAINER, Some(m)) => {
                Problem::new(reason::PULL_FAILED, format!("pod {name}: pulling the model failed: {m}"))
            }
            (PULL_CONTAINER, None) => {
                Problem::new(reason::PULL_FAILED, format!("pod {name}: pulling the model failed ({exit})"))
            }
            (SERVER_CONTAINER, Some(m)) => Problem::new(
                reason::MODEL_LOAD_FAILED,
                format!("pod {name}: the server could not start: {m}"),
            ),
            (_, _) if waiting_reason(c) == Some("CrashLoopBackOff") => Problem::new(
                reason::CRASH_LOOP_BACK_OFF,
                format!("pod {name}: container {} keeps exiting ({exit}){}", c.name, hint(failed)),
            ),
            _ => continue,
        };
        return Some(problem);
    }
    None
}

/// A container the kubelet cannot configure, by the kubelet's words: `secret "db" not found`, or
/// `couldn't find key K in Secret ns/db`. This is how a missing Secret is reported, since the operator
/// never reads Secrets.
fn config_problem(pod: &str, container: &str, why: &str) -> Problem {
    let reason = if why.starts_with("secret \"") && why.ends_with("not found") {
        reason::SECRET_NOT_FOUND
    } else if why.starts_with("couldn't find key ") {
        reason::SECRET_KEY_NOT_FOUND
    } else {
        reason::CONTAINER_CONFIG_ERROR
    };
    Problem::new(reason, format!("pod {pod}: container {container} cannot start: {why}"))
}

fn image_problem(reason: &str) -> bool {
    matches!(reason, "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName")
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn waiting_message(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.message.as_deref()
}

/// The container's failed run: its current state if it has just failed, else its last one.
fn failed_run(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    failed(c.state.as_ref()).or_else(|| failed(c.last_state.as_ref()))
}

fn failed(state: Option<&ContainerState>) -> Option<&ContainerStateTerminated> {
    state?.terminated.as_ref().filter(|t| t.exit_code != 0)
}

fn hint(t: &ContainerStateTerminated) -> &'static str {
    if t.reason.as_deref() == Some("OOMKilled") {
        "; it ran out of memory: raise spec.resources.limits.memory"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "digits-7f9c-x2"}, "status": status})).unwrap()
    }

    fn container(name: &str, state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 3, "image": "kubeinfer/server:0.1.0", "imageID": "",
               "state": state, "lastState": last})
    }

    const BACK_OFF: &str = "back-off 40s restarting failed container";

    #[test]
    fn a_failed_pull_reports_the_pull_containers_own_message() {
        let p = pod(json!({"initContainerStatuses": [container("pull",
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": BACK_OFF}}),
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "pull s3://m/digits.onnx: SHA-256 mismatch\n"}}))]}));
        assert_eq!(
            failure(&[p]),
            Some(Problem::new(
                reason::PULL_FAILED,
                "pod digits-7f9c-x2: pulling the model failed: pull s3://m/digits.onnx: SHA-256 mismatch"
            ))
        );
    }

    #[test]
    fn a_secret_the_kubelet_cannot_find_is_reported_in_its_words_with_the_reason_it_fits() {
        let waiting = |message: &str| {
            pod(json!({"containerStatuses": [container("server",
                json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}}), json!({}))]}))
        };
        let problem = |message: &str| failure(&[waiting(message)]).unwrap();
        assert_eq!(
            problem("secret \"digits-db\" not found"),
            Problem::new(
                reason::SECRET_NOT_FOUND,
                "pod digits-7f9c-x2: container server cannot start: secret \"digits-db\" not found"
            )
        );
        assert_eq!(
            problem("couldn't find key DATABASE_URL in Secret ml/digits-db").reason,
            reason::SECRET_KEY_NOT_FOUND
        );
        assert_eq!(problem("configmap \"digits-server\" not found").reason, reason::CONTAINER_CONFIG_ERROR);
    }

    #[test]
    fn a_server_that_cannot_load_its_model_reports_why() {
        let p = pod(json!({
            "initContainerStatuses": [container("pull", json!({"terminated": {"exitCode": 0}}), json!({}))],
            "containerStatuses": [container("server",
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": BACK_OFF}}),
                json!({"terminated": {"exitCode": 1, "message": "cannot load model /models/digits/1/model.onnx: unsupported operator"}}))]}));
        assert_eq!(
            failure(&[p]),
            Some(Problem::new(
                reason::MODEL_LOAD_FAILED,
                "pod digits-7f9c-x2: the server could not start: cannot load model /models/digits/1/model.onnx: unsupported operator"
            ))
        );
    }

    #[test]
    fn a_crash_without_a_message_is_a_crash_loop_with_its_exit_and_an_oom_hint() {
        let p = pod(json!({"containerStatuses": [container("server",
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": BACK_OFF}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))]}));
        assert_eq!(
            failure(&[p]),
            Some(Problem::new(
                reason::CRASH_LOOP_BACK_OFF,
                "pod digits-7f9c-x2: container server keeps exiting (OOMKilled, exit code 137); it ran out of memory: raise spec.resources.limits.memory"
            ))
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named() {
        let p = pod(json!({"containerStatuses": [container("server",
            json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}), json!({}))]}));
        assert_eq!(
            failure(&[p]),
            Some(Problem::new(
                reason::IMAGE_PULL_BACK_OFF,
                "pod digits-7f9c-x2: image \"kubeinfer/server:0.1.0\" of container server cannot be pulled: Back-off pulling image"
            ))
        );
    }

    #[test]
    fn pending_and_running_pods_are_no_failure() {
        let pending = pod(json!({"phase": "Pending"}));
        let running =
            pod(json!({"containerStatuses": [container("server", json!({"running": {}}), json!({}))]}));
        assert_eq!(failure(&[pending, running]), None);
    }
}
