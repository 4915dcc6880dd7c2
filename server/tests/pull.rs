//! `kubeinfer-server pull`, the real binary, against a local HTTP server that misbehaves on purpose and
//! against a real S3 API on loopback (moto).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::{pull, sha, stderr};

fn content() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// Serves `content()` at /model.onnx (with Range support), 404 elsewhere, always cuts /cut half-way, and
/// cuts /flaky only on its first request. /private.onnx?sig=s1gn%2Bed is served only with basic auth
/// me:pa55 (as a pre-signed URL with credentials would be) or the bearer token t0ken-from-a-secret;
/// anything else there is 403.
async fn misbehaving_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky_hits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let flaky_hits = flaky_hits.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let from: usize = request
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("range: bytes=")
                            .map(|r| r.trim_end_matches('-').to_string())
                    })
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                let body = content();
                let cut =
                    path == "/cut" || (path == "/flaky" && flaky_hits.fetch_add(1, Ordering::SeqCst) == 0);
                let lower = request.to_ascii_lowercase();
                let authorized = lower.contains("\r\nauthorization: basic bwu6cge1nq==\r\n")
                    || lower.contains("\r\nauthorization: bearer t0ken-from-a-secret\r\n");
                let path = match path.as_str() {
                    "/private.onnx?sig=s1gn%2Bed" if authorized => "/model.onnx".to_string(),
                    p if p.starts_with("/private.onnx") => "/denied".to_string(),
                    _ => path,
                };
                let response = match path.as_str() {
                    "/model.onnx" | "/cut" | "/flaky" if from > 0 => {
                        let head = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                            body.len() - from,
                            body.len() - 1,
                            body.len()
                        );
                        [head.as_bytes(), &body[from..]].concat()
                    }
                    "/model.onnx" | "/cut" | "/flaky" => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let end = if cut { body.len() / 2 } else { body.len() };
                        [head.as_bytes(), &body[..end]].concat()
                    }
                    "/denied" => {
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Files in `dir`, to show that nothing half-written is left behind.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_is_fetched_verified_and_renamed_into_place() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("digits/1/model.onnx");
    let out = pull(&format!("http://{addr}/model.onnx"), &dest, &["--sha256", &sha(&content())], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());
    assert_eq!(files_in(&dir.path().join("digits/1")), vec![dest]);
    assert!(stderr(&out).contains("model pulled"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_cap_fails_and_leaves_no_file() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let size = content().len();
    let cap = (size - 1).to_string();
    let out = pull(&format!("http://{addr}/model.onnx"), &dest, &["--max-bytes", &cap], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("the model is larger than --max-bytes {cap} (at least {size} bytes)")),
        "{}",
        stderr(&out)
    );
    assert_eq!(files_in(dir.path()), Vec::<PathBuf>::new(), "no partial file is left");
    let exact = size.to_string();
    let out = pull(&format!("http://{addr}/model.onnx"), &dest, &["--max-bytes", &exact], &[]);
    assert!(out.status.success(), "a file of exactly the cap is fine: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_fails_at_once_with_404() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let started = std::time::Instant::now();
    let out = pull(&format!("http://{addr}/nope.onnx"), &dest, &[], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("http://{addr}/nope.onnx does not exist (404)")),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a 404 was retried");
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_access_fails_at_once_with_403() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let out = pull(&format!("http://{addr}/denied"), &dir.path().join("model.onnx"), &[], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("access to http://{addr}/denied is denied (403)")),
        "{}",
        stderr(&out)
    );
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_url_with_credentials_keeps_its_query_and_auth_and_errors_hide_them() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let out = pull(&format!("http://me:pa55@{addr}/private.onnx?sig=s1gn%2Bed"), &dest, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());

    let out = pull(&format!("http://me:pa55@{addr}/private.onnx?sig=expired"), &dest, &[], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("access to http://REDACTED@{addr}/private.onnx?REDACTED is denied (403)")),
        "{err}"
    );
    assert!(!err.contains("pa55") && !err.contains("expired"), "a secret reached the log: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_header_from_the_environment_is_sent_and_never_logged() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let token = [("KUBEINFER_PULL_AUTHORIZATION", "Bearer t0ken-from-a-secret")];
    let out = pull(&format!("http://{addr}/private.onnx?sig=s1gn%2Bed"), &dest, &[], &token);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());
    assert!(!stderr(&out).contains("t0ken"), "the token reached the log: {}", stderr(&out));

    let wrong = [("KUBEINFER_PULL_AUTHORIZATION", "Bearer not-the-token")];
    let out = pull(
        &format!("http://{addr}/private.onnx?sig=s1gn%2Bed"),
        &dir.path().join("other.onnx"),
        &[],
        &wrong,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is denied (403)"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not-the-token"), "the token reached the log: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_fails_and_leaves_no_file() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let wrong = "0".repeat(64);
    let out = pull(&format!("http://{addr}/model.onnx"), &dest, &["--sha256", &wrong], &[]);
    assert!(!out.status.success());
    let message = format!("checksum mismatch: expected sha256 {wrong}, got {}", sha(&content()));
    assert!(stderr(&out).contains(&message), "{}", stderr(&out));
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_body_every_time_fails_as_truncated() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    // The first attempt gets half; a resumed attempt gets the rest, so cut the resume off with --retries 0.
    let out = pull(&format!("http://{addr}/cut"), &dest, &["--retries", "0"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("truncated download: received 150000 of 300000 bytes"), "{err}");
    assert!(err.contains("(gave up after 1 attempts)"), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_retried_and_resumed_where_it_stopped() {
    let addr = misbehaving_server().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.onnx");
    let out = pull(&format!("http://{addr}/flaky"), &dest, &["--sha256", &sha(&content())], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());
    assert!(stderr(&out).contains("download interrupted; retrying"), "{}", stderr(&out));
}

#[test]
fn a_file_uri_copies_from_the_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.onnx");
    std::fs::write(&src, content()).unwrap();
    let dest = dir.path().join("out/model.onnx");
    let out = pull(&format!("file://{}", src.display()), &dest, &["--sha256", &sha(&content())], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());
}

#[test]
fn an_s3_model_is_fetched_with_credentials_from_the_environment() {
    let Some(venv) = common::test_venv() else { return };
    let s3 = common::moto::start(&venv);
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("object.onnx");
    std::fs::write(&object, content()).unwrap();
    s3.upload(&venv, "models", &[(&object, "digits/1/model.onnx")]);
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let dest = dir.path().join("pulled/model.onnx");
    let out = pull("s3://models/digits/1/model.onnx", &dest, &["--sha256", &sha(&content())], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), content());

    let missing = pull("s3://models/digits/9/model.onnx", &dir.path().join("x.onnx"), &[], &env);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("s3://models/digits/9/model.onnx does not exist (404)"),
        "{}",
        stderr(&missing)
    );
}
