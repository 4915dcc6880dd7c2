//! A table of caller mistakes: each gets the right 4xx and a message naming what was wrong. None is a 500.

mod common;

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

struct Case {
    what: &'static str,
    uri: &'static str,
    body: Vec<u8>,
    header_length: Option<&'static str>,
    status: u16,
    message: &'static str,
}

fn case(
    what: &'static str,
    uri: &'static str,
    body: serde_json::Value,
    status: u16,
    message: &'static str,
) -> Case {
    Case { what, uri, body: serde_json::to_vec(&body).unwrap(), header_length: None, status, message }
}

fn raw(
    what: &'static str,
    uri: &'static str,
    body: &[u8],
    hl: Option<&'static str>,
    status: u16,
    message: &'static str,
) -> Case {
    Case { what, uri, body: body.to_vec(), header_length: hl, status, message }
}

const AFFINE: &str = "/v2/models/affine/infer";
const MULTI: &str = "/v2/models/multi_io/infer";
const ECHO_TEXT: &str = "/v2/models/echo/infer";

fn x(shape: serde_json::Value, data: serde_json::Value) -> serde_json::Value {
    json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]})
}

fn cases() -> Vec<Case> {
    let binary_header =
        br#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let binary_header_len: &'static str = Box::leak(binary_header.len().to_string().into_boxed_str());
    let short_binary = [&binary_header[..], &[0u8; 8]].concat();
    let long_binary = [&binary_header[..], &[0u8; 20]].concat();
    let wrong_size =
        br#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":15}}]}"#;
    let wrong_size_len: &'static str = Box::leak(wrong_size.len().to_string().into_boxed_str());
    let wrong_size_body = [&wrong_size[..], &[0u8; 15]].concat();
    vec![
        raw(
            "malformed JSON",
            AFFINE,
            b"{\"inputs\": [",
            None,
            400,
            "malformed request JSON: EOF while parsing",
        ),
        raw("an empty body", AFFINE, b"", None, 400, "malformed request JSON: EOF while parsing a value"),
        case(
            "a JSON array instead of an object",
            AFFINE,
            json!([1]),
            400,
            "malformed request JSON: the request must be a JSON object with an \"inputs\" array",
        ),
        case(
            "no inputs field",
            AFFINE,
            json!({"id": "1"}),
            400,
            "malformed request JSON: missing field `inputs`",
        ),
        case(
            "an unknown datatype",
            AFFINE,
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FLOAT32", "data": [1, 2, 3, 4]}]}),
            400,
            "input 'x': unknown datatype \"FLOAT32\"; expected one of BOOL",
        ),
        case(
            "the wrong datatype for the model",
            AFFINE,
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]}),
            400,
            "input 'x' of model 'affine' has datatype FP32, but the request sent INT32",
        ),
        case(
            "an input the model does not have",
            AFFINE,
            json!({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            400,
            "model 'affine' has no input 'z'; its inputs are 'x'",
        ),
        case(
            "a missing input",
            MULTI,
            json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                                                         {"name": "k", "shape": [], "datatype": "INT64", "data": 1}]}),
            400,
            "model 'multi_io' needs input 'mask' (BOOL [-1, 3]) but the request has 'x', 'k'",
        ),
        case(
            "a shape the model does not take",
            AFFINE,
            x(json!([1, 3]), json!([1, 2, 3])),
            400,
            "input 'x' of model 'affine' needs shape [-1, 4] (-1: any size), but the request sent [1, 3]",
        ),
        case(
            "a scalar sent with rank 1",
            MULTI,
            json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                                                                  {"name": "k", "shape": [1], "datatype": "INT64", "data": [1]},
                                                                  {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [true, true, true]}]}),
            400,
            "input 'k' of model 'multi_io' needs shape [] (-1: any size), but the request sent [1]",
        ),
        case(
            "too little data for the shape",
            AFFINE,
            x(json!([1, 4]), json!([1, 2, 3])),
            400,
            "input 'x': has 3 elements but its shape needs 4",
        ),
        case(
            "too much data for the shape",
            AFFINE,
            x(json!([1, 4]), json!([1, 2, 3, 4, 5])),
            400,
            "input 'x': has more elements than the 4 its shape needs",
        ),
        case(
            "non-numeric data",
            AFFINE,
            x(json!([1, 4]), json!([1, "2", 3, 4])),
            400,
            "input 'x': element 1: expected a number for FP32, found the string \"2\"",
        ),
        case(
            "a negative dimension",
            AFFINE,
            x(json!([-1, 4]), json!([1, 2, 3, 4])),
            400,
            "input 'x': shape [-1, 4] has a negative dimension",
        ),
        case(
            "an integer out of range",
            ECHO_TEXT,
            json!({"inputs": [{"name": "in_uint8", "shape": [1, 2], "datatype": "UINT8", "data": [1, 256]}]}),
            400,
            "input 'in_uint8': element 1: 256 is out of range for UINT8",
        ),
        case(
            "more rows than max_batch_size",
            AFFINE,
            x(json!([65, 4]), json!(vec![0; 260])),
            400,
            "the request to model 'affine' has 65 rows, more than its max_batch_size of 64",
        ),
        case(
            "zero rows",
            AFFINE,
            x(json!([0, 4]), json!([])),
            400,
            "input 'x' of the request to model 'affine' has 0 rows; send at least one",
        ),
        case(
            "an output the model does not have",
            AFFINE,
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                                                                  "outputs": [{"name": "logits"}]}),
            400,
            "model 'affine' has no output 'logits'; its outputs are 'y', 'total'",
        ),
        case(
            "data and binary_data_size together",
            AFFINE,
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                                   "data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}}]}),
            400,
            "input 'x': has both JSON data and binary_data_size; send one",
        ),
        case(
            "the same input twice",
            AFFINE,
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                                                             {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            400,
            "input 'x' appears more than once",
        ),
        case(
            "a timeout that is not a number",
            AFFINE,
            json!({"parameters": {"timeout": "1s"},
                                                               "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            400,
            "parameter timeout must be a non-negative integer, got \"1s\"",
        ),
        raw(
            "less binary data than binary_data_size",
            AFFINE,
            &short_binary,
            Some(binary_header_len),
            400,
            "input 'x': binary_data_size is 16 but only 8 bytes of binary data remain",
        ),
        raw(
            "binary data left over",
            AFFINE,
            &long_binary,
            Some(binary_header_len),
            400,
            "4 bytes of binary data follow the inputs that no input's binary_data_size accounts for",
        ),
        raw(
            "a binary size that does not fit the datatype",
            AFFINE,
            &wrong_size_body,
            Some(wrong_size_len),
            400,
            "input 'x': has 15 bytes of binary data but 4 FP32 elements need 16",
        ),
        raw(
            "a header length beyond the body",
            AFFINE,
            b"{}",
            Some("100"),
            400,
            "Inference-Header-Content-Length is 100 but the body has only 2 bytes",
        ),
        raw(
            "a header length that is not a number",
            AFFINE,
            b"{}",
            Some("ten"),
            400,
            "Inference-Header-Content-Length must be a byte count, got \"ten\"",
        ),
        case(
            "an unknown model",
            "/v2/models/resnet/infer",
            x(json!([1, 4]), json!([1, 2, 3, 4])),
            404,
            "unknown model 'resnet'",
        ),
        case(
            "an unknown version",
            "/v2/models/affine/versions/9/infer",
            x(json!([1, 4]), json!([1, 2, 3, 4])),
            404,
            "model 'affine' has no version '9'; it has 1, 2",
        ),
        case(
            "a version that is not a number",
            "/v2/models/affine/versions/latest/infer",
            x(json!([1, 4]), json!([1, 2, 3, 4])),
            404,
            "model 'affine' has no version 'latest'; it has 1, 2",
        ),
        case(
            "an unknown route",
            "/v2/models/affine/predict",
            json!({}),
            404,
            "no such route: POST /v2/models/affine/predict",
        ),
    ]
}

#[tokio::test]
async fn every_malformed_request_gets_a_4xx_that_says_what_was_wrong() {
    let app = common::start(&["affine", "multi_io", "echo"], common::defaults());
    let cases = cases();
    assert!(cases.len() >= 20);
    for c in cases {
        let reply = app.post_raw(c.uri, c.body, c.header_length).await;
        assert_eq!(reply.status.as_u16(), c.status, "{}: {}", c.what, String::from_utf8_lossy(&reply.body));
        let message = reply.error();
        assert!(
            message.starts_with(c.message),
            "{}: got {message:?}, expected it to start with {:?}",
            c.what,
            c.message
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let app = common::start_with_body_limit(&["affine"], common::defaults(), 1024);
    let reply = app.post_json(AFFINE, &x(json!([64, 4]), json!(vec![0.123456; 256]))).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error(), "request body is larger than the 1024-byte limit");
}

#[tokio::test]
async fn get_on_the_infer_route_is_405_with_a_json_error() {
    let app = common::start(&["affine"], common::defaults());
    let reply = app.send(Request::get(AFFINE).body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.error(), "method not allowed: GET /v2/models/affine/infer");
}

#[tokio::test]
async fn a_model_name_that_is_not_utf8_is_a_400_with_a_json_error() {
    let app = common::start(&["affine"], common::defaults());
    let reply = app.post_json("/v2/models/%FF/infer", &x(json!([1, 4]), json!([0, 0, 0, 0]))).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.error(), "Invalid URL: Invalid UTF-8 in `model`");
}

#[tokio::test]
async fn bytes_for_a_string_input_must_be_text() {
    let app = common::start(&["echo"], common::defaults());
    let inputs = ["bool", "uint8", "int8", "int16", "int32", "int64", "fp16", "fp32", "fp64"];
    let mut header_inputs: Vec<serde_json::Value> = inputs
        .iter()
        .map(|t| {
            json!({"name": format!("in_{t}"), "shape": [1, 2], "datatype": t.to_uppercase(),
                        "data": if *t == "bool" { json!([true, true]) } else { json!([1, 1]) }})
        })
        .collect();
    header_inputs.push(json!({"name": "in_bytes", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}));
    let binary = [&[1u8, 0, 0, 0, 0xff][..], &[1, 0, 0, 0, b'a']].concat();
    let reply = app.post_binary(ECHO_TEXT, &json!({"inputs": header_inputs}), &binary).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.error(),
        "input 'in_bytes' of model 'echo': element 0 is not UTF-8 text without NUL bytes, which ONNX string tensors need"
    );
}
