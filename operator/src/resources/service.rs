//! The Service in front of the server pods: port 8080 (the API, scraped for metrics), and 8081 when the
//! nginx edge is enabled.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, EDGE_PORT, SERVER_PORT};

pub fn service(b: &Build) -> Service {
    let port = |name: &str, number: i32| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let mut ports = vec![port("http", SERVER_PORT)];
    if b.edge_enabled() {
        ports.push(port("edge", EDGE_PORT));
    }
    Service {
        metadata: b.metadata(b.name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(b.selector_labels()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}
