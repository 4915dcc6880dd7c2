//! The parts of Triton's model configuration JSON (`/v2/models/{m}/config`) that come from a
//! `config.pbtxt` rather than from the served model itself.

use serde_json::{Value, json};

use super::interpret::VersionPolicy;
use super::proto::ModelWarmup;
use super::proto::model_warmup::input::InputDataType;
use super::tensors::type_name;

/// `version_policy` as Triton writes it; a model without `config.pbtxt` serves every version.
pub fn version_policy(policy: Option<&VersionPolicy>) -> Value {
    match policy {
        None | Some(VersionPolicy::All) => json!({"all": {}}),
        Some(VersionPolicy::Latest(n)) => json!({"latest": {"num_versions": n}}),
        Some(VersionPolicy::Specific(v)) => json!({"specific": {"versions": v}}),
    }
}

/// `model_warmup` as configured, inputs in name order.
pub fn warmup(samples: &[ModelWarmup]) -> Value {
    let sample = |w: &ModelWarmup| {
        let mut names: Vec<&String> = w.inputs.keys().collect();
        names.sort();
        let inputs: serde_json::Map<String, Value> = names
            .into_iter()
            .map(|name| {
                let input = &w.inputs[name];
                let mut value = json!({"data_type": type_name(input.data_type), "dims": input.dims});
                match &input.input_data_type {
                    Some(InputDataType::ZeroData(z)) => value["zero_data"] = json!(z),
                    Some(InputDataType::RandomData(r)) => value["random_data"] = json!(r),
                    Some(InputDataType::InputDataFile(f)) => value["input_data_file"] = json!(f),
                    None => {}
                }
                (name.clone(), value)
            })
            .collect();
        json!({"name": w.name, "batch_size": w.batch_size, "count": w.count.max(1), "inputs": inputs})
    };
    Value::Array(samples.iter().map(sample).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::triton::parse;

    #[test]
    fn policies_are_written_as_triton_writes_them() {
        assert_eq!(version_policy(None), json!({"all": {}}));
        assert_eq!(version_policy(Some(&VersionPolicy::Latest(2))), json!({"latest": {"num_versions": 2}}));
        assert_eq!(
            version_policy(Some(&VersionPolicy::Specific(vec![1, 3]))),
            json!({"specific": {"versions": [1, 3]}})
        );
    }

    #[test]
    fn warmup_samples_are_reported_as_configured() {
        let config = parse(
            r#"model_warmup [ { name: "w" batch_size: 2
                 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3 ] input_data_file: "x.bin" } } } ]"#,
        )
        .unwrap();
        assert_eq!(
            warmup(&config.model_warmup),
            json!([{"name": "w", "batch_size": 2, "count": 1,
                    "inputs": {"x": {"data_type": "TYPE_FP32", "dims": [3], "input_data_file": "x.bin"}}}])
        );
    }
}
