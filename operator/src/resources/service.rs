//! The Service in front of the server pods: the metrics port 9090, gRPC's 8001 (appProtocol grpc), and
//! the HTTP API 8080. When the nginx edge is enabled, the API is only the edge's 8081 and gRPC's 8001
//! targets the edge's gRPC listener, so that no caller can go round nginx.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, EDGE_PORT, GRPC_PORT, METRICS_PORT, SERVER_PORT};
use crate::resources::edge::GRPC_PORT_NAME;

pub fn service(b: &Build) -> Service {
    let port = |name: &str, number: i32| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let api = if b.edge_enabled() { port("edge", EDGE_PORT) } else { port("http", SERVER_PORT) };
    let mut grpc = ServicePort { app_protocol: Some("grpc".into()), ..port("grpc", GRPC_PORT) };
    if b.edge_enabled() {
        grpc.target_port = Some(IntOrString::String(GRPC_PORT_NAME.into()));
    }
    let ports = vec![api, grpc, port("metrics", METRICS_PORT)];
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn ports(spec: serde_json::Value) -> Vec<(String, i32, IntOrString)> {
        let md = md(spec);
        let s = service(&build(&md, &ModelUri::Remote("s3://b/m.onnx".into())));
        s.spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap()))
            .collect()
    }

    #[test]
    fn the_service_exposes_the_api_and_grpc_or_only_the_edges_listeners_when_enabled_and_the_metrics() {
        let http = ("http".to_string(), 8080, IntOrString::String("http".into()));
        let edge = ("edge".to_string(), 8081, IntOrString::String("edge".into()));
        let grpc = ("grpc".to_string(), 8001, IntOrString::String("grpc".into()));
        let grpc_edge = ("grpc".to_string(), 8001, IntOrString::String("grpc-edge".into()));
        let metrics = ("metrics".to_string(), 9090, IntOrString::String("metrics".into()));
        assert_eq!(
            ports(json!({"model": {"uri": "s3://b/m.onnx"}})),
            vec![http.clone(), grpc.clone(), metrics.clone()]
        );
        assert_eq!(
            ports(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": false}})),
            vec![http, grpc.clone(), metrics.clone()]
        );
        assert_eq!(
            ports(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": true}})),
            vec![edge, grpc_edge, metrics]
        );
    }

    #[test]
    fn the_grpc_port_says_it_speaks_grpc() {
        let md = md(json!({"model": {"uri": "s3://b/m.onnx"}}));
        let s = service(&build(&md, &ModelUri::Remote("s3://b/m.onnx".into())));
        let grpc = s.spec.unwrap().ports.unwrap().into_iter().find(|p| p.port == 8001).unwrap();
        assert_eq!(grpc.app_protocol.as_deref(), Some("grpc"));
    }
}
