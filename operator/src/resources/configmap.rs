//! The ConfigMaps: `<name>-server` holds the server's batching settings as environment variables (so a
//! change rolls the pods through the config checksum), `<name>-edge` the nginx configuration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{Build, edge};

pub fn server_name(b: &Build) -> String {
    format!("{}-server", b.name())
}

pub fn edge_name(b: &Build) -> String {
    format!("{}-edge", b.name())
}

/// `KUBEINFER_*` variables for every batching field the spec sets; the rest keep the server's defaults.
pub fn server(b: &Build) -> ConfigMap {
    let mut data = BTreeMap::new();
    if let Some(batching) = &b.md.spec.batching {
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                data.insert(format!("KUBEINFER_{key}"), v);
            }
        };
        set("MAX_BATCH_SIZE", batching.max_batch_size.map(|v| v.to_string()));
        set("MAX_QUEUE_DELAY", batching.max_queue_delay.clone());
        set("QUEUE_CAPACITY", batching.queue_capacity.map(|v| v.to_string()));
        set("INSTANCES", batching.instances.map(|v| v.to_string()));
        set("INTRA_OP_THREADS", batching.intra_op_threads.map(|v| v.to_string()));
        set("LATENCY_TARGET", batching.latency_target.clone());
    }
    ConfigMap { metadata: b.metadata(server_name(b)), data: Some(data), ..Default::default() }
}

/// The nginx edge's configuration, when the edge is enabled.
pub fn edge(b: &Build) -> Option<ConfigMap> {
    b.edge_enabled().then(|| ConfigMap {
        metadata: b.metadata(edge_name(b)),
        data: Some(BTreeMap::from([(edge::CONFIG_FILE.to_string(), edge::config().to_string())])),
        ..Default::default()
    })
}

/// SHA-256 over the ConfigMaps' data, in a fixed order.
pub fn checksum(config_maps: &[&ConfigMap]) -> String {
    let mut hasher = Sha256::new();
    for cm in config_maps {
        for (k, v) in cm.data.iter().flatten() {
            hasher.update(k.as_bytes());
            hasher.update([0]);
            hasher.update(v.as_bytes());
            hasher.update([0]);
        }
    }
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{build, md};
    use crate::validate::ModelUri;

    #[test]
    fn batching_fields_become_server_environment_variables() {
        let md = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"},
                                       "batching": {"maxBatchSize": 32, "maxQueueDelay": "2ms", "instances": 2,
                                                    "latencyTarget": "20ms"}}));
        let uri = ModelUri::Remote("s3://b/m.onnx".into());
        let cm = server(&build(&md, &uri));
        assert_eq!(cm.metadata.name.as_deref(), Some("digits-server"));
        assert_eq!(
            cm.data.unwrap(),
            BTreeMap::from([
                ("KUBEINFER_INSTANCES".to_string(), "2".to_string()),
                ("KUBEINFER_LATENCY_TARGET".to_string(), "20ms".to_string()),
                ("KUBEINFER_MAX_BATCH_SIZE".to_string(), "32".to_string()),
                ("KUBEINFER_MAX_QUEUE_DELAY".to_string(), "2ms".to_string()),
            ])
        );
    }

    #[test]
    fn the_checksum_changes_with_the_data_and_only_with_it() {
        let uri = ModelUri::Remote("s3://b/m.onnx".into());
        let a = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}, "batching": {"maxBatchSize": 8}}));
        let b = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}, "batching": {"maxBatchSize": 16}}));
        let ca = checksum(&[&server(&build(&a, &uri))]);
        assert_eq!(ca, checksum(&[&server(&build(&a, &uri))]));
        assert_ne!(ca, checksum(&[&server(&build(&b, &uri))]));
        assert_eq!(ca.len(), 64);
    }

    #[test]
    fn there_is_no_edge_config_without_the_edge() {
        let uri = ModelUri::Remote("s3://b/m.onnx".into());
        let off = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}}));
        assert!(edge(&build(&off, &uri)).is_none());
        let on = md(serde_json::json!({"model": {"uri": "s3://b/m.onnx"}, "edge": {"enabled": true}}));
        let cm = edge(&build(&on, &uri)).unwrap();
        assert!(cm.data.unwrap()["nginx.conf"].contains("max-age=31536000, immutable"));
    }
}
