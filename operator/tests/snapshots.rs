//! Every ModelDeployment in manifests/examples/ builds exactly the objects in tests/snapshots/<example>.yaml.
//!
//! After an intended change to a builder or an example, regenerate the snapshots and review the diff:
//!     UPDATE_SNAPSHOTS=1 cargo test -p kubeinfer-operator --test snapshots

use std::path::{Path, PathBuf};

use kube::api::ObjectMeta;
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_operator::resources::{
    Build, configmap, deployment, hpa, keda, migrate, networkpolicy, pdb, service, servicemonitor,
};
use kubeinfer_operator::validate::validate;
use serde_json::Value;

const SERVER_IMAGE: &str = "ghcr.io/kubeinfer/kubeinfer-server:test";
const EDGE_IMAGE: &str = "nginxinc/nginx-unprivileged:test";
/// The operator's --prometheus-url, which KEDA's triggers query.
const PROMETHEUS_URL: &str = "http://prometheus-operated.monitoring:9090";
const UPDATE_HINT: &str = "UPDATE_SNAPSHOTS=1 cargo test -p kubeinfer-operator --test snapshots";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn examples() -> Vec<PathBuf> {
    let dir = root().join("../manifests/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem().expect("a file name").to_string_lossy().into_owned()
}

/// The ModelDeployments of a multi-document YAML file, as the API server would hand them over.
fn model_deployments(path: &Path) -> Vec<ModelDeployment> {
    let text = std::fs::read_to_string(path).expect("a readable example");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    docs.into_iter()
        .filter(|doc| doc["kind"] == "ModelDeployment")
        .map(|doc| {
            let mut md: ModelDeployment = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{} holds an invalid ModelDeployment: {e}", path.display()));
            md.metadata = ObjectMeta {
                namespace: Some("ml".into()),
                uid: Some("6f1c2a7e-0000-4000-8000-000000000001".into()),
                generation: Some(1),
                ..md.metadata
            };
            md
        })
        .collect()
}

/// Every child the operator builds for `md` on a cluster that serves every optional API, as YAML documents.
fn children(md: &ModelDeployment) -> Vec<String> {
    let uri = validate(&md.spec).unwrap_or_else(|e| panic!("example {:?} is invalid: {e}", md.metadata.name));
    let b = Build {
        md,
        uri: &uri,
        server_image: SERVER_IMAGE,
        edge_image: EDGE_IMAGE,
        autoscaler: md.spec.autoscaling.is_some(),
        prometheus_url: Some(PROMETHEUS_URL),
    };
    let server_config = configmap::server(&b);
    let edge_config = configmap::edge(&b);
    let checksum = configmap::checksum(
        &[Some(&server_config), edge_config.as_ref()].into_iter().flatten().collect::<Vec<_>>(),
    );
    fn yaml<T: serde::Serialize>(obj: T) -> String {
        serde_saphyr::to_string(&obj).expect("an object that serialises")
    }
    let mut docs: Vec<String> = migrate::job(&b).map(yaml).into_iter().collect();
    docs.extend(migrate::cron_job(&b).map(yaml));
    docs.push(yaml(server_config));
    docs.extend(edge_config.map(yaml));
    docs.push(yaml(service::service(&b)));
    docs.extend(networkpolicy::network_policy(&b).map(yaml));
    docs.push(yaml(deployment::deployment(&b, &checksum)));
    docs.extend(hpa::hpa(&b).map(yaml));
    docs.extend(pdb::pdb(&b).map(yaml));
    docs.extend(servicemonitor::service_monitor(&b).map(yaml));
    docs.extend(keda::scaled_object(&b).map(yaml));
    docs
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut lines = expected.lines().zip(actual.lines()).enumerate();
    match lines.find(|(_, (e, a))| e != a) {
        Some((i, (e, a))) => format!("line {}:\n  snapshot: {e}\n  built:    {a}", i + 1),
        None => format!(
            "the snapshot has {} lines, the built objects {}",
            expected.lines().count(),
            actual.lines().count()
        ),
    }
}

#[test]
fn every_example_builds_exactly_the_objects_in_its_snapshot() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let dir = root().join("tests/snapshots");
    let mut mismatches = Vec::new();
    for example in examples() {
        let mds = model_deployments(&example);
        assert!(!mds.is_empty(), "{} holds no ModelDeployment", example.display());
        let built: String = mds.iter().flat_map(children).map(|doc| format!("---\n{doc}")).collect();
        let snapshot = dir.join(format!("{}.yaml", stem(&example)));
        if update {
            std::fs::create_dir_all(&dir).expect("a writable tests/snapshots");
            std::fs::write(&snapshot, &built).expect("a writable snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if expected != built {
            mismatches.push(format!("{}: {}", snapshot.display(), first_difference(&expected, &built)));
        }
    }
    assert!(
        mismatches.is_empty(),
        "the built objects differ from their snapshots; if the change is intended, run `{UPDATE_HINT}` and \
         review the diff:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_snapshot_belongs_to_an_example() {
    let examples: Vec<String> = examples().iter().map(|p| stem(p)).collect();
    let dir = root().join("tests/snapshots");
    // A missing directory is the other test's failure to report.
    for entry in std::fs::read_dir(&dir).into_iter().flatten() {
        let snapshot = stem(&entry.expect("a directory entry").path());
        assert!(
            examples.contains(&snapshot),
            "tests/snapshots/{snapshot}.yaml has no manifests/examples/{snapshot}.yaml: delete it"
        );
    }
}
