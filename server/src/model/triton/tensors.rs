//! The inputs and outputs a `config.pbtxt` declares, checked against what the ONNX file says. Pure.
//! Where the config is more specific than the model (a fixed 224 where the model leaves the dimension
//! open), the config's dimension is enforced on requests, as Triton does.

use super::proto::{DataType as ConfigType, ModelConfig};
use crate::model::signature::{Signature, TensorSpec};
use crate::protocol::DataType;

/// A declared input or output, as far as the check needs it.
struct Declared<'a> {
    name: &'a str,
    data_type: i32,
    dims: &'a [i64],
    reshaped: bool,
    shape_tensor: bool,
}

/// The model's signature narrowed by the config. Every model input must be declared when any input is
/// (a config that lists none is completed from the model, as Triton's auto-complete does); outputs may
/// be a subset, and the model's other outputs stay available.
pub fn narrow(config: &ModelConfig, model: &Signature) -> Result<Signature, String> {
    let batch = config.max_batch_size > 0;
    let inputs = config.input.iter().map(|i| Declared {
        name: &i.name,
        data_type: i.data_type,
        dims: &i.dims,
        reshaped: i.reshape.is_some(),
        shape_tensor: i.is_shape_tensor,
    });
    let outputs = config.output.iter().map(|o| Declared {
        name: &o.name,
        data_type: o.data_type,
        dims: &o.dims,
        reshaped: o.reshape.is_some(),
        shape_tensor: o.is_shape_tensor,
    });
    let mut narrowed = model.clone();
    for declared in inputs {
        apply(&declared, &mut narrowed.inputs, "input", batch)?;
    }
    for declared in outputs {
        apply(&declared, &mut narrowed.outputs, "output", batch)?;
    }
    if !config.input.is_empty()
        && let Some(missing) = model.inputs.iter().find(|s| !config.input.iter().any(|i| i.name == s.name))
    {
        return Err(format!(
            "the model's input '{}' ({} {:?}) is missing from the config's inputs",
            missing.name,
            missing.datatype.as_str(),
            missing.dims
        ));
    }
    if batch {
        let all = narrowed
            .inputs
            .iter()
            .map(|s| ("input", s))
            .chain(narrowed.outputs.iter().map(|s| ("output", s)));
        for (kind, spec) in all {
            if !spec.open_leading_dim() {
                return Err(format!(
                    "max_batch_size is {}, so {kind} '{}' needs an open first dimension, but the model's shape \
                     is {:?}; set max_batch_size: 0 to send whole tensors",
                    config.max_batch_size, spec.name, spec.dims
                ));
            }
        }
    }
    Ok(narrowed)
}

fn apply(declared: &Declared, specs: &mut [TensorSpec], kind: &str, batch: bool) -> Result<(), String> {
    let name = declared.name;
    if declared.reshaped {
        return Err(format!("{kind} '{name}': reshape is not supported; give the model's own shape as dims"));
    }
    if declared.shape_tensor {
        return Err(format!("{kind} '{name}': is_shape_tensor is not supported (it is for TensorRT models)"));
    }
    let Some(index) = specs.iter().position(|s| s.name == name) else {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "the config declares {kind} '{name}', but the model has no such {kind}; it has {known:?}"
        ));
    };
    let spec = &mut specs[index];
    let datatype = datatype(declared.data_type).ok_or_else(|| {
        format!("{kind} '{name}': data_type {} is not supported", type_name(declared.data_type))
    })?;
    if datatype != spec.datatype {
        return Err(format!(
            "{kind} '{name}' is {} in the config but {} in the model",
            type_name(declared.data_type),
            spec.datatype.config_name()
        ));
    }
    let full: Vec<i64> =
        if batch { [-1].iter().chain(declared.dims).copied().collect() } else { declared.dims.to_vec() };
    let disagree = || {
        let batch_note = if batch { " (with the batch dimension, as max_batch_size > 0)" } else { "" };
        format!(
            "{kind} '{name}' has dims {full:?}{batch_note} in the config but {:?} in the model",
            spec.dims
        )
    };
    if full.len() != spec.dims.len() {
        return Err(disagree());
    }
    let mut dims = spec.dims.clone();
    for (i, (&want, &have)) in full.iter().zip(&spec.dims).enumerate() {
        match (want < 0, have < 0) {
            (true, _) => {}
            (false, true) => dims[i] = want,
            (false, false) if want == have => {}
            (false, false) => return Err(disagree()),
        }
    }
    spec.dims = dims;
    Ok(())
}

/// The server's datatype of a config `data_type`; `None` for those it does not serve.
pub fn datatype(config: i32) -> Option<DataType> {
    Some(match ConfigType::try_from(config).ok()? {
        ConfigType::TypeBool => DataType::Bool,
        ConfigType::TypeUint8 => DataType::Uint8,
        ConfigType::TypeInt8 => DataType::Int8,
        ConfigType::TypeInt16 => DataType::Int16,
        ConfigType::TypeInt32 => DataType::Int32,
        ConfigType::TypeInt64 => DataType::Int64,
        ConfigType::TypeFp16 => DataType::Fp16,
        ConfigType::TypeFp32 => DataType::Fp32,
        ConfigType::TypeFp64 => DataType::Fp64,
        ConfigType::TypeString => DataType::Bytes,
        ConfigType::TypeInvalid
        | ConfigType::TypeUint16
        | ConfigType::TypeUint32
        | ConfigType::TypeUint64
        | ConfigType::TypeBf16 => return None,
    })
}

/// The enum's name as the config spells it.
pub fn type_name(config: i32) -> &'static str {
    ConfigType::try_from(config).map_or("(unknown)", |t| t.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::triton::parse;

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, dims: dims.to_vec() }
    }

    fn model() -> Signature {
        Signature {
            inputs: vec![
                spec("image", DataType::Fp32, &[-1, 3, -1, -1]),
                spec("scale", DataType::Int64, &[-1]),
            ],
            outputs: vec![
                spec("logits", DataType::Fp32, &[-1, 10]),
                spec("features", DataType::Fp32, &[-1, 64]),
            ],
        }
    }

    fn narrow_with(text: &str) -> Result<Signature, String> {
        narrow(&parse(text).unwrap(), &model())
    }

    #[test]
    fn the_configs_fixed_dimensions_narrow_the_models_open_ones() {
        let sig = narrow_with(
            r#"max_batch_size: 8
               input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] },
                       { name: "scale" data_type: TYPE_INT64 dims: [ ] } ]
               output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]"#,
        )
        .unwrap();
        assert_eq!(sig.inputs[0].dims, [-1, 3, 224, 224]);
        assert_eq!(sig.inputs[1].dims, [-1]);
        assert_eq!(sig.outputs.len(), 2, "undeclared outputs stay available");
    }

    #[test]
    fn a_config_without_inputs_is_completed_from_the_model() {
        assert_eq!(narrow_with("max_batch_size: 8").unwrap(), model());
    }

    #[test]
    fn disagreements_name_the_tensor_and_both_shapes_or_types() {
        assert_eq!(
            narrow_with(
                r#"max_batch_size: 8 input [ { name: "image" data_type: TYPE_FP32 dims: [ 4, 224, 224 ] },
                            { name: "scale" data_type: TYPE_INT64 dims: [ ] } ]"#
            )
            .unwrap_err(),
            "input 'image' has dims [-1, 4, 224, 224] (with the batch dimension, as max_batch_size > 0) in the \
             config but [-1, 3, -1, -1] in the model"
        );
        assert_eq!(
            narrow_with(r#"output [ { name: "logits" data_type: TYPE_FP16 dims: [ -1, 10 ] } ]"#)
                .unwrap_err(),
            "output 'logits' is TYPE_FP16 in the config but TYPE_FP32 in the model"
        );
        assert_eq!(
            narrow_with(r#"input [ { name: "img" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] } ]"#)
                .unwrap_err(),
            r#"the config declares input 'img', but the model has no such input; it has ["image", "scale"]"#
        );
        assert_eq!(
            narrow_with(r#"input [ { name: "image" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] } ]"#)
                .unwrap_err(),
            "the model's input 'scale' (INT64 [-1]) is missing from the config's inputs"
        );
    }

    #[test]
    fn batching_needs_an_open_first_dimension_everywhere() {
        let fixed = Signature { inputs: vec![spec("x", DataType::Fp32, &[1, 3])], outputs: vec![] };
        assert_eq!(
            narrow(&parse("max_batch_size: 4").unwrap(), &fixed).unwrap_err(),
            "max_batch_size is 4, so input 'x' needs an open first dimension, but the model's shape is [1, 3]; \
             set max_batch_size: 0 to send whole tensors"
        );
        assert!(narrow(&parse("max_batch_size: 0").unwrap(), &fixed).is_ok());
    }

    #[test]
    fn reshape_and_unsupported_types_are_refused() {
        assert_eq!(
            narrow_with(
                r#"input [ { name: "scale" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } } ]"#
            )
            .unwrap_err(),
            "input 'scale': reshape is not supported; give the model's own shape as dims"
        );
        assert_eq!(
            narrow_with(r#"output [ { name: "logits" data_type: TYPE_BF16 dims: [ -1, 10 ] } ]"#)
                .unwrap_err(),
            "output 'logits': data_type TYPE_BF16 is not supported"
        );
    }
}
