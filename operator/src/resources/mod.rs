//! Pure builders of every object a ModelDeployment owns, one file per kind. Nothing here talks to the
//! API server: each function maps (ModelDeployment, operator settings) to the desired object.

pub mod configmap;
pub mod deployment;
pub mod edge;
pub mod hpa;
pub mod keda;
pub mod limits;
pub mod migrate;
pub mod networkpolicy;
pub mod pdb;
pub mod pod;
pub mod service;
pub mod servicemonitor;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use crate::crd::ModelDeployment;
use crate::validate::ModelUri;

/// Field manager for server-side apply.
pub const MANAGER: &str = "kubeinfer-operator";
/// Port of the server's HTTP API (inference, health, the prediction log).
pub const SERVER_PORT: i32 = 8080;
/// Port of the server's gRPC API (the Open Inference Protocol's service, `--grpc-port`).
pub const GRPC_PORT: i32 = 8001;
/// Port of the nginx edge, when enabled.
pub const EDGE_PORT: i32 = 8081;
/// Port of the nginx edge's gRPC listener (HTTP/2 cleartext, `grpc_pass` to GRPC_PORT), when enabled.
pub const EDGE_GRPC_PORT: i32 = 8082;
/// Port of the server's /metrics (`--metrics-port`), apart from the API so that scrapers can be let in
/// without opening the API.
pub const METRICS_PORT: i32 = 9090;
/// Hash of the server and edge configuration, on the pod template: a config change rolls the pods.
pub const CONFIG_CHECKSUM: &str = "kubeinfer.io/config-checksum";

/// Everything the builders need besides the ModelDeployment itself.
#[derive(Debug, Clone)]
pub struct Build<'a> {
    pub md: &'a ModelDeployment,
    pub uri: &'a ModelUri,
    /// Server image when the spec names none.
    pub server_image: &'a str,
    /// nginx image when the spec's edge names none.
    pub edge_image: &'a str,
    /// Whether an autoscaler (an HPA, or KEDA's) will manage the replica count: autoscaling asked for
    /// and its provider served.
    pub autoscaler: bool,
    /// Prometheus that KEDA's triggers query (the operator's --prometheus-url).
    pub prometheus_url: Option<&'a str>,
}

impl Build<'_> {
    pub fn name(&self) -> String {
        self.md.name_any()
    }

    pub fn namespace(&self) -> String {
        self.md.namespace().unwrap_or_default()
    }

    /// Labels every owned object carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        labels
    }

    /// The labels that select this model's server pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "kubeinfer-server".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.name()),
        ])
    }

    pub fn selector(&self) -> LabelSelector {
        LabelSelector { match_labels: Some(self.selector_labels()), ..Default::default() }
    }

    /// `selector_labels` as a label-selector string, for the scale subresource.
    pub fn selector_string(&self) -> String {
        self.selector_labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// Metadata of an owned object called `name`: namespace, labels and the controller owner reference.
    pub fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace()),
            labels: Some(self.labels()),
            owner_references: self.md.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        }
    }

    pub fn edge_enabled(&self) -> bool {
        self.md.spec.edge.as_ref().is_some_and(|e| e.enabled)
    }

    /// In-cluster URL of the model's infer route.
    pub fn endpoint(&self) -> String {
        let port = if self.edge_enabled() { EDGE_PORT } else { SERVER_PORT };
        format!(
            "http://{}.{}.svc:{port}/v2/models/{}/versions/{}/infer",
            self.name(),
            self.namespace(),
            self.md.served_name(),
            self.md.spec.model.version
        )
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A ModelDeployment as the API server would hand it over (namespace, uid, generation set).
    pub fn md(spec: serde_json::Value) -> ModelDeployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "digits", "namespace": "ml", "uid": "0b6d4c1e-1111-2222-3333-444455556666", "generation": 3},
            "spec": spec,
        }))
        .expect("a valid ModelDeployment")
    }

    pub fn build<'a>(md: &'a ModelDeployment, uri: &'a ModelUri) -> Build<'a> {
        Build {
            md,
            uri,
            server_image: "ghcr.io/kubeinfer/kubeinfer-server:0.1.0",
            edge_image: "nginxinc/nginx-unprivileged:1.27-alpine",
            autoscaler: md.spec.autoscaling.is_some(),
            prometheus_url: None,
        }
    }
}
