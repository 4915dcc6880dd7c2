//! Turns an infer request body (JSON, or JSON plus Triton binary data) into typed tensors.
//! Nothing here knows about models: checking the tensors against a model's signature is the registry's job.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value};

use super::binary;
use super::datatype::DataType;
use super::json;
use super::tensor::{Tensor, element_count};
use super::types::{InputHeader, RequestHeader, parameters};

/// Most outputs one request may name; a model with more is not one anybody serves.
pub const MAX_OUTPUTS: usize = 1024;
/// Most elements one BYTES input may hold: each costs a heap allocation, whatever its length.
pub const MAX_BYTES_ELEMENTS: usize = 1 << 20;

/// A decoded infer request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Outputs the caller asked for, in order; empty means every output of the model.
    pub outputs: Vec<RequestedOutput>,
    /// Request-level `binary_data_output`: outputs without their own `binary_data` go binary.
    pub binary_output: bool,
    /// Triton's `timeout` parameter, sent in microseconds.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: Option<bool>,
}

/// Decodes `body`; `header_length` is the `Inference-Header-Content-Length` header, if sent.
pub fn decode_request(body: &[u8], header_length: Option<&str>) -> Result<InferRequest, String> {
    let (json_part, mut binary_part) = binary::split_body(body, header_length)?;
    // serde would read a JSON array as the struct's fields in order, with a baffling message.
    if json_part.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(
            "malformed request JSON: the request must be a JSON object with an \"inputs\" array".into()
        );
    }
    let header: RequestHeader =
        serde_json::from_slice(json_part).map_err(|e| format!("malformed request JSON: {e}"))?;
    let mut seen = HashSet::new();
    let mut inputs = Vec::with_capacity(header.inputs.len());
    for input in &header.inputs {
        if !seen.insert(input.name.as_str()) {
            return Err(format!("input '{}' appears more than once", input.name));
        }
        let tensor =
            decode_input(input, &mut binary_part).map_err(|e| format!("input '{}': {e}", input.name))?;
        inputs.push(tensor);
    }
    if !binary_part.is_empty() {
        return Err(format!(
            "{} bytes of binary data follow the inputs that no input's binary_data_size accounts for",
            binary_part.len()
        ));
    }
    let parameters = parameters(header.parameters)?;
    let parameters = parameters.as_ref();
    let requested = header.outputs.unwrap_or_default();
    if requested.len() > MAX_OUTPUTS {
        return Err(format!(
            "the request names {} outputs, more than the {MAX_OUTPUTS} allowed",
            requested.len()
        ));
    }
    let outputs = requested
        .into_iter()
        .map(|o| {
            let own =
                super::types::parameters(o.parameters).map_err(|e| format!("output '{}': {e}", o.name))?;
            let binary =
                flag(own.as_ref(), "binary_data").map_err(|e| format!("output '{}': {e}", o.name))?;
            Ok(RequestedOutput { name: o.name, binary })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(InferRequest {
        id: header.id,
        inputs,
        outputs,
        binary_output: flag(parameters, "binary_data_output")?.unwrap_or(false),
        timeout: unsigned(parameters, "timeout")?.map(Duration::from_micros),
    })
}

/// An input's datatype and shape as sent, checked: the datatype, the shape in elements per dimension,
/// and how many elements that shape holds. REST and gRPC both go through here.
pub fn tensor_header(datatype: &str, shape: &[i64]) -> Result<(DataType, Vec<usize>, usize), String> {
    let parsed: DataType = datatype.parse().map_err(|_| {
        format!(
            "unknown datatype {datatype:?}; expected one of BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
        )
    })?;
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("shape {shape:?} has a negative dimension")))
        .collect::<Result<Vec<usize>, String>>()?;
    let expected = element_count(&dims).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if parsed == DataType::Bytes && expected > MAX_BYTES_ELEMENTS {
        return Err(format!(
            "shape {shape:?} holds {expected} BYTES elements, more than the {MAX_BYTES_ELEMENTS} allowed"
        ));
    }
    Ok((parsed, dims, expected))
}

fn decode_input(input: &InputHeader, binary_part: &mut &[u8]) -> Result<Tensor, String> {
    let (datatype, shape, expected) = tensor_header(&input.datatype, &input.shape)?;
    let parameters = parameters(input.parameters)?;
    let parameters = parameters.as_ref();
    if parameters.is_some_and(|p| p.contains_key("shared_memory_region")) {
        return Err("shared memory is not supported; send the data in the request".into());
    }
    let data = match (unsigned(parameters, "binary_data_size")?, input.data) {
        (Some(_), Some(_)) => return Err("has both JSON data and binary_data_size; send one".into()),
        (None, None) => return Err("has neither data nor parameters.binary_data_size".into()),
        (None, Some(raw)) => json::decode_data(raw.get(), datatype, expected)?,
        (Some(size), None) => {
            let size = usize::try_from(size).map_err(|_| "binary_data_size is too large".to_string())?;
            if size > binary_part.len() {
                return Err(format!(
                    "binary_data_size is {size} but only {} bytes of binary data remain",
                    binary_part.len()
                ));
            }
            let (bytes, rest) = binary_part.split_at(size);
            *binary_part = rest;
            binary::decode(bytes, datatype, expected)?
        }
    };
    Ok(Tensor { name: input.name.clone(), shape, data })
}

fn flag(parameters: Option<&Map<String, Value>>, key: &str) -> Result<Option<bool>, String> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!("parameter {key} must be true or false, got {other}")),
    }
}

fn unsigned(parameters: Option<&Map<String, Value>>, key: &str) -> Result<Option<u64>, String> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("parameter {key} must be a non-negative integer, got {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tensor::TensorData;
    use crate::protocol::types::MAX_PARAMETERS_BYTES;

    #[test]
    fn a_json_request_decodes_inputs_outputs_id_and_timeout() {
        let body = br#"{"id":"r1","parameters":{"timeout":2500,"binary_data_output":true},
            "inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1,2]]}],
            "outputs":[{"name":"y"},{"name":"z","parameters":{"binary_data":false}}]}"#;
        let req = decode_request(body, None).unwrap();
        assert_eq!(req.id.as_deref(), Some("r1"));
        assert_eq!(req.timeout, Some(Duration::from_micros(2500)));
        assert!(req.binary_output);
        assert_eq!(
            req.inputs,
            vec![Tensor { name: "x".into(), shape: vec![1, 2], data: TensorData::Fp32(vec![1.0, 2.0]) }]
        );
        assert_eq!(
            req.outputs,
            vec![
                RequestedOutput { name: "y".into(), binary: None },
                RequestedOutput { name: "z".into(), binary: Some(false) }
            ]
        );
    }

    #[test]
    fn binary_inputs_are_read_in_order_after_the_header() {
        let header = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},{"name":"b","shape":[],"datatype":"BOOL","parameters":{"binary_data_size":1}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 1]);
        let req = decode_request(&body, Some(&header.len().to_string())).unwrap();
        assert_eq!(req.inputs[0].data, TensorData::Int32(vec![1, 2]));
        assert_eq!(
            req.inputs[1],
            Tensor { name: "b".into(), shape: vec![], data: TensorData::Bool(vec![true]) }
        );
    }

    #[test]
    fn leftover_binary_bytes_are_an_error() {
        let header = br#"{"inputs":[{"name":"a","shape":[1],"datatype":"UINT8","parameters":{"binary_data_size":1}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[1, 2]);
        assert_eq!(
            decode_request(&body, Some(&header.len().to_string())).unwrap_err(),
            "1 bytes of binary data follow the inputs that no input's binary_data_size accounts for"
        );
    }

    #[test]
    fn errors_name_the_input() {
        let body = br#"{"inputs":[{"name":"x","shape":[1,-2],"datatype":"FP32","data":[1]}]}"#;
        assert_eq!(
            decode_request(body, None).unwrap_err(),
            "input 'x': shape [1, -2] has a negative dimension"
        );
        let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#;
        assert!(decode_request(body, None).unwrap_err().starts_with("input 'x': unknown datatype \"FLOAT\""));
        let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#;
        assert_eq!(
            decode_request(body, None).unwrap_err(),
            "input 'x': has neither data nor parameters.binary_data_size"
        );
    }

    #[test]
    fn duplicate_inputs_are_rejected() {
        let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        assert_eq!(decode_request(body, None).unwrap_err(), "input 'x' appears more than once");
    }

    #[test]
    fn malformed_json_says_so() {
        assert!(decode_request(b"{\"inputs\":[", None).unwrap_err().starts_with("malformed request JSON: "));
    }

    #[test]
    fn what_a_request_can_make_the_server_allocate_is_capped() {
        let padding = "x".repeat(MAX_PARAMETERS_BYTES);
        let body = format!(r#"{{"parameters":{{"pad":"{padding}"}},"inputs":[]}}"#);
        assert_eq!(
            decode_request(body.as_bytes(), None).unwrap_err(),
            format!(
                "parameters take {} bytes of JSON, more than the 16384 allowed",
                MAX_PARAMETERS_BYTES + 10
            )
        );
        let outputs = vec![r#"{"name":"y"}"#; MAX_OUTPUTS + 1].join(",");
        let body = format!(r#"{{"inputs":[],"outputs":[{outputs}]}}"#);
        assert_eq!(
            decode_request(body.as_bytes(), None).unwrap_err(),
            "the request names 1025 outputs, more than the 1024 allowed"
        );
        let body = br#"{"inputs":[{"name":"s","shape":[2048,1024],"datatype":"BYTES","data":[]}]}"#;
        assert_eq!(
            decode_request(body, None).unwrap_err(),
            "input 's': shape [2048, 1024] holds 2097152 BYTES elements, more than the 1048576 allowed"
        );
        let body = br#"{"inputs":[],"outputs":[{"name":"y","parameters":[1]}]}"#;
        assert!(
            decode_request(body, None)
                .unwrap_err()
                .starts_with("output 'y': parameters must be a JSON object: "),
        );
    }

    #[test]
    fn a_non_integer_timeout_is_rejected() {
        let body = br#"{"parameters":{"timeout":"soon"},"inputs":[]}"#;
        assert_eq!(
            decode_request(body, None).unwrap_err(),
            "parameter timeout must be a non-negative integer, got \"soon\""
        );
    }
}
