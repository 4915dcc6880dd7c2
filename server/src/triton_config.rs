//! Triton's model configuration extension: what a served model reports as its configuration, the same
//! for `GET /v2/models/{m}/config` and gRPC's ModelConfig (which converts this JSON).

use serde_json::{Value, json};

use crate::model::device::Device;
use crate::model::signature::TensorSpec;
use crate::model::triton::report;
use crate::registry::ServedModel;

/// The configuration in force, in Triton's ModelConfig JSON. With batching, `dims` leave out the batch
/// dimension, as Triton's do.
pub fn of(model: &ServedModel) -> Value {
    let batching = model.max_rows > 0;
    let dims = |s: &TensorSpec| -> Vec<i64> { if batching { s.dims[1..].to_vec() } else { s.dims.clone() } };
    let inputs: Vec<Value> = model
        .info
        .signature
        .inputs
        .iter()
        .map(|s| json!({"name": s.name, "data_type": s.datatype.config_name(), "format": "FORMAT_NONE",
                        "dims": dims(s), "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false}))
        .collect();
    let outputs: Vec<Value> = model
        .info
        .signature
        .outputs
        .iter()
        .map(|s| {
            json!({"name": s.name, "data_type": s.datatype.config_name(), "dims": dims(s),
                        "label_filename": "", "is_shape_tensor": false})
        })
        .collect();
    let settings = &model.info.settings;
    let triton = model.info.triton.as_deref();
    let filename = model.info.path.file_name().map_or("model.onnx".into(), |f| f.to_string_lossy());
    let (kind, gpus) = match model.info.device {
        Device::Cpu => ("KIND_CPU", vec![]),
        Device::Cuda(id) => ("KIND_GPU", vec![id]),
    };
    let mut config = json!({
        "name": model.info.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": report::version_policy(triton.map(|t| &t.interpreted.versions)),
        "max_batch_size": model.max_rows,
        "input": inputs,
        "output": outputs,
        "instance_group": [{"name": model.info.name, "kind": kind, "count": settings.instances, "gpus": gpus}],
        "default_model_filename": filename,
        "parameters": {
            "intra_op_thread_count": {"string_value": settings.intra_op_threads.to_string()},
            "queue_capacity": {"string_value": settings.queue_capacity.to_string()},
        },
    });
    if let Some(t) = triton.filter(|t| !t.config.model_warmup.is_empty()) {
        config["model_warmup"] = report::warmup(&t.config.model_warmup);
    }
    if batching && settings.dynamic_batching {
        let preferred = match settings.preferred_batch_sizes.as_slice() {
            [] => vec![model.max_rows],
            sizes => sizes.to_vec(),
        };
        config["dynamic_batching"] = json!({
            "preferred_batch_size": preferred,
            "max_queue_delay_microseconds": settings.max_queue_delay.as_micros() as u64,
            "preserve_ordering": false,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": settings.request_timeout.as_micros() as u64,
                "allow_timeout_override": settings.allow_timeout_override,
                "max_queue_size": settings.queue_capacity,
            },
        });
    }
    config
}
