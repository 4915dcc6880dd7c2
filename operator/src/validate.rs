//! Checks the reconciler makes before building anything: the rules the schema's CEL expresses (unknown
//! to API servers before 1.23, enforced by default only from 1.25) and the parts of the model URI a
//! pattern cannot judge.

use crate::crd::ModelDeploymentSpec;

/// Where the server finds the model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// https://, s3:// or gs:// naming one file: fetched by the `pull` init container.
    Remote(String),
    /// An s3:// or gs:// prefix (ending in '/') or an archive (.tar, .tar.gz, .tgz, .zip): pulled into a
    /// model directory of Triton's layout, which the server serves as a repository. The same rule as
    /// the server's `pull/kind.rs`.
    RemoteDirectory(String),
    /// A path inside a PersistentVolumeClaim, mounted read-only.
    Pvc { claim: String, path: String },
    /// A path inside the server image.
    File(String),
}

pub fn parse_uri(uri: &str) -> Result<ModelUri, String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| format!("model.uri {uri:?} has no scheme"))?;
    if rest.split('/').any(|segment| segment == "..") {
        return Err(format!("model.uri {uri:?} must not contain '..'"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // Not echoed: the URI holds a credential, and this message goes to the status and an Event.
        return Err("model.uri must not carry a user name or password (user:password@host): put the \
                    credentials in a Secret named by spec.model.credentialsSecret"
            .into());
    }
    match scheme {
        "https" | "s3" | "gs" => match rest.split_once('/') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => remote(scheme, uri, path),
            _ => Err(format!("model.uri {uri:?} needs a host or bucket and a path")),
        },
        "pvc" => match rest.split_once('/') {
            Some((claim, path)) if !claim.is_empty() && !path.trim_matches('/').is_empty() => {
                Ok(ModelUri::Pvc { claim: claim.to_string(), path: path.trim_matches('/').to_string() })
            }
            _ => Err(format!("model.uri {uri:?} must be pvc://<claim>/<path to the .onnx file>")),
        },
        "file" if rest.starts_with('/') && rest.len() > 1 => Ok(ModelUri::File(rest.to_string())),
        "file" => Err(format!("model.uri {uri:?} must be file:///absolute/path")),
        other => Err(format!("model.uri scheme {other:?} is not one of https, s3, gs, pvc, file")),
    }
}

fn remote(scheme: &str, uri: &str, path: &str) -> Result<ModelUri, String> {
    let path = path.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    if path.ends_with('/') && scheme == "https" {
        return Err(format!(
            "model.uri {uri:?} names a directory, which an https server cannot list: publish the model directory \
             as an archive (.tar.gz, .tgz or .zip), or use s3:// or gs://"
        ));
    }
    let archive = [".tar", ".tar.gz", ".tgz", ".zip"].iter().any(|suffix| path.ends_with(suffix));
    Ok(if path.ends_with('/') || archive {
        ModelUri::RemoteDirectory(uri.to_string())
    } else {
        ModelUri::Remote(uri.to_string())
    })
}

/// The default of `spec.model.maxSize`.
pub const DEFAULT_MAX_MODEL_SIZE: &str = "20Gi";

/// Bytes of a Kubernetes quantity of storage: a whole number with an optional binary (Ki, Mi, Gi, Ti) or
/// decimal (k, M, G, T) suffix.
pub fn quantity_bytes(q: &str) -> Result<u64, String> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("model.maxSize {q:?} is not a size such as 20Gi or 500M")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("model.maxSize {q:?} is not a size such as 20Gi or 500M"))
}

/// Everything wrong with `spec` that would make the built objects meaningless; the first problem found.
pub fn validate(spec: &ModelDeploymentSpec) -> Result<ModelUri, String> {
    let uri = parse_uri(&spec.model.uri)?;
    let downloaded = matches!(uri, ModelUri::Remote(_) | ModelUri::RemoteDirectory(_));
    if downloaded && spec.model.sha256.is_none() && !spec.model.insecure_skip_checksum {
        return Err(
            "model.sha256 is required for a downloaded model (https, s3, gs): the SHA-256 of the file or \
                    archive (`sha256sum`); set model.insecureSkipChecksum: true to serve it unchecked"
                .into(),
        );
    }
    if let Some(size) = &spec.model.max_size {
        quantity_bytes(&size.0)?;
    }
    if spec.replicas.is_some() && spec.autoscaling.is_some() {
        return Err("set either replicas or autoscaling, not both".into());
    }
    if let Some(a) = &spec.autoscaling
        && a.min_replicas > a.max_replicas
    {
        return Err(format!(
            "autoscaling.minReplicas ({}) must not exceed autoscaling.maxReplicas ({})",
            a.min_replicas, a.max_replicas
        ));
    }
    let latency_target = spec.batching.as_ref().and_then(|b| b.latency_target.as_ref());
    if spec.autoscaling.as_ref().is_some_and(|a| a.target_latency_utilization_percentage.is_some())
        && latency_target.is_none()
    {
        return Err("autoscaling.targetLatencyUtilizationPercentage needs batching.latencyTarget".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Autoscaling, ModelSource};

    fn spec(uri: &str) -> ModelDeploymentSpec {
        serde_json::from_value(serde_json::json!({"model": {"uri": uri}})).unwrap()
    }

    fn autoscaling(json: serde_json::Value) -> Autoscaling {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn model_sizes_are_quantities_in_bytes() {
        assert_eq!(quantity_bytes("20Gi"), Ok(20 << 30));
        assert_eq!(quantity_bytes("500M"), Ok(500_000_000));
        assert_eq!(quantity_bytes("1024"), Ok(1024));
        for bad in ["", "0", "1.5Gi", "20GB", "-1Gi", "99999999999Ti"] {
            assert_eq!(
                quantity_bytes(bad),
                Err(format!("model.maxSize {bad:?} is not a size such as 20Gi or 500M")),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_credential_in_the_uri_is_refused_without_repeating_it() {
        let error = parse_uri("https://me:s3cret@host/m.onnx").unwrap_err();
        assert!(error.starts_with("model.uri must not carry a user name or password"), "{error}");
        assert!(!error.contains("s3cret"));
        assert!(
            parse_uri("https://host/m.onnx?X-Amz-Signature=abc@def").is_ok(),
            "an @ in the query is no user"
        );
    }

    #[test]
    fn remote_uris_need_a_host_and_a_path() {
        assert_eq!(parse_uri("s3://bucket/m.onnx"), Ok(ModelUri::Remote("s3://bucket/m.onnx".into())));
        assert_eq!(
            parse_uri("s3://bucket/resnet/"),
            Ok(ModelUri::RemoteDirectory("s3://bucket/resnet/".into()))
        );
        assert_eq!(
            parse_uri("https://host/resnet.tar.gz?sig=x"),
            Ok(ModelUri::RemoteDirectory("https://host/resnet.tar.gz?sig=x".into()))
        );
        assert_eq!(parse_uri("gs://b/r.ZIP"), Ok(ModelUri::RemoteDirectory("gs://b/r.ZIP".into())));
        assert!(parse_uri("https://host/resnet/").unwrap_err().contains("an https server cannot list"));
        assert_eq!(
            parse_uri("https://host/"),
            Err("model.uri \"https://host/\" needs a host or bucket and a path".into())
        );
    }

    #[test]
    fn pvc_uris_split_into_claim_and_path() {
        assert_eq!(
            parse_uri("pvc://models/digits/model.onnx"),
            Ok(ModelUri::Pvc { claim: "models".into(), path: "digits/model.onnx".into() })
        );
        assert!(parse_uri("pvc://models/").is_err());
        assert_eq!(
            parse_uri("pvc://models/../etc/passwd"),
            Err("model.uri \"pvc://models/../etc/passwd\" must not contain '..'".into())
        );
    }

    #[test]
    fn file_uris_are_absolute_paths_in_the_image() {
        assert_eq!(parse_uri("file:///opt/models/m.onnx"), Ok(ModelUri::File("/opt/models/m.onnx".into())));
        assert_eq!(
            parse_uri("ftp://x/y"),
            Err("model.uri scheme \"ftp\" is not one of https, s3, gs, pvc, file".into())
        );
    }

    #[test]
    fn replicas_and_autoscaling_together_are_refused() {
        let mut s = spec("file:///models/m.onnx");
        s.replicas = Some(2);
        s.autoscaling = Some(autoscaling(serde_json::json!({"minReplicas": 1, "maxReplicas": 3})));
        assert_eq!(validate(&s), Err("set either replicas or autoscaling, not both".into()));
    }

    #[test]
    fn autoscaling_min_above_max_is_refused() {
        let mut s = spec("file:///models/m.onnx");
        s.autoscaling = Some(autoscaling(
            serde_json::json!({"minReplicas": 5, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}),
        ));
        assert_eq!(
            validate(&s),
            Err("autoscaling.minReplicas (5) must not exceed autoscaling.maxReplicas (3)".into())
        );
        let _ = ModelSource {
            name: None,
            uri: String::new(),
            sha256: None,
            insecure_skip_checksum: false,
            credentials_secret: None,
            max_size: None,
            version: 1,
        };
    }

    #[test]
    fn scaling_on_the_latency_target_needs_a_latency_target() {
        let mut s = spec("file:///models/m.onnx");
        s.autoscaling = Some(autoscaling(
            serde_json::json!({"maxReplicas": 3, "targetLatencyUtilizationPercentage": 70}),
        ));
        assert_eq!(
            validate(&s),
            Err("autoscaling.targetLatencyUtilizationPercentage needs batching.latencyTarget".into())
        );
        s.batching = Some(serde_json::from_value(serde_json::json!({"latencyTarget": "20ms"})).unwrap());
        assert!(validate(&s).is_ok());
    }

    #[test]
    fn a_downloaded_model_needs_a_checksum_unless_the_spec_waives_it() {
        let bare = spec("https://models.example.com/m.onnx");
        assert_eq!(
            validate(&bare),
            Err("model.sha256 is required for a downloaded model (https, s3, gs): the SHA-256 of the file or \
                 archive (`sha256sum`); set model.insecureSkipChecksum: true to serve it unchecked"
                .into())
        );
        let mut waived = spec("s3://b/resnet/");
        waived.model.insecure_skip_checksum = true;
        assert_eq!(validate(&waived), Ok(ModelUri::RemoteDirectory("s3://b/resnet/".into())));
        let mut checked = spec("gs://b/m.onnx");
        checked.model.sha256 = Some("ab".repeat(32));
        assert!(validate(&checked).is_ok());
        for local in ["file:///models/m.onnx", "pvc://store/m.onnx"] {
            assert!(validate(&spec(local)).is_ok(), "{local}: nothing is downloaded");
        }
    }
}
