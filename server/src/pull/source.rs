//! Model URIs to object stores: `https://` and `http://` (plain GET; the query string and user:password
//! are kept, so pre-signed URLs and basic auth work), `s3://` and `gs://` (credentials from the standard
//! environment: access keys, IRSA's web identity token, workload identity), `file://`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HeaderValue};
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
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

/// The store for `uri`; `authorization`, when given, is the Authorization header of http(s) requests.
pub fn open(uri: &str, authorization: Option<&str>) -> Result<Source, String> {
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
        "https" | "http" => Arc::new(
            HttpBuilder::new()
                .with_url(http_base(&url).as_str())
                .with_client_options(
                    client_options(url.scheme() == "http")
                        .with_default_headers(auth_headers(&url, authorization)?),
                )
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "file" => Arc::new(LocalFileSystem::new()),
        other => return Err(format!("unsupported scheme {other:?}; use https, s3, gs or file")),
    };
    Ok(Source { store, path: object()? })
}

/// The base the store joins object paths onto: the URL's origin, with its query string kept (a
/// pre-signed URL's signature) and its credentials moved into a header (`basic_auth`).
fn http_base(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_path("/");
    base.set_fragment(None);
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base
}

/// The header given, else `Authorization: Basic` from the URL's user:password, if it has one.
fn auth_headers(url: &Url, authorization: Option<&str>) -> Result<HeaderMap, String> {
    let Some(value) = authorization else { return basic_auth(url) };
    let value = HeaderValue::try_from(value)
        .map_err(|_| "KUBEINFER_PULL_AUTHORIZATION holds characters a header cannot".to_string())?;
    Ok(HeaderMap::from_iter([(AUTHORIZATION, value)]))
}

/// `Authorization: Basic` from the URL's user:password, if it has one.
fn basic_auth(url: &Url) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    if url.username().is_empty() && url.password().is_none() {
        return Ok(headers);
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let pair = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()));
    let value = HeaderValue::try_from(format!("Basic {}", BASE64_STANDARD.encode(pair)))
        .map_err(|_| "the URL's user name or password holds characters a header cannot".to_string())?;
    headers.insert(AUTHORIZATION, value);
    Ok(headers)
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

/// `text` with the secrets `uri` carries replaced: its user info (`user:password@`, or a bare token
/// before `@`) and its query string (a pre-signed URL's signature), as written and as the URL parser
/// re-encodes them, so that neither the pod's log nor its termination message shows them. Works on
/// URIs that do not parse, too.
pub fn redact(uri: &str, text: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    if let Some((_, rest)) = uri.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            secrets.push(format!("{userinfo}@"));
        }
    }
    if let Some((_, query)) = uri.split_once('?') {
        secrets.push(format!("?{}", query.split('#').next().unwrap_or_default()));
    }
    if let Ok(url) = Url::parse(uri) {
        match url.password() {
            Some(password) => secrets.push(format!("{}:{password}@", url.username())),
            None if !url.username().is_empty() => secrets.push(format!("{}@", url.username())),
            None => {}
        }
        if let Some(query) = url.query() {
            secrets.push(format!("?{query}"));
        }
    }
    secrets.retain(|s| s.len() > 1);
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.iter().fold(text.to_string(), |text, secret| {
        let replacement = if secret.starts_with('?') { "?REDACTED" } else { "REDACTED@" };
        text.replace(secret.as_str(), replacement)
    })
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
            open("ftp://host/m.onnx", None).err(),
            Some("unsupported scheme \"ftp\"; use https, s3, gs or file".into())
        );
        assert!(open("not a uri", None).err().unwrap().starts_with("\"not a uri\" is not a URI"));
    }

    #[test]
    fn passwords_and_query_strings_are_redacted() {
        let uri = "https://me:s3cret@host/m.onnx?X-Amz-Signature=abc&X-Amz-Expires=60";
        assert_eq!(
            redact(uri, &format!("cannot fetch {uri}: timed out")),
            "cannot fetch https://REDACTED@host/m.onnx?REDACTED: timed out"
        );
        let token = "https://ghp_t0ken@host/m.onnx";
        assert_eq!(redact(token, &format!("pull {token}")), "pull https://REDACTED@host/m.onnx");
        let unparsable = "https://u:s3cret@host:99999/m.onnx?sig=x";
        assert_eq!(redact(unparsable, unparsable), "https://REDACTED@host:99999/m.onnx?REDACTED");
        let encoded = "https://u:p ss@host/m.onnx?a=b c";
        let parsed = Url::parse(encoded).unwrap().to_string();
        assert_eq!(redact(encoded, &parsed), "https://REDACTED@host/m.onnx?REDACTED");
        assert_eq!(
            redact("https://host/m.onnx", "cannot fetch https://host/m.onnx"),
            "cannot fetch https://host/m.onnx"
        );
    }

    #[test]
    fn credentials_become_a_basic_auth_header_and_the_query_stays_on_the_base() {
        let url = Url::parse("https://me:p%40ss@host:8443/a/m.onnx?sig=x%2By#frag").unwrap();
        assert_eq!(http_base(&url).as_str(), "https://host:8443/?sig=x%2By");
        assert_eq!(basic_auth(&url).unwrap()[AUTHORIZATION], "Basic bWU6cEBzcw==");
        assert!(basic_auth(&Url::parse("https://host/m.onnx").unwrap()).unwrap().is_empty());
    }

    #[test]
    fn https_keeps_the_path_and_port() {
        let s = open("https://models.example.com:8443/a/b/model.onnx", None).unwrap();
        assert_eq!(s.path.as_ref(), "a/b/model.onnx");
    }
}
