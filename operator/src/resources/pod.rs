//! The server pod's parts: the model-pull init container, the server container, volumes, probes and the
//! restricted security settings every container runs with.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, Probe, SeccompProfile, SecretEnvSource, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, GRPC_PORT, METRICS_PORT, SERVER_PORT, configmap, edge, limits};
use crate::validate::{DEFAULT_MAX_MODEL_SIZE, ModelUri, quantity_bytes};

/// Seconds the server keeps answering after SIGTERM before it stops accepting (its --shutdown-delay).
pub const SHUTDOWN_DELAY_SECONDS: i64 = 5;
/// Room for the server's shutdown delay (5 s), drain timeout (30 s by default), instance stop (5 s) and
/// prediction log shutdown grace (10 s by default), with margin: past it the kubelet sends SIGKILL.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;
const MODELS_DIR: &str = "/models";
/// Container names, which pod_failures.rs reads statuses by.
pub const PULL_CONTAINER: &str = "pull";
pub const SERVER_CONTAINER: &str = "server";
const PVC_DIR: &str = "/mnt/model";
/// Where the API keys Secret is mounted: a directory, not a subPath, so that the kubelet's updates of a
/// rotated Secret reach the server.
const AUTH_DIR: &str = "/etc/kubeinfer/auth";
const API_KEYS_FILE: &str = "api-keys";
/// Where the database's CA bundle is mounted; libpq's variables point the server at it.
const DB_CA_DIR: &str = "/etc/kubeinfer/db-ca";
const DB_CA_FILE: &str = "ca.crt";
const UID: i64 = 65532;

/// Where the server reads the model file inside the pod.
pub fn model_path(b: &Build) -> String {
    match b.uri {
        ModelUri::Remote(_) => {
            format!("{MODELS_DIR}/{}/{}/model.onnx", b.md.served_name(), b.md.spec.model.version)
        }
        // The model directory; the server reads its parent as a repository.
        ModelUri::RemoteDirectory(_) => format!("{MODELS_DIR}/{}", b.md.served_name()),
        ModelUri::Pvc { path, .. } => format!("{PVC_DIR}/{path}"),
        ModelUri::File(path) => path.clone(),
    }
}

pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        fs_group: Some(UID),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn image(b: &Build) -> String {
    b.md.spec.image.clone().unwrap_or_else(|| b.server_image.to_string())
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// `kubeinfer-server pull` into the shared emptyDir, for models fetched over the network.
pub fn pull_container(b: &Build) -> Option<Container> {
    let (ModelUri::Remote(uri) | ModelUri::RemoteDirectory(uri)) = b.uri else { return None };
    let mut args = vec!["pull".into(), "--uri".into(), uri.clone(), "--dest".into(), model_path(b)];
    if matches!(b.uri, ModelUri::RemoteDirectory(_)) {
        args.extend(["--model-version".into(), b.md.spec.model.version.to_string()]);
    }
    if let Some(sha) = &b.md.spec.model.sha256 {
        args.extend(["--sha256".into(), sha.clone()]);
    }
    // validate() has checked the quantity; the default is a constant that parses.
    if let Ok(bytes) = quantity_bytes(&max_model_size(b).0) {
        args.extend(["--max-bytes".into(), bytes.to_string()]);
    }
    Some(Container {
        name: PULL_CONTAINER.into(),
        // The pull writes its reason to the termination log; a crash that wrote none leaves its last
        // log lines there instead. pod_failures.rs reads either into the ModelDeployment's status.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        image: Some(image(b)),
        image_pull_policy: b.md.spec.image_pull_policy.clone(),
        args: Some(args),
        env: Some(b.md.spec.env.clone()).filter(|e| !e.is_empty()),
        // The download credentials reach this container only, as its environment: never an argument.
        env_from: b.md.spec.model.credentials_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: secret.name.clone(), optional: None }),
                ..Default::default()
            }]
        }),
        volume_mounts: Some(vec![mount("models", MODELS_DIR, false), mount("tmp", "/tmp", false)]),
        security_context: Some(restricted_container()),
        ..Default::default()
    })
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// `DATABASE_URL` from `key` of Secret `secret`, and libpq's TLS variables when the database has a CA.
pub fn database_env(b: &Build, secret: &str, key: &str) -> Vec<EnvVar> {
    let mut env = vec![EnvVar {
        name: "DATABASE_URL".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: None }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if b.md.spec.database.as_ref().is_some_and(|db| db.ca_secret.is_some()) {
        for (name, value) in
            [("PGSSLMODE", "verify-full".to_string()), ("PGSSLROOTCERT", format!("{DB_CA_DIR}/{DB_CA_FILE}"))]
        {
            env.push(EnvVar { name: name.into(), value: Some(value), ..Default::default() });
        }
    }
    env
}

/// The CA bundle's volume mount, when the database has one.
pub fn database_ca_mount(b: &Build) -> Option<VolumeMount> {
    b.md.spec.database.as_ref().and_then(|db| db.ca_secret.as_ref()).map(|_| mount("db-ca", DB_CA_DIR, true))
}

/// The CA bundle's volume, when the database has one.
pub fn database_ca_volume(b: &Build) -> Option<Volume> {
    let ca = b.md.spec.database.as_ref().and_then(|db| db.ca_secret.as_ref())?;
    Some(secret_volume("db-ca", &ca.name, &ca.key, DB_CA_FILE))
}

fn env(b: &Build) -> Vec<EnvVar> {
    let mut env = b.md.spec.env.clone();
    if let Some(db) = &b.md.spec.database {
        env.extend(database_env(b, &db.secret_name, &db.key));
        if db.migrations.is_some() {
            // The migrate Job changes the schema; the pods' role may not.
            env.push(EnvVar {
                name: "KUBEINFER_MIGRATE".into(),
                value: Some("off".into()),
                ..Default::default()
            });
        }
    }
    if b.md.spec.auth.is_some() {
        env.push(EnvVar {
            name: "KUBEINFER_API_KEYS_FILE".into(),
            value: Some(format!("{AUTH_DIR}/{API_KEYS_FILE}")),
            ..Default::default()
        });
    }
    env
}

pub fn server_container(b: &Build) -> Container {
    let model = match b.uri {
        ModelUri::RemoteDirectory(_) => ["--model-repository".into(), MODELS_DIR.into()],
        _ => [
            "--model".into(),
            format!("{}:{}={}", b.md.served_name(), b.md.spec.model.version, model_path(b)),
        ],
    };
    let mut args: Vec<String> = vec!["serve".into(), "--log-format".into(), "json".into()];
    args.extend(model);
    args.extend([
        "--http-port".into(),
        SERVER_PORT.to_string(),
        "--shutdown-delay".into(),
        format!("{SHUTDOWN_DELAY_SECONDS}s"),
        "--metrics-port".into(),
        METRICS_PORT.to_string(),
        "--grpc-port".into(),
        GRPC_PORT.to_string(),
    ]);
    if b.md.spec.gpu.is_some() {
        args.extend(["--device".into(), "cuda".into()]);
    }
    let mut mounts = vec![mount("tmp", "/tmp", false)];
    match b.uri {
        ModelUri::Remote(_) | ModelUri::RemoteDirectory(_) => mounts.push(mount("models", MODELS_DIR, true)),
        ModelUri::Pvc { .. } => mounts.push(mount("model-source", PVC_DIR, true)),
        ModelUri::File(_) => {}
    }
    if b.md.spec.auth.is_some() {
        mounts.push(mount("api-keys", AUTH_DIR, true));
    }
    mounts.extend(database_ca_mount(b));
    Container {
        name: SERVER_CONTAINER.into(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        image: Some(image(b)),
        image_pull_policy: b.md.spec.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env(b)).filter(|e| !e.is_empty()),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: configmap::server_name(b), optional: None }),
            ..Default::default()
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: SERVER_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        // Large models take minutes to fetch and load: up to 30 minutes before liveness applies.
        startup_probe: Some(http_probe("/v2/health/ready", 5, 360)),
        readiness_probe: Some(http_probe("/v2/health/ready", 5, 2)),
        liveness_probe: Some(http_probe("/v2/health/live", 10, 3)),
        resources: limits::server(b),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// `spec.model.maxSize`, else the default.
fn max_model_size(b: &Build) -> Quantity {
    b.md.spec.model.max_size.clone().unwrap_or_else(|| Quantity(DEFAULT_MAX_MODEL_SIZE.into()))
}

/// A volume with one key of a Secret, as `file`.
fn secret_volume(name: &str, secret: &str, key: &str, file: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(vec![KeyToPath { key: key.into(), path: file.into(), ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn volumes(b: &Build) -> Vec<Volume> {
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let mut volumes = vec![empty("tmp")];
    match b.uri {
        // The kubelet evicts a pod whose download outgrows this, should the pull's own cap not stop it.
        ModelUri::Remote(_) | ModelUri::RemoteDirectory(_) => volumes.push(Volume {
            name: "models".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(max_model_size(b)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ModelUri::Pvc { claim, .. } => volumes.push(Volume {
            name: "model-source".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Default::default()
        }),
        ModelUri::File(_) => {}
    }
    if let Some(auth) = &b.md.spec.auth {
        let secret = &auth.api_keys_secret;
        volumes.push(secret_volume("api-keys", &secret.name, &secret.key, API_KEYS_FILE));
    }
    volumes.extend(database_ca_volume(b));
    if b.edge_enabled() {
        volumes.push(Volume {
            name: edge::CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource { name: configmap::edge_name(b), ..Default::default() }),
            ..Default::default()
        });
    }
    volumes
}

/// The spec's tolerations, plus the taint GPU nodes carry for the GPU resource.
pub fn tolerations(b: &Build) -> Option<Vec<Toleration>> {
    let mut tolerations = b.md.spec.tolerations.clone();
    if let Some(gpu) = &b.md.spec.gpu
        && !tolerations.iter().any(|t| t.key.as_deref() == Some(gpu.resource_name.as_str()))
    {
        tolerations.push(Toleration {
            key: Some(gpu.resource_name.clone()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
    }
    Some(tolerations).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::parse_uri;

    #[test]
    fn a_model_directory_is_pulled_whole_and_served_as_a_repository() {
        let md = md(json!({"model": {"uri": "s3://b/prod/resnet/", "name": "resnet", "version": 3}}));
        let uri = parse_uri(&md.spec.model.uri).unwrap();
        let b = build(&md, &uri);
        let pull = pull_container(&b).unwrap();
        assert_eq!(
            pull.args.unwrap()[..6],
            ["pull", "--uri", "s3://b/prod/resnet/", "--dest", "/models/resnet", "--model-version"]
        );
        let args = server_container(&b).args.unwrap();
        assert_eq!(args[..5], ["serve", "--log-format", "json", "--model-repository", "/models"]);
        assert!(!args.contains(&"--model".to_string()));
    }
}
