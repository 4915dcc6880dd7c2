//! The `ModelDeployment` custom resource. Every field's doc comment is its `kubectl explain` text.
//! Schema keywords (patterns, ranges, defaults) are checked by every API server; the cross-field CEL rules
//! are unknown before Kubernetes 1.23 and enforced by default only from 1.25, so `validate.rs` checks the
//! same rules in the reconciler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd_access::{
    ApiKeysSecret, Auth, CaSecret, CredentialsSecret, Database, MigrationsSecret, NetworkPolicySpec,
};
pub use crate::crd_scaling::{Autoscaling, AutoscalingProvider};

/// A model served by kubeinfer-server pods: where the ONNX file comes from, how many replicas, which
/// hardware, and how requests are batched.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubeinfer.io",
    version = "v1alpha1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    namespaced,
    status = "ModelDeploymentStatus",
    derive = "PartialEq",
    doc = "A model served on Kubernetes by kubeinfer-server pods, with dynamic batching and the Open Inference Protocol.",
    shortname = "md",
    shortname = "mdeploy",
    category = "kubeinfer",
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".status.model"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || !has(self.autoscaling.targetLatencyUtilizationPercentage) || (has(self.batching) && has(self.batching.latencyTarget))").message("autoscaling.targetLatencyUtilizationPercentage needs batching.latencyTarget"))]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// The ONNX model to serve.
    pub model: ModelSource,

    /// kubeinfer-server image. Defaults to the operator's --server-image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Image pull policy of the server image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub image_pull_policy: Option<String>,

    /// Number of server pods (default 1). `kubectl scale` sets it. Leave unset when autoscaling is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale the server pods with a HorizontalPodAutoscaler (needs autoscaling/v2 in the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// CPU and memory requests and limits of the server container. Without a memory limit it gets one:
    /// twice model.maxSize plus 1Gi, or 2Gi without maxSize (never below the memory request), and a
    /// 256Mi request if it asks for none. An OOM-killed server says so in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// GPUs for each server pod. When set, the pod asks for the GPU resource, tolerates its taint, and the
    /// server runs ONNX Runtime's CUDA execution provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,

    /// Node labels the server pods must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the server pods tolerate (a GPU toleration is added when `gpu` is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity and anti-affinity of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Dynamic batching of concurrent requests; unset fields keep the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,

    /// Log every prediction to Postgres. The Secret must hold the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,

    /// API keys the server pods require of their callers (`kubeinfer-server --api-keys-file`). Without
    /// it, anything that reaches the pods can run inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// The NetworkPolicy in front of the server pods, made unless `enabled: false`: the HTTP and gRPC
    /// ports (the edge's when the edge is on) open to `from`, the metrics port to `metricsFrom`, nothing
    /// else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Prometheus scraping of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,

    /// An nginx container in front of the server, for HTTP and gRPC: long-lived caching of static assets,
    /// gzip, keep-alive upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,

    /// Extra environment variables of the server and pull containers (e.g. AWS_REGION for s3:// models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Annotations added to the server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Service account of the server pods (e.g. one bound to cloud storage through IRSA or workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: Option<String>,

    /// Secrets for pulling the server image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// Where the model file comes from and the name it is served under.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(self.uri.startsWith('https://') || self.uri.startsWith('s3://') || self.uri.startsWith('gs://')) || has(self.sha256) || (has(self.insecureSkipChecksum) && self.insecureSkipChecksum)").message("a downloaded model (https, s3, gs) needs model.sha256, or model.insecureSkipChecksum: true"))]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    /// Name in the inference URLs (/v2/models/{name}); defaults to the ModelDeployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,128}$"))]
    pub name: Option<String>,

    /// The ONNX file: https://host/path, s3://bucket/key, gs://bucket/object (fetched by an init container
    /// with credentials from the pod's environment), pvc://claim/path/in/claim (mounted read-only), or
    /// file:///path/in/the/image (a model baked into the server image). A whole model directory (external
    /// data, a Triton config.pbtxt, several versions) comes from an s3:// or gs:// prefix ending in '/' or
    /// an archive ending in .tar, .tar.gz, .tgz or .zip; a flat one becomes version `version`.
    #[schemars(regex(
        pattern = r"^(https://[^/\s]+/\S+|s3://[^/\s]+/\S+|gs://[^/\s]+/\S+|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/\S+|file:///\S+)$"
    ))]
    pub uri: String,

    /// Expected SHA-256 of the file or archive, 64 lowercase hex digits (of a prefix: of `sha256sum`'s
    /// listing of its files, sorted by path); the download fails if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,

    /// Serve a downloaded model (https, s3, gs) without a sha256 to check it against. Off by default: a
    /// model is code the server runs, and without a checksum whoever can change the file at its URL
    /// changes every pod's answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_checksum: bool,

    /// Largest model file the download accepts (a Kubernetes quantity such as 20Gi, the default): the
    /// download volume's size limit, and the pull fails beyond it instead of filling the node's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Quantity>,

    /// A Secret whose keys become environment variables of the init container that fetches the model,
    /// and of nothing else: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN,
    /// AWS_REGION, AWS_ENDPOINT) for s3://, GOOGLE_SERVICE_ACCOUNT_KEY for gs://, and
    /// KUBEINFER_PULL_AUTHORIZATION (a whole Authorization header, e.g. "Bearer ...") for https://. No
    /// credential then sits in the URI, the pod's arguments or an Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecret>,

    /// Version number the model is served as (/v2/models/{name}/versions/{version}).
    #[serde(default = "default_version")]
    #[schemars(range(min = 1))]
    pub version: i64,
}

/// GPU scheduling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// GPUs per pod.
    #[serde(default = "default_gpu_count")]
    #[schemars(range(min = 1, max = 16))]
    pub count: i32,

    /// Extended resource name of the GPU.
    #[serde(default = "default_gpu_resource")]
    #[schemars(regex(pattern = r"^[a-z0-9.-]+/[a-z0-9.-]+$"))]
    pub resource_name: String,

    /// RuntimeClass of the pods, e.g. `nvidia` where the NVIDIA container runtime is not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub runtime_class_name: Option<String>,
}

/// Dynamic batching knobs of kubeinfer-server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Most rows in one batch; 0 serves requests one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65536))]
    pub max_batch_size: Option<i32>,

    /// How long a batch below maxBatchSize may wait for more requests, e.g. "500us" or "2ms" (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(us|ms|s)$"))]
    pub max_queue_delay: Option<String>,

    /// Queued requests per pod before new ones get 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub queue_capacity: Option<i32>,

    /// ONNX Runtime sessions per pod running batches in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub instances: Option<i32>,

    /// ONNX Runtime intra-op threads per session (0: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub intra_op_threads: Option<i32>,

    /// A latency objective, e.g. "20ms": each request is answered within this of its arrival or shed
    /// with 503 and Retry-After. The server learns the model's batch cost, keeps batches small enough
    /// to finish in time, and sheds what cannot (kubeinfer_inference_shed_total). Unset: no objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(us|ms|s)$"))]
    pub latency_target: Option<String>,
}

/// Prometheus Operator integration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create a ServiceMonitor for the server pods (needs the monitoring.coreos.com/v1 CRD).
    #[serde(default)]
    pub service_monitor: bool,

    /// Scrape interval, e.g. "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m)$"))]
    pub interval: Option<String>,
}

/// The nginx edge container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    /// Put nginx in front of the server; the Service then exposes port 8081 (edge) instead of 8080, and
    /// its gRPC port 8001 targets the edge's gRPC listener (8082).
    #[serde(default)]
    pub enabled: bool,

    /// nginx image (must run as a non-root user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU and memory of the nginx container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Server pods that exist.
    #[serde(default)]
    pub replicas: i32,

    /// Server pods ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,

    /// "ready/desired", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,

    /// Served model name and version, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// Label selector of the server pods (used by the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// In-cluster URL of the model's infer route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Ready, Progressing and Degraded, with reasons: a list keyed by type, so that server-side apply
    /// merges each condition on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

fn default_version() -> i64 {
    1
}

fn default_gpu_count() -> i32 {
    1
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".into()
}

impl ModelDeploymentSpec {
    /// The most replicas this model may run: what decides whether a PDB and topology spread make sense.
    pub fn max_replicas(&self) -> i32 {
        match &self.autoscaling {
            Some(a) => a.max_replicas,
            None => self.replicas.unwrap_or(1),
        }
    }
}

impl ModelDeployment {
    /// The name the model is served under.
    pub fn served_name(&self) -> String {
        self.spec.model.name.clone().unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}
