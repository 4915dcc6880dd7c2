//! `kubeinfer-server pull` of whole model directories, the real binary: an S3 prefix on moto, archives
//! over HTTP (a model with external data, a Triton model directory), and hostile archives that must
//! leave nothing behind. The pulled directory is then served by the real server.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use common::{pull, sha, stderr};
use kubeinfer_tests::process::{ServerProcess, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` at every path over plain HTTP on loopback.
async fn serve(body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(&[head.as_bytes(), &body].concat()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// The example model with external data: `model.onnx` and `weights.bin`.
fn external_data_files() -> Vec<(&'static str, Vec<u8>)> {
    let dir = common::example_models().join("external_data/1");
    ["model.onnx", "weights.bin"].map(|f| (f, std::fs::read(dir.join(f)).unwrap())).into_iter().collect()
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Serves `repo` and checks that `model` answers readiness (it loaded, external data included).
fn served(repo: &Path, model: &str) {
    let server = ServerProcess::start(common::server_binary(), repo, &[]);
    let (status, body) = http_get(&format!("http://{}/v2/models/{model}/ready", server.addr)).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_gz_over_http_becomes_a_model_directory_that_the_server_loads() {
    let files = external_data_files();
    let archive = tar_gz(&files.iter().map(|(n, d)| (*n, d.as_slice())).collect::<Vec<_>>());
    let addr = serve(archive.clone()).await;
    let repo = tempfile::tempdir().unwrap();
    let dest = repo.path().join("ext");
    let uri = format!("http://{addr}/releases/ext.tar.gz");
    let out = pull(&uri, &dest, &["--sha256", &sha(&archive), "--model-version", "3"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dest.join("3/weights.bin")).unwrap(), files[1].1);
    assert_eq!(common::files_below(repo.path()), ["ext/3/model.onnx", "ext/3/weights.bin"]);
    served(repo.path(), "ext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_triton_model_directory_is_unwrapped_and_kept_as_it_is() {
    let model = std::fs::read(common::example_models().join("affine/2/model.onnx")).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("affine/config.pbtxt", stored).unwrap();
    zip.write_all(b"max_batch_size: 8\nversion_policy { all { } }\n").unwrap();
    zip.start_file("affine/2/model.onnx", stored).unwrap();
    zip.write_all(&model).unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let addr = serve(archive).await;
    let repo = tempfile::tempdir().unwrap();
    let out = pull(&format!("http://{addr}/affine.zip"), &repo.path().join("affine"), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::files_below(repo.path()), ["affine/2/model.onnx", "affine/config.pbtxt"]);
    served(repo.path(), "affine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_fail_the_pull_and_leave_nothing_behind() {
    let repo = tempfile::tempdir().unwrap();
    let dest = repo.path().join("m");
    // The tar crate's own setters refuse '..', so this entry's name is written into the header raw.
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..14].copy_from_slice(b"../escaped.txt");
    header.set_size(1);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"x"[..]).unwrap();
    let climbing = builder.into_inner().unwrap();
    let zeros = vec![0u8; 8 << 20];
    let bomb = tar_gz(&[("model.onnx", zeros.as_slice())]);
    for (name, archive, extra, reason) in [
        ("climb.tar", climbing, &[][..], "../escaped.txt: entries must be relative paths without '..'"),
        (
            "bomb.tar.gz",
            bomb,
            &["--max-bytes", "1048576"][..],
            "the archive unpacks to more than --max-bytes 1048576 (reached at model.onnx)",
        ),
    ] {
        let addr = serve(archive).await;
        let out = pull(&format!("http://{addr}/{name}"), &dest, extra, &[]);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(stderr(&out).contains(reason), "{name}: {}", stderr(&out));
        assert_eq!(common::files_below(repo.path()), Vec::<String>::new(), "{name} left files");
        assert!(!repo.path().parent().unwrap().join("escaped.txt").exists());
    }
}

#[test]
fn an_s3_prefix_is_pulled_whole_and_its_checksum_covers_every_object() {
    let Some(venv) = common::test_venv() else { return };
    let s3 = common::moto::start(&venv);
    let source = common::example_models().join("external_data/1");
    let (model, weights) = (source.join("model.onnx"), source.join("weights.bin"));
    s3.upload(&venv, "models", &[(&model, "prod/ext/model.onnx"), (&weights, "prod/ext/weights.bin")]);
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // What `sha256sum model.onnx weights.bin | sha256sum` reads, in a checked-out copy.
    let listing = format!(
        "{}  model.onnx\n{}  weights.bin\n",
        sha(&std::fs::read(&model).unwrap()),
        sha(&std::fs::read(&weights).unwrap())
    );
    let repo = tempfile::tempdir().unwrap();
    let dest = repo.path().join("ext");

    let wrong = pull("s3://models/prod/ext/", &dest, &["--sha256", &sha(b"other")], &env);
    assert!(stderr(&wrong).contains("checksum mismatch"), "{}", stderr(&wrong));
    assert_eq!(common::files_below(repo.path()), Vec::<String>::new());

    let out = pull("s3://models/prod/ext/", &dest, &["--sha256", &sha(listing.as_bytes())], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::files_below(repo.path()), ["ext/1/model.onnx", "ext/1/weights.bin"]);
    served(repo.path(), "ext");

    let empty = pull("s3://models/nothing/", &repo.path().join("none"), &[], &env);
    assert!(stderr(&empty).contains("no objects under this prefix"), "{}", stderr(&empty));

    let unnamed = std::env::temp_dir().join(format!("kubeinfer-readme-{}.md", std::process::id()));
    std::fs::write(&unnamed, b"not a model").unwrap();
    s3.upload(&venv, "docs", &[(&unnamed, "only/README.md")]);
    let _ = std::fs::remove_file(&unnamed);
    let no_model = pull("s3://docs/only/", &repo.path().join("docs"), &[], &env);
    assert!(stderr(&no_model).contains("holds no model.onnx, no config.pbtxt"), "{}", stderr(&no_model));
    assert_eq!(common::files_below(repo.path()), ["ext/1/model.onnx", "ext/1/weights.bin"]);
}
