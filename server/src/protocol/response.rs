//! Encodes an infer response: a JSON header, followed by the binary outputs when any were asked for.

use super::binary;
use super::tensor::{Tensor, TensorData};
use super::types::{JsonData, OutputHeader, OutputParameters, ResponseHeader};

/// One output to send, and whether it goes in the binary part.
#[derive(Debug)]
pub struct OutputToSend {
    pub tensor: Tensor,
    pub binary: bool,
}

/// A response body; `header_length` is set (and must be sent as `Inference-Header-Content-Length`)
/// when binary data follows the JSON header.
#[derive(Debug)]
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

pub fn encode_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[OutputToSend],
) -> EncodedResponse {
    let header = ResponseHeader {
        model_name,
        model_version: model_version.to_string(),
        id,
        outputs: outputs
            .iter()
            .map(|o| OutputHeader {
                name: &o.tensor.name,
                datatype: o.tensor.datatype().as_str(),
                shape: &o.tensor.shape,
                parameters: o
                    .binary
                    .then(|| OutputParameters { binary_data_size: binary_size(&o.tensor.data) }),
                data: (!o.binary).then_some(JsonData(&o.tensor.data)),
            })
            .collect(),
    };
    let binary_total: usize = outputs.iter().filter(|o| o.binary).map(|o| binary_size(&o.tensor.data)).sum();
    let mut body = Vec::with_capacity(256 + binary_total);
    // Serialising into a Vec cannot fail: every field is a plain string, number or array.
    if serde_json::to_writer(&mut body, &header).is_err() {
        body.clear();
        body.extend_from_slice(br#"{"error":"failed to encode the response"}"#);
        return EncodedResponse { body, header_length: None };
    }
    if !outputs.iter().any(|o| o.binary) {
        return EncodedResponse { body, header_length: None };
    }
    let header_length = body.len();
    for output in outputs.iter().filter(|o| o.binary) {
        binary::encode(&output.tensor.data, &mut body);
    }
    EncodedResponse { body, header_length: Some(header_length) }
}

/// Bytes that `binary::encode` will write for `data`, computed without encoding it.
fn binary_size(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|b| 4 + b.len()).sum(),
        other => other.len() * other.datatype().element_size().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, data: TensorData) -> Tensor {
        Tensor { name: name.into(), shape: vec![data.len()], data }
    }

    #[test]
    fn a_json_only_response_has_no_header_length() {
        let outputs = [OutputToSend { tensor: tensor("y", TensorData::Int64(vec![3])), binary: false }];
        let r = encode_response("m", "2", Some("abc"), &outputs);
        assert_eq!(r.header_length, None);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"model_name":"m","model_version":"2","id":"abc","outputs":[{"name":"y","datatype":"INT64","shape":[1],"data":[3]}]}"#
        );
    }

    #[test]
    fn binary_outputs_follow_the_header_in_order_and_json_ones_stay_inline() {
        let outputs = [
            OutputToSend { tensor: tensor("a", TensorData::Uint8(vec![1, 2])), binary: true },
            OutputToSend { tensor: tensor("b", TensorData::Bool(vec![true])), binary: false },
            OutputToSend { tensor: tensor("c", TensorData::Bytes(vec![b"z".to_vec()])), binary: true },
        ];
        let r = encode_response("m", "1", None, &outputs);
        let n = r.header_length.unwrap();
        let header: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 2);
        assert_eq!(header["outputs"][1]["data"], serde_json::json!([true]));
        assert_eq!(header["outputs"][2]["parameters"]["binary_data_size"], 5);
        assert_eq!(&r.body[n..], &[1, 2, 1, 0, 0, 0, b'z']);
    }
}
