//! The prediction log over TLS with sslmode=verify-full: a real PostgreSQL serving a certificate from a
//! test CA, the server logging through it, and a CA that did not sign the certificate refused.

mod common;

use std::path::Path;
use std::process::Command;

use common::db::{args, start_with_log, wait_for_count};
use kubeinfer_tests::postgres::{Postgres, TEST_SETTINGS};
use serde_json::json;
use sqlx::PgPool;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_ca(d: &Path, name: &str) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=kubeinfer test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A CA, a server certificate for 127.0.0.1 and localhost signed by it, and a second CA that signed
/// nothing, in a directory PostgreSQL's user can read.
fn tls_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    // PostgreSQL insists on a private key only its own user can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if kubeinfer_tests::process::is_root() {
        let owned = Command::new("chown").args(["postgres:postgres"]).arg(d.join("server.key")).status();
        assert!(owned.is_ok_and(|s| s.success()));
    }
    dir
}

fn tls_cluster(files: &Path) -> Postgres {
    let path = |f: &str| files.join(f).display().to_string();
    let settings: Vec<String> = TEST_SETTINGS
        .iter()
        .map(|s| s.to_string())
        .chain([
            "ssl=on".into(),
            format!("ssl_cert_file={}", path("server.crt")),
            format!("ssl_key_file={}", path("server.key")),
        ])
        .collect();
    Postgres::start(&settings.iter().map(String::as_str).collect::<Vec<_>>())
}

fn verify_full(url: &str, ca: &Path) -> String {
    format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_written_over_verify_full_tls_and_a_foreign_ca_is_refused() {
    let files = tls_files();
    let pg = tls_cluster(files.path());
    let url = pg.create_database("tls");
    let (app, _log, pool) =
        start_with_log(&["affine"], args(&verify_full(&url, &files.path().join("ca.crt")))).await;
    let body = json!({"id": "over-tls", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]});
    assert_eq!(app.post_json("/v2/models/affine/infer", &body).await.status, 200);
    assert_eq!(
        wait_for_count(&pool, "SELECT count(*) FROM predictions WHERE request_id = 'over-tls'", 1).await,
        1
    );
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(encrypted, "the connection is TLS");

    let foreign = PgPool::connect(&verify_full(&url, &files.path().join("other-ca.crt"))).await;
    let error = foreign.expect_err("a certificate from another CA is refused").to_string();
    assert!(error.contains("certificate") || error.contains("Tls") || error.contains("TLS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_variables_as_the_operator_sets_them_make_the_migrate_command_verify_the_server() {
    let files = tls_files();
    let pg = tls_cluster(files.path());
    let url = pg.create_database("tls_env");
    let migrate = |ca: &str| {
        Command::new(common::server_binary())
            .args(["migrate", "--database-url", &url])
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", files.path().join(ca))
            .output()
            .unwrap()
    };
    let refused = migrate("other-ca.crt");
    assert!(!refused.status.success(), "a foreign CA is refused");
    let accepted = migrate("ca.crt");
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
}
