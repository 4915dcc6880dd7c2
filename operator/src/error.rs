//! The operator's one error type. Problems with a ModelDeployment itself are not errors: they become
//! status conditions (see status.rs). Errors are failures to talk to the API server, which the
//! controller retries with backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, serde_json::Error),
    /// A child's name is taken by an object that this ModelDeployment does not control; it is left alone.
    #[error(
        "{kind} {name:?} already exists and is not controlled by this ModelDeployment, so it is left untouched: \
         delete or rename it, or give the ModelDeployment another name"
    )]
    NameConflict { kind: &'static str, name: String },
    /// The API server refused a child: invalid, denied by an admission webhook, or not allowed.
    #[error("the API server refused {kind} {name:?}: {message}")]
    Refused { kind: &'static str, name: String, message: String },
}

impl Error {
    /// The bounded label value for kubeinfer_operator_reconcile_errors_total.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::NameConflict { .. } => "name_conflict",
            Error::Refused { .. } => "refused",
            Error::Encode(..) => "other",
        }
    }
}
