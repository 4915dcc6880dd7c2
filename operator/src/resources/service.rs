//! The Service in front of the server pods: the metrics port 9090, and the API: 8080, or only the edge's
//! 8081 when the nginx edge is enabled, so that callers cannot go round it.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, EDGE_PORT, METRICS_PORT, SERVER_PORT};

pub fn service(b: &Build) -> Service {
    let port = |name: &str, number: i32| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let api = if b.edge_enabled() { port("edge", EDGE_PORT) } else { port("http", SERVER_PORT) };
    let ports = vec![api, port("metrics", METRICS_PORT)];
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
    fn the_service_exposes_the_api_or_only_the_edge_when_enabled_and_the_metrics() {
        let http = ("http".to_string(), 8080, IntOrString::String("http".into()));
        let edge = ("edge".to_string(), 8081, IntOrString::String("edge".into()));
        let metrics = ("metrics".to_string(), 9090, IntOrString::String("metrics".into()));
        assert_eq!(ports(json!({"model": {"uri": "s3://b/m.onnx"}})), vec![http.clone(), metrics.clone()]);
        assert_eq!(
            ports(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": false}})),
            vec![http, metrics.clone()]
        );
        assert_eq!(
            ports(json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": true}})),
            vec![edge, metrics]
        );
    }
}
