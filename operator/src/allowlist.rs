//! The operator's optional image allow-list (`--allowed-images`): a ModelDeployment is as powerful as a
//! pod running its image, so a cluster admin may limit which images its specs can name. The operator's
//! own defaults (`--server-image`, `--edge-image`) are the admin's choice and always allowed.

use crate::crd::ModelDeploymentSpec;

/// Whether `image` matches `entry`: an entry ending in `/` admits everything under it (a registry or
/// an organisation); any other entry is a repository, admitted with any tag or digest, but not a
/// repository that merely starts with the same letters.
pub fn matches(entry: &str, image: &str) -> bool {
    if entry.ends_with('/') {
        return image.starts_with(entry);
    }
    match image.strip_prefix(entry) {
        Some(rest) => rest.is_empty() || rest.starts_with(':') || rest.starts_with('@'),
        None => false,
    }
}

/// The first image `spec` names that `allowed` (empty: no list) does not admit, as an error message.
pub fn check(spec: &ModelDeploymentSpec, allowed: &[String]) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let named = [
        ("spec.image", spec.image.as_deref()),
        ("spec.edge.image", spec.edge.as_ref().and_then(|e| e.image.as_deref())),
    ];
    for (field, image) in named {
        if let Some(image) = image.filter(|i| !allowed.iter().any(|entry| matches(entry, i))) {
            return Err(format!(
                "{field} {image:?} is not in the operator's --allowed-images ({}); nothing was changed",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_prefix_admits_everything_under_it_and_a_repository_only_itself() {
        assert!(matches("ghcr.io/kubeinfer/", "ghcr.io/kubeinfer/kubeinfer-server:0.2.0"));
        assert!(!matches("ghcr.io/kubeinfer/", "ghcr.io/kubeinfer-evil/server:1"));
        assert!(matches("registry.local/server", "registry.local/server"));
        assert!(matches("registry.local/server", "registry.local/server:1.0"));
        assert!(matches(
            "registry.local/server",
            &format!("registry.local/server@sha256:{}", "a".repeat(64))
        ));
        assert!(!matches("registry.local/server", "registry.local/server-evil:1.0"));
        assert!(!matches("registry.local/server", "evil.io/registry.local/server"));
    }

    fn spec(json: serde_json::Value) -> ModelDeploymentSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_spec_images_are_checked_and_the_operators_defaults_need_no_entry() {
        let allowed = vec!["ghcr.io/kubeinfer/".to_string()];
        let defaults =
            spec(serde_json::json!({"model": {"uri": "file:///models/m.onnx"}, "edge": {"enabled": true}}));
        assert_eq!(check(&defaults, &allowed), Ok(()));
        let edge = spec(serde_json::json!({"model": {"uri": "file:///models/m.onnx"},
            "image": "ghcr.io/kubeinfer/kubeinfer-server:0.2.0",
            "edge": {"enabled": true, "image": "docker.io/library/nginx:1.27"}}));
        assert_eq!(
            check(&edge, &allowed),
            Err(
                "spec.edge.image \"docker.io/library/nginx:1.27\" is not in the operator's --allowed-images \
                 (ghcr.io/kubeinfer/); nothing was changed"
                    .into()
            )
        );
        assert_eq!(check(&edge, &[]), Ok(()), "no list, no limit");
    }
}
