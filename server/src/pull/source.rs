//! Model URIs to object stores: `https://` and `http://` (plain GET), `s3://` and `gs://` (credentials from
//! the standard environment: access keys, IRSA's web identity token, workload identity), `file://`.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};
use url::Url;

/// Where a model comes from: the store and the object's path in it.
pub struct Source {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

fn client_options(allow_http: bool) -> ClientOptions {
    // Models are large: no limit on the whole request. A stalled body is caught by the caller instead.
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout_disabled()
}

pub fn open(uri: &str) -> Result<Source, String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not a URI: {e}"))?;
    let object = || Path::from_url_path(url.path()).map_err(|e| format!("{uri:?} has a bad path: {e}"));
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => Arc::new(
            AmazonS3Builder::from_env()
                .with_url(uri)
                .with_client_options(client_options(allow_http_from_env()))
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(uri)
                .with_client_options(client_options(false))
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "https" | "http" => {
            let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
            let base = match url.port() {
                Some(port) => format!("{base}:{port}"),
                None => base,
            };
            Arc::new(
                HttpBuilder::new()
                    .with_url(base)
                    .with_client_options(client_options(url.scheme() == "http"))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
        "file" => Arc::new(LocalFileSystem::new()),
        other => return Err(format!("unsupported scheme {other:?}; use https, s3, gs or file")),
    };
    Ok(Source { store, path: object()? })
}

/// S3-compatible stores on plain HTTP (MinIO, moto) need AWS_ALLOW_HTTP=true, as object_store documents.
fn allow_http_from_env() -> bool {
    std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether a failure may go away if tried again (network trouble, 5xx), or will not (missing, denied).
pub fn permanent(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
    )
}

/// A one-line explanation of a store error for the pod's log.
pub fn explain(uri: &str, e: &object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { .. } => format!("{uri} does not exist (404)"),
        object_store::Error::PermissionDenied { .. } => format!("access to {uri} is denied (403): {e}"),
        object_store::Error::Unauthenticated { .. } => format!("{uri} needs credentials (401): {e}"),
        _ => format!("cannot fetch {uri}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_schemes_and_garbage_are_refused() {
        assert_eq!(
            open("ftp://host/m.onnx").err(),
            Some("unsupported scheme \"ftp\"; use https, s3, gs or file".into())
        );
        assert!(open("not a uri").err().unwrap().starts_with("\"not a uri\" is not a URI"));
    }

    #[test]
    fn https_keeps_the_path_and_port() {
        let s = open("https://models.example.com:8443/a/b/model.onnx").unwrap();
        assert_eq!(s.path.as_ref(), "a/b/model.onnx");
    }
}
