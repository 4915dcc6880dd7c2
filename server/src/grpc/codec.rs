//! ModelInferRequest in, ModelInferResponse out: the gRPC form of the protocol's tensors, turned into the
//! same `InferRequest` the REST codec makes, with the same rules (`protocol::request::tensor_header`
//! for datatypes and shapes, `protocol::binary` for raw contents). Pure.

use std::collections::HashSet;
use std::time::Duration;

use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::protocol::request::{MAX_OUTPUTS, RequestedOutput, tensor_header};
use crate::protocol::{DataType, InferRequest, OutputToSend, Tensor, TensorData, binary};

/// The request's inputs, outputs, id and `timeout` parameter (microseconds, as over REST).
pub fn request(req: ModelInferRequest) -> Result<InferRequest, String> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries but the request has {} inputs; send one per input, in order",
            raw.len(),
            req.inputs.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        let name = input.name.clone();
        if !seen.insert(name.clone()) {
            return Err(format!("input '{name}' appears more than once"));
        }
        inputs.push(input_tensor(input, raw.get(i)).map_err(|e| format!("input '{name}': {e}"))?);
    }
    if req.outputs.len() > MAX_OUTPUTS {
        return Err(format!(
            "the request names {} outputs, more than the {MAX_OUTPUTS} allowed",
            req.outputs.len()
        ));
    }
    let outputs = req.outputs.into_iter().map(|o| RequestedOutput { name: o.name, binary: None }).collect();
    let timeout = match req.parameters.get("timeout").and_then(|p| p.parameter_choice.as_ref()) {
        None => None,
        Some(ParameterChoice::Int64Param(us)) if *us >= 0 => Some(Duration::from_micros(*us as u64)),
        Some(ParameterChoice::Uint64Param(us)) => Some(Duration::from_micros(*us)),
        Some(other) => {
            return Err(format!("parameter timeout must be a non-negative integer, got {other:?}"));
        }
    };
    Ok(InferRequest {
        id: Some(req.id).filter(|id| !id.is_empty()),
        inputs,
        outputs,
        binary_output: true,
        timeout,
    })
}

fn input_tensor(input: InferInputTensor, raw: Option<&Vec<u8>>) -> Result<Tensor, String> {
    let (datatype, shape, expected) = tensor_header(&input.datatype, &input.shape)?;
    if input.parameters.contains_key("shared_memory_region") {
        return Err("shared memory is not supported; send the data in the request".into());
    }
    let data = match (raw, input.contents) {
        (Some(_), Some(c)) if c != InferTensorContents::default() => {
            return Err("has both contents and raw_input_contents; send one".into());
        }
        (Some(bytes), _) => binary::decode(bytes, datatype, expected)?,
        (None, Some(c)) => contents(c, datatype, expected)?,
        (None, None) if expected == 0 => binary::decode(&[], datatype, 0)?,
        (None, None) => return Err("has neither contents nor raw_input_contents".into()),
    };
    Ok(Tensor { name: input.name, shape, data })
}

/// Typed contents, each datatype from the field the protocol assigns it.
fn contents(c: InferTensorContents, datatype: DataType, expected: usize) -> Result<TensorData, String> {
    fn exact<T>(values: Vec<T>, expected: usize) -> Result<Vec<T>, String> {
        match values.len() {
            n if n == expected => Ok(values),
            n => Err(format!("has {n} elements but its shape needs {expected}")),
        }
    }
    fn narrow<T: TryFrom<W>, W: Copy + std::fmt::Display>(
        values: Vec<W>,
        expected: usize,
        to: DataType,
    ) -> Result<Vec<T>, String> {
        exact(values, expected)?
            .into_iter()
            .map(|v| T::try_from(v).map_err(|_| format!("the value {v} does not fit {to}")))
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(exact(c.bool_contents, expected)?),
        DataType::Uint8 => TensorData::Uint8(narrow(c.uint_contents, expected, datatype)?),
        DataType::Int8 => TensorData::Int8(narrow(c.int_contents, expected, datatype)?),
        DataType::Int16 => TensorData::Int16(narrow(c.int_contents, expected, datatype)?),
        DataType::Int32 => TensorData::Int32(exact(c.int_contents, expected)?),
        DataType::Int64 => TensorData::Int64(exact(c.int64_contents, expected)?),
        DataType::Fp16 => {
            return Err("FP16 has no typed contents field; send it in raw_input_contents".into());
        }
        DataType::Fp32 => TensorData::Fp32(exact(c.fp32_contents, expected)?),
        DataType::Fp64 => TensorData::Fp64(exact(c.fp64_contents, expected)?),
        DataType::Bytes => TensorData::Bytes(exact(c.bytes_contents, expected)?),
    })
}

/// The response, every output in `raw_output_contents` (what tritonclient.grpc reads by default).
pub fn response(
    model: &str,
    version: u64,
    id: Option<String>,
    outputs: Vec<OutputToSend>,
) -> ModelInferResponse {
    let mut raw = Vec::with_capacity(outputs.len());
    let tensors = outputs
        .into_iter()
        .map(|o| {
            let mut bytes = Vec::new();
            binary::encode(&o.tensor.data, &mut bytes);
            raw.push(bytes);
            InferOutputTensor {
                name: o.tensor.name,
                datatype: o.tensor.data.datatype().as_str().into(),
                shape: o.tensor.shape.iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            }
        })
        .collect();
    ModelInferResponse {
        model_name: model.into(),
        model_version: version.to_string(),
        id: id.unwrap_or_default(),
        parameters: Default::default(),
        outputs: tensors,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
