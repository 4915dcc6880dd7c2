//! A throwaway Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) from the binaries
//! in `KUBEBUILDER_ASSETS`, envtest's convention; or an existing cluster named by
//! `KUBEINFER_E2E_KUBECONFIG`. Every process is stopped on drop, and by a watchdog if the test dies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, stop_group, watchdog};

/// Where the end-to-end tests run.
pub enum Cluster {
    Local(ControlPlane),
    External(PathBuf),
}

impl Cluster {
    /// The cluster the environment names, or `None` with a note on how to enable the tests. Under
    /// `make test` (KUBEINFER_REQUIRE_ALL) a missing cluster is an error, not a skip.
    pub fn from_env() -> Option<Cluster> {
        if let Some(kubeconfig) = std::env::var_os("KUBEINFER_E2E_KUBECONFIG").filter(|v| !v.is_empty()) {
            return Some(Cluster::External(PathBuf::from(kubeconfig)));
        }
        if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
            return Some(Cluster::Local(ControlPlane::start(Path::new(&assets))));
        }
        crate::require::missing(
            "the end-to-end tests need a Kubernetes cluster",
            "set KUBEBUILDER_ASSETS to a directory with etcd, kube-apiserver and kube-controller-manager \
             (`scripts/envtest-assets.sh` unpacks ../shared/envtest's archive and prints one; `make test` and \
             .ci/run do this), or KUBEINFER_E2E_KUBECONFIG to an existing cluster's kubeconfig",
        );
        None
    }

    pub fn kubeconfig(&self) -> PathBuf {
        match self {
            Cluster::Local(cp) => cp.kubeconfig(),
            Cluster::External(path) => path.clone(),
        }
    }

    /// `kubectl ARGS` as the cluster's admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// The Events in `namespace`, one `TYPE REASON` line each (e.g. `Warning NameConflict`).
    pub fn events(&self, namespace: &str) -> String {
        self.kubectl_ok(&[
            "get",
            "events.events.k8s.io",
            "-n",
            namespace,
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}",
        ])
    }

    /// `kubectl ARGS`, which must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str, extra: &[&str]) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(["apply", "-f", "-"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write manifest");
        child.wait_with_output().expect("kubectl finishes")
    }
}

pub struct ControlPlane {
    dir: tempfile::TempDir,
    assets: PathBuf,
    port: u16,
    etcd_port: u16,
    token: String,
    /// (name, process, its watchdog), in start order.
    processes: Vec<(&'static str, Child, Child)>,
}

impl ControlPlane {
    pub fn start(assets: &Path) -> ControlPlane {
        for bin in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            assert!(assets.join(bin).exists(), "no {bin} in KUBEBUILDER_ASSETS={}", assets.display());
        }
        let dir = tempfile::Builder::new().prefix("kubeinfer-k8s-").tempdir().expect("temp dir");
        crate::process::remove_when_gone(dir.path());
        let key = dir.path().join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stderr(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "openssl genrsa failed");
        let status = Command::new("openssl")
            .args(["rsa", "-in"])
            .arg(&key)
            .arg("-pubout")
            .arg("-out")
            .arg(dir.path().join("sa.pub"))
            .stderr(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "openssl rsa failed");
        let token: String = format!("{:032x}", rand_u128());
        std::fs::write(dir.path().join("tokens.csv"), format!("{token},admin,admin,system:masters\n"))
            .expect("tokens");
        let mut cp = ControlPlane {
            port: free_port(),
            etcd_port: free_port(),
            assets: assets.to_path_buf(),
            token,
            processes: Vec::new(),
            dir,
        };
        std::fs::write(cp.kubeconfig(), cp.kubeconfig_for("admin", &cp.token.clone())).expect("kubeconfig");
        cp.start_api();
        cp.spawn("kube-controller-manager", cp.controller_manager_args());
        cp
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubeconfig for `user` authenticating with a bearer `token`.
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: envtest, cluster: {{server: \"https://127.0.0.1:{}\", insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: {user}, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: envtest, context: {{cluster: envtest, user: {user}}}}}]\n\
             current-context: envtest\n",
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, name: &'static str, args: Vec<String>) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let child = Command::new(self.assets.join(name))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let guard = watchdog(child.id(), "-TERM");
        self.processes.push((name, child, guard));
    }

    fn etcd_args(&self) -> Vec<String> {
        let e = self.etcd_port;
        let peer = free_port();
        [
            "--data-dir".into(),
            self.dir.path().join("etcd").display().to_string(),
            "--listen-client-urls".into(),
            format!("http://127.0.0.1:{e}"),
            "--advertise-client-urls".into(),
            format!("http://127.0.0.1:{e}"),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls".into(),
            format!("http://127.0.0.1:{peer}"),
            "--initial-cluster".into(),
            format!("default=http://127.0.0.1:{peer}"),
        ]
        .to_vec()
    }

    fn apiserver_args(&self) -> Vec<String> {
        let d = self.dir.path();
        let arg = |k: &str, v: String| [format!("--{k}={v}")];
        [
            arg("etcd-servers", format!("http://127.0.0.1:{}", self.etcd_port)),
            arg("cert-dir", d.join("certs").display().to_string()),
            arg("secure-port", self.port.to_string()),
            arg("bind-address", "127.0.0.1".into()),
            arg("advertise-address", "127.0.0.1".into()),
            arg("token-auth-file", d.join("tokens.csv").display().to_string()),
            arg("authorization-mode", "RBAC".into()),
            arg("service-account-issuer", "https://kubernetes.default.svc".into()),
            arg("service-account-key-file", d.join("sa.pub").display().to_string()),
            arg("service-account-signing-key-file", d.join("sa.key").display().to_string()),
            // Room for the scale benchmark's hundreds of Services.
            arg("service-cluster-ip-range", "10.96.0.0/16".into()),
            arg("disable-admission-plugins", "ServiceAccount".into()),
            arg("allow-privileged", "true".into()),
        ]
        .concat()
    }

    fn controller_manager_args(&self) -> Vec<String> {
        vec![
            "--kubeconfig".into(),
            self.kubeconfig().display().to_string(),
            "--leader-elect=false".into(),
            "--service-account-private-key-file".into(),
            self.dir.path().join("sa.key").display().to_string(),
            "--use-service-account-credentials=false".into(),
            "--controllers=*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner,-cloud-node-lifecycle,-route,-service".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ]
    }

    /// Starts etcd and the API server (again, after `stop_api`), same ports and data, and waits for /readyz.
    pub fn start_api(&mut self) {
        self.spawn("etcd", self.etcd_args());
        self.spawn("kube-apiserver", self.apiserver_args());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = Command::new("kubectl")
                .env("KUBECONFIG", self.kubeconfig())
                .args(["get", "--raw", "/readyz"])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the API server did not become ready: {}", self.log("kube-apiserver"));
    }

    /// Stops the API server and etcd (the controller manager keeps running, as on a real control plane).
    pub fn stop_api(&mut self) {
        for name in ["kube-apiserver", "etcd"] {
            if let Some(i) = self.processes.iter().position(|(n, _, _)| *n == name) {
                let (_, child, guard) = self.processes.remove(i);
                stop(child, guard);
            }
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some((_, child, guard)) = self.processes.pop() {
            stop(child, guard);
        }
    }
}

fn stop(mut child: Child, mut guard: Child) {
    let _ = guard.kill();
    let _ = guard.wait();
    stop_group(&mut child, "-TERM", Duration::from_secs(10));
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u128::from_le_bytes(bytes)
}
