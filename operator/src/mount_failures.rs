//! Why a pod never starts its containers: a volume the kubelet cannot mount (the API keys Secret, the
//! database CA Secret, a ConfigMap), which shows not in the pod's status, where the containers wait
//! in ContainerCreating, but in the kubelet's FailedMount Events. Pure: the reconcile lists those
//! Events while a pod is Pending and reports what this finds.

use k8s_openapi::api::core::v1::{Event, Pod};

use crate::status::{Problem, reason};

/// The field selector of the Events this reads.
pub const EVENT_SELECTOR: &str = "involvedObject.kind=Pod,reason=FailedMount";

/// Whether any pod waits for its volumes, so that the FailedMount Events are worth a list.
pub fn any_pending(pods: &[Pod]) -> bool {
    pods.iter().any(is_pending)
}

fn is_pending(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
}

/// The problem of the newest FailedMount Event about a Pending pod of `pods`, in the kubelet's words:
/// `MountVolume.SetUp failed for volume "api-keys" : secret "keys" not found`.
pub fn failure(pods: &[Pod], events: &[Event]) -> Option<Problem> {
    let pending: Vec<&str> =
        pods.iter().filter(|p| is_pending(p)).filter_map(|p| p.metadata.name.as_deref()).collect();
    let newest = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedMount"))
        .filter(|e| e.involved_object.name.as_deref().is_some_and(|n| pending.contains(&n)))
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))?;
    let pod = newest.involved_object.name.as_deref().unwrap_or("a pod");
    let said = newest.message.as_deref().unwrap_or_default().trim();
    // "MountVolume.SetUp failed for volume \"v\" : why": the part after " : " says why.
    let why = said.split_once(" : ").map_or(said, |(_, why)| why);
    let reason =
        if (why.starts_with("secret \"") || why.starts_with("secrets \"")) && why.ends_with("not found") {
            reason::SECRET_NOT_FOUND
        } else if why.contains("non-existent secret key") {
            reason::SECRET_KEY_NOT_FOUND
        } else {
            reason::VOLUME_MOUNT_FAILED
        };
    Some(Problem::new(reason, format!("pod {pod} cannot start: {said}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"phase": phase}})).unwrap()
    }

    fn event(pod: &str, at: &str, message: &str) -> Event {
        serde_json::from_value(json!({"metadata": {"name": format!("{pod}.{at}")}, "reason": "FailedMount",
            "involvedObject": {"kind": "Pod", "name": pod}, "lastTimestamp": at, "message": message}))
        .unwrap()
    }

    const MISSING: &str =
        "MountVolume.SetUp failed for volume \"api-keys\" : secret \"digits-keys\" not found";

    #[test]
    fn a_missing_secret_volume_is_reported_in_the_kubelets_words() {
        let pods = [pod("digits-7f9c-x2", "Pending")];
        assert_eq!(
            failure(&pods, &[event("digits-7f9c-x2", "2026-11-30T10:00:00Z", MISSING)]),
            Some(Problem::new(
                reason::SECRET_NOT_FOUND,
                format!("pod digits-7f9c-x2 cannot start: {MISSING}")
            ))
        );
    }

    #[test]
    fn the_newest_event_wins_and_a_missing_key_has_its_own_reason() {
        let pods = [pod("digits-7f9c-x2", "Pending")];
        let key =
            "MountVolume.SetUp failed for volume \"api-keys\" : references non-existent secret key: api-keys";
        let events = [
            event("digits-7f9c-x2", "2026-11-30T10:05:00Z", key),
            event("digits-7f9c-x2", "2026-11-30T10:00:00Z", MISSING),
        ];
        assert_eq!(failure(&pods, &events).map(|p| p.reason), Some(reason::SECRET_KEY_NOT_FOUND));
        let other =
            "MountVolume.SetUp failed for volume \"edge-config\" : configmap \"digits-edge\" not found";
        assert_eq!(
            failure(&pods, &[event("digits-7f9c-x2", "2026-11-30T10:00:00Z", other)]).map(|p| p.reason),
            Some(reason::VOLUME_MOUNT_FAILED)
        );
    }

    #[test]
    fn events_about_pods_that_started_or_belong_to_others_are_ignored() {
        let pods = [pod("digits-7f9c-x2", "Running")];
        assert!(!any_pending(&pods));
        assert_eq!(failure(&pods, &[event("digits-7f9c-x2", "2026-11-30T10:00:00Z", MISSING)]), None);
        let pending = [pod("digits-7f9c-x2", "Pending")];
        assert_eq!(failure(&pending, &[event("other-1", "2026-11-30T10:00:00Z", MISSING)]), None);
    }
}
