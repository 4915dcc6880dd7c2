//! The ModelDeployment's access fields: the prediction log's database and its CA, the API keys, and
//! who may reach the pods over the network.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The prediction log database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    /// Secret in the same namespace holding the Postgres URL.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub secret_name: String,

    /// Key of the URL in the Secret.
    #[serde(default = "default_database_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,

    /// A Secret holding the CA bundle (PEM) that signed the database server's certificate. When set, the
    /// server connects over TLS and verifies the certificate and its host name (sslmode=verify-full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<CaSecret>,

    /// Run the schema migrations as a Job (`kubeinfer-server migrate`) with this Secret's URL, of a role
    /// with DDL rights, and the server pods with `--migrate=off`, so that their role (secretName) needs only
    /// DML. Without it the pods migrate at start-up with their own URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationsSecret>,
}

/// The Secret of the migrate Job's database URL.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsSecret {
    /// Secret in the same namespace holding the Postgres URL of a role that may change the schema.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub secret_name: String,

    /// Key of the URL in the Secret.
    #[serde(default = "default_database_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A CA bundle in a Secret of the ModelDeployment's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecret {
    /// Name of the Secret.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,

    /// Key of the PEM bundle in the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Who may call the server pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// The Secret holding the API keys file: one `KEY SCOPE[,SCOPE...]` per line, scopes infer, read and
    /// write. It is mounted read-only into the server pods, and the server re-reads it when the Secret
    /// changes, so keys rotate without a restart.
    pub api_keys_secret: ApiKeysSecret,
}

/// A key of a Secret in the ModelDeployment's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeysSecret {
    /// Name of the Secret.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,

    /// Key of the API keys file in the Secret.
    #[serde(default = "default_api_keys_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_api_keys_key() -> String {
    "api-keys".into()
}

fn default_database_key() -> String {
    "DATABASE_URL".into()
}

/// The Secret of the model's download credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret, in the ModelDeployment's namespace.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// Ingress to the server pods. Kubernetes only enforces it where the cluster's network plugin does.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Make the NetworkPolicy; false leaves the pods open to anything the cluster lets through.
    #[serde(default = "enabled")]
    pub enabled: bool,

    /// Who may call the API (pods, namespaces or address blocks, as in a NetworkPolicy rule); empty
    /// means any source, on the API port only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,

    /// Who may scrape /metrics on port 9090; empty means any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

fn enabled() -> bool {
    true
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec { enabled: true, from: Vec::new(), metrics_from: Vec::new() }
    }
}
