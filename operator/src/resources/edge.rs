//! The nginx edge container. Its configuration is manifests/nginx/nginx.conf, the same file users who
//! run their own nginx take, compiled in so the two cannot drift.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, Probe, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{SHUTDOWN_DELAY_SECONDS, restricted_container};
use super::{Build, EDGE_GRPC_PORT, EDGE_PORT};

pub const CONFIG_FILE: &str = "nginx.conf";
pub const CONFIG_DIR: &str = "/etc/kubeinfer/edge";
pub const CONFIG_VOLUME: &str = "edge-config";
/// The container port of the edge's gRPC listener, which the Service's `grpc` port targets.
pub const GRPC_PORT_NAME: &str = "grpc-edge";

pub fn config() -> &'static str {
    include_str!("../../../manifests/nginx/nginx.conf")
}

pub fn container(b: &Build) -> Container {
    let edge = b.md.spec.edge.clone().unwrap_or_default();
    Container {
        name: "edge".into(),
        image: Some(edge.image.unwrap_or_else(|| b.edge_image.to_string())),
        // The config writes only under the prefix (an emptyDir) and sets `daemon off` itself.
        command: Some(vec![
            "nginx".into(),
            "-p".into(),
            "/tmp/".into(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("edge".into()),
                container_port: EDGE_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(GRPC_PORT_NAME.into()),
                container_port: EDGE_GRPC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/health/ready".into()),
                port: IntOrString::String("edge".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        resources: edge.resources,
        volume_mounts: Some(vec![
            VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
        ]),
        security_context: Some(restricted_container()),
        // Keep accepting for as long as the server does after SIGTERM (its --shutdown-delay), so that
        // endpoints are removed before the edge stops listening.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), SHUTDOWN_DELAY_SECONDS.to_string()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
