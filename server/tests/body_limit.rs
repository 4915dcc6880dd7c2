//! A body over `--max-body-bytes` gets its 413 read by an ordinary client: the server answers at once
//! and reads the rest of the body away instead of resetting a connection the client is still writing.

mod common;

use std::process::Command;

use kubeinfer_tests::process::ServerProcess;

#[test]
fn pythons_http_client_sending_too_much_reads_a_413_with_a_json_error() {
    let repo = common::repository(&["affine"]);
    let server = ServerProcess::start(common::server_binary(), repo.path(), &["--max-body-bytes", "1048576"]);
    let out = Command::new("python3")
        .arg(common::workspace().join("server/tests/clients/oversize_body.py"))
        .arg(server.addr.to_string())
        .arg((16 * 1024 * 1024).to_string())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let error = r#"{"error":"request body is larger than the 1048576-byte limit"}"#;
    assert_eq!(stdout, format!("content-length 413 {error}\nchunked 413 {error}\n"));
}
