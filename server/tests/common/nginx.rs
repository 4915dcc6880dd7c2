//! Debian's real nginx with the config the operator ships (manifests/nginx/nginx.conf), in front of a
//! test's server.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kubeinfer_tests::process::free_port;

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
pub fn nginx(upstream: SocketAddr) -> Option<Nginx> {
    // Nothing listens on port 9: gRPC through this edge finds its upstream down.
    nginx_with_grpc(upstream, "127.0.0.1:9")
}

/// As `nginx`, with the gRPC listener's upstream at `grpc_upstream` (host:port).
pub fn nginx_with_grpc(upstream: SocketAddr, grpc_upstream: &str) -> Option<Nginx> {
    if !std::path::Path::new(NGINX).exists() {
        kubeinfer_tests::require::missing(
            &format!("{NGINX} is missing"),
            "run scripts/test-deps.sh (make test does)",
        );
        return None;
    }
    let shipped = std::fs::read_to_string(super::workspace().join("manifests/nginx/nginx.conf")).unwrap();
    for line in ["listen 8081;", "server 127.0.0.1:8080;", "listen 8082 http2;", "server 127.0.0.1:8001;"] {
        assert_eq!(shipped.matches(line).count(), 1, "{line}");
    }
    // A port picked free may be taken before nginx binds it: nginx then exits, and is started again on
    // other ports.
    for _ in 0..3 {
        let ports = (free_port(), free_port());
        if let Some(edge) = start(&shipped, ports, upstream, grpc_upstream) {
            return Some(edge);
        }
    }
    panic!("nginx did not start on three pairs of free ports");
}

/// nginx with `shipped` pointed at `ports` (HTTP, gRPC) and the upstreams, once it listens; `None` when
/// it exited first (its ports were taken).
fn start(
    shipped: &str,
    (port, grpc_port): (u16, u16),
    upstream: SocketAddr,
    grpc_upstream: &str,
) -> Option<Nginx> {
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
    let mut edge = Nginx { child, port, grpc_port, _dir: dir };
    let running = |edge: &mut Nginx| edge.child.try_wait().is_ok_and(|exit| exit.is_none());
    for _ in 0..100 {
        if !running(&mut edge) {
            return None;
        }
        // Still running once the port answers: the answer was nginx's, not a process that took the port.
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && running(&mut edge) {
            return Some(edge);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not listen on {port}");
}
