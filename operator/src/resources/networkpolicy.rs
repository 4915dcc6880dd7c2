//! The NetworkPolicy (networking.k8s.io/v1) in front of the server pods: the HTTP API and gRPC ports,
//! or the edge's two when the edge fronts the server (so nothing reaches the server past nginx), open to
//! the spec's `from`; the
//! metrics port to `metricsFrom`; every other port closed. The edge reaches the server over the pod's
//! loopback, which no NetworkPolicy filters.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Build, EDGE_GRPC_PORT, EDGE_PORT, GRPC_PORT, METRICS_PORT, SERVER_PORT};

pub fn network_policy(b: &Build) -> Option<NetworkPolicy> {
    let spec = b.md.spec.network_policy.clone().unwrap_or_default();
    if !spec.enabled {
        return None;
    }
    let api_ports = if b.edge_enabled() { [EDGE_PORT, EDGE_GRPC_PORT] } else { [SERVER_PORT, GRPC_PORT] };
    Some(NetworkPolicy {
        metadata: b.metadata(b.name()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(b.selector()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![rule(&api_ports, spec.from), rule(&[METRICS_PORT], spec.metrics_from)]),
            ..Default::default()
        }),
    })
}

/// Ingress to `ports` from `from`; an empty `from` admits every source (on those ports only).
fn rule(ports: &[i32], from: Vec<NetworkPolicyPeer>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        ports: Some(
            ports
                .iter()
                .map(|&port| NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        from: Some(from).filter(|f| !f.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    fn policy(extra: Value) -> Option<Value> {
        let mut spec = json!({"model": {"uri": "s3://b/m.onnx"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let md = md(spec);
        network_policy(&build(&md, &ModelUri::Remote("s3://b/m.onnx".into())))
            .map(|p| serde_json::to_value(p.spec).unwrap())
    }

    fn port(n: i32) -> Value {
        json!([{"port": n, "protocol": "TCP"}])
    }

    fn api(http: i32, grpc: i32) -> Value {
        json!([{"port": http, "protocol": "TCP"}, {"port": grpc, "protocol": "TCP"}])
    }

    #[test]
    fn by_default_the_api_and_metrics_ports_are_open_to_anyone_and_nothing_else_is() {
        let pods =
            json!({"app.kubernetes.io/instance": "digits", "app.kubernetes.io/name": "kubeinfer-server"});
        assert_eq!(
            policy(json!({})),
            Some(json!({
                "podSelector": {"matchLabels": pods},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": api(8080, 8001)}, {"ports": port(9090)}],
            }))
        );
    }

    #[test]
    fn with_the_edge_on_only_the_edges_ports_are_open_so_nothing_bypasses_nginx() {
        let spec = policy(json!({"edge": {"enabled": true}})).unwrap();
        assert_eq!(spec["ingress"][0]["ports"], api(8081, 8082));
        assert_eq!(spec["ingress"][1]["ports"], port(9090));
    }

    #[test]
    fn the_sources_the_spec_names_are_the_only_ones_admitted() {
        let gateway = json!({"namespaceSelector": {"matchLabels": {"name": "gateway"}}});
        let prometheus = json!({"namespaceSelector": {"matchLabels": {"name": "monitoring"}}});
        let spec =
            policy(json!({"networkPolicy": {"from": [gateway], "metricsFrom": [prometheus]}})).unwrap();
        assert_eq!(spec["ingress"][0]["from"], json!([gateway]));
        assert_eq!(spec["ingress"][1]["from"], json!([prometheus]));
    }

    #[test]
    fn it_can_be_turned_off() {
        assert_eq!(policy(json!({"networkPolicy": {"enabled": false}})), None);
    }
}
