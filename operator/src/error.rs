//! The operator's one error type. Problems with a ModelDeployment itself are not errors: they become
//! status conditions (see status.rs). Errors are failures to talk to the API server, which the
//! controller retries with backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, serde_json::Error),
    #[error("leader election: {0}")]
    Leader(String),
}

impl Error {
    /// The bounded label value for kubeinfer_operator_reconcile_errors_total.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            _ => "other",
        }
    }
}
