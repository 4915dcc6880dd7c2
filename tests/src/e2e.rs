//! The end-to-end environment: a cluster with the CRD from crds/ and the chart's RBAC installed, a token for
//! the chart's ServiceAccount, and the operator's real binary running under it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::control_plane::Cluster;
use crate::process::ServerProcess;

pub const OPERATOR_NAMESPACE: &str = "kubeinfer-system";

pub struct Env {
    pub cluster: Cluster,
    /// A kubeconfig authenticating as the chart's ServiceAccount, system:serviceaccount:kubeinfer-system:kubeinfer-operator.
    pub operator_kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// A binary of this workspace, built beside the running test (target/<profile>/deps/..) or benchmark.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join(name)).collect();
    match candidates.iter().find(|p| p.exists()) {
        Some(path) => path.clone(),
        None => panic!("{name} is missing beside {}: build it (cargo test --workspace does)", exe.display()),
    }
}

/// The documents of a multi-document YAML file whose `kind` is not in `skip`.
pub fn documents_except(yaml: &str, skip: &[&str]) -> String {
    yaml.split("\n---")
        .filter(|doc| !skip.iter().any(|k| doc.lines().any(|l| l.trim_end() == format!("kind: {k}"))))
        .collect::<Vec<_>>()
        .join("\n---")
}

impl Env {
    /// Installs the CRD and the rendered RBAC (not the operator's own Deployment: there is no kubelet)
    /// and mints a ServiceAccount token. `None` when no cluster is configured.
    pub fn install() -> Option<Env> {
        let cluster = Cluster::from_env()?;
        let root = workspace();
        let crd =
            std::fs::read_to_string(root.join("crds/modeldeployments.kubeinfer.io.yaml")).expect("crds/");
        // Kubernetes before 1.25 drops x-kubernetes-validations; kubectl's client-side check would refuse it.
        let out = cluster.apply(&crd, &["--validate=false"]);
        assert!(out.status.success(), "CRD install failed: {}", String::from_utf8_lossy(&out.stderr));
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/modeldeployments.kubeinfer.io",
        ]);
        let namespace =
            std::fs::read_to_string(root.join("manifests/namespace.yaml")).expect("namespace.yaml");
        let operator = std::fs::read_to_string(root.join("manifests/operator.yaml")).expect("operator.yaml");
        let rbac = documents_except(&operator, &["Deployment", "Service"]);
        for yaml in [namespace, rbac] {
            let out = cluster.apply(&yaml, &[]);
            assert!(out.status.success(), "install failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The Lease Role is rendered only with leader election; the harness needs it for the fault tests.
        let leases = helm_lease_role(&root);
        let out = cluster.apply(&leases, &[]);
        assert!(out.status.success(), "lease role failed: {}", String::from_utf8_lossy(&out.stderr));
        let token = cluster.kubectl_ok(&[
            "create",
            "token",
            "kubeinfer-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "--duration=3h",
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        crate::process::remove_when_gone(dir.path());
        let operator_kubeconfig = dir.path().join("operator.kubeconfig");
        let admin = std::fs::read_to_string(cluster.kubeconfig()).expect("admin kubeconfig");
        let server = admin
            .lines()
            .find_map(|l| l.split("server: \"").nth(1))
            .and_then(|r| r.split('"').next())
            .expect("server URL");
        std::fs::write(
            &operator_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}}}]\n\
                 users: [{{name: operator, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: operator}}}}]\ncurrent-context: c\n",
                token.trim()
            ),
        )
        .expect("operator kubeconfig");
        Some(Env { cluster, operator_kubeconfig, _dir: dir })
    }

    /// An admin client (build one per test: a client lives on the runtime that made it).
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = Kubeconfig::read_from(self.cluster.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// A fresh namespace.
    pub fn namespace(&self, name: &str) -> String {
        self.cluster.kubectl_ok(&["create", "namespace", name]);
        name.to_string()
    }

    /// The operator's real binary, as the chart's ServiceAccount, watching `namespace` (or all when None).
    pub fn operator(&self, namespace: Option<&str>, extra: &[&str]) -> ServerProcess {
        self.operator_named("kubeinfer-operator-0", namespace, extra)
    }

    /// As `operator`, with `pod` as its POD_NAME (its identity in the leader Lease).
    pub fn operator_named(&self, pod: &str, namespace: Option<&str>, extra: &[&str]) -> ServerProcess {
        let mut cmd = Command::new(binary("kubeinfer-operator"));
        cmd.env("KUBECONFIG", &self.operator_kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", pod)
            .args(["--log-format", "json", "--metrics-host", "127.0.0.1", "--metrics-port", "0"])
            .args(["--server-image", "kubeinfer-server:e2e"])
            .args(["--watch-namespace", namespace.unwrap_or("")])
            .args(extra);
        ServerProcess::spawn(cmd, "metrics and health listening")
    }
}

/// The chart's Lease Role and RoleBinding, rendered by Helm as with leader election on.
fn helm_lease_role(root: &Path) -> String {
    let helm = root.join(".cache/bin/helm");
    assert!(helm.exists(), "{} is missing: run scripts/test-deps.sh", helm.display());
    let out = Command::new(helm)
        .args(["template", "kubeinfer"])
        .arg(root.join("charts/kubeinfer"))
        .args(["--namespace", OPERATOR_NAMESPACE, "--set", "replicaCount=2"])
        .args(["--show-only", "templates/role.yaml", "--show-only", "templates/rolebinding.yaml"])
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a kubelet would do: marks every pod of `instance` Running and Ready.
pub async fn mark_pods_ready(client: &kube::Client, namespace: &str, instance: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await
        .expect("list pods");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}],
        }});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("patch pod status");
    }
    list.items.len()
}

/// A sample from the Prometheus text of `url` (e.g. an operator's /metrics); 0 for a series not yet
/// exported (a labelled counter appears at its first increment). An endpoint that does not answer 200
/// fails the test: read as 0, it would pass an assertion of "nothing happened".
pub fn scrape(url: &str, series: &str) -> f64 {
    let out = Command::new("curl").args(["-sSf", "--max-time", "10", url]).output().expect("curl runs");
    assert!(out.status.success(), "scraping {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    crate::prometheus::sample(&String::from_utf8_lossy(&out.stdout), series).unwrap_or(0.0)
}
