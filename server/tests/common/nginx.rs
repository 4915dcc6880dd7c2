//! Debian's real nginx with the config the operator ships (manifests/nginx/nginx.conf), in front of a
//! test's server.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NGINX: &str = "/usr/sbin/nginx";

pub struct Nginx {
    child: Child,
    pub port: u16,
    /// The gRPC listener (the shipped 8082).
    pub grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// The whole process group: a SIGKILLed master leaves its workers behind, holding the test's stderr.
    fn drop(&mut self) {
        kubeinfer_tests::process::stop_group(&mut self.child, "-TERM", Duration::from_secs(5));
    }
}

/// nginx with the shipped config, its listen port and upstream pointed at this test's ports.
pub fn nginx(upstream: std::net::SocketAddr) -> Option<Nginx> {
    // Nothing listens on port 9: gRPC through this edge finds its upstream down.
    nginx_with_grpc(upstream, "127.0.0.1:9")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// As `nginx`, with the gRPC listener's upstream at `grpc_upstream` (host:port).
pub fn nginx_with_grpc(upstream: std::net::SocketAddr, grpc_upstream: &str) -> Option<Nginx> {
    if !std::path::Path::new(NGINX).exists() {
        kubeinfer_tests::require::missing(
            &format!("{NGINX} is missing"),
            "run scripts/test-deps.sh (make test does)",
        );
        return None;
    }
    let shipped = std::fs::read_to_string(super::workspace().join("manifests/nginx/nginx.conf")).unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    for line in ["listen 8081;", "server 127.0.0.1:8080;", "listen 8082 http2;", "server 127.0.0.1:8001;"] {
        assert_eq!(shipped.matches(line).count(), 1, "{line}");
    }
    let config = shipped
        .replace("listen 8081;", &format!("listen 127.0.0.1:{port};"))
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace("listen 8082 http2;", &format!("listen 127.0.0.1:{grpc_port} http2;"))
        .replace("server 127.0.0.1:8001;", &format!("server {grpc_upstream};"));
    let dir = tempfile::tempdir().unwrap();
    // Worker processes drop to an unprivileged user when nginx starts as root: the prefix must be theirs too.
    Command::new("chmod").arg("777").arg(dir.path()).status().unwrap();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(format!("{}/", dir.path().display()))
        .args(["-e", "stderr", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("nginx starts");
    let edge = Nginx { child, port, grpc_port, _dir: dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(edge);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not listen on {port}");
}
