use super::*;
use crate::proto::InferParameter;

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

fn fp32(values: &[f32]) -> Option<InferTensorContents> {
    Some(InferTensorContents { fp32_contents: values.to_vec(), ..Default::default() })
}

#[test]
fn typed_contents_become_the_same_tensors_as_rest_makes() {
    let req = ModelInferRequest {
        id: "r1".into(),
        inputs: vec![
            input("x", "FP32", &[1, 2], fp32(&[1.0, 2.0])),
            input(
                "k",
                "INT8",
                &[2],
                Some(InferTensorContents { int_contents: vec![-3, 4], ..Default::default() }),
            ),
        ],
        parameters: [(
            "timeout".to_string(),
            InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(2500)) },
        )]
        .into(),
        ..Default::default()
    };
    let got = request(req).unwrap();
    assert_eq!(got.id.as_deref(), Some("r1"));
    assert_eq!(got.timeout, Some(Duration::from_micros(2500)));
    assert_eq!(
        got.inputs[0],
        Tensor { name: "x".into(), shape: vec![1, 2], data: TensorData::Fp32(vec![1.0, 2.0]) }
    );
    assert_eq!(got.inputs[1].data, TensorData::Int8(vec![-3, 4]));
}

#[test]
fn raw_contents_are_decoded_like_the_http_binary_extension() {
    let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let strings = [3u32.to_le_bytes().as_slice(), b"abc"].concat();
    let req = ModelInferRequest {
        inputs: vec![input("x", "FP32", &[2], None), input("s", "BYTES", &[1], None)],
        raw_input_contents: vec![bytes, strings],
        ..Default::default()
    };
    let got = request(req).unwrap();
    assert_eq!(got.inputs[0].data, TensorData::Fp32(vec![1.5, -2.0]));
    assert_eq!(got.inputs[1].data, TensorData::Bytes(vec![b"abc".to_vec()]));
}

#[test]
fn mistakes_are_named_with_the_input_and_the_rest_messages() {
    let err = |inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>| {
        request(ModelInferRequest { inputs, raw_input_contents: raw, ..Default::default() }).unwrap_err()
    };
    assert_eq!(
        err(vec![input("x", "FP32", &[3], fp32(&[1.0]))], vec![]),
        "input 'x': has 1 elements but its shape needs 3"
    );
    assert_eq!(
        err(
            vec![input(
                "x",
                "INT8",
                &[1],
                Some(InferTensorContents { int_contents: vec![300], ..Default::default() })
            )],
            vec![]
        ),
        "input 'x': the value 300 does not fit INT8"
    );
    assert_eq!(
        err(vec![input("x", "FP32", &[1], None), input("y", "FP32", &[1], None)], vec![vec![0; 4]]),
        "raw_input_contents has 1 entries but the request has 2 inputs; send one per input, in order"
    );
    assert_eq!(
        err(vec![input("x", "FP32", &[1], None)], vec![vec![0; 3]]),
        "input 'x': has 3 bytes of binary data but 1 FP32 elements need 4"
    );
    assert_eq!(
        err(vec![input("x", "FP32", &[1], None)], vec![]),
        "input 'x': has neither contents nor raw_input_contents"
    );
    assert!(
        err(vec![input("x", "FP99", &[1], fp32(&[1.0]))], vec![])
            .starts_with("input 'x': unknown datatype \"FP99\"")
    );
    assert_eq!(
        err(vec![input("x", "FP32", &[1], fp32(&[1.0])), input("x", "FP32", &[1], fp32(&[1.0]))], vec![]),
        "input 'x' appears more than once"
    );
}

#[test]
fn the_response_carries_every_output_raw_with_its_metadata() {
    let out = OutputToSend {
        tensor: Tensor { name: "y".into(), shape: vec![1, 2], data: TensorData::Int64(vec![7, -1]) },
        binary: true,
    };
    let got = response("m", 3, Some("r1".into()), vec![out]);
    assert_eq!((got.model_name.as_str(), got.model_version.as_str(), got.id.as_str()), ("m", "3", "r1"));
    assert_eq!((got.outputs[0].name.as_str(), got.outputs[0].datatype.as_str()), ("y", "INT64"));
    assert_eq!(got.outputs[0].shape, [1, 2]);
    let want: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(got.raw_output_contents, [want]);
}
